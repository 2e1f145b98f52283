//! Renders a `report.json` (or the built-in example report) as the HTML report page.
//!
//! ```text
//! cargo run -p loadtest --example render_report -- REPORT.json OUT.html
//! cargo run -p loadtest --example render_report -- --example OUT.html
//! ```

use anyhow::{bail, Context};
use loadtest::report::Report;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: render_report (REPORT.json | --example) OUT.html";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("render_report: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("{USAGE}");
    };
    let report = if input == "--example" {
        Report::example()
    } else {
        let text = std::fs::read_to_string(input).with_context(|| format!("reading {input}"))?;
        serde_json::from_str(&text).with_context(|| format!("{input}: not a loadtest report"))?
    };
    let page = loadtest::html::render(&report);
    std::fs::write(Path::new(output), page).with_context(|| format!("writing {output}"))?;
    println!("wrote {output}");
    Ok(())
}
