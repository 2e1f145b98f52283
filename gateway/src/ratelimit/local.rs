//! Local token buckets: one governor keyed limiter (GCRA) per limit, read through the
//! gateway's clock, with memory bounded however many distinct callers show up.
//!
//! Buckets are keyed by a 64-bit SipHash of the caller key under a per-limiter random seed
//! (no allocation per decision; two callers share a bucket with odds of about n²/2⁶⁴, and
//! the seed keeps anyone from picking keys that collide on purpose).
//!
//! Idle keys are evicted by [`LocalLimiter::housekeeping`] (governor's `retain_recent`: a
//! key whose bucket is full again is indistinguishable from a new one). Between two rounds a
//! flood of distinct keys could still grow the map, so beyond [`LocalLimiter::max_keys`]
//! new callers share [`OVERFLOW_BUCKETS`] hashed buckets until the flood's keys have aged
//! out: limits still hold for them, collectively, and memory stays bounded.
//!
//! A cost known only after the body (`rate_limit_cost: lines`) cannot be refused any more;
//! governor has no way to consume tokens that are not there, so the unpaid part is kept as
//! the caller's debt and added to the cost of its next request.

use crate::clock::Clock;
use governor::clock::Clock as GovernorClock;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Buckets shared by new callers while the map is full.
pub const OVERFLOW_BUCKETS: u64 = 1024;

/// Distinct callers one limit tracks before new ones share the overflow buckets.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// How often a full map may be swept on the request path: a sweep walks every key, so a
/// flood of new callers must not pay for one each.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Decisions between two counts of the map (counting walks its shards): between counts
/// at most this many keys are added, so the map stays under `max_keys + RECOUNT_EVERY`.
const RECOUNT_EVERY: u32 = 1024;

/// Real callers' slots have the top bit set; the overflow buckets are `0..OVERFLOW_BUCKETS`.
const CALLER_BIT: u64 = 1 << 63;

/// The gateway's clock as governor wants it.
#[derive(Debug, Clone)]
pub struct GatewayClock(pub Arc<dyn Clock>);

impl GovernorClock for GatewayClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        self.0.now()
    }
}

type Limiter =
    RateLimiter<u64, DashMapStateStore<u64, SlotHasher>, GatewayClock, StateInformationMiddleware>;

/// The map's hasher: a slot is already a seeded hash, so hashing it again with SipHash
/// would only cost time; a multiplication spreads it (and the small overflow slots).
#[derive(Debug, Clone, Copy, Default)]
pub struct SlotHasher;

impl BuildHasher for SlotHasher {
    type Hasher = SlotHash;

    fn build_hasher(&self) -> SlotHash {
        SlotHash(0)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SlotHash(u64);

impl std::hash::Hasher for SlotHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 slots are hashed; anything else still gets a deterministic mix.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // One multiplication carries every bit into the high ones, which pick the shard
        // and the control byte (a slot's own top bit is always set).
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What one decision says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole tokens left after the decision.
    pub remaining: u32,
    /// When the cost would fit (zero when allowed).
    pub retry_after: Duration,
    /// When the bucket is full again.
    pub reset_after: Duration,
}

/// One limit's buckets, by caller key.
pub struct LocalLimiter {
    limiter: Limiter,
    clock: GatewayClock,
    burst: NonZeroU32,
    interval: Duration,
    max_keys: usize,
    /// Seeds the slot hash.
    hasher: RandomState,
    /// The map's size at the last count, and decisions since.
    counted: AtomicUsize,
    since_count: AtomicU32,
    /// Unpaid tokens of costs charged after the fact, by slot (bounded like the map).
    debt: Mutex<HashMap<u64, u32>>,
    /// Whether `debt` has any entry, so the common request does not take its lock.
    owing: AtomicBool,
    /// When a full map was last swept on the request path.
    last_sweep: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("burst", &self.burst)
            .field("interval", &self.interval)
            .field("keys", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl LocalLimiter {
    /// Buckets of `burst` tokens, one token back every `interval`.
    pub fn new(
        interval: Duration,
        burst: NonZeroU32,
        max_keys: usize,
        clock: Arc<dyn Clock>,
    ) -> LocalLimiter {
        // A zero interval cannot come from a policy (rates are whole numbers per second or
        // longer); one nanosecond stands in to keep the quota valid.
        let quota = Quota::with_period(interval.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let clock = GatewayClock(clock);
        let limiter: RateLimiter<u64, _, GatewayClock, NoOpMiddleware<Instant>> = RateLimiter::new(
            quota,
            DashMapStateStore::with_hasher(SlotHasher),
            clock.clone(),
        );
        let limiter = limiter.with_middleware::<StateInformationMiddleware>();
        LocalLimiter {
            limiter,
            clock,
            burst,
            interval,
            max_keys,
            hasher: RandomState::new(),
            counted: AtomicUsize::new(0),
            since_count: AtomicU32::new(0),
            debt: Mutex::new(HashMap::new()),
            owing: AtomicBool::new(false),
            last_sweep: Mutex::new(None),
        }
    }

    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Callers tracked now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// The slot under which `key` is counted: its own, or a shared overflow bucket once
    /// the map is full and a recent sweep did not make room.
    fn slot(&self, key: &str) -> u64 {
        let hash = self.hasher.hash_one(key);
        if self.len_estimate() < self.max_keys {
            return hash | CALLER_BIT;
        }
        if self.sweep_due() {
            self.limiter.retain_recent();
            self.counted.store(self.limiter.len(), Ordering::Relaxed);
            if self.limiter.len() < self.max_keys {
                return hash | CALLER_BIT;
            }
        }
        hash % OVERFLOW_BUCKETS
    }

    /// The map's size, counted every [`RECOUNT_EVERY`] decisions and while it is near
    /// its bound.
    fn len_estimate(&self) -> usize {
        let n = self.since_count.fetch_add(1, Ordering::Relaxed);
        let last = self.counted.load(Ordering::Relaxed);
        if n >= RECOUNT_EVERY || last + (RECOUNT_EVERY as usize) >= self.max_keys {
            self.since_count.store(0, Ordering::Relaxed);
            let now = self.limiter.len();
            self.counted.store(now, Ordering::Relaxed);
            return now;
        }
        last
    }

    /// Whether a request-path sweep may run now (one per [`SWEEP_EVERY`] at most).
    fn sweep_due(&self) -> bool {
        let now = self.clock.now();
        let mut last = self
            .last_sweep
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(t) if now.saturating_duration_since(t) < SWEEP_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Admits `cost` tokens for `key` if they fit (plus any debt the key owes).
    pub fn check(&self, key: &str, cost: NonZeroU32) -> Decision {
        let slot = self.slot(key);
        let owed = if self.owing.load(Ordering::Relaxed) {
            self.debt
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&slot)
                .copied()
                .unwrap_or(0)
        } else {
            0
        };
        // The debt is paid up to a bucketful at a time, before the request's own cost.
        let want = cost.saturating_add(owed).min(self.burst.max(cost));
        let decision = self.take(slot, want);
        if decision.allowed && owed > 0 {
            let paid = want.get() - cost.get();
            let mut debt = self.debt.lock().unwrap_or_else(PoisonError::into_inner);
            if owed <= paid {
                debt.remove(&slot);
                self.owing.store(!debt.is_empty(), Ordering::Relaxed);
            } else {
                debt.insert(slot, owed - paid);
            }
        }
        decision
    }

    fn take(&self, slot: u64, n: NonZeroU32) -> Decision {
        match self.limiter.check_key_n(&slot, n) {
            Ok(Ok(state)) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset_after: self.interval * (self.burst.get() - remaining),
                }
            }
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    remaining: 0,
                    retry_after: wait,
                    reset_after: wait + self.interval * self.burst.get().saturating_sub(n.get()),
                }
            }
            // More than a full bucket: can never fit (cost is capped at the burst above).
            Err(_) => Decision {
                allowed: false,
                remaining: 0,
                retry_after: self.interval * self.burst.get(),
                reset_after: self.interval * self.burst.get(),
            },
        }
    }

    /// Consumes `cost` more tokens for `key`, whatever is left (a cost learnt after the
    /// request was admitted): what does not fit now becomes debt, paid by the next request.
    pub fn charge(&self, key: &str, cost: u32) {
        let slot = self.slot(key);
        let mut left = cost;
        // Take what is there, a token at a time (at most a bucketful of calls).
        for _ in 0..self.burst.get() {
            if left == 0 || self.limiter.check_key(&slot).is_err() {
                break;
            }
            left -= 1;
        }
        if left > 0 {
            let mut debt = self.debt.lock().unwrap_or_else(PoisonError::into_inner);
            if debt.len() < self.max_keys || debt.contains_key(&slot) {
                let d = debt.entry(slot).or_insert(0);
                *d = d.saturating_add(left);
                self.owing.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Evicts callers whose bucket is full again (they are as good as new).
    pub fn housekeeping(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.counted.store(self.limiter.len(), Ordering::Relaxed);
        let mut debt = self.debt.lock().unwrap_or_else(PoisonError::into_inner);
        if debt.len() > self.max_keys {
            debt.clear();
            self.owing.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(per_second: u32, burst: u32, clock: &ManualClock) -> LocalLimiter {
        LocalLimiter::new(
            Duration::from_secs(1) / per_second,
            NonZeroU32::new(burst).unwrap(),
            DEFAULT_MAX_KEYS,
            Arc::new(clock.clone()),
        )
    }

    const ONE: NonZeroU32 = NonZeroU32::MIN;

    #[test]
    fn a_full_bucket_admits_its_burst_then_one_per_interval() {
        // 10/s, burst 5: five at once; the sixth must wait exactly 100 ms.
        let clock = ManualClock::new();
        let l = limiter(10, 5, &clock);
        for i in 0..5 {
            let d = l.check("a", ONE);
            assert!(d.allowed, "request {i} at {:?}", clock.elapsed());
            assert_eq!(d.remaining, 4 - i);
        }
        let refused = l.check("a", ONE);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        clock.advance(Duration::from_millis(99));
        assert!(!l.check("a", ONE).allowed, "at {:?}", clock.elapsed());
        clock.advance(Duration::from_millis(1));
        assert!(l.check("a", ONE).allowed, "at {:?}", clock.elapsed());
        assert!(
            !l.check("a", ONE).allowed,
            "one token came back, one was taken"
        );
    }

    #[test]
    fn an_idle_bucket_refills_to_its_burst_and_no_further() {
        let clock = ManualClock::new();
        let l = limiter(10, 3, &clock);
        for _ in 0..3 {
            assert!(l.check("a", ONE).allowed);
        }
        clock.advance(Duration::from_secs(60));
        let d = l.check("a", ONE);
        assert_eq!(d.remaining, 2, "refilled to the burst of 3, one taken");
        assert_eq!(d.reset_after, Duration::from_millis(100));
    }

    #[test]
    fn a_cost_above_one_takes_that_many_tokens_or_none() {
        let clock = ManualClock::new();
        let l = limiter(10, 5, &clock);
        let three = NonZeroU32::new(3).unwrap();
        assert!(l.check("a", three).allowed);
        let d = l.check("a", three);
        assert!(!d.allowed, "2 left, 3 asked: nothing taken");
        assert_eq!(d.retry_after, Duration::from_millis(100));
        assert!(
            l.check("a", NonZeroU32::new(2).unwrap()).allowed,
            "the 2 are still there"
        );
    }

    #[test]
    fn keys_are_separate_buckets() {
        let clock = ManualClock::new();
        let l = limiter(1, 1, &clock);
        assert!(l.check("tenant-a|10.0.0.1", ONE).allowed);
        assert!(!l.check("tenant-a|10.0.0.1", ONE).allowed);
        assert!(l.check("tenant-a|10.0.0.2", ONE).allowed);
        assert!(l.check("tenant-b|10.0.0.1", ONE).allowed);
    }

    #[test]
    fn a_cost_charged_after_the_fact_becomes_debt_paid_by_the_next_request() {
        // 10/s, burst 10: a batch of 25 lines admitted with 1 token, 24 charged at its end.
        let clock = ManualClock::new();
        let l = limiter(10, 10, &clock);
        assert!(l.check("d", ONE).allowed);
        l.charge("d", 24);
        // 9 were there; 15 are owed. The next request pays 1 + 9 of the debt (a bucketful).
        clock.advance(Duration::from_millis(900));
        assert!(!l.check("d", ONE).allowed, "9 back of the 10 needed");
        clock.advance(Duration::from_millis(100));
        assert!(l.check("d", ONE).allowed, "at {:?}", clock.elapsed());
        // 6 still owed: the one after needs 7 tokens, 700 ms later.
        clock.advance(Duration::from_millis(699));
        assert!(!l.check("d", ONE).allowed, "at {:?}", clock.elapsed());
        clock.advance(Duration::from_millis(1));
        assert!(
            l.check("d", ONE).allowed,
            "debt paid at {:?}",
            clock.elapsed()
        );
        clock.advance(Duration::from_millis(100));
        assert!(l.check("d", ONE).allowed, "back to one token per request");
    }

    #[test]
    fn a_flood_of_distinct_keys_cannot_grow_the_map_past_its_bound() {
        let clock = ManualClock::new();
        let l = LocalLimiter::new(
            Duration::from_millis(100),
            NonZeroU32::new(2).unwrap(),
            10_000,
            Arc::new(clock.clone()),
        );
        for i in 0..1_000_000u32 {
            l.check(&format!("ip-{i}"), ONE);
        }
        assert!(
            l.len() as u64 <= 10_000 + OVERFLOW_BUCKETS,
            "{} keys after a million callers",
            l.len()
        );
        // Once the flood's buckets are full again, housekeeping forgets them.
        clock.advance(Duration::from_secs(1));
        l.housekeeping();
        assert_eq!(l.len(), 0);
    }
}
