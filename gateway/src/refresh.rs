//! Stale-while-revalidate: a stale entry is served at once, and one background request
//! (the holder of the key's [`Leader`]) fetches a fresh answer from the route's pool.
//!
//! The refresh picks a backend like any request (healthy, not ejected, under its circuit
//! breaker), counts as in flight there, and is one try like any other (`upstream.rs`: the
//! route's timeouts, its latency and outcome recorded), so balancers and outlier detection
//! see it; it is not retried: a failed refresh leaves the stale entry to be served, and the
//! next stale hit tries again.

use crate::cache::control::{self, Storable};
use crate::cache::entry::{self, Entry};
use crate::cache::flight::Leader;
use crate::cache::key::Key;
use crate::cache::{QueryCache, WriteMark};
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::route::Routed;
use crate::runtime::PickRequest;
use crate::tries::Tries;
use crate::upstream;
use bytes::{Bytes, BytesMut};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP client of refreshes: Pingora's connector, with its own connection pool.
pub struct RefreshClient(pub Connector);

impl RefreshClient {
    pub fn new() -> RefreshClient {
        RefreshClient(Connector::new(None))
    }
}

impl Default for RefreshClient {
    fn default() -> Self {
        RefreshClient::new()
    }
}

impl std::fmt::Debug for RefreshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshClient")
    }
}

/// Everything a refresh needs, taken from the request that found the entry stale.
#[derive(Debug)]
pub struct Refresh {
    /// The route of the request that found the entry stale, in its snapshot.
    pub routed: Routed,
    pub cache: Arc<QueryCache>,
    pub key: Key,
    pub leader: Leader,
    /// The request as it would go to a backend (the gateway's headers added).
    pub request: RequestHeader,
    pub body: Option<Bytes>,
    pub db: Option<String>,
    pub mark: WriteMark,
}

/// Why a refresh stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("route {route}: no backend available in pool {pool}")]
    NoBackend { route: String, pool: String },
    #[error("route {route}: backend {backend}: {source}")]
    Upstream {
        route: String,
        backend: String,
        source: Box<pingora::Error>,
    },
    #[error("route {route}: backend {backend}: answer not stored: {reason}")]
    NotStorable {
        route: String,
        backend: String,
        reason: &'static str,
    },
    #[error("route {route}: refresh timed out after {timeout:?}")]
    Timeout { route: String, timeout: Duration },
    #[error("route {route}: the route or its cache is gone")]
    Gone { route: String },
}

/// Runs the refresh in the background; the leader is released when it ends.
pub fn spawn(client: Arc<RefreshClient>, r: Refresh, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        let cache = r.cache.clone();
        match run(&client.0, r, &metrics).await {
            Ok(()) => {
                cache.stats().refreshes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                cache
                    .stats()
                    .refresh_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cache = %cache.config.name, error = %e, "stale entry not refreshed");
            }
        }
    });
}

async fn run(connector: &Connector, r: Refresh, metrics: &Metrics) -> Result<(), RefreshError> {
    let Refresh {
        routed,
        cache,
        key,
        leader,
        request,
        body,
        db,
        mark,
    } = r;
    let route = routed.route();
    let Some(settings) = route.cache.as_ref() else {
        return Err(RefreshError::Gone {
            route: route.name.clone(),
        });
    };
    let Some(pool) = routed.pool() else {
        return Err(RefreshError::Gone {
            route: route.name.clone(),
        });
    };
    let no_backend = || RefreshError::NoBackend {
        route: route.name.clone(),
        pool: routed.pool_name().to_string(),
    };
    let now = cache.now();
    let picked = pool
        .pick(&PickRequest::new(&[], now))
        .map_err(|_| no_backend())?;
    let guard = picked
        .live
        .try_start_request(now, pool.pool.max_in_flight_per_backend)
        .ok_or_else(no_backend)?;
    let backend = picked.address.to_string();
    let peer = upstream::peer(route, routed.retries(), pool, picked.index, Duration::ZERO);
    let mut tries = Tries::default();
    tries.start(picked.index, picked.address, guard);
    let upstream = |source: Box<pingora::Error>| RefreshError::Upstream {
        route: route.name.clone(),
        backend: backend.clone(),
        source,
    };
    let mut request = request;
    if pool.pool.protocol.is_h2() {
        crate::connect::as_h2(&mut request, pool.tls.is_some()).map_err(upstream)?;
    }
    let fetch = async {
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
            return Err(RefreshError::NotStorable {
                route: route.name.clone(),
                backend: backend.clone(),
                reason: "no answer",
            });
        };
        let fresh_for = match control::response(head.status.as_u16(), &head.headers, settings.ttl) {
            Storable::For(d) => d,
            Storable::No(reason) => {
                return Err(RefreshError::NotStorable {
                    route: route.name.clone(),
                    backend: backend.clone(),
                    reason,
                })
            }
        };
        let mut answer = BytesMut::new();
        while let Some(chunk) = session.read_response_body().await.map_err(upstream)? {
            answer.extend_from_slice(&chunk);
            if answer.len() as u64 > cache.config.max_entry_size {
                return Err(RefreshError::NotStorable {
                    route: route.name.clone(),
                    backend: backend.clone(),
                    reason: "larger than max_entry_size",
                });
            }
        }
        connector
            .release_http_session(session, &peer, Some(Duration::from_secs(60)))
            .await;
        Ok((head, answer.freeze(), fresh_for))
    };
    let fetched = tokio::time::timeout(route.request_timeout, fetch)
        .await
        .map_err(|_| RefreshError::Timeout {
            route: route.name.clone(),
            timeout: route.request_timeout,
        })
        .and_then(|r| r);
    // The try ends like any other: a failure to reach the backend or a 5xx counts against
    // it; an answer that is not storable is still the backend's answer.
    let failure = match &fetched {
        Err(RefreshError::Timeout { .. }) => Some(UpstreamErrorKind::Timeout),
        Err(RefreshError::Upstream { source, .. }) => Some(UpstreamErrorKind::of(source)),
        _ => None,
    };
    let server_error = matches!(&fetched, Ok((head, _, _)) if head.status.as_u16() >= 500);
    if let Some(kind) = failure {
        metrics.upstream_error(&route.name, &backend, kind);
    }
    if let Some((backend, e)) = upstream::record(
        &mut tries,
        pool,
        failure.is_none() && !server_error,
        metrics,
        cache.now(),
    ) {
        tracing::warn!(pool = %pool.pool.name, backend = %backend, for_ms = e.duration.as_millis() as u64, times = e.times, "outlier detection ejected a backend that failed a cache refresh");
    }
    tries.end();
    let (head, body, fresh_for) = fetched?;
    let entry = Entry {
        headers: entry::stored_headers(&head),
        body,
        stored_at: cache.now(),
        fresh_for,
        stale_for: settings.stale_while_revalidate,
        pool: Arc::from(routed.pool_name()),
        db,
    };
    cache.store(key, entry, &mark).await;
    drop(leader);
    Ok(())
}
