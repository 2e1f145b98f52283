//! One health-checking thread per backend: probes it every interval (`health/active.rs`)
//! and moves it out of service and back in as its health says (`health.rs`), counted in
//! the metrics. The reloader starts and stops them as backends come and go. Each thread
//! runs its probes on a single-threaded runtime of its own, through the reloader's
//! [`Prober`].

use crate::backend::BackendLive;
use crate::clock::{Clock, SystemClock};
use crate::config::policy::HealthCheck;
use crate::health::active::{probe, Prober, Target};
use crate::health::Transition;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Checks one backend until `stop` is set.
pub fn spawn(
    pool: String,
    target: Target,
    check: HealthCheck,
    live: Arc<BackendLive>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    prober: Arc<Prober>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let addr = target.address;
    std::thread::Builder::new()
        .name(format!("health-{addr}"))
        .spawn(move || {
            let backend = addr.to_string();
            while !stop.load(Ordering::Relaxed) {
                let result = runtime.block_on(probe(&prober, &target, &check));
                match live.health.observe(result.is_ok(), &check) {
                    Some(Transition::Down) => {
                        metrics.health_transition(&pool, &backend, false);
                        let why = result.err().unwrap_or_default();
                        tracing::warn!(pool = %pool, backend = %addr, last = %why, "backend failed its health checks: out")
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
