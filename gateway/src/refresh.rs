//! Stale-while-revalidate: a stale entry is served at once, and one background request
//! (the holder of the key's [`Leader`]) fetches a fresh answer from the route's pool.
//!
//! The refresh is a request of the gateway's own (`fetch.rs`): picked and recorded like a
//! try, not retried. A failed refresh leaves the stale entry to be served, and the next
//! stale hit tries again.

use crate::cache::control::{self, Storable};
use crate::cache::entry::{self, Entry};
use crate::cache::flight::Leader;
use crate::cache::key::Key;
use crate::cache::{QueryCache, WriteMark};
use crate::fetch::{self, FetchError, OwnClient};
use crate::metrics::Metrics;
use crate::route::Routed;
use bytes::Bytes;
use pingora::http::RequestHeader;
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("route {route}: backend {backend}: answer not stored: {reason}")]
    NotStorable {
        route: String,
        backend: String,
        reason: &'static str,
    },
    #[error("route {route}: the route or its cache is gone")]
    Gone { route: String },
}

/// Runs the refresh in the background; the leader is released when it ends.
pub fn spawn(client: Arc<OwnClient>, r: Refresh, metrics: Arc<Metrics>) {
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

async fn run(
    connector: &pingora::connectors::http::Connector,
    r: Refresh,
    metrics: &Metrics,
) -> Result<(), RefreshError> {
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
    let now = || cache.now();
    let fetched = fetch::fetch(
        connector,
        &routed,
        request,
        body,
        cache.config.max_entry_size,
        metrics,
        &now,
    )
    .await?;
    let fresh_for = match control::response(
        fetched.head.status.as_u16(),
        &fetched.head.headers,
        settings.ttl,
    ) {
        Storable::For(d) => d,
        Storable::No(reason) => {
            return Err(RefreshError::NotStorable {
                route: route.name.clone(),
                backend: fetched.backend,
                reason,
            })
        }
    };
    let entry = Entry {
        headers: entry::stored_headers(&fetched.head),
        body: fetched.body,
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
