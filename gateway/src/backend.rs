//! The live state of each backend (health verdict, requests in flight, latency estimate),
//! kept apart from the policy so it outlives reloads: the one place every balancer reads.
//!
//! A policy snapshot lists a pool's backends; this registry holds what they are doing,
//! keyed by pool name and address. A reload that keeps a backend in its pool finds the
//! same [`BackendLive`] again, so its health and load carry over; the balancers and the
//! status page read it from here.

use crate::balance::ewma::PeakEwma;
use crate::config::policy::DEFAULT_EWMA_DECAY;
use crate::health::BackendHealth;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// What one backend of one pool is doing now.
#[derive(Debug)]
pub struct BackendLive {
    pub health: BackendHealth,
    in_flight: AtomicU64,
    /// Peak-EWMA of its response times (time to the answer's head, or to the failure).
    pub latency: PeakEwma,
}

impl Default for BackendLive {
    fn default() -> Self {
        BackendLive {
            health: BackendHealth::default(),
            in_flight: AtomicU64::new(0),
            latency: PeakEwma::new(DEFAULT_EWMA_DECAY),
        }
    }
}

impl BackendLive {
    /// Requests sent to this backend and not finished yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the guard is dropped (the request ended or moved
    /// to another backend); `now` is when it was sent, for its latency.
    pub fn start_request(self: &Arc<Self>, now: Instant) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            live: self.clone(),
            started: now,
            observed: false,
        }
    }
}

/// One request in flight to one backend; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight {
    live: Arc<BackendLive>,
    started: Instant,
    observed: bool,
}

impl InFlight {
    /// Feeds the backend's latency estimate once: the time from sending to `now` (the
    /// answer's head came, or the try failed: a backend that fails slowly is slow).
    pub fn observe(&mut self, now: Instant) {
        if !self.observed {
            self.observed = true;
            let took = now.saturating_duration_since(self.started);
            self.live.latency.observe(took, now);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.live.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every backend's live state, by pool and address; kept across policy reloads.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<(String, SocketAddr), Arc<BackendLive>>>,
}

impl Registry {
    /// The backend's live state, created (healthy, idle) if it is new.
    pub fn get(&self, pool: &str, addr: SocketAddr) -> Arc<BackendLive> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((pool.to_string(), addr))
            .or_default()
            .clone()
    }

    /// Forgets the backends not in `keep` (they left their pool), so a long-running gateway
    /// whose pools change does not hold state for every address it ever saw.
    pub fn retain(&self, keep: &[(String, SocketAddr)]) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| keep.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::HealthCheck;
    use std::num::NonZeroU32;

    #[test]
    fn the_registry_keeps_state_per_pool_and_address() {
        let r = Registry::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let check = HealthCheck {
            unhealthy_threshold: NonZeroU32::MIN,
            ..HealthCheck::default()
        };
        r.get("p", a).health.observe(false, &check);
        assert!(
            !r.get("p", a).health.is_healthy(),
            "the same state comes back"
        );
        assert!(
            r.get("q", a).health.is_healthy(),
            "another pool, another state"
        );
        r.retain(&[("q".into(), a)]);
        assert!(r.get("p", a).health.is_healthy(), "forgotten, then new");
    }

    #[test]
    fn a_request_counts_in_flight_until_its_guard_is_dropped() {
        let b = Arc::new(BackendLive::default());
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let first = b.start_request(now);
        let second = b.start_request(now);
        assert_eq!(b.in_flight(), 2);
        drop(first);
        assert_eq!(b.in_flight(), 1);
        drop(second);
        assert_eq!(b.in_flight(), 0);
    }
}
