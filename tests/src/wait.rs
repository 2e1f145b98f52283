//! Bounded polling. Every wait has a count limit and a deadline.

use std::time::Duration;

use crate::clock;

/// How long to wait for a condition: `TEST_PATIENCE_MS` (milliseconds), default 10 s.
pub fn patience() -> Duration {
    std::env::var("TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// Interval between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `probe` until it returns `Ok(Some(v))`, at most `patience() / POLL_INTERVAL + 1`
/// times and no longer than `patience()`. `Err` from the probe stops at once.
/// On timeout the error names `what` and the last note the probe left in `last`.
pub fn eventually<T>(
    what: &str,
    mut probe: impl FnMut(&mut String) -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    eventually_within(what, patience(), &mut probe)
}

/// [`eventually`] with an explicit patience.
pub fn eventually_within<T>(
    what: &str,
    patience: Duration,
    probe: &mut dyn FnMut(&mut String) -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let start = clock::now();
    let max_polls = (patience.as_millis() / POLL_INTERVAL.as_millis()).max(1) as u64 + 1;
    let mut last = String::new();
    for poll in 0..max_polls {
        if let Some(v) = probe(&mut last)? {
            return Ok(v);
        }
        if clock::now().duration_since(start) >= patience || poll + 1 == max_polls {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    anyhow::bail!(
        "timed out after {:?} waiting for {what}; last observation: {}",
        clock::now().duration_since(start),
        if last.is_empty() { "none" } else { &last }
    )
}

/// Asserts that a boolean condition becomes true within [`patience`], polling it.
///
/// ```text
/// assert_eventually!(count(&addr) == 3, "three points visible");
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr $(,)?) => {
        $crate::assert_eventually!($cond, "{}", stringify!($cond))
    };
    ($cond:expr, $($msg:tt)+) => {{
        let what = format!($($msg)+);
        if let Err(e) = $crate::wait::eventually(&what, |_| Ok(if $cond { Some(()) } else { None })) {
            panic!("assert_eventually failed: {e}");
        }
    }};
}
