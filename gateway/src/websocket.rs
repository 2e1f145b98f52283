//! WebSocket upgrades: which requests ask to switch protocols, whether their route takes
//! them, the timeouts of an upgraded connection, and its count while it lasts.
//!
//! ```text
//! HTTP/1.1 + Upgrade ─▶ websocket: route has `websocket:` ─ yes ─▶ Tunnel (handshake to a backend)
//!                                                        └ no ──▶ 403, no backend sees it
//!                     h2c:       the Upgrade is dropped, a plain request (as Envoy, nginx)
//!                     other:     403
//! backend answers 101 ─▶ Tunnel::opened: counted open; bytes pass both ways until a side
//!                        closes or none passes for the idle timeout
//! ```
//!
//! What counts as an upgrade request is what Pingora counts (`is_upgrade_req`: HTTP/1.1
//! with an `Upgrade` header), so no request the gateway took for a plain one can be
//! switched by the backend's 101. Pingora does the switching: after a 101 the connection's
//! bytes are a close-delimited body each way, and the connection is never reused for
//! another request (`connection.rs` leaves its keep-alive loop).
//!
//! Timeouts: an upgrade request's waits at its backend (the handshake's answer, then every
//! read and write) and the client's reads are the route's idle timeout instead of its
//! request timeout. Each read's timer restarts whenever bytes pass the other way too (the
//! proxy's loop polls both directions afresh), so a connection busy in one direction only
//! is not cut; one silent both ways for the idle timeout is.

use crate::config::policy::Route;
use crate::config::websocket::WebSocketRoute;
use crate::metrics::Metrics;
use http::header::UPGRADE;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::v1::common::is_upgrade_req;
use prometheus::IntGauge;
use std::time::{Duration, Instant};

/// The most of a refused protocol name that a refusal repeats.
const MAX_NAMED: usize = 64;

/// What a request's `Upgrade` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Not an upgrade request (no `Upgrade`, or not HTTP/1.1, whose `Upgrade` is ignored).
    Nothing,
    /// `Upgrade: websocket`, alone.
    WebSocket,
    /// `Upgrade: h2c`: cleartext HTTP/2, which clients offer on a plain request and the
    /// gateway does not take (it speaks h2c by prior knowledge only).
    H2c,
    /// Anything else, as written (cut at 64 bytes).
    Other(String),
}

/// What a request's `Upgrade` asks for, read as Pingora reads it: a request is an upgrade
/// exactly when Pingora would switch it on a 101. One `Upgrade` header naming one protocol
/// is a WebSocket or h2c; two headers, or a list, are something else.
pub fn asked(req: &RequestHeader) -> Asked {
    if !is_upgrade_req(req) {
        return Asked::Nothing;
    }
    let mut values = req.headers.get_all(UPGRADE).iter();
    let (first, more) = (values.next(), values.next().is_some());
    match first.map(|v| v.as_bytes()) {
        Some(v) if !more && v.eq_ignore_ascii_case(b"websocket") => Asked::WebSocket,
        Some(v) if !more && v.eq_ignore_ascii_case(b"h2c") => Asked::H2c,
        Some(v) => {
            let named = String::from_utf8_lossy(&v[..v.len().min(MAX_NAMED)]).into_owned();
            Asked::Other(if more { format!("{named}, ...") } else { named })
        }
        None => Asked::Nothing,
    }
}

/// An upgrade the route does not take: 403, as Envoy answers an upgrade type a route is
/// not configured for. The request never reaches a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route} does not take upgrades to {protocol}")]
pub struct NotAllowed {
    pub route: String,
    pub protocol: String,
}

/// The upgrade step: `Ok(None)` for a plain request (an h2c offer is dropped from it),
/// `Ok(Some(tunnel))` for a WebSocket handshake the route takes, or the refusal (a
/// WebSocket one counted with the route's handshakes).
pub fn check(
    req: &mut RequestHeader,
    route: &Route,
    metrics: &Metrics,
) -> Result<Option<Tunnel>, NotAllowed> {
    let refused = |protocol: &str| NotAllowed {
        route: route.name.clone(),
        protocol: protocol.to_string(),
    };
    match asked(req) {
        Asked::Nothing => Ok(None),
        Asked::H2c => {
            // Served as the plain request it also is; `HTTP2-Settings` went with the
            // `Connection` that named it (`normalize::headers`).
            req.remove_header(&UPGRADE);
            Ok(None)
        }
        Asked::WebSocket => match route.websocket {
            Some(ws) => Ok(Some(Tunnel::new(ws))),
            None => {
                metrics.websocket_upgrade(&route.name, "refused");
                Err(refused("websocket"))
            }
        },
        Asked::Other(protocol) => Err(refused(&protocol)),
    }
}

/// A WebSocket handshake on a route that takes it, then the upgraded connection: its
/// timeouts, and its count in `gateway_websocket_connections` while it is open.
#[derive(Debug)]
pub struct Tunnel {
    idle_timeout: Duration,
    open: Option<Open>,
}

/// An upgraded connection, counted open until dropped (with the request's context,
/// however the connection ends).
#[derive(Debug)]
struct Open {
    gauge: IntGauge,
    since: Instant,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Tunnel {
    pub fn new(route: WebSocketRoute) -> Tunnel {
        Tunnel {
            idle_timeout: route.idle_timeout,
            open: None,
        }
    }

    /// How long the connection may pass no byte either way.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Gives a try at a backend the tunnel's timeouts: its reads and writes wait up to the
    /// idle timeout (the connect keeps the route's connect timeout).
    pub fn apply(&self, peer: &mut HttpPeer) {
        peer.options.read_timeout = Some(self.idle_timeout);
        peer.options.write_timeout = Some(self.idle_timeout);
    }

    /// The backend switched protocols: the connection is counted open from `now` until the
    /// request ends. Once only.
    pub fn opened(&mut self, metrics: &Metrics, route: &str, now: Instant) {
        if self.open.is_some() {
            return;
        }
        metrics.websocket_upgrade(route, "upgraded");
        let gauge = metrics.websocket_connections(route);
        gauge.inc();
        self.open = Some(Open { gauge, since: now });
    }

    /// When the backend switched protocols, if it did.
    pub fn opened_at(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.since)
    }

    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The request is over: a handshake that never switched (the backend answered
    /// otherwise, or no backend answered) is counted as failed.
    pub fn ended(&self, metrics: &Metrics, route: &str) {
        if self.open.is_none() {
            metrics.websocket_upgrade(route, "failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;
    use std::path::Path;

    fn request(version: http::Version, upgrades: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/ws", None).unwrap();
        r.set_version(version);
        r.insert_header("host", "h").unwrap();
        r.insert_header("connection", "upgrade").unwrap();
        for u in upgrades {
            r.append_header("upgrade", *u).unwrap();
        }
        r
    }

    fn route(websocket: &str) -> Route {
        let text = format!(
            "pools:\n  p:\n    backends:\n      - {{ address: 127.0.0.1:1 }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n{websocket}"
        );
        let mut policy = parse_policy(&text, Path::new("p.yaml")).unwrap();
        policy.routes.remove(0)
    }

    #[test]
    fn an_upgrade_request_is_what_pingora_switches_on_a_101() {
        const HTTP_10: http::Version = http::Version::HTTP_10;
        const HTTP_11: http::Version = http::Version::HTTP_11;
        let cases: [(http::Version, &[&str], Asked); 7] = [
            (HTTP_11, &["websocket"], Asked::WebSocket),
            (HTTP_11, &["WebSocket"], Asked::WebSocket),
            (HTTP_11, &["h2c"], Asked::H2c),
            (HTTP_11, &[], Asked::Nothing),
            // HTTP/1.0 cannot upgrade (RFC 9110 §7.8): its Upgrade is ignored.
            (HTTP_10, &["websocket"], Asked::Nothing),
            (
                HTTP_11,
                &["websocket, foo"],
                Asked::Other("websocket, foo".into()),
            ),
            (
                HTTP_11,
                &["websocket", "websocket"],
                Asked::Other("websocket, ...".into()),
            ),
        ];
        for (version, upgrades, expected) in cases {
            let r = request(version, upgrades);
            assert_eq!(asked(&r), expected, "{version:?} {upgrades:?}");
            assert_eq!(
                is_upgrade_req(&r),
                expected != Asked::Nothing,
                "{version:?} {upgrades:?}: Pingora disagrees"
            );
        }
    }

    #[test]
    fn a_websocket_handshake_passes_only_where_the_route_takes_it() {
        let m = Metrics::new().unwrap();
        let mut r = request(http::Version::HTTP_11, &["websocket"]);
        let open = route("    websocket: { idle_timeout: 5m }\n");
        let tunnel = check(&mut r, &open, &m).unwrap().unwrap();
        assert_eq!(tunnel.idle_timeout(), Duration::from_secs(300));
        let closed = route("");
        assert_eq!(
            check(&mut r, &closed, &m).unwrap_err().to_string(),
            "route r does not take upgrades to websocket"
        );
        let mut other = request(http::Version::HTTP_11, &["TLS/1.0"]);
        assert_eq!(
            check(&mut other, &open, &m).unwrap_err().to_string(),
            "route r does not take upgrades to TLS/1.0"
        );
        let text = m.render().unwrap();
        assert!(
            text.contains("gateway_websocket_upgrades_total{result=\"refused\",route=\"r\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn an_h2c_offer_is_dropped_and_the_request_served_plain() {
        let mut r = request(http::Version::HTTP_11, &["h2c"]);
        let m = Metrics::new().unwrap();
        assert!(check(&mut r, &route(""), &m).unwrap().is_none());
        assert!(r.headers.get("upgrade").is_none());
        assert!(!is_upgrade_req(&r), "no longer an upgrade for Pingora");
    }

    #[test]
    fn a_refused_protocol_is_named_at_most_64_bytes_long() {
        let long = "x".repeat(500);
        let r = request(http::Version::HTTP_11, &[&long]);
        assert_eq!(asked(&r), Asked::Other("x".repeat(64)));
    }

    #[test]
    fn an_open_tunnel_is_counted_until_dropped_and_a_failed_one_once() {
        let metrics = Metrics::new().unwrap();
        let ws = WebSocketRoute {
            idle_timeout: Duration::from_secs(7),
        };
        let mut peer = HttpPeer::new("127.0.0.1:1", false, String::new());
        let mut t = Tunnel::new(ws);
        t.apply(&mut peer);
        assert_eq!(peer.options.read_timeout, Some(Duration::from_secs(7)));
        assert_eq!(peer.options.write_timeout, Some(Duration::from_secs(7)));
        let now = crate::clock::ManualClock::new();
        let now = crate::clock::Clock::now(&now);
        t.opened(&metrics, "ws", now);
        t.opened(&metrics, "ws", now);
        let text = metrics.render().unwrap();
        assert!(
            text.contains("gateway_websocket_connections{route=\"ws\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gateway_websocket_upgrades_total{result=\"upgraded\",route=\"ws\"} 1")
        );
        t.ended(&metrics, "ws");
        drop(t);
        let failed = Tunnel::new(ws);
        failed.ended(&metrics, "ws");
        let text = metrics.render().unwrap();
        assert!(text.contains("gateway_websocket_connections{route=\"ws\"} 0"));
        assert!(text.contains("gateway_websocket_upgrades_total{result=\"failed\",route=\"ws\"} 1"));
    }
}
