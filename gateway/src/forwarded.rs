//! Who the client is, and the forwarding headers a backend receives about it.
//!
//! Behind proxies the listener trusts (`trusted_proxies`), the client is the rightmost
//! address of `X-Forwarded-For` that is not one of them (nginx's `real_ip_recursive`,
//! Envoy's trusted hops), and the backend gets that header with the proxy appended. From
//! anyone else the header is the caller's own claim: it is dropped, the client is the TCP
//! peer, and the backend's `X-Forwarded-For` holds that address alone, so nobody can make
//! the gateway (its rate limits, its logs) or the backend believe another address.
//! `X-Forwarded-Proto`, `-Host` and `-Port` say how the request came in.

use crate::config::hardening::TrustedProxies;
use http::HeaderValue;
use std::fmt::Write;
use std::net::IpAddr;

pub const FOR: &str = "x-forwarded-for";
pub const PROTO: &str = "x-forwarded-proto";
pub const HOST: &str = "x-forwarded-host";
pub const PORT: &str = "x-forwarded-port";

/// The addresses of an `X-Forwarded-For` value, rightmost first; `None` for an entry that
/// is not an address (the walk stops there).
fn hops(value: &HeaderValue) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    value
        .to_str()
        .unwrap_or("")
        .rsplit(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| h.parse::<IpAddr>().ok())
}

/// The client of a request from `peer` whose `X-Forwarded-For` is `forwarded`.
pub fn client(peer: IpAddr, forwarded: Option<&HeaderValue>, trusted: &TrustedProxies) -> IpAddr {
    if !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded.into_iter().flat_map(hops) {
        match hop {
            Some(ip) => {
                client = ip;
                if !trusted.contains(ip) {
                    break;
                }
            }
            // Garbage: what lies left of it cannot be believed.
            None => break,
        }
    }
    client
}

/// `X-Forwarded-For` for the backend: from a trusted proxy, `previous, peer`; from anyone
/// else, `peer` alone.
pub fn for_value(previous: Option<&HeaderValue>, peer: IpAddr, trusted: &TrustedProxies) -> String {
    let mut out = String::with_capacity(64);
    if let Some(prev) = previous
        .filter(|_| trusted.contains(peer))
        .map(HeaderValue::as_bytes)
        .filter(|p| !p.is_empty())
    {
        out.push_str(&String::from_utf8_lossy(prev));
        out.push_str(", ");
    }
    let _ = write!(out, "{peer}");
    out
}

/// `X-Forwarded-Proto` for the backend.
pub fn proto_value(tls: bool) -> HeaderValue {
    HeaderValue::from_static(if tls { "https" } else { "http" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn a_trusted_proxy_has_the_peer_appended_anyone_else_is_alone() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let prev = HeaderValue::from_static("203.0.113.1");
        let proxy: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(
            for_value(Some(&prev), proxy, &proxies),
            "203.0.113.1, 10.0.0.7"
        );
        let caller: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(for_value(Some(&prev), caller, &proxies), "198.51.100.9");
        assert_eq!(for_value(None, proxy, &proxies), "10.0.0.7");
        let empty = HeaderValue::from_static("");
        assert_eq!(
            for_value(Some(&empty), "::1".parse().unwrap(), &proxies),
            "::1"
        );
        assert_eq!(proto_value(true), "https");
    }

    #[test]
    fn the_client_is_the_rightmost_address_not_trusted() {
        let proxies = trusted(&["10.0.0.0/8", "192.0.2.1/32"]);
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let xff = HeaderValue::from_static("6.6.6.6, 203.0.113.5, 192.0.2.1");
        assert_eq!(
            client(peer, Some(&xff), &proxies),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        // From an untrusted peer the header is not believed.
        let caller: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(client(caller, Some(&xff), &proxies), caller);
        // Garbage stops the walk at the last address believed.
        let junk = HeaderValue::from_static("6.6.6.6, junk, 10.2.2.2");
        assert_eq!(
            client(peer, Some(&junk), &proxies),
            "10.2.2.2".parse::<IpAddr>().unwrap()
        );
        // No header: the trusted peer itself.
        assert_eq!(client(peer, None, &proxies), peer);
        // An IPv4-mapped IPv6 peer matches an IPv4 range.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            client(mapped, Some(&xff), &proxies),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
    }
}
