//! The live state of each backend (health verdict, requests in flight, latency estimate),
//! kept apart from the policy so it outlives reloads: the one place every balancer reads.
//!
//! A policy snapshot lists a pool's backends; this registry holds what they are doing,
//! keyed by pool name and address. A reload that keeps a backend in its pool finds the
//! same [`BackendLive`] again, so its health and load carry over; the balancers and the
//! status page read it from here.

use crate::balance::ewma::PeakEwma;
use crate::config::policy::{Pool, DEFAULT_EWMA_DECAY};
use crate::config::resilience::RetryBudgetConfig;
use crate::health::outlier::OutlierDetector;
use crate::health::BackendHealth;
use crate::retry::budget::RetryBudget;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What one backend of one pool is doing now.
#[derive(Debug)]
pub struct BackendLive {
    pub health: BackendHealth,
    /// Requests sent and not finished (the circuit breaker's count).
    in_flight: AtomicU64,
    /// Of those, the ones whose answer has not begun: the backend's queue, which is what
    /// the balancers compare (as tower's and linkerd's pending-requests load does: a
    /// request streaming its answer back costs the backend little more, and counting it
    /// would make a fast backend behind a slow client, or one whose answers trickle in
    /// a few segments, look as loaded as a slow one).
    awaiting: AtomicU64,
    /// Peak-EWMA of its response times (time to the answer's head, or to the failure).
    pub latency: PeakEwma,
    /// The outcomes of its latest tries, newest in bit 0 (1: failed), and how many tries
    /// there were in all: the status page's "recent outcomes".
    outcomes: AtomicU64,
    tries: AtomicU64,
    /// When it last came back into service (health checks passed again, or it joined a
    /// pool that was already serving), for slow start; `None`: in service from the start.
    available_since: Mutex<Option<Instant>>,
    /// Taken out of service by an operator (`POST .../drain`): no new requests, those in
    /// flight finish. Kept across policy reloads with the rest of the live state.
    draining: AtomicBool,
}

impl Default for BackendLive {
    fn default() -> Self {
        BackendLive {
            health: BackendHealth::default(),
            in_flight: AtomicU64::new(0),
            awaiting: AtomicU64::new(0),
            latency: PeakEwma::new(DEFAULT_EWMA_DECAY),
            outcomes: AtomicU64::new(0),
            tries: AtomicU64::new(0),
            available_since: Mutex::new(None),
            draining: AtomicBool::new(false),
        }
    }
}

/// How many of a backend's latest tries the status page shows.
pub const RECENT_OUTCOMES: u32 = 64;

impl BackendLive {
    /// Whether an operator has drained it (see the field).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Drains it (`true`) or puts it back in service (`false`); whether that changed
    /// anything. Back in service, it ramps up as after a recovery (slow start, at `now`).
    pub fn set_draining(&self, draining: bool, now: Instant) -> bool {
        let was = self.draining.swap(draining, Ordering::Relaxed);
        if was && !draining {
            *self
                .available_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
        was != draining
    }

    /// Requests sent to this backend and not finished yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the guard is dropped (the request ended or moved
    /// to another backend); `now` is when it was sent, for its latency.
    pub fn start_request(self: &Arc<Self>, now: Instant) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.guard(now)
    }

    /// Requests sent whose answer has not begun (see the field): what balancers read.
    pub fn awaiting_answer(&self) -> u64 {
        self.awaiting.load(Ordering::Relaxed)
    }

    /// [`BackendLive::start_request`] unless `max` requests are in flight already (the
    /// circuit breaker): the check and the count are one atomic step, so concurrent
    /// requests never push it past `max`.
    pub fn try_start_request(
        self: &Arc<Self>,
        now: Instant,
        max: Option<NonZeroU32>,
    ) -> Option<InFlight> {
        let Some(max) = max else {
            return Some(self.start_request(now));
        };
        self.in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < u64::from(max.get())).then_some(n + 1)
            })
            .ok()
            .map(|_| self.guard(now))
    }

    fn guard(self: &Arc<Self>, now: Instant) -> InFlight {
        self.awaiting.fetch_add(1, Ordering::Relaxed);
        InFlight {
            live: self.clone(),
            started: now,
            observed: false,
        }
    }

    /// Records how one try ended.
    pub fn record_outcome(&self, ok: bool) {
        self.tries.fetch_add(1, Ordering::Relaxed);
        // fetch_update cannot fail with a closure that always answers.
        let _ = self
            .outcomes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((bits << 1) | u64::from(!ok))
            });
    }

    /// Of its latest tries (at most [`RECENT_OUTCOMES`]): how many, and how many failed.
    pub fn recent_outcomes(&self) -> (u32, u32) {
        let tries = self.tries.load(Ordering::Relaxed);
        let n = tries.min(u64::from(RECENT_OUTCOMES)) as u32;
        let bits = self.outcomes.load(Ordering::Relaxed);
        let mask = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        (n, (bits & mask).count_ones())
    }

    /// Tries recorded since the gateway started.
    pub fn tries(&self) -> u64 {
        self.tries.load(Ordering::Relaxed)
    }

    /// Marks it as back in service at `now` (slow start ramps it up from there).
    pub fn mark_available(&self, now: Instant) {
        *self
            .available_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(now);
    }

    pub fn available_since(&self) -> Option<Instant> {
        *self
            .available_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
    /// The answer's head came, or the try failed, at `now`: feeds the backend's latency
    /// estimate with the time since sending (a backend that fails slowly is slow), and the
    /// request no longer awaits its answer. Once per try: the time it took the first time,
    /// `None` after.
    pub fn observe(&mut self, now: Instant) -> Option<Duration> {
        if self.observed {
            return None;
        }
        self.observed = true;
        self.live.awaiting.fetch_sub(1, Ordering::Relaxed);
        let took = now.saturating_duration_since(self.started);
        self.live.latency.observe(took, now);
        Some(took)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.observed {
            self.live.awaiting.fetch_sub(1, Ordering::Relaxed);
        }
        self.live.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a pool as a whole remembers: which backends were ejected for failing requests,
/// and the retries its budget allowed.
#[derive(Debug)]
pub struct PoolLive {
    /// The backends the detector's positions stand for.
    addresses: Vec<SocketAddr>,
    pub outlier: Option<OutlierDetector>,
    pub budget: RetryBudget,
    budget_config: RetryBudgetConfig,
    /// Retries refused because the budget was spent.
    pub budget_exhausted: AtomicU64,
}

impl PoolLive {
    fn new(pool: &Pool, old: Option<&PoolLive>) -> PoolLive {
        let addresses: Vec<SocketAddr> = pool.backends.iter().map(|b| b.address).collect();
        let outlier =
            pool.outlier.map(
                |config| match old.and_then(|o| o.outlier.as_ref().map(|d| (o, d))) {
                    Some((o, d)) => {
                        OutlierDetector::with_history(addresses.len(), config, d, |i| {
                            o.addresses.iter().position(|a| *a == addresses[i])
                        })
                    }
                    None => OutlierDetector::new(addresses.len(), config),
                },
            );
        let b = pool.retry_budget;
        PoolLive {
            addresses,
            outlier,
            budget: RetryBudget::new(b.ratio(), b.window, b.min_per_second),
            budget_config: b,
            budget_exhausted: AtomicU64::new(0),
        }
    }

    /// Whether it was built for this pool's backends and settings.
    fn fits(&self, pool: &Pool) -> bool {
        self.addresses.len() == pool.backends.len()
            && self
                .addresses
                .iter()
                .zip(&pool.backends)
                .all(|(a, b)| *a == b.address)
            && self.outlier.as_ref().map(|d| *d.config()) == pool.outlier
            && self.budget_config == pool.retry_budget
    }

    /// Whether backend `i` is ejected at `now`.
    pub fn is_ejected(&self, i: usize, now: Instant) -> bool {
        self.outlier.as_ref().is_some_and(|d| d.is_ejected(i, now))
    }
}

/// Every backend's live state, by pool and address, and each pool's; kept across policy
/// reloads.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<(String, SocketAddr), Arc<BackendLive>>>,
    pools: Mutex<HashMap<String, Arc<PoolLive>>>,
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

    /// The live state of each of `pool`'s backends, in its order. A backend new to a pool
    /// that was already serving is marked available at `now`, so slow start ramps it up.
    pub fn backends(&self, pool: &Pool, now: Instant) -> Vec<Arc<BackendLive>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let serving = map.keys().any(|(p, _)| *p == pool.name);
        pool.backends
            .iter()
            .map(|b| {
                map.entry((pool.name.clone(), b.address))
                    .or_insert_with(|| {
                        let live = BackendLive::default();
                        if serving {
                            live.mark_available(now);
                        }
                        Arc::new(live)
                    })
                    .clone()
            })
            .collect()
    }

    /// The pool's own live state: the same as before while its backends and settings are
    /// unchanged; rebuilt otherwise, with the history of the backends that stay.
    pub fn pool(&self, pool: &Pool) -> Arc<PoolLive> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let old = pools.get(&pool.name).cloned();
        if let Some(o) = old.as_ref().filter(|o| o.fits(pool)) {
            return o.clone();
        }
        let live = Arc::new(PoolLive::new(pool, old.as_deref()));
        pools.insert(pool.name.clone(), live.clone());
        live
    }

    /// Forgets the backends not in `keep` (they left their pool), and the pools none of
    /// them is in, so a long-running gateway whose pools change does not hold state for
    /// every address it ever saw.
    pub fn retain(&self, keep: &[(String, SocketAddr)]) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| keep.contains(k));
        self.pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| keep.iter().any(|(p, _)| p == name));
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
        let mut first = b.start_request(now);
        let second = b.start_request(now);
        assert_eq!((b.in_flight(), b.awaiting_answer()), (2, 2));
        first.observe(now);
        first.observe(now);
        assert_eq!(
            (b.in_flight(), b.awaiting_answer()),
            (2, 1),
            "answered once"
        );
        drop(first);
        assert_eq!((b.in_flight(), b.awaiting_answer()), (1, 1));
        drop(second);
        assert_eq!((b.in_flight(), b.awaiting_answer()), (0, 0));
    }
}
