//! Running a scenario: the runtime, the target's address, the chaos events and the
//! progress line around one of the two loops, and the report at the end.
//!
//! ```text
//! engine/open_loop.rs    requests sent at their scheduled time, whatever the answers do
//! engine/closed_loop.rs  `concurrency` workers, each sending when its last answer came
//! ```

pub mod closed_loop;
pub mod open_loop;

use crate::clock;
use crate::events;
use crate::progress::Progress;
use crate::record::{with, Recorder, Shared};
use crate::report::{GeneratorHealth, Mode, Report, FORMAT};
use crate::scenario::{Load, Scenario};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the generator itself runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads of the generator's runtime.
    pub threads: usize,
    /// Draw the live progress line (on stderr, only when it is a terminal).
    pub progress: bool,
    /// A request sent later than this after its scheduled time counts as late: the
    /// generator, not the server, was the bottleneck.
    pub late_threshold: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: 1,
            progress: true,
            late_threshold: Duration::from_millis(10),
        }
    }
}

/// Runs the scenario to its end and returns what it measured, SLO verdicts included.
pub fn run(scenario: &Scenario, options: &RunOptions) -> anyhow::Result<Report> {
    let runtime = if options.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run_async(scenario, options))
}

/// The TLS client of an `https://` target.
fn tls(scenario: &Scenario) -> anyhow::Result<Option<crate::client::Tls>> {
    scenario
        .tls
        .as_ref()
        .map(|t| crate::client::Tls::new(t, &scenario.target.host))
        .transpose()
}

async fn resolve(scenario: &Scenario) -> anyhow::Result<SocketAddr> {
    let t = &scenario.target;
    tokio::net::lookup_host((t.host.as_str(), t.port))
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("target {}: no address", t.authority))
}

async fn run_async(scenario: &Scenario, options: &RunOptions) -> anyhow::Result<Report> {
    let addr = resolve(scenario).await?;
    let started_at = clock::wall_now_rfc3339();
    let (plans, mode, total_hint) = match &scenario.load {
        Load::Open(stages) => {
            let plans = open_loop::plans(stages);
            let total = plans.iter().filter_map(|p| p.asked).sum::<u64>();
            (plans, Mode::Open, Some(total))
        }
        Load::Closed {
            duration, warmup, ..
        } => (closed_loop::plans(*duration, *warmup), Mode::Closed, None),
    };
    let rec: Shared = Arc::new(Mutex::new(Recorder::new(plans.len())));
    let warmup: Vec<bool> = plans.iter().map(|p| p.warmup).collect();
    with(&rec, |r| r.set_warmup(&warmup));
    let length: Duration = plans.iter().map(|p| p.duration).sum();
    // A short lead so the first requests are not due before the loop is running.
    let start = clock::now() + Duration::from_millis(20);
    let progress = Progress::start(options.progress, rec.clone(), start, length, total_hint);
    let event_tasks = events::spawn(&scenario.events, start);
    let ended = match &scenario.load {
        Load::Open(stages) => open_loop::run(scenario, stages, addr, start, &rec, options).await?,
        Load::Closed { concurrency, .. } => {
            closed_loop::run(scenario, concurrency.get(), addr, start, &plans, &rec).await?
        }
    };
    progress.finish();
    let events = events::collect(event_tasks, &scenario.events, start).await;
    let (stages, overall, timeline) = with(&rec, |r| r.finish(&plans));
    let (late, max_lag, dropped) = with(&rec, |r| (r.late(), r.max_lag(), r.dropped_count()));
    let requests: u64 = stages.iter().map(|s| s.summary.requests).sum();
    let generator = GeneratorHealth {
        late_requests: late,
        late_threshold_ms: options.late_threshold.as_secs_f64() * 1000.0,
        max_lag_ms: max_lag.as_secs_f64() * 1000.0,
        dropped,
        kept_schedule: mode == Mode::Closed || (late * 100 <= requests && dropped == 0),
        threads: options.threads.max(1),
    };
    let slo = crate::slo::judge_all(&scenario.slo, &overall);
    let measured: Duration = plans.iter().filter(|p| !p.warmup).map(|p| p.duration).sum();
    let requests = with(&rec, |r| r.templates(scenario.requests.len(), measured))
        .into_iter()
        .enumerate()
        .map(|(index, summary)| {
            let t = &scenario.requests[index];
            let counts = with(&rec, |r| r.check_counts(index).to_vec());
            crate::report::RequestReport {
                index,
                label: format!("{} {}", t.method, t.path),
                client: t.client,
                summary,
                checks: t
                    .checks
                    .iter()
                    .enumerate()
                    .map(|(k, c)| {
                        let [held, failed] = counts.get(k).copied().unwrap_or([0, 0]);
                        crate::report::CheckReport {
                            name: c.name.clone(),
                            held,
                            failed,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Report {
        format: FORMAT,
        tool: "loadtest".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        scenario_name: scenario.name.clone(),
        scenario_yaml: scenario.yaml.clone(),
        target: scenario.target.to_string(),
        mode,
        started_at,
        duration_s: ended.saturating_duration_since(start).as_secs_f64(),
        overall,
        stages,
        timeline,
        slo,
        generator,
        events,
        requests,
    })
}

/// Each request template's checks, shared by the request tasks.
fn checks_of(scenario: &Scenario) -> std::sync::Arc<Vec<Vec<crate::check::Check>>> {
    std::sync::Arc::new(scenario.requests.iter().map(|r| r.checks.clone()).collect())
}

/// The verdicts of template `template`'s checks on `answer` (`None`: no answer came).
fn judge(
    checks: &[Vec<crate::check::Check>],
    template: usize,
    answer: Option<&crate::client::Answer>,
) -> Vec<bool> {
    let Some(checks) = checks.get(template).filter(|c| !c.is_empty()) else {
        return Vec::new();
    };
    crate::check::judge(
        checks,
        answer.map(|a| crate::check::Answered {
            status: a.status,
            body: a.body.as_deref(),
        }),
    )
}
