//! The load-test suite: open-loop and closed-loop HTTP load from YAML scenarios, latency
//! measured without coordinated omission, SLO verdicts, JSON and HTML reports.
//!
//! ```text
//! scenario.rs   YAML scenario -> checked Scenario (errors with file:line:column)
//! slo.rs        SLO lines (`p99 < 20ms`) parsed, and judged against a Summary
//! report.rs     what a run measured (report.json), shared by every renderer
//! compare.rs    two reports side by side, with ratios and regressions
//! ```
//!
//! `src/bin/tsdb-bench.rs` is the TSDB benchmark used by `scripts/bench-tsdb.sh`.

pub mod report;
