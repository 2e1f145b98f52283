//! `gateway`: `check` validates a configuration; `run` (the proxy) is being built.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The API gateway in front of the TSDB pool.
#[derive(Debug, Parser)]
#[command(name = "gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The bootstrap file (listeners, admin port, policies).
    #[arg(long, global = true, default_value = "config/gateway.yaml")]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the bootstrap file and every policy file; print each error as
    /// `file:line:column: field: message`. Exits 1 on any error, 0 otherwise.
    Check,
    /// Run the gateway (the default).
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Run => {
            eprintln!(
                "gateway: the proxy is not built yet; `gateway check` validates a configuration"
            );
            ExitCode::from(2)
        }
    }
}

fn check(config: &std::path::Path) -> ExitCode {
    let bootstrap = match gateway::config::load_bootstrap(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match gateway::config::load_policy(&bootstrap.policies) {
        Ok(p) => {
            println!(
                "{}: ok ({} listener(s), {} pool(s), {} route(s))",
                config.display(),
                bootstrap.listeners.len(),
                p.pools.len(),
                p.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
