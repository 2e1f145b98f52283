//! The one place this crate reads the monotonic clock (the workspace's clippy config forbids
//! raw `Instant::now` elsewhere).

use std::time::Instant;

/// The current monotonic instant.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}
