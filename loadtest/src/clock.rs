//! The one place the load generator reads time: tokio's monotonic clock (so tests may
//! pause it) for schedules and latencies, and wall time for the report's start stamp.

/// The current monotonic instant.
pub fn now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// The current wall-clock time, RFC 3339 with milliseconds, for the report.
#[allow(clippy::disallowed_methods)] // this is the seam
pub fn wall_now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The current wall-clock time in Unix nanoseconds, what `${now_ms}` and its kin are
/// filled with.
#[allow(clippy::disallowed_methods)] // this is the seam
pub fn wall_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
