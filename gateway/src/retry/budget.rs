//! A retry budget (Finagle's `RetryBudget`, linkerd's and tower's `TpsBudget`): retries are
//! allowed while they stay a fixed share of the requests, so when a backend pool fails,
//! retries add at most that share to its load instead of multiplying it.
//!
//! Precisely, over the window (the current second and the `window_secs − 1` before it, in
//! 1 s buckets), a retry is allowed while
//!
//! ```text
//! retries + 1 ≤ ⌊ratio × requests⌋ + min_per_sec × window_secs
//! ```
//!
//! and counts as one of `retries` when it is. The second term is the floor: a reserve of
//! `min_per_sec` retries per second of window, available even with no traffic, so a quiet
//! route can still retry (it is added to the share, as in Finagle and tower, not a minimum
//! of it). Counts leave the window whole buckets at a time: what was recorded during the
//! second `[s, s + 1)` (seconds since the budget's first call) counts until `s + window_secs`
//! exactly.
//!
//! `record_request` is called once per request from a client, not per attempt: retries do
//! not earn retries. `ratio` is kept in millionths (0.2 → 200 000), so shares are exact
//! integer arithmetic: 100 requests at 0.2 allow 20 retries, never 19 for a rounding error.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest window: an hour of 1 s buckets.
pub const MAX_WINDOW_SECS: u64 = 3_600;

const MILLION: u128 = 1_000_000;

/// One second's counts.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Seconds since the origin of the second these counts are for.
    second: u64,
    requests: u64,
    retries: u64,
}

#[derive(Debug)]
struct Window {
    /// The first call's instant; bucket boundaries are whole seconds after it.
    origin: Option<Instant>,
    /// Bucket of second `s` at `s % len`; a bucket holding an older second is stale.
    buckets: Vec<Bucket>,
}

/// Retries allowed as a share of requests over a sliding window, plus a small floor.
#[derive(Debug)]
pub struct RetryBudget {
    /// `ratio` in millionths.
    ratio_millionths: u64,
    window_secs: u64,
    min_per_sec: u32,
    window: Mutex<Window>,
}

impl RetryBudget {
    /// A budget allowing `ratio` retries per request (0.2 for 20%; negative or NaN is 0,
    /// precision 10⁻⁶) over `window` (rounded up to whole seconds, 1 s to
    /// [`MAX_WINDOW_SECS`]), plus `min_per_sec` retries per second of window.
    pub fn new(ratio: f64, window: Duration, min_per_sec: u32) -> Self {
        let window_secs = window
            .as_secs()
            .saturating_add(u64::from(window.subsec_nanos() > 0))
            .clamp(1, MAX_WINDOW_SECS);
        RetryBudget {
            ratio_millionths: ratio_to_millionths(ratio),
            window_secs,
            min_per_sec,
            window: Mutex::new(Window {
                origin: None,
                // `window_secs` ≤ 3600 fits any usize.
                buckets: vec![Bucket::default(); window_secs as usize],
            }),
        }
    }

    /// The window in whole seconds.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// Counts one request from a client at `now`.
    pub fn record_request(&self, now: Instant) {
        let mut w = self.lock();
        let b = w.current(now);
        b.requests = b.requests.saturating_add(1);
    }

    /// Whether a retry may be sent at `now`; if so, it is counted against the budget.
    pub fn try_retry(&self, now: Instant) -> bool {
        let mut w = self.lock();
        if self.available(&mut w, now) == 0 {
            return false;
        }
        let b = w.current(now);
        b.retries = b.retries.saturating_add(1);
        true
    }

    /// Retries that would be allowed at `now` (for the status page); consumes nothing.
    pub fn remaining(&self, now: Instant) -> u64 {
        let mut w = self.lock();
        self.available(&mut w, now)
    }

    fn available(&self, w: &mut Window, now: Instant) -> u64 {
        let (requests, retries) = w.totals(now, self.window_secs);
        let share = u128::from(requests) * u128::from(self.ratio_millionths) / MILLION;
        let floor = u128::from(self.min_per_sec) * u128::from(self.window_secs);
        let allowed = share.saturating_add(floor);
        u64::try_from(allowed.saturating_sub(u128::from(retries))).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Window {
    /// Seconds since the origin at `now` (setting the origin on the first call; an instant
    /// before it counts as second 0).
    fn second(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        now.saturating_duration_since(origin).as_secs()
    }

    /// The bucket of `now`'s second, cleared if it held an older second.
    fn current(&mut self, now: Instant) -> &mut Bucket {
        let s = self.second(now);
        let len = self.buckets.len() as u64;
        // `s % len` < len, a usize.
        let b = &mut self.buckets[(s % len) as usize];
        if b.second != s {
            *b = Bucket {
                second: s,
                ..Bucket::default()
            };
        }
        b
    }

    /// Requests and retries of the `window_secs` seconds ending with `now`'s.
    fn totals(&mut self, now: Instant, window_secs: u64) -> (u64, u64) {
        let s = self.second(now);
        self.buckets
            .iter()
            .filter(|b| b.second <= s && s - b.second < window_secs)
            .fold((0u64, 0u64), |(req, ret), b| {
                (
                    req.saturating_add(b.requests),
                    ret.saturating_add(b.retries),
                )
            })
    }
}

/// `ratio` in millionths, rounded; 0 for negative or NaN, at most 10⁶ × 10⁶ (a million
/// retries per request, more than anyone means).
fn ratio_to_millionths(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    // Saturating float-to-int cast; the clamp keeps the product with any count in u128.
    (ratio * 1e6).round().min(1e12) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    const NS: Duration = Duration::from_nanos(1);
    const TEN_S: Duration = Duration::from_secs(10);

    fn requests(b: &RetryBudget, now: Instant, n: u32) {
        for _ in 0..n {
            b.record_request(now);
        }
    }

    fn retries_allowed(b: &RetryBudget, now: Instant) -> u32 {
        let mut n = 0;
        while b.try_retry(now) {
            n += 1;
            assert!(n <= 1_000_000, "runaway budget");
        }
        n
    }

    #[test]
    fn twenty_percent_of_100_requests_is_exactly_20_retries() {
        let c = ManualClock::new();
        let b = RetryBudget::new(0.2, TEN_S, 0);
        requests(&b, c.now(), 100);
        assert_eq!(b.remaining(c.now()), 20);
        for i in 0..20 {
            assert!(b.try_retry(c.now()), "retry {} refused", i + 1);
        }
        assert!(!b.try_retry(c.now()), "the 21st is refused");
        assert_eq!(b.remaining(c.now()), 0);
        // One more request earns a fifth of a retry: still none.
        requests(&b, c.now(), 1);
        assert!(!b.try_retry(c.now()));
        requests(&b, c.now(), 4);
        assert!(b.try_retry(c.now()), "105 requests: 21 retries");
    }

    #[test]
    fn ratios_are_exact_in_millionths() {
        let c = ManualClock::new();
        // 0.29 × 100 is 28.999999999999996 in f64; millionths give 29.
        let b = RetryBudget::new(0.29, TEN_S, 0);
        requests(&b, c.now(), 100);
        assert_eq!(retries_allowed(&b, c.now()), 29);
        assert_eq!(ratio_to_millionths(f64::NAN), 0);
        assert_eq!(ratio_to_millionths(-1.0), 0);
        assert_eq!(ratio_to_millionths(f64::INFINITY), 1_000_000_000_000);
    }

    #[test]
    fn requests_leave_the_window_exactly_window_seconds_after_their_second() {
        let c = ManualClock::new();
        let b = RetryBudget::new(0.2, TEN_S, 0);
        requests(&b, c.now(), 100); // second 0
        c.advance(TEN_S - NS);
        assert_eq!(b.remaining(c.now()), 20, "at 9.999999999 s still counted");
        c.advance(NS);
        assert_eq!(b.remaining(c.now()), 0, "at 10 s gone");
        assert!(!b.try_retry(c.now()));
    }

    #[test]
    fn the_window_slides_a_bucket_at_a_time() {
        let c = ManualClock::new();
        let b = RetryBudget::new(0.5, TEN_S, 0);
        requests(&b, c.now(), 10); // second 0
        c.advance(Duration::from_secs(5));
        requests(&b, c.now(), 20); // second 5
        assert_eq!(b.remaining(c.now()), 15);
        assert_eq!(retries_allowed(&b, c.now()), 15); // counted in second 5
        c.advance(Duration::from_secs(5)); // second 10: second 0 is out
        assert_eq!(b.remaining(c.now()), 0, "20 × 0.5 - 15 retries < 0");
        c.advance(Duration::from_secs(5)); // second 15: all out
        assert_eq!(b.remaining(c.now()), 0);
        requests(&b, c.now(), 2);
        assert_eq!(b.remaining(c.now()), 1, "old retries are gone too");
    }

    #[test]
    fn retries_leave_the_window_like_requests() {
        let c = ManualClock::new();
        let b = RetryBudget::new(0.0, TEN_S, 1);
        assert_eq!(retries_allowed(&b, c.now()), 10); // second 0
        c.advance(Duration::from_secs(3));
        assert!(!b.try_retry(c.now()));
        c.advance(Duration::from_secs(7) - NS);
        assert!(
            !b.try_retry(c.now()),
            "second 9: the 10 are still in the window"
        );
        c.advance(NS);
        assert_eq!(retries_allowed(&b, c.now()), 10, "second 10: they left");
    }

    #[test]
    fn the_floor_is_min_per_sec_times_window_seconds_added_to_the_share() {
        let c = ManualClock::new();
        let b = RetryBudget::new(0.2, TEN_S, 10);
        assert_eq!(b.remaining(c.now()), 100, "no traffic: 10/s × 10 s");
        assert_eq!(retries_allowed(&b, c.now()), 100);
        assert!(!b.try_retry(c.now()), "the 101st is refused");
        requests(&b, c.now(), 50);
        assert_eq!(retries_allowed(&b, c.now()), 10, "50 × 0.2 more");
    }

    #[test]
    fn windows_round_up_to_whole_seconds() {
        assert_eq!(
            RetryBudget::new(0.2, Duration::from_millis(1500), 0).window_secs(),
            2
        );
        assert_eq!(RetryBudget::new(0.2, Duration::ZERO, 0).window_secs(), 1);
        assert_eq!(
            RetryBudget::new(0.2, Duration::from_secs(1), 3).remaining(ManualClock::new().now()),
            3
        );
        assert_eq!(
            RetryBudget::new(0.2, Duration::from_secs(86_400), 0).window_secs(),
            MAX_WINDOW_SECS
        );
    }

    #[test]
    fn thread_safe_budget_is_never_overspent() {
        let c = ManualClock::new();
        let b = RetryBudget::new(0.2, TEN_S, 0);
        requests(&b, c.now(), 1_000);
        let now = c.now();
        let granted: u32 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..100).filter(|_| b.try_retry(now)).count() as u32))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 200);
    }
}
