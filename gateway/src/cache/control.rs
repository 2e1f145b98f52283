//! What `Cache-Control` lets the cache do: whether a request may be answered from it (and
//! its answer stored), and whether a backend's answer may be stored, for how long.
//!
//! The cache is shared, so it follows the rules of RFC 9111 for shared caches: `private`
//! is never stored, `s-maxage` wins over `max-age`. The route's ttl is the most an answer
//! lives; a backend may only shorten it.

use http::header::{CACHE_CONTROL, PRAGMA, SET_COOKIE, VARY};
use http::HeaderMap;
use std::time::Duration;

/// What the client asked of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// Neither look up nor store.
    pub no_store: bool,
    /// Do not answer from the cache (a fresh answer may still be stored).
    pub no_cache: bool,
}

/// The comma-separated directives of every `Cache-Control` value, lower-cased.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = (String, Option<String>)> + '_ {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let d = d.trim();
            if d.is_empty() {
                return None;
            }
            let (name, value) = match d.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"').to_string())),
                None => (d, None),
            };
            Some((name.to_ascii_lowercase(), value))
        })
}

/// The client's `Cache-Control` (and HTTP/1.0 `Pragma: no-cache`).
pub fn request(headers: &HeaderMap) -> RequestDirectives {
    let mut out = RequestDirectives::default();
    for (name, value) in directives(headers) {
        match name.as_str() {
            "no-store" => out.no_store = true,
            "no-cache" => out.no_cache = true,
            "max-age" if value.as_deref() == Some("0") => out.no_cache = true,
            _ => {}
        }
    }
    let pragma = headers
        .get_all(PRAGMA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-cache"));
    out.no_cache |= pragma;
    out
}

/// Whether an answer may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storable {
    /// For this long (the route's ttl, or less if the backend said so).
    For(Duration),
    /// Not stored, and why.
    No(&'static str),
}

/// Whether an answer of `status` with `headers` may be stored for up to `ttl`.
pub fn response(status: u16, headers: &HeaderMap, ttl: Duration) -> Storable {
    if status != 200 {
        return Storable::No("status is not 200");
    }
    if headers.contains_key(SET_COOKIE) {
        return Storable::No("the answer sets a cookie");
    }
    if headers.contains_key(VARY) {
        // The key does not hold what Vary names, so one variant could reach everyone.
        return Storable::No("the answer varies by request headers");
    }
    let mut max_age = None;
    let mut s_maxage = None;
    for (name, value) in directives(headers) {
        match name.as_str() {
            "no-store" => return Storable::No("Cache-Control: no-store"),
            "no-cache" => return Storable::No("Cache-Control: no-cache"),
            "private" => return Storable::No("Cache-Control: private"),
            "max-age" => max_age = value.and_then(|v| v.parse::<u64>().ok()),
            "s-maxage" => s_maxage = value.and_then(|v| v.parse::<u64>().ok()),
            _ => {}
        }
    }
    match s_maxage.or(max_age).map(Duration::from_secs) {
        Some(d) if d.is_zero() => Storable::No("Cache-Control: max-age=0"),
        Some(d) => Storable::For(d.min(ttl)),
        None => Storable::For(ttl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const TTL: Duration = Duration::from_secs(5);

    #[test]
    fn a_plain_200_is_stored_for_the_ttl() {
        assert_eq!(response(200, &headers(&[]), TTL), Storable::For(TTL));
    }

    #[test]
    fn other_statuses_cookies_and_vary_are_not_stored() {
        for status in [201, 204, 206, 301, 404, 500, 503] {
            assert!(matches!(
                response(status, &headers(&[]), TTL),
                Storable::No(_)
            ));
        }
        let cookie = headers(&[("set-cookie", "s=1")]);
        assert!(matches!(response(200, &cookie, TTL), Storable::No(_)));
        let vary = headers(&[("vary", "accept-encoding")]);
        assert!(matches!(response(200, &vary, TTL), Storable::No(_)));
    }

    #[test]
    fn the_backend_can_refuse_or_shorten_but_not_lengthen() {
        for cc in [
            "no-store",
            "no-cache",
            "private",
            "max-age=0",
            "Public, No-Store",
        ] {
            let h = headers(&[("cache-control", cc)]);
            assert!(matches!(response(200, &h, TTL), Storable::No(_)), "{cc}");
        }
        let short = headers(&[("cache-control", "public, max-age=2")]);
        assert_eq!(
            response(200, &short, TTL),
            Storable::For(Duration::from_secs(2))
        );
        let long = headers(&[("cache-control", "max-age=3600")]);
        assert_eq!(response(200, &long, TTL), Storable::For(TTL));
        let shared = headers(&[("cache-control", "max-age=1, s-maxage=3")]);
        assert_eq!(
            response(200, &shared, TTL),
            Storable::For(Duration::from_secs(3))
        );
        let split = headers(&[("cache-control", "public"), ("cache-control", "no-store")]);
        assert!(matches!(response(200, &split, TTL), Storable::No(_)));
    }

    #[test]
    fn the_client_can_skip_the_lookup_or_the_cache_altogether() {
        assert_eq!(request(&headers(&[])), RequestDirectives::default());
        let no_store = request(&headers(&[("cache-control", "no-store")]));
        assert!(no_store.no_store && !no_store.no_cache);
        assert!(request(&headers(&[("cache-control", "no-cache")])).no_cache);
        assert!(request(&headers(&[("cache-control", "max-age=0")])).no_cache);
        assert!(request(&headers(&[("pragma", "no-cache")])).no_cache);
        assert!(!request(&headers(&[("cache-control", "max-age=60")])).no_cache);
    }
}
