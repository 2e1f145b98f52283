//! One try at a backend, the same for a client's request and a cache refresh: the peer
//! with the route's timeouts, and how the try ended, recorded the same way (latency into
//! the backend's estimate, outcome into outlier detection, ejections into the metrics).
//!
//! How the backend is reached (TLS, HTTP/2) is `connect.rs`'s, shared with health checks.

use crate::config::policy::Route;
use crate::config::resilience::RetryPolicy;
use crate::connect::connect_peer;
use crate::health::outlier::Ejection;
use crate::metrics::Metrics;
use crate::runtime::PoolState;
use crate::tries::{self, Tries};
use pingora::prelude::HttpPeer;
use std::time::{Duration, Instant};

/// The peer of one try at backend `index` of `pool` for `route`, `elapsed` into the request:
/// the connect (and TLS handshake) within the route's `connect_timeout`, every read and write
/// within what is left of the request's time (or the per-try timeout of `retries`, the
/// route's over the pool's).
pub fn peer(
    route: &Route,
    retries: &RetryPolicy,
    pool: &PoolState,
    index: usize,
    elapsed: Duration,
) -> HttpPeer {
    let wait = tries::try_timeout(route, retries, elapsed);
    let backend = &pool.pool.backends[index];
    let mut peer = connect_peer(
        backend.address,
        pool.server_name(index),
        pool.pool.protocol,
        pool.tls.as_deref(),
    );
    peer.options.connection_timeout = Some(route.connect_timeout.min(wait));
    peer.options.total_connection_timeout = Some(route.connect_timeout.min(wait));
    peer.options.read_timeout = Some(wait);
    peer.options.write_timeout = Some(wait);
    peer
}

/// Records how the current try of `tries` ended (once per try): its latency into the
/// backend's estimate and `gateway_backend_response_seconds`, its outcome into outlier
/// detection. Returns the backend's address and the ejection this outcome caused, for the
/// caller to log with what it knows of the request.
pub fn record(
    tries: &mut Tries,
    pool: &PoolState,
    ok: bool,
    metrics: &Metrics,
    now: Instant,
) -> Option<(String, Ejection)> {
    if let Some((index, took)) = tries.observe_latency(now) {
        if let Some(b) = pool.pool.backends.get(index) {
            metrics.backend_response(&pool.pool.name, b.address, took);
        }
    }
    let e = tries.record(pool, ok, now)?;
    let backend = pool.pool.backends.get(e.backend)?.address.to_string();
    metrics.ejection(&pool.pool.name, &backend);
    Some((backend, e))
}
