//! The forwarding headers a backend receives: who the client is (`X-Forwarded-For`, the
//! client's address appended to what earlier proxies wrote) and how it came in
//! (`X-Forwarded-Proto`).

use http::HeaderValue;
use std::fmt::Write;
use std::net::IpAddr;

pub const FOR: &str = "x-forwarded-for";
pub const PROTO: &str = "x-forwarded-proto";

/// `X-Forwarded-For` for the backend: `previous, client`, or `client` alone.
pub fn for_value(previous: Option<&HeaderValue>, client: IpAddr) -> String {
    let mut out = String::with_capacity(64);
    if let Some(prev) = previous
        .map(HeaderValue::as_bytes)
        .filter(|p| !p.is_empty())
    {
        out.push_str(&String::from_utf8_lossy(prev));
        out.push_str(", ");
    }
    let _ = write!(out, "{client}");
    out
}

/// `X-Forwarded-Proto` for the backend.
pub fn proto_value(tls: bool) -> HeaderValue {
    HeaderValue::from_static(if tls { "https" } else { "http" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_appended_to_what_earlier_proxies_wrote() {
        let client: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(for_value(None, client), "10.0.0.7");
        let prev = HeaderValue::from_static("203.0.113.1");
        assert_eq!(for_value(Some(&prev), client), "203.0.113.1, 10.0.0.7");
        let empty = HeaderValue::from_static("");
        assert_eq!(for_value(Some(&empty), "::1".parse().unwrap()), "::1");
        assert_eq!(proto_value(true), "https");
    }
}
