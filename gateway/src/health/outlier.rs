//! Passive outlier detection: Envoy's `consecutive_5xx` detector and its ejection rules,
//! fed by the results of real requests rather than by health checks.
//!
//! - After `consecutive_failures` failed requests in a row (a success resets the count),
//!   the backend is ejected: not picked for `base_ejection × k`, capped at `max_ejection`,
//!   where `k` is its ejection multiplier after this ejection (1 the first time).
//! - The multiplier goes up by one with each ejection and down by one for each full
//!   `base_ejection` the backend then stays un-ejected, so a backend that flaps is kept out
//!   longer and longer, and one that recovers is forgiven step by step. (Envoy decrements
//!   once per sweep of its `interval`, 10 s by default, when the host has been back for at
//!   least an interval; this detector has no sweep, so it counts whole `base_ejection`
//!   periods since the ejection ended, computed when needed.) It stops growing once
//!   `base_ejection × k` reaches `max_ejection`.
//! - An ejection is refused (and counted in [`OutlierDetector::overflows`]) when it would
//!   put more than `max_ejected_percent` of the pool's backends out: allowed only while
//!   `(ejected + 1) × 100 ≤ max_ejected_percent × backends`, so 50% of 4 is 2, 50% of 3 is 1,
//!   and 50% of 1 is none. This is current Envoy (envoyproxy/envoy#27909, 2023, made the
//!   limit strict and counts the ejection being decided); before, Envoy always ejected at
//!   least one host whatever the percentage ("will eject at least one host regardless of
//!   the value", as its docs said), which is now the opt-in `always_eject_one_host`
//!   (envoyproxy/envoy#34796) and here [`OutlierConfig::always_eject_one`].
//! - Either way the consecutive count restarts after the Nth failure, as in Envoy: a
//!   refused backend needs another N failures in a row for its next try.
//! - Results that arrive while a backend is ejected (requests that were already in flight)
//!   are ignored, so it comes back with a clean count; it comes back exactly when its
//!   ejection ends, with no sweep.
//!
//! Pure: every call is given the time. One [`OutlierDetector`] holds a whole pool (the
//! percentage needs all of it) behind a mutex, so `&self` works from every worker.

pub use crate::config::resilience::OutlierConfig;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// An ejection that just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// Position of the backend in the pool.
    pub backend: usize,
    /// Its multiplier for this ejection (1 the first time).
    pub times: u32,
    /// `base_ejection × times`, capped at `max_ejection`.
    pub duration: Duration,
    /// When it ends: the backend is ejected while `now < until`.
    pub until: Instant,
}

/// One backend's passive-health state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BackendState {
    /// Failures in a row since the last success or ejection attempt.
    consecutive: u32,
    /// The multiplier of the latest ejection (0: never ejected).
    times: u32,
    /// The end of the latest ejection (in the past once it is over).
    until: Option<Instant>,
}

#[derive(Debug)]
struct Pool {
    backends: Vec<BackendState>,
    overflows: u64,
}

/// Passive outlier detection for one pool of backends.
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    pool: Mutex<Pool>,
}

impl OutlierDetector {
    /// A detector for a pool of `n_backends`, none ejected.
    pub fn new(n_backends: usize, config: OutlierConfig) -> Self {
        OutlierDetector {
            config,
            pool: Mutex::new(Pool {
                backends: vec![BackendState::default(); n_backends],
                overflows: 0,
            }),
        }
    }

    /// A detector for a pool's new list of `n_backends`, where backend `i` of the new list
    /// was `previous(i)` of `old`'s (`None`: new to the pool): a reload that keeps a backend
    /// keeps its ejection, its multiplier and its count of failures in a row.
    pub fn with_history(
        n_backends: usize,
        config: OutlierConfig,
        old: &OutlierDetector,
        previous: impl Fn(usize) -> Option<usize>,
    ) -> Self {
        let before = old.lock();
        let backends = (0..n_backends)
            .map(|i| {
                previous(i)
                    .and_then(|j| before.backends.get(j).copied())
                    .unwrap_or_default()
            })
            .collect();
        OutlierDetector {
            config,
            pool: Mutex::new(Pool {
                backends,
                overflows: before.overflows,
            }),
        }
    }

    /// When `backend`'s latest ejection ended, if it has ended (for slow start).
    pub fn ejection_ended(&self, backend: usize, now: Instant) -> Option<Instant> {
        let pool = self.lock();
        let until = pool.backends.get(backend)?.until?;
        (until <= now).then_some(until)
    }

    /// When `backend`'s current ejection ends, if it is ejected at `now`.
    pub fn ejected_until(&self, backend: usize, now: Instant) -> Option<Instant> {
        let pool = self.lock();
        let until = pool.backends.get(backend)?.until?;
        (now < until).then_some(until)
    }

    /// `backend`'s failures in a row so far.
    pub fn consecutive_failures(&self, backend: usize) -> u32 {
        self.lock()
            .backends
            .get(backend)
            .map_or(0, |b| b.consecutive)
    }

    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Records the result of one request to `backend` at `now`; returns the ejection it
    /// starts, if any. Out-of-range backends and results for an ejected backend are ignored.
    pub fn record(&self, backend: usize, ok: bool, now: Instant) -> Option<Ejection> {
        let mut pool = self.lock();
        let n = pool.backends.len();
        let state = pool.backends.get_mut(backend)?;
        if ejected(state, now) {
            return None;
        }
        if ok {
            state.consecutive = 0;
            return None;
        }
        state.consecutive = state.consecutive.saturating_add(1);
        if state.consecutive < self.config.consecutive_failures.get() {
            return None;
        }
        state.consecutive = 0;
        let ejected_now = pool.backends.iter().filter(|b| ejected(b, now)).count();
        if !may_eject(ejected_now, n, &self.config) {
            pool.overflows = pool.overflows.saturating_add(1);
            return None;
        }
        let state = &mut pool.backends[backend];
        let times = effective_times(state, now, self.config.base_ejection)
            .saturating_add(1)
            .min(times_cap(&self.config));
        let duration = ejection_length(times, &self.config);
        let until = now + duration;
        state.times = times;
        state.until = Some(until);
        Some(Ejection {
            backend,
            times,
            duration,
            until,
        })
    }

    /// Whether `backend` is ejected at `now` (false for an out-of-range backend).
    pub fn is_ejected(&self, backend: usize, now: Instant) -> bool {
        self.lock()
            .backends
            .get(backend)
            .is_some_and(|b| ejected(b, now))
    }

    /// Backends ejected at `now`.
    pub fn ejected_count(&self, now: Instant) -> usize {
        self.lock()
            .backends
            .iter()
            .filter(|b| ejected(b, now))
            .count()
    }

    /// `backend`'s ejection multiplier at `now`, after decay: the next ejection uses one
    /// more (capped). 0 for a backend never ejected, or fully forgiven.
    pub fn times_ejected(&self, backend: usize, now: Instant) -> u32 {
        self.lock()
            .backends
            .get(backend)
            .map_or(0, |b| effective_times(b, now, self.config.base_ejection))
    }

    /// Ejections refused by `max_ejected_percent` so far (Envoy's `ejections_overflow`).
    pub fn overflows(&self) -> u64 {
        self.lock().overflows
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn ejected(b: &BackendState, now: Instant) -> bool {
    b.until.is_some_and(|until| now < until)
}

/// Whether one more ejection is allowed with `ejected` of `n` backends out.
fn may_eject(ejected: usize, n: usize, config: &OutlierConfig) -> bool {
    let percent = u128::from(config.max_ejected_percent.min(100));
    let within = (ejected as u128 + 1) * 100 <= percent * n as u128;
    within || (config.always_eject_one && ejected == 0)
}

/// The multiplier at `now`: the latest ejection's, less one for each full `base` period
/// since it ended.
fn effective_times(b: &BackendState, now: Instant, base: Duration) -> u32 {
    let Some(until) = b.until else {
        return b.times;
    };
    if now < until {
        return b.times;
    }
    if base.is_zero() {
        return 0;
    }
    let periods = now.duration_since(until).as_nanos() / base.as_nanos();
    let periods = u32::try_from(periods).unwrap_or(u32::MAX);
    b.times.saturating_sub(periods)
}

/// The longest ejection: `max_ejection`, or `base_ejection` if that is longer.
fn longest(config: &OutlierConfig) -> Duration {
    config.max_ejection.max(config.base_ejection)
}

/// The smallest multiplier whose ejection reaches the longest: the multiplier stops there
/// (longer ones would only slow the decay down). At least 1.
fn times_cap(config: &OutlierConfig) -> u32 {
    let base = config.base_ejection.as_nanos();
    if base == 0 {
        return 1;
    }
    let cap = longest(config).as_nanos().div_ceil(base);
    u32::try_from(cap).unwrap_or(u32::MAX).max(1)
}

/// `base_ejection × times`, at most the longest ejection.
fn ejection_length(times: u32, config: &OutlierConfig) -> Duration {
    config
        .base_ejection
        .checked_mul(times)
        .map_or(longest(config), |d| d.min(longest(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::num::NonZeroU32;

    const BASE: Duration = Duration::from_secs(30);
    const NS: Duration = Duration::from_nanos(1);

    fn detector(n: usize) -> (OutlierDetector, ManualClock) {
        (
            OutlierDetector::new(n, OutlierConfig::default()),
            ManualClock::new(),
        )
    }

    /// `count` failures of `backend` at the clock's time; the last result.
    fn fail(d: &OutlierDetector, c: &ManualClock, backend: usize, count: u32) -> Option<Ejection> {
        let mut last = None;
        for _ in 0..count {
            last = d.record(backend, false, c.now());
        }
        last
    }

    #[test]
    fn the_defaults_are_envoys_with_half_the_pool() {
        let c = OutlierConfig::default();
        assert_eq!(c.consecutive_failures.get(), 5);
        assert_eq!(c.base_ejection, BASE);
        assert_eq!(c.max_ejection, Duration::from_secs(300));
        assert_eq!(c.max_ejected_percent, 50);
        assert!(!c.always_eject_one);
    }

    #[test]
    fn the_fifth_consecutive_failure_ejects_the_fourth_does_not() {
        let (d, c) = detector(4);
        assert_eq!(fail(&d, &c, 0, 4), None);
        assert!(!d.is_ejected(0, c.now()), "4 of 5 failures: still in");
        let e = d.record(0, false, c.now()).unwrap();
        assert_eq!(e.backend, 0);
        assert_eq!(e.times, 1);
        assert_eq!(e.duration, BASE);
        assert_eq!(e.until, c.now() + BASE);
        assert!(d.is_ejected(0, c.now()));
        assert!(!d.is_ejected(1, c.now()));
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let (d, c) = detector(4);
        assert_eq!(fail(&d, &c, 0, 4), None);
        assert_eq!(d.record(0, true, c.now()), None);
        assert_eq!(fail(&d, &c, 0, 4), None, "the count restarted");
        assert!(!d.is_ejected(0, c.now()));
        assert!(d.record(0, false, c.now()).is_some());
    }

    #[test]
    fn failures_of_other_backends_do_not_count() {
        let (d, c) = detector(4);
        for _ in 0..4 {
            d.record(0, false, c.now());
            d.record(1, false, c.now());
        }
        assert_eq!(d.ejected_count(c.now()), 0);
    }

    #[test]
    fn ejected_until_exactly_base_ejection_later() {
        let (d, c) = detector(4);
        let start = c.now();
        fail(&d, &c, 0, 5).unwrap();
        c.advance(BASE - NS);
        assert!(d.is_ejected(0, c.now()), "at base - 1ns still out");
        c.advance(NS);
        assert_eq!(c.now(), start + BASE);
        assert!(!d.is_ejected(0, c.now()), "at base back in");
    }

    #[test]
    fn results_while_ejected_are_ignored() {
        let (d, c) = detector(4);
        fail(&d, &c, 0, 5).unwrap();
        assert_eq!(fail(&d, &c, 0, 20), None);
        assert_eq!(d.record(0, true, c.now()), None);
        assert!(d.is_ejected(0, c.now()), "a success does not uneject");
        c.advance(BASE);
        assert_eq!(fail(&d, &c, 0, 4), None, "back with a clean count");
    }

    #[test]
    fn the_second_ejection_lasts_twice_base() {
        let (d, c) = detector(4);
        fail(&d, &c, 0, 5).unwrap();
        c.advance(BASE);
        let e = fail(&d, &c, 0, 5).unwrap();
        assert_eq!((e.times, e.duration), (2, 2 * BASE));
        c.advance(2 * BASE - NS);
        assert!(d.is_ejected(0, c.now()));
        c.advance(NS);
        assert!(!d.is_ejected(0, c.now()));
        let e = fail(&d, &c, 0, 5).unwrap();
        assert_eq!((e.times, e.duration), (3, 3 * BASE));
    }

    #[test]
    fn ejections_stop_growing_at_max_ejection() {
        let (d, c) = detector(4);
        let mut durations = Vec::new();
        for _ in 0..12 {
            let e = fail(&d, &c, 0, 5).unwrap();
            durations.push(e.duration.as_secs());
            c.advance(e.duration);
        }
        let mut want: Vec<u64> = (1..=10).map(|k| k * 30).collect();
        want.extend([300, 300]);
        assert_eq!(durations, want);
        assert_eq!(d.times_ejected(0, c.now()), 10);
    }

    #[test]
    fn with_half_of_four_allowed_a_third_ejection_is_refused_while_two_are_out() {
        let (d, c) = detector(4);
        fail(&d, &c, 0, 5).unwrap();
        c.advance(Duration::from_secs(10));
        fail(&d, &c, 1, 5).unwrap();
        assert_eq!(fail(&d, &c, 2, 5), None, "3 of 4 would be 75%");
        assert!(!d.is_ejected(2, c.now()));
        assert_eq!(d.overflows(), 1);
        assert_eq!(d.ejected_count(c.now()), 2);
        // Backend 0 comes back at 30 s; the refused backend needs 5 new failures.
        c.advance(Duration::from_secs(20));
        assert_eq!(d.ejected_count(c.now()), 1);
        assert_eq!(
            fail(&d, &c, 2, 4),
            None,
            "the count restarted at the refusal"
        );
        assert!(d.record(2, false, c.now()).is_some());
        assert_eq!(d.ejected_count(c.now()), 2);
    }

    #[test]
    fn the_percentage_rounds_down_and_one_is_ejected_only_when_asked() {
        let (d, c) = detector(3);
        fail(&d, &c, 0, 5).unwrap();
        assert_eq!(fail(&d, &c, 1, 5), None, "2 of 3 is 67% > 50%");
        let (single, c) = detector(1);
        assert_eq!(fail(&single, &c, 0, 5), None, "50% of 1 backend is none");
        let always = OutlierConfig {
            always_eject_one: true,
            ..OutlierConfig::default()
        };
        let single = OutlierDetector::new(1, always);
        assert!(
            fail(&single, &c, 0, 5).is_some(),
            "always_eject_one: one is"
        );
        let pair = OutlierDetector::new(3, always);
        fail(&pair, &c, 0, 5).unwrap();
        assert_eq!(fail(&pair, &c, 1, 5), None, "but only one");
        let all = OutlierConfig {
            max_ejected_percent: 200,
            ..OutlierConfig::default()
        };
        let d = OutlierDetector::new(2, all);
        assert!(fail(&d, &c, 0, 5).is_some());
        assert!(fail(&d, &c, 1, 5).is_some(), "over 100 is 100");
        let none = OutlierDetector::new(
            4,
            OutlierConfig {
                max_ejected_percent: 0,
                ..OutlierConfig::default()
            },
        );
        assert_eq!(fail(&none, &c, 0, 5), None);
    }

    #[test]
    fn the_multiplier_decays_one_per_healthy_base_period() {
        let (d, c) = detector(4);
        fail(&d, &c, 0, 5).unwrap();
        c.advance(BASE);
        fail(&d, &c, 0, 5).unwrap();
        c.advance(2 * BASE); // back in now, multiplier 2
        assert_eq!(d.times_ejected(0, c.now()), 2);
        c.advance(BASE - NS);
        assert_eq!(
            d.times_ejected(0, c.now()),
            2,
            "one period less 1ns: no decay yet"
        );
        c.advance(NS);
        assert_eq!(d.times_ejected(0, c.now()), 1);
        c.advance(BASE);
        assert_eq!(d.times_ejected(0, c.now()), 0);
        c.advance(10 * BASE);
        assert_eq!(d.times_ejected(0, c.now()), 0, "never below 0");
        let e = fail(&d, &c, 0, 5).unwrap();
        assert_eq!((e.times, e.duration), (1, BASE), "fully forgiven");
    }

    #[test]
    fn a_partly_decayed_multiplier_sets_the_next_ejection() {
        let (d, c) = detector(4);
        fail(&d, &c, 0, 5).unwrap();
        c.advance(BASE);
        fail(&d, &c, 0, 5).unwrap();
        c.advance(2 * BASE + BASE); // back in, and one healthy period
        let e = fail(&d, &c, 0, 5).unwrap();
        assert_eq!((e.times, e.duration), (2, 2 * BASE), "2 - 1 + 1");
    }

    #[test]
    fn out_of_range_backends_are_ignored() {
        let (d, c) = detector(2);
        assert_eq!(fail(&d, &c, 7, 10), None);
        assert!(!d.is_ejected(7, c.now()));
        assert_eq!(d.times_ejected(7, c.now()), 0);
    }

    #[test]
    fn a_threshold_of_one_ejects_on_the_first_failure() {
        let config = OutlierConfig {
            consecutive_failures: NonZeroU32::MIN,
            ..OutlierConfig::default()
        };
        let d = OutlierDetector::new(2, config);
        let c = ManualClock::new();
        assert!(d.record(1, false, c.now()).is_some());
    }

    #[test]
    fn a_reload_keeps_the_history_of_the_backends_that_stay() {
        let (d, c) = detector(3);
        fail(&d, &c, 2, 5).unwrap();
        fail(&d, &c, 0, 3);
        // Backend 2 is now first, backend 0 second, and a new one third.
        let map = [Some(2), Some(0), None];
        let e = OutlierDetector::with_history(3, *d.config(), &d, |i| map[i]);
        assert!(e.is_ejected(0, c.now()));
        assert_eq!(e.consecutive_failures(1), 3);
        assert_eq!(e.times_ejected(2, c.now()), 0);
        assert_eq!(e.ejected_until(0, c.now()), d.ejected_until(2, c.now()));
        c.advance(Duration::from_secs(30));
        assert_eq!(e.ejected_until(0, c.now()), None);
        assert_eq!(
            e.ejection_ended(0, c.now()),
            Some(c.now()),
            "ended exactly now"
        );
    }

    #[test]
    fn works_from_many_threads() {
        let (d, c) = detector(4);
        let now = c.now();
        let ejections: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..5)
                .map(|_| s.spawn(|| usize::from(d.record(3, false, now).is_some())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(ejections, 1);
        assert!(d.is_ejected(3, now));
    }
}
