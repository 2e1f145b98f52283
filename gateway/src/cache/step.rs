//! The cache step of the request pipeline: find the request's answer in the route's cache
//! (HIT, STALE), wait for an identical request already on its way (coalescing), or let the
//! request go on to a backend, marked with what its answer may be stored as.
//!
//! The step decides; the pipeline writes the answer (with the headers every answer
//! carries) and sends the refresh of a stale entry.

use super::bucketed;
use super::flight::{self, Join};
use super::key::Key;
use super::request::{self as cache_request, Caller, Plan, Storing};
use super::{Lookup, Outcome, QueryCache, ShapeStore};
use crate::config::cache::RouteCache;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use std::sync::Arc;
use std::time::Duration;

/// What the cache step decided.
#[derive(Debug)]
pub enum CacheStep {
    /// On to a backend: what `X-Cache` will say, and the answer to take into the cache as
    /// it passes, when it may be stored.
    Proceed {
        outcome: Outcome,
        storing: Option<Box<Storing>>,
    },
    /// Answer from the buckets kept for the query's shape, and a fetch of the missing ones
    /// (`bucketed.rs`); the pipeline sends the fetch.
    Buckets(Box<BucketJob>),
    /// Answer from the cache.
    Answer(Found),
}

/// A request on the bucket path.
#[derive(Debug)]
pub struct BucketJob {
    pub ask: bucketed::Ask,
    pub store: Arc<ShapeStore>,
    pub settle: Duration,
    /// How long young buckets fetched now are served: the route's ttl.
    pub brief: Duration,
}

/// An answer found in the cache.
#[derive(Debug)]
pub struct Found {
    pub entry: Arc<super::entry::Entry>,
    pub outcome: Outcome,
    pub age: Duration,
    /// The entry is stale and this request found it so (not one that waited): one refresh
    /// should go out, for this key and request body.
    pub refresh: Option<StaleKey>,
}

/// What the refresh of a stale entry needs from the request that found it.
#[derive(Debug)]
pub struct StaleKey {
    pub key: Key,
    pub body: Option<Vec<u8>>,
    pub db: Option<String>,
}

/// The cache step for a route with a cache (`settings`, `cache`) in front of `pool`.
pub async fn lookup(
    session: &mut Session,
    settings: &RouteCache,
    cache: &Arc<QueryCache>,
    caller: Caller<'_>,
    pool: &str,
) -> Result<CacheStep> {
    let body = if cache_request::wants_body(settings, session.req_header()) {
        read_keyed_body(session).await?
    } else {
        None
    };
    let plan = cache_request::plan(
        settings,
        pool,
        session.req_header(),
        body.as_deref(),
        caller,
    );
    let outcome = cache_request::outcome_of(&plan);
    let Plan::Use {
        key,
        db,
        skip_lookup,
    } = plan
    else {
        cache.stats().count(Outcome::Bypass);
        return Ok(CacheStep::Proceed {
            outcome,
            storing: None,
        });
    };
    if skip_lookup {
        cache.stats().count(Outcome::Bypass);
        let storing = Storing::new(cache.clone(), key, db, pool, settings, None);
        return Ok(CacheStep::Proceed {
            outcome,
            storing: Some(Box::new(storing)),
        });
    }
    if let Some(job) = bucket_job(session, settings, cache, caller, pool, body.as_deref()) {
        return Ok(CacheStep::Buckets(Box::new(job)));
    }
    if let Some(mut found) = found(cache, cache.lookup(&key).await, false) {
        if found.outcome == Outcome::Stale {
            found.refresh = Some(StaleKey { key, body, db });
        }
        return Ok(CacheStep::Answer(found));
    }
    let leader = match cache.join(&key) {
        Join::Lead(leader) => Some(leader),
        Join::Wait(rx) => {
            flight::wait(rx, cache.config.coalesce_timeout).await;
            None
        }
    };
    // A waiter looks for its leader's answer; a new leader for that of one that finished
    // between the lookup and the join. Without one, this request asks a backend itself.
    if let Some(found) = found(cache, cache.lookup(&key).await, true) {
        return Ok(CacheStep::Answer(found));
    }
    cache.stats().count(Outcome::Miss);
    let storing = Storing::new(cache.clone(), key, db, pool, settings, leader);
    Ok(CacheStep::Proceed {
        outcome: Outcome::Miss,
        storing: Some(Box::new(storing)),
    })
}

/// The bucket path's job for this request, if it takes that path.
fn bucket_job(
    session: &Session,
    settings: &RouteCache,
    cache: &QueryCache,
    caller: Caller<'_>,
    pool: &str,
    body: Option<&[u8]>,
) -> Option<BucketJob> {
    let buckets = settings.buckets?;
    let now_ns = cache.wall_ns();
    let ask = bucketed::ask(settings, pool, session.req_header(), body, caller, now_ns)
        .map_err(|why| tracing::trace!(why, "not answered by bucket"))
        .ok()?;
    let store = bucketed::store_of(cache, &ask, pool, settings)?;
    Some(BucketJob {
        ask,
        store,
        settle: buckets.settle,
        brief: settings.ttl,
    })
}

/// A found entry, counted (`None`: there was none).
fn found(cache: &QueryCache, lookup: Lookup, waited: bool) -> Option<Found> {
    let (entry, outcome) = match lookup {
        Lookup::Fresh(e) => (e, Outcome::Hit),
        Lookup::Stale(e) => (e, Outcome::Stale),
        Lookup::Miss => return None,
    };
    cache.stats().count(outcome);
    if waited {
        cache
            .stats()
            .coalesced
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Some(Found {
        age: entry.age(cache.now()),
        entry,
        outcome,
        refresh: None,
    })
}

/// Reads a request body the cache key holds (its length is declared and small, see
/// `request::wants_body`), keeping it for Pingora to send on to the backend.
async fn read_keyed_body(session: &mut Session) -> Result<Option<Vec<u8>>> {
    session.as_downstream_mut().enable_retry_buffering();
    let mut body = Vec::new();
    while let Some(chunk) = session.as_downstream_mut().read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > cache_request::MAX_KEYED_BODY {
            break;
        }
    }
    // Only a body longer than it declared could overflow what Pingora keeps to replay.
    if session.as_downstream().retry_buffer_truncated() {
        return Err(Error::explain(
            ErrorType::InvalidHTTPHeader,
            "request body longer than its Content-Length",
        ));
    }
    Ok(Some(body))
}
