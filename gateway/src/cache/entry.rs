//! One stored answer, and how fresh it is at a given instant.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stored 200 answer: its headers (without the hop-by-hop ones and the gateway's own),
/// its body, and when and for how long it was stored.
#[derive(Debug)]
pub struct Entry {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub stored_at: Instant,
    /// Fresh this long after `stored_at`...
    pub fresh_for: Duration,
    /// ...then served stale (while one refresh runs) this much longer.
    pub stale_for: Duration,
    /// Who answered and about which database, for `invalidate_on_write`.
    pub pool: Arc<str>,
    pub db: Option<String>,
}

/// Headers that describe one connection or one answer's framing, or that the gateway sets
/// on every answer itself: never stored.
const NOT_STORED: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "x-request-id",
    "x-cache",
    "age",
    "set-cookie",
];

/// The headers of `resp` worth storing.
pub fn stored_headers(resp: &ResponseHeader) -> Vec<(HeaderName, HeaderValue)> {
    resp.headers
        .iter()
        .filter(|(name, _)| !NOT_STORED.contains(&name.as_str()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// How fresh an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Past its ttl, within stale-while-revalidate.
    Stale,
    Expired,
}

/// The freshness of an entry `age` old: fresh while `age < fresh_for`, stale while
/// `age < fresh_for + stale_for`.
pub fn freshness(age: Duration, fresh_for: Duration, stale_for: Duration) -> Freshness {
    if age < fresh_for {
        Freshness::Fresh
    } else if age < fresh_for.saturating_add(stale_for) {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

impl Entry {
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// What it costs the cache's `max_size`, with its key: bytes of the body and of every
    /// header, and a fixed overhead for the structures around them.
    pub fn weight(&self, key_len: usize) -> u32 {
        const OVERHEAD: usize = 160;
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let total = OVERHEAD
            + key_len
            + headers
            + self.body.len()
            + self.db.as_ref().map_or(0, String::len);
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// The time moka may drop it at the latest (past it, it would only be expired).
    pub fn lifetime(&self) -> Duration {
        self.fresh_for.saturating_add(self.stale_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_changes_exactly_at_the_ttl_and_at_the_end_of_the_stale_window() {
        let ttl = Duration::from_secs(5);
        let swr = Duration::from_secs(10);
        let ns = Duration::from_nanos(1);
        assert_eq!(freshness(Duration::ZERO, ttl, swr), Freshness::Fresh);
        assert_eq!(freshness(ttl - ns, ttl, swr), Freshness::Fresh);
        assert_eq!(freshness(ttl, ttl, swr), Freshness::Stale);
        assert_eq!(freshness(ttl + swr - ns, ttl, swr), Freshness::Stale);
        assert_eq!(freshness(ttl + swr, ttl, swr), Freshness::Expired);
        // Without a stale window an entry goes from fresh to expired.
        assert_eq!(freshness(ttl, ttl, Duration::ZERO), Freshness::Expired);
    }

    #[test]
    fn hop_by_hop_and_per_answer_headers_are_not_stored() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("content-type", "application/json")
            .unwrap();
        resp.append_header("connection", "keep-alive").unwrap();
        resp.append_header("content-length", "10").unwrap();
        resp.append_header("x-request-id", "r-1").unwrap();
        resp.append_header("x-influxdb-version", "1.8").unwrap();
        let stored = stored_headers(&resp);
        let kept: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(kept, ["content-type", "x-influxdb-version"]);
    }

    #[test]
    fn the_weight_counts_the_key_the_headers_and_the_body() {
        let e = Entry {
            headers: vec![(
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("text/csv"),
            )],
            body: Bytes::from(vec![0u8; 1000]),
            stored_at: crate::clock::Clock::now(&crate::clock::ManualClock::new()),
            fresh_for: Duration::from_secs(1),
            stale_for: Duration::ZERO,
            pool: Arc::from("p"),
            db: None,
        };
        let w = e.weight(50);
        assert!((1050..1400).contains(&w), "{w}");
        assert!(e.weight(51) > w);
    }
}
