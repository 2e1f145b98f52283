//! Active health checks: one thread per backend sends `GET <path>` every interval.

use super::Transition;
use crate::backend::BackendLive;
use crate::clock::{Clock, SystemClock};
use crate::config::policy::HealthCheck;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Whether one check of `addr` succeeds: any 2xx answer within the timeout.
pub fn probe(agent: &ureq::Agent, addr: SocketAddr, check: &HealthCheck) -> bool {
    let url = format!("http://{addr}{}", check.path);
    match agent
        .get(&url)
        .config()
        .timeout_global(Some(check.timeout))
        .build()
        .call()
    {
        Ok(res) => res.status().is_success(),
        Err(_) => false,
    }
}

/// Checks one backend until `stop` is set.
pub fn spawn(
    pool: String,
    addr: SocketAddr,
    check: HealthCheck,
    live: Arc<BackendLive>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("health-{addr}"))
        .spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(check.timeout))
                .build()
                .into();
            let backend = addr.to_string();
            while !stop.load(Ordering::Relaxed) {
                let ok = probe(&agent, addr, &check);
                match live.health.observe(ok, &check) {
                    Some(Transition::Down) => {
                        metrics.health_transition(&pool, &backend, false);
                        tracing::warn!(pool = %pool, backend = %addr, "backend failed its health checks: out")
                    }
                    Some(Transition::Up) => {
                        live.mark_available(Clock::now(&SystemClock));
                        metrics.health_transition(&pool, &backend, true);
                        tracing::info!(pool = %pool, backend = %addr, "backend passes its health checks again: in")
                    }
                    None => {}
                }
                // Sleep in short steps so a stop is prompt.
                let mut left = check.interval;
                while !left.is_zero() && !stop.load(Ordering::Relaxed) {
                    let step = left.min(Duration::from_millis(50));
                    std::thread::sleep(step);
                    left -= step;
                }
            }
        })
}
