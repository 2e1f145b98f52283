//! The closed loop: `concurrency` workers, each with a connection of its own, each sending
//! its next request as soon as the previous answer is in, for the scenario's duration. It
//! finds the most a server takes; its latencies are per request on the wire (there is no
//! schedule to be late against), so they hide stalls the way every closed-loop tool does.

use crate::client::{Connection, SendError};
use crate::clock;
use crate::record::{with, Outcome, Shared, StagePlan};
use crate::requests::Factory;
use crate::scenario::Scenario;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A warm-up stage (when `warmup` > 0), then the measured one.
pub fn plans(duration: Duration, warmup: Duration) -> Vec<StagePlan> {
    let mut plans = Vec::new();
    if !warmup.is_zero() {
        plans.push(StagePlan {
            label: format!("{}s warm-up", warmup.as_secs_f64()),
            warmup: true,
            start: Duration::ZERO,
            duration: warmup,
            asked: None,
        });
    }
    plans.push(StagePlan {
        label: format!("{}s closed loop", duration.as_secs_f64()),
        warmup: false,
        start: warmup,
        duration,
        asked: None,
    });
    plans
}

/// Runs the workers until the end of the last stage; returns when all have stopped.
pub async fn run(
    scenario: &Scenario,
    concurrency: usize,
    addr: SocketAddr,
    start: Instant,
    plans: &[StagePlan],
    rec: &Shared,
) -> anyhow::Result<Instant> {
    let end = start + plans.iter().map(|p| p.duration).sum::<Duration>();
    let boundaries: Vec<Duration> = plans.iter().map(|p| p.start).collect();
    let timeout = scenario.timeout;
    let tls = super::tls(scenario)?;
    let mut tasks = JoinSet::new();
    for worker in 0..concurrency {
        // Each worker draws its own sequence, from the scenario's seed and its number.
        let mut factory = Factory::new_for_worker(scenario, worker as u64)?;
        let (rec, boundaries, tls) = (rec.clone(), boundaries.clone(), tls.clone());
        let checks = super::checks_of(scenario);
        tasks.spawn(async move {
            let mut conn: Option<Connection> = None;
            tokio::time::sleep_until(start).await;
            loop {
                let sent = clock::now();
                if sent >= end {
                    break;
                }
                let at = sent.saturating_duration_since(start);
                let stage = boundaries.iter().rposition(|b| *b <= at).unwrap_or(0);
                let (template, req) = factory.next_request(crate::clock::wall_now_ns());
                let result = tokio::time::timeout(timeout, async {
                    let c = match conn.take() {
                        Some(c) if c.reusable() => c,
                        _ => Connection::open_owned(addr, tls.as_ref()).await?,
                    };
                    let mut c = c;
                    let answer = c.send(req).await?;
                    Ok::<_, SendError>((answer, c))
                })
                .await
                .unwrap_or(Err(SendError::Timeout));
                let done = clock::now();
                let verdicts =
                    super::judge(&checks, template, result.as_ref().ok().map(|(a, _)| a));
                let outcome = match result {
                    Ok((answer, c)) => {
                        conn = Some(c);
                        Outcome::Status(answer.status)
                    }
                    Err(_) => Outcome::Transport,
                };
                let done_at = done.saturating_duration_since(start);
                with(&rec, |r| {
                    r.sent_and_answered(stage, template, at, outcome, done - sent, done_at);
                    r.checked(stage, template, &verdicts);
                });
                if matches!(outcome, Outcome::Transport) {
                    // A refused connection answers at once: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(clock::now())
}
