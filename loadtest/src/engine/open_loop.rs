//! The open loop: each request is sent at its scheduled time on a free connection, and its
//! latency runs from that scheduled time, so a server that stalls is charged for every
//! request that had to wait, not just the one that was on the wire (no coordinated
//! omission).
//!
//! The dispatcher sleeps until the next request is due, then hands it to a task of its own.
//! A request that waits because every connection is busy is the server's slowness and is
//! timed as such; a request the dispatcher itself sends late (it was busy) is counted as
//! late, and when that happens to more than 1% of them the report says the generator
//! could not keep the schedule.

use super::RunOptions;
use crate::client::{Pool, SendError};
use crate::clock;
use crate::record::{with, Outcome, Shared, StagePlan};
use crate::requests::Factory;
use crate::scenario::{Scenario, Stage};
use crate::schedule::{Schedule, Segment};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio::time::Instant;

fn segments(stages: &[Stage]) -> Vec<Segment> {
    stages
        .iter()
        .map(|s| Segment {
            duration: s.duration,
            start_rate: s.start_rate,
            end_rate: s.end_rate,
        })
        .collect()
}

/// Each stage's plan: label, warm-up, start, length and the requests it asks for.
pub fn plans(stages: &[Stage]) -> Vec<StagePlan> {
    let segs = segments(stages);
    let sched = Schedule::new(&segs);
    stages
        .iter()
        .zip(&segs)
        .zip(sched.stage_starts())
        .map(|((st, seg), start)| StagePlan {
            label: st.label.clone(),
            warmup: st.warmup,
            start: *start,
            duration: st.duration,
            asked: Some(seg.count()),
        })
        .collect()
}

/// Sends every scheduled request; returns when the last one has ended.
pub async fn run(
    scenario: &Scenario,
    stages: &[Stage],
    addr: SocketAddr,
    start: Instant,
    rec: &Shared,
    options: &RunOptions,
) -> anyhow::Result<Instant> {
    let tls = super::tls(scenario)?;
    let pool = Arc::new(Pool::new(addr, scenario.max_connections.get(), tls));
    let mut factory = Factory::new(scenario)?;
    let timeout = scenario.timeout;
    let checks = super::checks_of(scenario);
    let mut tasks = JoinSet::new();
    for due in Schedule::new(&segments(stages)) {
        let when = start + due.at;
        if clock::now() < when {
            tokio::time::sleep_until(when).await;
        }
        let lag = clock::now().saturating_duration_since(when);
        let (template, req) = factory.next_request(crate::clock::wall_now_ns());
        with(rec, |r| {
            r.lag(lag, options.late_threshold);
            r.due(due.stage, template, due.at);
        });
        let (pool, rec, checks) = (pool.clone(), rec.clone(), checks.clone());
        tasks.spawn(async move {
            let result = pool.send(req, when + timeout).await;
            let done = clock::now();
            let verdicts = super::judge(&checks, template, result.as_ref().ok());
            let latency = done.saturating_duration_since(when);
            let outcome = match &result {
                Ok(a) => Outcome::Status(a.status),
                Err(_) => Outcome::Transport,
            };
            with(&rec, |r| {
                if matches!(result, Err(SendError::NoConnection)) {
                    r.dropped();
                }
                r.answer(
                    due.stage,
                    template,
                    outcome,
                    latency,
                    done.saturating_duration_since(start),
                );
                r.checked(due.stage, template, &verdicts);
            });
        });
        // Reap what has finished, so the set holds only what is in flight.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(clock::now())
}
