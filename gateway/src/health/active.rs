//! Active health checks: one probe of a backend (`GET <path>`, any 2xx within the timeout),
//! made the way requests reach it: over TLS with the pool's CA, client certificate and
//! server name when the pool has `tls`, in HTTP/2 when its protocol is `h2` or `h2c`
//! (`upstream::connect_peer`). Each probe opens a new connection, so a backend that stopped
//! accepting them is seen. The threads that probe every backend each interval are the
//! reloader's (`reload/checkers.rs`), which starts and stops them as backends come and go.

use crate::config::policy::HealthCheck;
use crate::config::upstream::Protocol;
use crate::runtime::PoolState;
use crate::upstream::{self, tls::PoolTls};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
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

impl Target {
    /// Backend `i` of `pool`.
    pub fn of(pool: &PoolState, i: usize) -> Target {
        let b = &pool.pool.backends[i];
        Target {
            address: b.address,
            authority: match &b.host {
                Some(h) => format!("{h}:{}", b.address.port()),
                None => b.address.to_string(),
            },
            server_name: pool.server_name(i).to_string(),
            protocol: pool.pool.protocol,
            tls: pool.tls.clone(),
        }
    }
}

/// One check of `target`: `Ok` on any 2xx answer within the timeout, else why not.
pub async fn probe(prober: &Prober, target: &Target, check: &HealthCheck) -> Result<(), String> {
    let connector = &prober.0;
    let mut peer = upstream::connect_peer(
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
        let mut req =
            RequestHeader::build("GET", check.path.as_bytes(), None).map_err(|e| e.to_string())?;
        req.insert_header(http::header::HOST, target.authority.as_str())
            .map_err(|e| e.to_string())?;
        if target.protocol.is_h2() {
            upstream::as_h2(&mut req, target.tls.is_some()).map_err(|e| e.to_string())?;
        }
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
    };
    tokio::time::timeout(check.timeout, answer)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", check.timeout)))
}
