//! The load-test suite: open-loop and closed-loop HTTP load from YAML scenarios, latency
//! measured without coordinated omission, SLO verdicts, JSON and HTML reports.
//!
//! ```text
//! scenario.rs   YAML scenario -> checked Scenario (errors with file:line:column)
//! slo.rs        SLO lines (`p99 < 20ms`) parsed, and judged against a Summary
//! report.rs     what a run measured (report.json), shared by every renderer
//! compare.rs    two reports side by side, with ratios and regressions
//! schedule.rs   when each open-loop request is due (pure)
//! engine.rs     running a scenario: runtime, events, progress, report
//!  ├ open_loop.rs    requests at their scheduled time; latency from that time
//!  └ closed_loop.rs  N workers, each sending when its last answer came
//! client.rs     HTTP/1.1 keep-alive connections (hyper), pooled up to max_connections
//! requests.rs   the weighted mix and ${client}/${token}/${now_ms} turned into requests
//! check.rs      checks on each answer (status, JSON path exists / equals), counted
//! record.rs     HDR histograms per stage, per second and overall; status classes
//! events.rs     the scenario's chaos commands at their offsets
//! progress.rs   the live progress line
//! summary.rs    the terminal summary
//! html.rs       report.html: one self-contained page (verdict, tables, inline SVG plots)
//! svg.rs        hand-built SVG charts: latency spectrum, latency/throughput over time, status mix
//! clock.rs      the one place time is read
//! ```
//!
//! `src/bin/tsdb-bench.rs` is the TSDB benchmark used by `scripts/bench-tsdb.sh`.

pub mod check;
pub mod client;
pub mod clock;
pub mod compare;
pub mod engine;
pub mod events;
pub mod fuzz;
pub mod html;
pub mod progress;
pub mod record;
pub mod report;
pub mod requests;
pub mod scenario;
pub mod schedule;
pub mod slo;
pub mod summary;
pub mod svg;
