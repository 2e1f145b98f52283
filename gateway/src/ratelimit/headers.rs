//! The rate-limit headers of an answer, as the IETF draft writes them
//! (draft-ietf-httpapi-ratelimit-headers-09): `RateLimit-Policy` names each limit with its
//! quota and window, `RateLimit` gives the most restrictive one's remaining tokens and the
//! seconds until its bucket is full again.
//!
//! ```text
//! RateLimit-Policy: "per-tenant";q=2000;w=2, "per-device";q=20;w=2
//! RateLimit: "per-device";r=7;t=2
//! ```
//! A window (`w`) is the time a drained bucket takes to refill: `burst / rate`, in whole
//! seconds, at least 1.

use std::fmt::Write;
use std::time::Duration;

/// One limit's part of the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub name: String,
    /// Tokens a full bucket holds.
    pub quota: u32,
    /// The time a drained bucket takes to refill.
    pub window: Duration,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
}

fn secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

fn reset_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `RateLimit-Policy` for every limit of the route.
pub fn policy(quotas: &[Quota]) -> String {
    let mut out = String::new();
    for (i, q) in quotas.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{}\";q={};w={}", q.name, q.quota, secs(q.window));
    }
    out
}

/// `RateLimit` for the limit with the fewest tokens left (ties: the longest reset).
pub fn current(quotas: &[Quota]) -> Option<String> {
    let q = quotas
        .iter()
        .min_by(|a, b| a.remaining.cmp(&b.remaining).then(b.reset.cmp(&a.reset)))?;
    Some(format!(
        "\"{}\";r={};t={}",
        q.name,
        q.remaining,
        reset_secs(q.reset)
    ))
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after(wait: Duration) -> String {
    secs(wait).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, remaining: u32, reset_ms: u64) -> Quota {
        Quota {
            name: name.into(),
            quota: 20,
            window: Duration::from_millis(2000),
            remaining,
            reset: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn the_policy_lists_every_limit_and_the_current_one_is_the_most_restrictive() {
        let qs = [q("per-tenant", 1500, 300), q("per-device", 7, 1200)];
        assert_eq!(
            policy(&qs),
            "\"per-tenant\";q=20;w=2, \"per-device\";q=20;w=2"
        );
        assert_eq!(current(&qs).as_deref(), Some("\"per-device\";r=7;t=2"));
        assert_eq!(current(&[]), None);
    }

    #[test]
    fn seconds_round_up_and_retry_after_is_at_least_one() {
        assert_eq!(retry_after(Duration::from_millis(1)), "1");
        assert_eq!(retry_after(Duration::from_millis(1001)), "2");
        assert_eq!(current(&[q("a", 3, 0)]).as_deref(), Some("\"a\";r=3;t=0"));
    }
}
