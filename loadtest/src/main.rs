//! `loadtest`: `run` a scenario, `compare` two reports, `validate` a scenario.
//! Exit codes: 0 ok (every SLO holds, no regression); 2 an SLO failed; 1 a usage or
//! runtime error, or a regression under `compare --fail-on-regression`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadtest::engine::{self, RunOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// As in the gateway: mimalloc without transparent huge pages (see docs/architecture.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Open-loop HTTP load from YAML scenarios, with honest latencies and SLO verdicts.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario: live progress on stderr, the summary on stdout, and with --out a
    /// report.json and report.html.
    Run {
        scenario: PathBuf,
        /// Folder for report.json and report.html (created if missing).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A variable of the scenario (`${NAME}`), before the environment: NAME=value.
        #[arg(long = "set", value_parser = loadtest::scenario::parse_set)]
        set: Vec<(String, String)>,
        /// Worker threads of the generator.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
    },
    /// Compare two report.json files: a table with the ratio of each figure.
    Compare {
        before: PathBuf,
        after: PathBuf,
        /// A change for the worse beyond this share is a regression (e.g. 10%).
        #[arg(long, default_value = "10%", value_parser = parse_share)]
        threshold: f64,
        /// Exit 1 when there is a regression.
        #[arg(long)]
        fail_on_regression: bool,
    },
    /// Check a scenario; every error as file:line:column: field: message.
    Validate {
        scenario: PathBuf,
        #[arg(long = "set", value_parser = loadtest::scenario::parse_set)]
        set: Vec<(String, String)>,
    },
}

fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, div) = match t.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (t, 1.0),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v / div)
        .ok_or_else(|| format!("{s:?}: expected a share like 10% or 0.1"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            scenario,
            out,
            set,
            threads,
            quiet,
        } => run(&scenario, out.as_deref(), &set, threads, quiet),
        Command::Validate { scenario, set } => match loadtest::scenario::load(&scenario, &set) {
            Ok(s) => {
                println!(
                    "{}: ok ({} request template(s), {} SLO(s))",
                    scenario.display(),
                    s.requests.len(),
                    s.slo.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Compare {
            before,
            after,
            threshold,
            fail_on_regression,
        } => {
            let b = loadtest::compare::read_report(&before)?;
            let a = loadtest::compare::read_report(&after)?;
            let c = loadtest::compare::compare(&b, &a, threshold);
            print!("{c}");
            Ok(if fail_on_regression && c.has_regression() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn run(
    path: &Path,
    out: Option<&Path>,
    set: &[(String, String)],
    threads: usize,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let scenario = match loadtest::scenario::load(path, set) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let options = RunOptions {
        threads,
        progress: !quiet,
        ..RunOptions::default()
    };
    let report =
        engine::run(&scenario, &options).with_context(|| format!("running {}", path.display()))?;
    print!("{}", loadtest::summary::render(&report));
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("report.json");
        std::fs::write(&json, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", json.display()))?;
        let html = dir.join("report.html");
        std::fs::write(&html, loadtest::html::render(&report))
            .with_context(|| format!("writing {}", html.display()))?;
        println!("report: {} and {}", json.display(), html.display());
    }
    Ok(if report.slo.iter().all(|v| v.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_as_percent_or_fraction() {
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        assert!(parse_share("-1%").is_err());
    }
}
