//! One request the gateway sends a route's pool itself, not on a client's behalf: the
//! refresh of a stale cache entry, the missing buckets of a dashboard query.
//!
//! It picks a backend like any request (healthy, not ejected, under its circuit breaker),
//! counts as in flight there, and is one try like any other (`upstream.rs`: the route's
//! timeouts, its latency and outcome recorded), so balancers and outlier detection see it.
//! It is not retried: the caller decides what a failure means.

use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::route::Routed;
use crate::runtime::PickRequest;
use crate::tries::Tries;
use crate::upstream;
use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use std::time::{Duration, Instant};

/// The HTTP client of the gateway's own requests: Pingora's connector, with its own
/// connection pool.
pub struct OwnClient(pub Connector);

impl OwnClient {
    pub fn new() -> OwnClient {
        OwnClient(Connector::new(None))
    }
}

impl Default for OwnClient {
    fn default() -> Self {
        OwnClient::new()
    }
}

impl std::fmt::Debug for OwnClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnClient")
    }
}

/// Why a request of the gateway's own got no answer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("route {route}: no backend available in pool {pool}")]
    NoBackend { route: String, pool: String },
    #[error("route {route}: backend {backend}: {source}")]
    Upstream {
        route: String,
        backend: String,
        source: Box<pingora::Error>,
    },
    #[error("route {route}: backend {backend}: the answer is larger than {limit} bytes")]
    TooLarge {
        route: String,
        backend: String,
        limit: u64,
    },
    #[error("route {route}: no answer within {timeout:?}")]
    Timeout { route: String, timeout: Duration },
    #[error("route {route}: the route's pool is gone")]
    Gone { route: String },
}

/// An answer: its head, its body, and the backend that gave it.
#[derive(Debug)]
pub struct Fetched {
    pub head: ResponseHeader,
    pub body: Bytes,
    pub backend: String,
}

/// Sends `request` (and `body`) to a backend of the route's pool and reads the whole
/// answer, at most `max_body` bytes of it, within the route's request timeout. `now` is the
/// gateway's clock (for the balancer and the try's record).
pub async fn fetch(
    connector: &Connector,
    routed: &Routed,
    request: RequestHeader,
    body: Option<Bytes>,
    max_body: u64,
    metrics: &Metrics,
    now: &(dyn Fn() -> Instant + Send + Sync),
) -> Result<Fetched, FetchError> {
    let route = routed.route();
    let Some(pool) = routed.pool() else {
        return Err(FetchError::Gone {
            route: route.name.clone(),
        });
    };
    let no_backend = || FetchError::NoBackend {
        route: route.name.clone(),
        pool: routed.pool_name().to_string(),
    };
    let picked = pool
        .pick(&PickRequest::new(&[], now()))
        .map_err(|_| no_backend())?;
    let guard = picked
        .live
        .try_start_request(now(), pool.pool.max_in_flight_per_backend)
        .ok_or_else(no_backend)?;
    let backend = picked.address.to_string();
    let peer = upstream::peer(route, routed.retries(), pool, picked.index, Duration::ZERO);
    let mut tries = Tries::default();
    tries.start(picked.index, picked.address, guard);
    let upstream = |source: Box<pingora::Error>| FetchError::Upstream {
        route: route.name.clone(),
        backend: backend.clone(),
        source,
    };
    let mut request = request;
    if pool.pool.protocol.is_h2() {
        crate::connect::as_h2(&mut request, pool.tls.is_some()).map_err(upstream)?;
    }
    let exchange = async {
        let (mut session, _reused) = connector.get_http_session(&peer).await.map_err(upstream)?;
        session
            .write_request_header(Box::new(request))
            .await
            .map_err(upstream)?;
        if let Some(body) = body {
            session
                .write_request_body(body, true)
                .await
                .map_err(upstream)?;
        }
        session.finish_request_body().await.map_err(upstream)?;
        session.read_response_header().await.map_err(upstream)?;
        let Some(head) = session.response_header().cloned() else {
            return Err(upstream(pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "no answer head",
            )));
        };
        let mut answer = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(upstream)? {
            answer.extend_from_slice(&chunk);
            if answer.len() as u64 > max_body {
                return Err(FetchError::TooLarge {
                    route: route.name.clone(),
                    backend: backend.clone(),
                    limit: max_body,
                });
            }
        }
        connector
            .release_http_session(session, &peer, Some(Duration::from_secs(60)))
            .await;
        Ok((head, answer.freeze()))
    };
    let fetched = tokio::time::timeout(route.request_timeout, exchange)
        .await
        .map_err(|_| FetchError::Timeout {
            route: route.name.clone(),
            timeout: route.request_timeout,
        })
        .and_then(|r| r);
    // The try ends like any other: a failure to reach the backend or a 5xx counts against
    // it; an answer too large to take is still the backend's answer.
    let failure = match &fetched {
        Err(FetchError::Timeout { .. }) => Some(UpstreamErrorKind::Timeout),
        Err(FetchError::Upstream { source, .. }) => Some(UpstreamErrorKind::of(source)),
        _ => None,
    };
    let server_error = matches!(&fetched, Ok((head, _)) if head.status.as_u16() >= 500);
    if let Some(kind) = failure {
        metrics.upstream_error(&route.name, &backend, kind);
    }
    if let Some((ejected, e)) = upstream::record(
        &mut tries,
        pool,
        failure.is_none() && !server_error,
        metrics,
        now(),
    ) {
        tracing::warn!(pool = %pool.pool.name, backend = %ejected, for_ms = e.duration.as_millis() as u64, times = e.times, "outlier detection ejected a backend that failed a request of the gateway's own");
    }
    tries.end();
    let (head, body) = fetched?;
    Ok(Fetched {
        head,
        body,
        backend,
    })
}
