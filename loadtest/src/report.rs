//! What a run measured, as one value: written to `report.json`, rendered as the terminal
//! summary and as `report.html`, and read back by `loadtest compare`.
//!
//! Latencies are in milliseconds (f64), measured from each request's *scheduled* send time
//! in open-loop runs (so a stalled server shows up in the percentiles, see
//! `docs/sre-guide.md`), and from the actual send time in closed-loop runs, where there is
//! no schedule. Counts are exact; rates are per second.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of this report's shape; bumped when a field changes meaning.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    /// `loadtest` and its version.
    pub tool: String,
    pub tool_version: String,
    /// The scenario's name and its YAML text as run (after `--set`), for the record.
    pub scenario_name: String,
    pub scenario_yaml: String,
    pub target: String,
    /// `open` (requests at a scheduled rate) or `closed` (`concurrency` workers).
    pub mode: Mode,
    /// Wall-clock start, RFC 3339.
    pub started_at: String,
    /// From the first scheduled request to the last answer, seconds.
    pub duration_s: f64,
    /// Every stage after the warm-up ones, together: what the SLOs are judged on.
    pub overall: Summary,
    pub stages: Vec<StageReport>,
    /// One entry per second of the run, from 0.
    pub timeline: Vec<Second>,
    pub slo: Vec<SloVerdict>,
    pub generator: GeneratorHealth,
    pub events: Vec<EventRecord>,
    /// Each request template of the mix, warm-up stages left out: how one kind of request
    /// (or one pinned client, such as a noisy neighbour) fared against the others.
    #[serde(default)]
    pub requests: Vec<RequestReport>,
}

/// One request template's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestReport {
    /// Position in the scenario's `requests`.
    pub index: usize,
    /// `METHOD path` as written (placeholders kept).
    pub label: String,
    /// The client it is pinned to, if any.
    pub client: Option<u32>,
    pub summary: Summary,
    /// Its checks, in the scenario's order: answers that held each and that did not (no
    /// answer counts as not held).
    #[serde(default)]
    pub checks: Vec<CheckReport>,
}

/// One check of a request template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub name: String,
    pub held: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Open,
    Closed,
}

/// The figures of a set of requests (a stage, or the whole run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Requests that were due (open loop) or sent (closed loop).
    pub requests: u64,
    /// Answers with a 2xx or 3xx status.
    pub ok: u64,
    /// Every answer by status code.
    pub status: BTreeMap<u16, u64>,
    /// 429 answers: counted apart, never errors.
    pub rate_limited: u64,
    /// 4xx answers other than 429.
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
    /// No answer: refused, reset, timed out, or not sent because the generator gave up.
    pub transport_errors: u64,
    /// (5xx + transport errors) / requests; 0 when there were no requests.
    pub error_rate: f64,
    /// Requests per second asked for (open loop), if any.
    pub asked_rate: Option<f64>,
    /// Answers (of any status) per second over the set's duration.
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub latency: Latency,
}

/// Latency of the answered requests (any status), milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The percentile spectrum for the plot: (percentile 0..=100, latency ms), ascending,
    /// denser towards the tail (HdrHistogram's quantile iteration).
    pub spectrum: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// 0-based position in the scenario.
    pub index: usize,
    /// How the scenario wrote it, e.g. `20s at 2000/s`, `10s ramp to 8000/s`.
    pub label: String,
    /// Excluded from `overall` and from the SLO verdicts.
    pub warmup: bool,
    /// Offset of the stage's start from the run's start, seconds.
    pub start_s: f64,
    pub summary: Summary,
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start of the run.
    pub t: u32,
    /// Requests due (open loop) or sent (closed loop) in this second.
    pub sent: u64,
    /// Answers received in this second, and of those:
    pub completed: u64,
    pub ok: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
    /// Failures without an answer in this second.
    pub transport_errors: u64,
    /// Latency of the answers received in this second; 0 when there were none.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One SLO line and what the run made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloVerdict {
    /// As written in the scenario, e.g. `p99 < 20ms`.
    pub text: String,
    /// The measured value, in the objective's unit (ms for latencies, % for rates, /s).
    pub actual: f64,
    /// The objective's threshold, in the same unit.
    pub threshold: f64,
    pub unit: String,
    pub passed: bool,
}

/// Whether the generator kept its schedule: if it did not, the figures measure the
/// generator, not the server, and the report says so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratorHealth {
    /// Requests sent more than `late_threshold_ms` after their scheduled time because the
    /// generator was busy (not because connections were all in use: that is the server's
    /// slowness, and counts in its latency).
    pub late_requests: u64,
    pub late_threshold_ms: f64,
    /// The largest such delay.
    pub max_lag_ms: f64,
    /// Requests due but never sent because `max_connections` were all busy for longer than
    /// the request timeout; counted as transport errors too.
    pub dropped: u64,
    /// True when fewer than 1% of the requests were late and none dropped.
    pub kept_schedule: bool,
    /// Worker threads of the generator.
    pub threads: usize,
}

/// A chaos event of the scenario and when it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The offset the scenario asked for, seconds.
    pub at_s: f64,
    pub run: String,
    /// When it actually started, seconds since the start of the run.
    pub started_s: f64,
    /// Its exit code, or `None` if it could not be started or was killed.
    pub exit_code: Option<i32>,
    /// The first lines of its output, for the report.
    pub output: String,
}

impl Report {
    /// A small, complete report with made-up figures, for tests of the renderers.
    pub fn example() -> Report {
        let latency = |base: f64| Latency {
            count: 1000,
            min_ms: base * 0.2,
            mean_ms: base,
            p50_ms: base * 0.9,
            p90_ms: base * 1.5,
            p99_ms: base * 3.0,
            p999_ms: base * 5.0,
            max_ms: base * 8.0,
            spectrum: (0..=40)
                .map(|i| {
                    let pct = 100.0 - 100.0 / 2f64.powf(f64::from(i) / 4.0);
                    (pct, base * (0.2 + f64::from(i) * 0.2))
                })
                .collect(),
        };
        let summary = |requests: u64, base: f64| Summary {
            requests,
            ok: requests - 12,
            status: BTreeMap::from([(200, requests - 12), (429, 7), (503, 3)]),
            rate_limited: 7,
            client_errors: 0,
            server_errors: 3,
            transport_errors: 2,
            error_rate: 5.0 / requests as f64,
            asked_rate: Some(requests as f64 / 10.0),
            achieved_rate: requests as f64 / 10.0,
            duration_s: 10.0,
            latency: latency(base),
        };
        let timeline = (0..20)
            .map(|t| Second {
                t,
                sent: 100 + u64::from(t) * 10,
                completed: 100 + u64::from(t) * 10,
                ok: 98 + u64::from(t) * 10,
                rate_limited: u64::from(t % 3 == 0),
                server_errors: u64::from(t == 12),
                transport_errors: u64::from(t == 13),
                p50_ms: 2.0 + f64::from(t % 5),
                p99_ms: 8.0 + f64::from(t % 7) * 2.0,
                max_ms: 20.0 + f64::from(t),
            })
            .collect();
        Report {
            format: FORMAT,
            tool: "loadtest".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            scenario_name: "example".into(),
            scenario_yaml: "name: example\n".into(),
            target: "http://127.0.0.1:8080".into(),
            mode: Mode::Open,
            started_at: "2026-12-01T12:00:00Z".into(),
            duration_s: 20.0,
            overall: summary(3000, 4.0),
            stages: vec![
                StageReport {
                    index: 0,
                    label: "5s at 200/s".into(),
                    warmup: true,
                    start_s: 0.0,
                    summary: summary(1000, 3.0),
                },
                StageReport {
                    index: 1,
                    label: "15s at 200/s".into(),
                    warmup: false,
                    start_s: 5.0,
                    summary: summary(3000, 4.0),
                },
            ],
            timeline,
            slo: vec![
                SloVerdict {
                    text: "p99 < 20ms".into(),
                    actual: 12.0,
                    threshold: 20.0,
                    unit: "ms".into(),
                    passed: true,
                },
                SloVerdict {
                    text: "error_rate < 0.1%".into(),
                    actual: 0.17,
                    threshold: 0.1,
                    unit: "%".into(),
                    passed: false,
                },
            ],
            generator: GeneratorHealth {
                late_requests: 0,
                late_threshold_ms: 10.0,
                max_lag_ms: 1.2,
                dropped: 0,
                kept_schedule: true,
                threads: 1,
            },
            requests: Vec::new(),
            events: vec![EventRecord {
                at_s: 12.0,
                run: "kill -9 $(cat data/n1.pid)".into(),
                started_s: 12.001,
                exit_code: Some(0),
                output: String::new(),
            }],
        }
    }
}
