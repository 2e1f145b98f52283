//! The one place that reads time, so tests can drive it.
//!
//! The node needs wall-clock time (UTC nanoseconds) for untimed points, InfluxQL `now()`
//! and retention, and monotonic time for latency metrics. Both go through here.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of wall-clock time in nanoseconds since the Unix epoch (UTC).
pub trait TimeProvider: Send + Sync + std::fmt::Debug {
    fn now_ns(&self) -> i64;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemTime;

impl TimeProvider for SystemTime {
    #[allow(clippy::disallowed_methods)] // this is the seam
    fn now_ns(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        }
    }
}

/// A clock that only moves when told to; clones share one time.
#[derive(Debug, Default, Clone)]
pub struct ManualTime(Arc<AtomicI64>);

impl ManualTime {
    pub fn new(now_ns: i64) -> Self {
        ManualTime(Arc::new(AtomicI64::new(now_ns)))
    }
    pub fn set(&self, now_ns: i64) {
        self.0.store(now_ns, Ordering::SeqCst);
    }
    pub fn advance(&self, by_ns: i64) {
        self.0.fetch_add(by_ns, Ordering::SeqCst);
    }
}

impl TimeProvider for ManualTime {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A monotonic instant, for measuring durations (latency metrics, fsync timing).
#[allow(clippy::disallowed_methods)] // this is the seam
pub fn monotonic_now() -> std::time::Instant {
    std::time::Instant::now()
}
