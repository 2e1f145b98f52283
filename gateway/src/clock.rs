//! The one place the gateway reads time, so limiters, health logic and tests can drive it.
//!
//! Monotonic time (latency, deadlines, limiter and health state) goes through a [`Clock`]
//! passed in by the caller: [`SystemClock`] in the running gateway, [`ManualClock`] in
//! tests, where time moves only when told to. Wall-clock time (the policy's load time on
//! the status page) comes from [`wall_now`]. The workspace's clippy configuration forbids
//! raw `Instant::now` and `SystemTime::now` everywhere else.
//!
//! ```
//! use gateway::clock::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_millis(1500));
//! assert_eq!(clock.now() - start, Duration::from_millis(1500));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A source of monotonic instants.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // this is the seam
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until [`ManualClock::advance`]; clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    origin: Instant,
    offset_ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at an arbitrary origin; only differences between its instants matter.
    pub fn new() -> Self {
        ManualClock {
            origin: SystemClock.now(),
            offset_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves this clock and every clone of it forward.
    pub fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_ns.fetch_add(ns, Ordering::SeqCst);
    }

    /// Time since the origin, for assertion messages.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }
}

/// The current wall-clock time, for timestamps shown to operators.
#[allow(clippy::disallowed_methods)] // this is the seam
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_of_a_manual_clock_share_one_time() {
        let a = ManualClock::new();
        let b = a.clone();
        let t0 = b.now();
        a.advance(Duration::from_millis(1));
        assert_eq!(b.now() - t0, Duration::from_millis(1));
        assert_eq!(b.elapsed(), Duration::from_millis(1));
    }
}
