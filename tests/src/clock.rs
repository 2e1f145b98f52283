//! The one place this crate reads the clocks (the workspace's clippy config forbids raw
//! `Instant::now` and `SystemTime::now` elsewhere).

use std::time::Instant;

/// The current monotonic instant.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// Wall-clock nanoseconds since the Unix epoch (what a node compares retention with).
#[allow(clippy::disallowed_methods)]
pub fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
