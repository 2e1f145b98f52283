//! The PROXY protocol (issue 19): listeners with `proxy_protocol: true` take the client's
//! address from the v1 or v2 header a trusted balancer sends before the connection's first
//! byte, over plaintext and before a TLS handshake; a header from anyone else, or none from
//! a trusted balancer, closes the connection and is counted.
//!
//! Loopback accepts any 127/8 source address: the "balancer" connects from 127.0.0.2, the
//! only address in `trusted_proxies`, and a direct client from 127.0.0.1, so one gateway
//! sees both.

// Fixtures and assertions: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;
use tests::gateway::{GatewayBuilder, GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::{parse_answers, request, Response};
use tests::process::gateway_bin;
use tests::tls_client::TlsConn;
use tests::upstream::FakeUpstream;
use tests::wait::{eventually, patience};

const BALANCER: &str = "127.0.0.2";
const DIRECT: &str = "127.0.0.1";
const TRUSTED: &str = "[127.0.0.2/32]";

/// A pool of one recording upstream, a route `limited` (`/limited`, two requests per hour
/// per client address) and a route `open` for everything else.
fn policy(up: &FakeUpstream) -> String {
    format!(
        "rate_limits:
  per-client: {{ key: [client_ip], rate: 1/h, burst: 2 }}
pools:
  up:
    backends:
      - {{ address: {} }}
    {QUIET_HEALTH_CHECK}
routes:
  - name: limited
    match: {{ path_prefix: /limited }}
    pool: up
    rate_limit: [per-client]
  - name: open
    match: {{ path_prefix: / }}
    pool: up
",
        up.addr
    )
}

/// The gateway's plaintext listener `public` with the PROXY protocol from 127.0.0.2, and
/// these settings besides.
fn builder(up: &FakeUpstream, options: &[(&str, &str)]) -> GatewayBuilder {
    let mut b = GatewayProcess::builder(&policy(up))
        .listener_option("proxy_protocol", "true")
        .listener_option("trusted_proxies", TRUSTED);
    for (k, v) in options {
        b = b.listener_option(k, v);
    }
    b
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local = SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0);
    socket.bind(&SockAddr::from(local)).unwrap();
    socket
        .connect_timeout(&SockAddr::from(to), Duration::from_secs(2))
        .unwrap();
    let s: TcpStream = socket.into();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(patience())).unwrap();
    s
}

/// Everything the gateway sends until it closes the connection; `None` if it kept it open
/// past the patience.
fn read_to_close(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..1_000 {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A close with the client's bytes unread is a reset: closed all the same.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return Some(out)
            }
            Err(_) => return None,
        }
    }
    None
}

/// A request that closes its connection after the answer.
fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: gw.example\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// Sends `bytes` from `from` in one write and returns the one answer.
fn exchange(from: &str, to: SocketAddr, bytes: &[u8]) -> Response {
    let mut s = connect_from(from, to);
    s.write_all(bytes).unwrap();
    let raw = read_to_close(&mut s).expect("the gateway kept the connection open");
    parse_answers(&raw)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no answer: {:?}", String::from_utf8_lossy(&raw)))
}

/// Sends `bytes` from `from`; asserts the gateway closes the connection without a byte.
fn assert_closed(from: &str, to: SocketAddr, bytes: &[u8]) {
    let mut s = connect_from(from, to);
    // The gateway may close before it has read everything.
    let _ = s.write_all(bytes);
    let raw = read_to_close(&mut s).expect("the gateway kept the connection open");
    assert!(
        raw.is_empty(),
        "answered {:?} to {:?}",
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(bytes)
    );
}

fn v1(source: &str, destination: &str, ports: (u16, u16)) -> Vec<u8> {
    let family = if source.contains(':') { "TCP6" } else { "TCP4" };
    format!(
        "PROXY {family} {source} {destination} {} {}\r\n",
        ports.0, ports.1
    )
    .into_bytes()
}

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: PROXY over TCP from `source` to `destination` (both IPv4 or both IPv6),
/// with a NOOP TLV as balancers add TLVs.
fn v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (family, mut payload) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (0x11, [s.octets(), d.octets()].concat()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (0x21, [s.octets(), d.octets()].concat()),
        _ => panic!("mixed families"),
    };
    payload.extend(source.port().to_be_bytes());
    payload.extend(destination.port().to_be_bytes());
    payload.extend([0x04, 0x00, 0x03, 1, 2, 3]);
    v2_raw(0x21, family, &payload)
}

fn v2_raw(version_command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend([version_command, family]);
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend(payload);
    h
}

/// `gateway_proxy_protocol_refused_total{listener,reason}`.
fn refused(gw: &GatewayProcess, listener: &str, reason: &str) -> u64 {
    let needle = format!(
        "gateway_proxy_protocol_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}} "
    );
    let text = request("GET", &format!("{}/metrics", gw.admin_url()), &[], None)
        .unwrap()
        .body;
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the counter reaches `want` (a refusal is counted as the connection closes).
fn assert_refused(gw: &GatewayProcess, listener: &str, reason: &str, want: u64) {
    eventually(&format!("{listener} {reason} = {want}"), |last| {
        let n = refused(gw, listener, reason);
        *last = n.to_string();
        Ok((n == want).then_some(()))
    })
    .unwrap();
}

#[test]
fn a_trusted_balancer_names_the_client_in_v1_and_v2_and_the_upstream_sees_that_address() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = builder(&up, &[]).start().unwrap();
    let spoof = "X-Forwarded-For: 6.6.6.6\r\n";

    // v1, the request in the same segment: its own X-Forwarded-For is the client's claim.
    let bytes = [
        v1("203.0.113.7", "198.51.100.1", (51000, 443)),
        get("/a", spoof),
    ]
    .concat();
    assert_eq!(exchange(BALANCER, gw.addr, &bytes).status, 200);
    let seen = up.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7"),
        "{seen:?}"
    );
    // The port the client reached on the balancer.
    assert_eq!(seen.header("x-forwarded-port"), Some("443"), "{seen:?}");

    // v2 over IPv6.
    let header = v2(
        "[2001:db8::7]:51000".parse().unwrap(),
        "[2001:db8::1]:8443".parse().unwrap(),
    );
    let bytes = [header, get("/b", spoof)].concat();
    assert_eq!(exchange(BALANCER, gw.addr, &bytes).status, 200);
    let seen = up.last_request().unwrap();
    assert_eq!(seen.path, "/b");
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("2001:db8::7"),
        "{seen:?}"
    );
    assert_eq!(seen.header("x-forwarded-port"), Some("8443"));

    // A client the header names that is itself a trusted proxy: its X-Forwarded-For is
    // believed, as from a proxy connected directly.
    let bytes = [v1(BALANCER, "198.51.100.1", (51000, 443)), get("/c", spoof)].concat();
    assert_eq!(exchange(BALANCER, gw.addr, &bytes).status, 200);
    let seen = up.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("6.6.6.6, 127.0.0.2"));
}

#[test]
fn a_rate_limit_by_client_ip_keys_on_the_address_the_header_gives() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = builder(&up, &[]).start().unwrap();
    let from = |client: &str| {
        let bytes = [v1(client, "198.51.100.1", (40000, 80)), get("/limited", "")].concat();
        exchange(BALANCER, gw.addr, &bytes).status
    };
    // Every connection comes from the balancer: two for 203.0.113.7, then its limit.
    assert_eq!(
        [
            from("203.0.113.7"),
            from("203.0.113.7"),
            from("203.0.113.7")
        ],
        [200, 200, 429]
    );
    // Another client behind the same balancer has its own bucket.
    assert_eq!(from("203.0.113.8"), 200);
    assert_eq!(up.requests_for("/limited"), 3);
}

#[test]
fn a_header_from_a_peer_that_is_not_trusted_closes_the_connection_and_is_counted() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = builder(&up, &[]).start().unwrap();
    let v1_header = v1("203.0.113.7", "198.51.100.1", (51000, 80));
    assert_closed(DIRECT, gw.addr, &[v1_header, get("/spoofed", "")].concat());
    assert_refused(&gw, "public", "untrusted", 1);
    let v2_header = v2(
        "203.0.113.7:51000".parse().unwrap(),
        "198.51.100.1:80".parse().unwrap(),
    );
    assert_closed(DIRECT, gw.addr, &[v2_header, get("/spoofed", "")].concat());
    assert_refused(&gw, "public", "untrusted", 2);
    assert_eq!(up.requests_for("/spoofed"), 0);

    // The same peer without a header is served as its own client.
    let r = exchange(
        DIRECT,
        gw.addr,
        &get("/direct", "X-Forwarded-For: 6.6.6.6\r\n"),
    );
    assert_eq!(r.status, 200);
    let seen = up.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{seen:?}"
    );
    assert_eq!(refused(&gw, "public", "untrusted"), 2);
}

#[test]
fn a_trusted_peer_without_a_valid_header_is_closed_with_the_reason_counted() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = builder(&up, &[("request_head_timeout", "1s")])
        .start()
        .unwrap();
    // No header at all.
    assert_closed(BALANCER, gw.addr, &get("/none", ""));
    assert_refused(&gw, "public", "missing", 1);
    // A v1 line with a port out of range.
    let bad = b"PROXY TCP4 203.0.113.7 198.51.100.1 51000 99999\r\n";
    assert_closed(BALANCER, gw.addr, &[&bad[..], &get("/bad", "")].concat());
    assert_refused(&gw, "public", "malformed", 1);
    // A v2 header announcing 60 000 bytes of TLVs: refused on its first 16.
    let mut long = V2_SIGNATURE.to_vec();
    long.extend([0x21, 0x11]);
    long.extend(60_000u16.to_be_bytes());
    assert_closed(BALANCER, gw.addr, &long);
    assert_refused(&gw, "public", "too_long", 1);
    // Half a header, then nothing: cut at the listener's request_head_timeout.
    assert_closed(BALANCER, gw.addr, b"PROXY TCP4 203.0.113.7 ");
    assert_refused(&gw, "public", "timeout", 1);
    // Only the pool's health check reached the upstream.
    let recorded = up.recorded();
    assert!(recorded.iter().all(|r| r.path == "/ping"), "{recorded:?}");
}

#[test]
fn local_and_unknown_headers_keep_the_balancer_as_the_client() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = builder(&up, &[]).start().unwrap();
    // v2 LOCAL: the balancer's own health check.
    let local = v2_raw(0x20, 0x00, &[]);
    for header in [local, b"PROXY UNKNOWN\r\n".to_vec()] {
        let r = exchange(BALANCER, gw.addr, &[header, get("/health", "")].concat());
        assert_eq!(r.status, 200);
        let seen = up.last_request().unwrap();
        assert_eq!(
            seen.header("x-forwarded-for"),
            Some("127.0.0.2"),
            "{seen:?}"
        );
    }
}

#[test]
fn a_header_split_across_segments_is_read_whole_and_the_request_after_it_is_intact() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = builder(&up, &[]).start().unwrap();
    let v2_header = v2(
        "203.0.113.9:51000".parse().unwrap(),
        "198.51.100.1:80".parse().unwrap(),
    );
    for header in [v1("203.0.113.8", "198.51.100.1", (51000, 80)), v2_header] {
        let mut s = connect_from(BALANCER, gw.addr);
        // The signature, the rest of the header and the request each in their own
        // segments: the sender pauses between writes (Nagle is off) so they arrive apart.
        let bytes = [header.clone(), get("/split", "")].concat();
        for piece in [
            &bytes[..3],
            &bytes[3..9],
            &bytes[9..header.len() - 1],
            &bytes[header.len() - 1..header.len() + 5],
            &bytes[header.len() + 5..],
        ] {
            s.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        let raw = read_to_close(&mut s).unwrap();
        let answers = parse_answers(&raw);
        assert_eq!(answers.first().map(|a| a.status), Some(200), "{raw:?}");
        let seen = up.last_request().unwrap();
        assert_eq!(seen.path, "/split");
        let want = if header.starts_with(b"PROXY") {
            "203.0.113.8"
        } else {
            "203.0.113.9"
        };
        assert_eq!(seen.header("x-forwarded-for"), Some(want));
    }
}

#[test]
fn a_tls_listener_takes_the_header_before_the_handshake() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = GatewayProcess::builder(&policy(&up))
        .tls()
        .tls_listener_option("proxy_protocol", "true")
        .tls_listener_option("trusted_proxies", TRUSTED)
        .start()
        .unwrap();
    let tls = gw.tls_addr.unwrap();
    let ca = gw.ca_path();

    // The balancer: v2, then the client's handshake.
    let mut tcp = connect_from(BALANCER, tls);
    let header = v2(
        "203.0.113.10:51000".parse().unwrap(),
        "198.51.100.1:443".parse().unwrap(),
    );
    tcp.write_all(&header).unwrap();
    let mut conn = TlsConn::over(tcp, &ca, None).unwrap();
    let (status, _, _) = conn.get("/secure").unwrap();
    assert_eq!(status, 200);
    let seen = up.last_request().unwrap();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.10"),
        "{seen:?}"
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));

    // A direct client: served without a header, closed with one.
    let mut conn = TlsConn::over(connect_from(DIRECT, tls), &ca, None).unwrap();
    assert_eq!(conn.get("/direct").unwrap().0, 200);
    let seen = up.last_request().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    let mut tcp = connect_from(DIRECT, tls);
    tcp.write_all(&v1("203.0.113.10", "198.51.100.1", (51000, 443)))
        .unwrap();
    assert!(TlsConn::over(tcp, &ca, None).is_err());
    assert_refused(&gw, "secure", "untrusted", 1);
    // The balancer must send one.
    assert!(TlsConn::over(connect_from(BALANCER, tls), &ca, None).is_err());
    assert_refused(&gw, "secure", "missing", 1);
}

#[test]
fn connections_per_client_are_counted_for_the_client_the_header_names() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = builder(&up, &[("max_connections_per_client", "1")])
        .start()
        .unwrap();
    let keep = |client: &str| {
        let mut s = connect_from(BALANCER, gw.addr);
        let head = b"GET /kept HTTP/1.1\r\nHost: gw.example\r\n\r\n";
        s.write_all(&[&v1(client, "198.51.100.1", (40000, 80))[..], head].concat())
            .unwrap();
        // Keep-alive: read until one whole answer, leaving the connection open.
        let mut raw = Vec::new();
        let mut buf = [0u8; 1024];
        for _ in 0..100 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed: {raw:?}");
            raw.extend_from_slice(&buf[..n]);
            if let Some(a) = parse_answers(&raw).first() {
                if a.body.len() == 2 {
                    return (s, Some(a.status));
                }
            }
        }
        (s, None)
    };
    // One connection held open for 203.0.113.7 ...
    let (_held, status) = keep("203.0.113.7");
    assert_eq!(status, Some(200));
    // ... does not use up the balancer's place: another client behind it is served ...
    let (_other, status) = keep("203.0.113.8");
    assert_eq!(status, Some(200));
    // ... and a second one for the same client is refused.
    let bytes = [
        v1("203.0.113.7", "198.51.100.1", (40001, 80)),
        get("/second", ""),
    ]
    .concat();
    assert_eq!(exchange(BALANCER, gw.addr, &bytes).status, 503);
}

#[test]
fn gateway_check_refuses_proxy_protocol_without_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.yaml");
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        &cfg,
        "listeners:\n  - name: public\n    address: 127.0.0.1:8080\n    proxy_protocol: true\nadmin: { address: 127.0.0.1:9090 }\npolicies: policies/\n",
    )
    .unwrap();
    let out = std::process::Command::new(gateway_bin().unwrap())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let want = format!(
        "{}:4:21: listeners[0].proxy_protocol: needs trusted_proxies",
        Path::new(&cfg).display()
    );
    assert!(text.contains(&want), "missing {want:?} in\n{text}");
}
