//! Active health checks: one probe of a backend (`GET <path>`, any 2xx within the timeout;
//! or, with `grpc_service`, the gRPC health service's `Check` answering SERVING), made the
//! way requests reach it: over TLS with the pool's CA, client certificate and
//! server name when the pool has `tls`, in HTTP/2 when its protocol is `h2` or `h2c`
//! (`connect::connect_peer`). Each probe opens a new connection, so a backend that stopped
//! accepting them is seen. The threads that probe every backend each interval are the
//! reloader's (`reload/checkers.rs`), which starts and stops them as backends come and go.

use crate::config::policy::HealthCheck;
use crate::config::upstream::Protocol;
use crate::connect::{self, tls::PoolTls};
use crate::health::grpc;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use std::net::SocketAddr;
use std::sync::Arc;

/// The client of every health check: Pingora's connector, one for all checkers (its
/// TLS context holds the system's roots, read once). Nothing is pooled in it: each probe's
/// connection is dropped after its answer, so the checkers' runtimes share no connection.
pub struct Prober(Connector);

impl Prober {
    pub fn new() -> Prober {
        Prober(Connector::new(None))
    }
}

impl Default for Prober {
    fn default() -> Self {
        Prober::new()
    }
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prober")
    }
}

/// A backend as a checker reaches it.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: SocketAddr,
    /// The `Host` of a probe: the backend's name and port when it has a name, else its
    /// address.
    pub authority: String,
    /// The TLS server name (empty without TLS).
    pub server_name: String,
    pub protocol: Protocol,
    pub tls: Option<Arc<PoolTls>>,
}

impl PartialEq for Target {
    /// The same backend reached the same way (the same TLS settings, whose material may
    /// have been reloaded since).
    fn eq(&self, other: &Self) -> bool {
        self.address == other.address
            && self.authority == other.authority
            && self.server_name == other.server_name
            && self.protocol == other.protocol
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// One check of `target`: `Ok` on any 2xx answer within the timeout (for a gRPC check,
/// an answer of `grpc-status` 0 saying SERVING), else why not.
pub async fn probe(prober: &Prober, target: &Target, check: &HealthCheck) -> Result<(), String> {
    let connector = &prober.0;
    let mut peer = connect::connect_peer(
        target.address,
        &target.server_name,
        target.protocol,
        target.tls.as_deref(),
    );
    peer.options.connection_timeout = Some(check.timeout);
    peer.options.total_connection_timeout = Some(check.timeout);
    peer.options.read_timeout = Some(check.timeout);
    peer.options.write_timeout = Some(check.timeout);
    // A connection of its own, never kept for the next probe.
    peer.options.max_h2_streams = 1;
    let answer = async {
        let (mut session, _) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &check.grpc_service {
            None => http_check(&mut session, target, check).await,
            Some(service) => grpc_check(&mut session, target, service).await,
        }
    };
    tokio::time::timeout(check.timeout, answer)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", check.timeout)))
}

/// The head of a probe: `method path` with the target's `Host`, made HTTP/2 for an
/// HTTP/2 pool.
fn head(method: &str, path: &str, target: &Target) -> Result<RequestHeader, String> {
    let mut req = RequestHeader::build(method, path.as_bytes(), None).map_err(|e| e.to_string())?;
    req.insert_header(http::header::HOST, target.authority.as_str())
        .map_err(|e| e.to_string())?;
    if target.protocol.is_h2() {
        connect::as_h2(&mut req, target.tls.is_some()).map_err(|e| e.to_string())?;
    }
    Ok(req)
}

/// `GET path`: any 2xx passes.
async fn http_check(
    session: &mut HttpSession,
    target: &Target,
    check: &HealthCheck,
) -> Result<(), String> {
    let req = head("GET", &check.path, target)?;
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| format!("request: {e}"))?;
    session
        .finish_request_body()
        .await
        .map_err(|e| format!("request: {e}"))?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("answer: {e}"))?;
    match session.response_header().map(|h| h.status) {
        Some(s) if s.is_success() => Ok(()),
        Some(s) => Err(format!("answered {}", s.as_u16())),
        None => Err("no answer".to_string()),
    }
}

/// The most of a gRPC health answer read.
const MAX_GRPC_ANSWER: usize = 4096;

/// `grpc.health.v1.Health/Check` for `service`: passes on `grpc-status` 0 (in the
/// trailers, or the headers of a trailers-only answer) with a SERVING message.
async fn grpc_check(
    session: &mut HttpSession,
    target: &Target,
    service: &str,
) -> Result<(), String> {
    let mut req = head("POST", grpc::PATH, target)?;
    for (k, v) in [("content-type", "application/grpc"), ("te", "trailers")] {
        req.insert_header(k, v).map_err(|e| e.to_string())?;
    }
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(|e| format!("request: {e}"))?;
    session
        .write_request_body(grpc::check_request(service), true)
        .await
        .map_err(|e| format!("request: {e}"))?;
    session
        .read_response_header()
        .await
        .map_err(|e| format!("answer: {e}"))?;
    let head = session.response_header().ok_or("no answer")?;
    if head.status != http::StatusCode::OK {
        return Err(format!("answered {}", head.status.as_u16()));
    }
    let in_head = head.headers.get("grpc-status").cloned();
    let mut body = Vec::new();
    if in_head.is_none() {
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("answer: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_GRPC_ANSWER {
                return Err("the answer is too long".into());
            }
        }
    }
    let status = match (in_head, session) {
        (Some(s), _) => Some(s),
        (None, HttpSession::H2(h2)) => h2
            .read_trailers()
            .await
            .map_err(|e| format!("trailers: {e}"))?
            .and_then(|t| t.get("grpc-status").cloned()),
        (None, _) => None,
    };
    match status.as_ref().map(|s| s.as_bytes()) {
        Some(b"0") => {}
        Some(code) => return Err(format!("grpc-status {}", String::from_utf8_lossy(code))),
        None => return Err("no grpc-status".into()),
    }
    if grpc::serving(&body)? {
        Ok(())
    } else {
        Err(format!("service {service:?} is not SERVING"))
    }
}
