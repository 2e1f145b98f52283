//! What ties a request to a backend: the hash key of `ring_hash` and `maglev`, and the
//! sticky-session cookie. Pure: the proxy hands in what it knows of the request.
//!
//! A sticky cookie's value names a backend without showing its address: 16 hex digits of
//! the hash of the pool's name and the backend's address. The same on every gateway and
//! across restarts, so a client keeps its backend behind any gateway of a fleet; a value
//! naming no backend of the pool (it left, or the cookie is forged) is ignored.

use super::ring_hash::key_hash;
use crate::config::resilience::HashKey;
use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// What a request offers to hash.
#[derive(Debug, Clone, Copy)]
pub struct RequestKeys<'a> {
    pub identity: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    pub headers: &'a HeaderMap,
}

/// The request's hash under `key`; `None` when the request does not carry it (no such
/// header, an anonymous caller): the pool then picks at random.
pub fn hash_of(key: &HashKey, r: &RequestKeys<'_>) -> Option<u64> {
    match key {
        HashKey::ClientIp => r.client_ip.map(|ip| key_hash(ip.to_string().as_bytes())),
        HashKey::Identity => r.identity.map(|s| key_hash(s.as_bytes())),
        HashKey::Tenant => r.tenant.map(|s| key_hash(s.as_bytes())),
        HashKey::Header(h) => r.headers.get(h).map(|v| key_hash(v.as_bytes())),
        HashKey::Cookie(c) => cookie(r.headers, c).map(|v| key_hash(v.as_bytes())),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (the first, if repeated).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// The sticky-cookie value that names `address` in `pool`.
pub fn sticky_token(pool: &str, address: SocketAddr) -> u64 {
    key_hash(format!("{pool}\0{address}").as_bytes())
}

/// The token as the cookie carries it.
pub fn format_token(token: u64) -> String {
    format!("{token:016x}")
}

/// A cookie's token, if it is one.
pub fn parse_token(value: &str) -> Option<u64> {
    (value.len() == 16)
        .then(|| u64::from_str_radix(value, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_cookie_is_found_among_others_and_in_a_second_header() {
        let h = headers(&[("cookie", "a=1; gw=xyz ;b=2"), ("cookie", "c=\"3\"")]);
        assert_eq!(cookie(&h, "gw"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "g"), None, "no prefix match");
    }

    #[test]
    fn keys_hash_what_they_name_and_nothing_when_absent() {
        let h = headers(&[("x-user", "ann"), ("cookie", "sid=ann")]);
        let r = RequestKeys {
            identity: Some("ann"),
            tenant: None,
            client_ip: Some("10.0.0.1".parse().unwrap()),
            headers: &h,
        };
        let ann = key_hash(b"ann");
        assert_eq!(hash_of(&HashKey::Identity, &r), Some(ann));
        assert_eq!(
            hash_of(
                &HashKey::Header(http::HeaderName::from_static("x-user")),
                &r
            ),
            Some(ann)
        );
        assert_eq!(hash_of(&HashKey::Cookie("sid".into()), &r), Some(ann));
        assert_eq!(hash_of(&HashKey::Tenant, &r), None);
        assert_eq!(hash_of(&HashKey::ClientIp, &r), Some(key_hash(b"10.0.0.1")));
    }

    #[test]
    fn a_sticky_token_round_trips_and_differs_by_pool_and_address() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let t = sticky_token("p", a);
        assert_eq!(parse_token(&format_token(t)), Some(t));
        assert_ne!(t, sticky_token("p", b));
        assert_ne!(t, sticky_token("q", a));
        assert_eq!(parse_token("zz"), None);
        assert_eq!(parse_token("0123456789abcdefg"), None);
    }
}
