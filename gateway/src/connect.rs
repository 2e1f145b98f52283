//! How to reach a backend, whoever asks (a client's request, a cache refresh, a health
//! check): its address, TLS (the pool's CA, client certificate and server name, from
//! `connect/tls.rs`) and the HTTP version (`protocol`: ALPN `h2` over TLS, HTTP/2 by prior
//! knowledge for `h2c`). No timeouts and no state of the pool: those are the caller's.

pub mod tls;

use crate::config::policy::Backend;
use crate::config::upstream::{Protocol, UpstreamTls};
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::upstreams::peer::ALPN;
use std::net::SocketAddr;
use tls::PoolTls;

/// Streams one HTTP/2 connection to a backend carries at once (Pingora's default is 1, which
/// would open a connection per concurrent request and defeat multiplexing; gRPC servers
/// commonly allow 100 or more).
pub const H2_STREAMS_PER_CONNECTION: usize = 100;

/// How to reach `addr`, without timeouts: in plaintext, or over TLS with the pool's
/// material of this moment and `server_name` (sent as SNI when it is a DNS name, and
/// checked against the certificate); HTTP/1.1, or HTTP/2 only (ALPN offers `h2` alone, so
/// a backend that speaks only HTTP/1.1 fails the handshake rather than get a gRPC call).
pub fn connect_peer(
    addr: SocketAddr,
    server_name: &str,
    protocol: Protocol,
    tls: Option<&PoolTls>,
) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, tls.is_some(), String::new());
    if protocol.is_h2() {
        peer.options.alpn = ALPN::H2;
        peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
    }
    // Connections of different protocols, CAs or client certificates are never shared.
    peer.group_key = protocol as u64;
    if let Some(t) = tls {
        let m = t.current();
        peer.sni = server_name.to_string();
        peer.options.ca = m.ca.clone();
        peer.client_cert_key = m.client.clone();
        peer.options.verify_cert = t.config.verify;
        peer.options.verify_hostname = t.config.verify;
        peer.group_key = m.group.wrapping_add(protocol as u64);
    }
    peer
}

/// Makes `req` (an HTTP/1.1-shaped head with a `Host`) an HTTP/2 request as the proxy
/// sends one: version 2, the URI in absolute form (`https` over TLS) with the `Host` as
/// its authority, and no `Host` header. Servers check `:scheme` and `:authority` (nginx
/// answers 400 to an `http` scheme on a TLS connection). For requests the gateway makes
/// itself: health checks and cache refreshes.
pub fn as_h2(req: &mut RequestHeader, tls: bool) -> pingora::Result<()> {
    let host = req.remove_header(&http::header::HOST);
    let authority = host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("");
    let path = req
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let scheme = if tls { "https" } else { "http" };
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| {
            pingora::Error::because(
                pingora::ErrorType::InvalidHTTPHeader,
                "an HTTP/2 request's URI",
                e,
            )
        })?;
    req.set_uri(uri);
    req.set_version(http::Version::HTTP_2);
    Ok(())
}

/// The name a pool with `tls` gives backend `b`: its `sni`, else the host name the backend
/// was resolved from, else its IP address (which rustls checks against the certificate's
/// IP names and does not send as SNI).
pub fn server_name(tls: &UpstreamTls, b: &Backend) -> String {
    match (&tls.sni, &b.host) {
        (Some(sni), _) => sni.clone(),
        (None, Some(host)) => host.strip_suffix('.').unwrap_or(host).to_string(),
        (None, None) => b.address.ip().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;
    use crate::config::policy::Backend;
    use std::num::NonZeroU32;
    use std::path::Path;

    fn tls(sni: Option<&str>) -> UpstreamTls {
        let text = "pools:\n  p:\n    backends:\n      - { address: 127.0.0.1:1 }\n    tls: {}\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    pool: p\n";
        let mut t = parse_policy(text, Path::new("p.yaml")).unwrap().pools["p"]
            .tls
            .clone()
            .unwrap();
        t.sni = sni.map(str::to_string);
        t
    }

    fn backend(address: &str, host: Option<&str>) -> Backend {
        Backend {
            address: address.parse().unwrap(),
            weight: NonZeroU32::MIN,
            host: host.map(str::to_string),
        }
    }

    #[test]
    fn the_server_name_is_the_sni_else_the_backends_name_else_its_address() {
        let by_name = backend("10.0.0.1:443", Some("db.internal."));
        let by_ip = backend("[::1]:443", None);
        assert_eq!(
            server_name(&tls(Some("api.example")), &by_name),
            "api.example"
        );
        assert_eq!(server_name(&tls(None), &by_name), "db.internal");
        assert_eq!(server_name(&tls(None), &by_ip), "::1");
    }

    #[test]
    fn a_plaintext_peer_is_http1_or_h2c_and_never_shares_connections_across_protocols() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let h1 = connect_peer(addr, "", Protocol::Http1, None);
        let h2c = connect_peer(addr, "", Protocol::H2c, None);
        assert!(!h1.is_tls() && !h2c.is_tls());
        assert_eq!(h1.options.alpn, ALPN::H1);
        assert_eq!(h2c.options.alpn, ALPN::H2);
        assert_eq!(h2c.options.max_h2_streams, H2_STREAMS_PER_CONNECTION);
        assert_ne!(h1.group_key, h2c.group_key);
        assert_eq!(h1.sni, "");
    }

    #[test]
    fn a_tls_peer_carries_the_name_the_material_and_verification() {
        let text = "pools:\n  p:\n    protocol: h2\n    backends:\n      - { address: 127.0.0.1:1 }\n    tls: { sni: db.internal }\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    pool: p\n";
        let policy = parse_policy(text, Path::new("p.yaml")).unwrap();
        let built = tls::TlsRegistry::default().build(&policy).unwrap();
        let pool_tls = &built["p"];
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let peer = connect_peer(addr, "db.internal", Protocol::H2, Some(pool_tls));
        assert!(peer.is_tls());
        assert_eq!(peer.sni, "db.internal");
        assert_eq!(peer.options.alpn, ALPN::H2);
        assert!(peer.options.verify_cert && peer.options.verify_hostname);
        assert!(peer.options.ca.is_none(), "the system's roots");
        assert_eq!(
            peer.group_key,
            pool_tls.current().group.wrapping_add(Protocol::H2 as u64)
        );
        let plain = connect_peer(addr, "", Protocol::H2c, None);
        assert_ne!(peer.group_key, plain.group_key);
    }

    #[test]
    fn a_request_made_for_http2_carries_scheme_and_authority_and_no_host() {
        let mut req = RequestHeader::build("GET", b"/ping?x=1", None).unwrap();
        req.insert_header("host", "db.internal:8443").unwrap();
        as_h2(&mut req, true).unwrap();
        assert_eq!(req.uri.to_string(), "https://db.internal:8443/ping?x=1");
        assert_eq!(req.version, http::Version::HTTP_2);
        assert!(req.headers.get("host").is_none());
    }
}
