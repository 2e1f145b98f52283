//! The request pipeline (Pingora's `ProxyHttp`): each phase names its step and calls into
//! the concern that owns it. Per-request state lives in `RequestCtx` only.
//!
//! ```text
//! early_request_filter     the head was read: the connection's head deadline stops;
//!                          assign the request id
//! request_filter           normalise the request or refuse it (400, 501; `normalize.rs`),
//!                          take the snapshot, match the route (404), check the declared
//!                          body size (413), authenticate (401), authorize (403), rate limit (429), answer
//!                          from the cache (HIT, STALE), or wait for an identical request
//!                          already on its way (coalescing)
//! request_body_filter      the route's max_body_size as the body passes (413); count the
//!                          lines of a body whose limits charge per line
//! upstream_peer            pick a backend of the route's pool: healthy, not tried, not
//!                          ejected, under its circuit breaker (503); a retry waits its
//!                          backoff first
//! fail_to_connect          connect failure: record it, retry if the policy and budget allow
//! error_while_proxy        reset or timeout before any response byte: the same, idempotent
//!                          requests only (see `tries.rs`, `retry/condition.rs`)
//! upstream_request_filter  X-Request-Id, X-Forwarded-For and -Proto, X-Gateway-Identity,
//!                          -Tenant and -Auth to the backend
//! upstream_response_filter the answer's head: its time feeds the latency estimate, its
//!                          status the outcome; a retryable 5xx is held back and retried,
//!                          anything else goes to the client and nothing is retried after;
//!                          a storable answer is marked for the cache, a write invalidates
//! response_filter          X-Request-Id, X-Cache, RateLimit-Policy / RateLimit and the
//!                          sticky cookie back to the client
//! response_body_filter     the body of an answer marked for the cache, stored at its end
//! fail_to_proxy            errors as JSON: 502, 503, 504, a stalled body 408, 413
//!
//! Every phase runs inside `contain`: a panic in it is answered 500, not a dropped
//! connection.
//! logging                  count the answer and its latency
//! ```

use crate::auth;
use crate::auth::identity::Identity;
use crate::auth::mtls::PeerCert;
use crate::balance::key::{self, RequestKeys};
use crate::cache::flight::{self, Join};
use crate::cache::key::Key;
use crate::cache::request::{self as cache_request, Caller, Plan, Storing};
use crate::cache::{answer, refresh, Lookup, Outcome, QueryCache};
use crate::clock::{wall_now, Clock, SystemClock};
use crate::config::hardening::Hardening;
use crate::config::policy::Cost;
use crate::config::policy::Route;
use crate::connection::head::HeadTimed;
use crate::contain;
use crate::forwarded;
use crate::metrics::{Metrics, UpstreamErrorKind, NO_ROUTE};
use crate::normalize::{self, Refusal};
use crate::ratelimit;
use crate::request_id;
use crate::respond::{self, json_error, json_error_with};
use crate::retry::backoff;
use crate::retry::condition::{self, Cause};
use crate::runtime::{NoBackend, PickRequest, PoolState, Snapshot};
use crate::shutdown::{ActiveRequest, ActiveRequests};
use crate::tries::{self, NoRetry, Tries};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader, StatusCode};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

/// The gateway's proxy service: reads the current snapshot per request.
#[derive(Debug)]
pub struct Gateway {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// Requests being served, for the graceful stop.
    pub active: Arc<ActiveRequests>,
    /// The client of background cache refreshes (stale-while-revalidate).
    pub refresh_client: Arc<refresh::RefreshClient>,
    /// The listener this service serves, and its rules for requests.
    pub listener: Arc<str>,
    pub hardening: Hardening,
}

/// Everything one request carries through the phases.
#[derive(Debug)]
pub struct RequestCtx {
    started: Instant,
    _active: ActiveRequest,
    snapshot: Option<Arc<Snapshot>>,
    /// The matched route's position in the snapshot's policy (no copy per request).
    route: Option<usize>,
    request_id: HeaderValue,
    /// The tries at the pool's backends, and how they ended.
    tries: Tries,
    /// The request's hash key, hashed (for `ring_hash` and `maglev`), read at the first try.
    hash_key: Option<u64>,
    /// The backend token of the client's sticky cookie, if it sent one.
    sticky: Option<u64>,
    /// Why no backend was picked, for the client's 503.
    refusal: Option<&'static str>,
    /// Who is calling, when the route authenticates.
    identity: Option<Identity>,
    /// The route's rate limits as this request left them, for the answer's headers.
    quotas: Vec<ratelimit::headers::Quota>,
    /// Limits still to charge when the body ends (`rate_limit_cost: lines`), and the count.
    line_charges: Vec<(Arc<ratelimit::Limiter>, String)>,
    lines: u32,
    last_byte: Option<u8>,
    /// What the route's cache did (`None`: the route has none), for `X-Cache`.
    cache_outcome: Option<Outcome>,
    /// The answer to take into the cache as it passes, when it may be stored.
    storing: Option<Storing>,
    /// The route's `max_body_size`, and the body bytes read so far.
    max_body: u64,
    body_read: u64,
}

impl RequestCtx {
    /// The matched route, read from the request's own snapshot.
    fn route(&self) -> Option<&Route> {
        let i = self.route?;
        self.snapshot.as_ref()?.policy.routes.get(i)
    }

    fn route_name(&self) -> &str {
        self.route().map_or(NO_ROUTE, |r| r.name.as_str())
    }

    fn pool(&self) -> Option<&PoolState> {
        let route = self.route()?;
        self.snapshot.as_ref()?.pools.get(&route.pool)
    }

    /// Whether the failed try may be retried (see [`Tries::may_retry`]); a refusal by the
    /// budget is counted.
    fn may_retry(&self, session: &Session, cause: Cause, metrics: &Metrics) -> bool {
        let (Some(route), Some(pool)) = (self.route(), self.pool()) else {
            return false;
        };
        let request = condition::Request {
            idempotent: session.req_header().method.is_idempotent(),
            replayable: !session.as_ref().retry_buffer_truncated(),
        };
        let now = SystemClock.now();
        let elapsed = now.saturating_duration_since(self.started);
        match self
            .tries
            .may_retry(route, pool, cause, request, elapsed, now)
        {
            Ok(()) => true,
            Err(NoRetry::Budget) => {
                metrics.retry_budget_exhausted(&pool.pool.name);
                pool.live
                    .budget_exhausted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }
            Err(_) => false,
        }
    }

    /// Records how the current try ended (once per try), and the ejection it caused.
    fn record_try(&mut self, ok: bool, metrics: &Metrics) {
        let now = SystemClock.now();
        self.tries.observe_latency(now);
        let Some(snapshot) = self.snapshot.clone() else {
            return;
        };
        let Some(pool) = self
            .route
            .and_then(|i| snapshot.policy.routes.get(i))
            .and_then(|r| snapshot.pools.get(&r.pool))
        else {
            return;
        };
        if let Some(e) = self.tries.record(pool, ok, now) {
            let backend = pool.pool.backends[e.backend].address.to_string();
            metrics.ejection(&pool.pool.name, &backend);
            tracing::warn!(pool = %pool.pool.name, backend = %backend, for_ms = e.duration.as_millis() as u64, times = e.times, "outlier detection ejected a backend that failed requests");
        }
    }
}

/// The client's IP address, as the gateway's TCP peer.
fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// 499 (nginx's "client closed request") when the client left before any answer.
const CLIENT_CLOSED: u16 = 499;

impl Gateway {
    /// The rate-limit step (after authentication, so keys can name the caller): asks
    /// every limit of the route; a refusal is answered 429 here (returns `Ok(true)`).
    async fn rate_limit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(snapshot) = ctx.snapshot.clone() else {
            return Ok(false);
        };
        let Some(route) = ctx.route.and_then(|i| snapshot.policy.routes.get(i)) else {
            return Ok(false);
        };
        if route.rate_limits.is_empty() {
            return Ok(false);
        }
        let src = ratelimit::KeySource {
            identity: ctx.identity.as_ref().map(|i| i.subject.as_str()),
            tenant: ctx.identity.as_ref().and_then(|i| i.tenant.as_deref()),
            client_ip: client_ip(session),
            route: &route.name,
            headers: &session.req_header().headers,
            claims: ctx.identity.as_ref().map_or(&[], |i| i.claims.as_slice()),
        };
        let limiters: Vec<(Arc<ratelimit::Limiter>, String)> = route
            .rate_limits
            .iter()
            .filter_map(|n| snapshot.limits.get(n))
            .map(|l| (l.clone(), ratelimit::caller_key(&l.limit.key, &src)))
            .collect();
        let cost = match route.cost {
            Cost::Fixed(n) => n,
            Cost::Lines => std::num::NonZeroU32::MIN,
        };
        let outcome = ratelimit::decide(&limiters, cost).await;
        for (name, v) in &outcome.verdicts {
            self.metrics.ratelimit(name, v.allowed, v.source.as_str());
        }
        let quotas = outcome.quotas();
        if let Some((name, v)) = outcome.refusal() {
            let mut headers = vec![("ratelimit-policy", ratelimit::headers::policy(&quotas))];
            headers.extend(
                ratelimit::headers::current(std::slice::from_ref(&v.quota))
                    .map(|c| ("ratelimit", c)),
            );
            let unavailable = v.source == ratelimit::Source::Unavailable;
            let retry = ratelimit::headers::retry_after(v.retry_after);
            respond::rate_limited(
                session,
                &ctx.request_id,
                name,
                &retry,
                unavailable,
                &headers,
            )
            .await;
            return Ok(true);
        }
        ctx.quotas = quotas;
        if route.cost == Cost::Lines {
            ctx.line_charges = limiters;
        }
        Ok(false)
    }
}

impl Gateway {
    /// Answers a request the listener's hardening refused, counted by reason, and closes the
    /// connection after it: what follows a refused head cannot be trusted to be framed as
    /// the client meant.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        refusal: Refusal,
    ) -> Result<bool> {
        self.metrics.refusal(&self.listener, refusal.reason);
        session.set_keepalive(None);
        json_error(session, refusal.status, &refusal.message, &ctx.request_id).await;
        Ok(true)
    }

    /// The steps after authentication: rate limits, then the cache.
    async fn limit_then_cache(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.rate_limit(session, ctx).await? {
            return Ok(true);
        }
        self.cache_lookup(session, ctx).await
    }

    /// The cache step: answers a fresh (HIT) or stale (STALE, and one refresh goes out)
    /// entry here (returns `Ok(true)`); on a miss, leads the fetch or waits for the request
    /// that leads it, and marks what the backend's answer may be stored as.
    async fn cache_lookup(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Some(snapshot) = ctx.snapshot.clone() else {
            return Ok(false);
        };
        let Some(route) = ctx.route.and_then(|i| snapshot.policy.routes.get(i)) else {
            return Ok(false);
        };
        let Some(settings) = route.cache.as_ref() else {
            return Ok(false);
        };
        let Some(cache) = snapshot.caches.get(&settings.cache).cloned() else {
            return Ok(false);
        };
        let body = if cache_request::wants_body(settings, session.req_header()) {
            read_keyed_body(session).await?
        } else {
            None
        };
        let caller = Caller {
            tenant: ctx.identity.as_ref().and_then(|i| i.tenant.as_deref()),
            identity: ctx.identity.as_ref().map(|i| i.subject.as_str()),
        };
        let plan = cache_request::plan(
            settings,
            &route.pool,
            session.req_header(),
            body.as_deref(),
            caller,
        );
        let outcome = cache_request::outcome_of(&plan);
        ctx.cache_outcome = Some(outcome);
        let Plan::Use {
            key,
            db,
            skip_lookup,
        } = plan
        else {
            cache.stats().count(Outcome::Bypass);
            return Ok(false);
        };
        if skip_lookup {
            cache.stats().count(Outcome::Bypass);
            ctx.storing = Some(Storing::new(cache, key, db, &route.pool, settings, None));
            return Ok(false);
        }
        let found = cache.lookup(&key).await;
        if let Some(done) = self.answer_found(session, ctx, &cache, found, false).await {
            if done.refresh {
                self.refresh(session, ctx, &cache, key, body, db);
            }
            return Ok(true);
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
        let found = cache.lookup(&key).await;
        if self
            .answer_found(session, ctx, &cache, found, true)
            .await
            .is_some()
        {
            return Ok(true);
        }
        cache.stats().count(Outcome::Miss);
        ctx.storing = Some(Storing::new(cache, key, db, &route.pool, settings, leader));
        Ok(false)
    }

    /// Sends one background refresh of a stale entry, unless one is on its way already.
    fn refresh(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        cache: &Arc<QueryCache>,
        key: Key,
        body: Option<Vec<u8>>,
        db: Option<String>,
    ) {
        let (Some(snapshot), Some(route), Some(i)) = (ctx.snapshot.clone(), ctx.route(), ctx.route)
        else {
            return;
        };
        let Join::Lead(leader) = cache.join(&key) else {
            return;
        };
        let mut request = cache_request::refresh_request(session.req_header().clone());
        // The answer is out already: a refresh that cannot be sent is skipped.
        if let Err(e) = backend_headers(session, ctx, &mut request) {
            tracing::warn!(route = %route.name, error = %e, "stale entry not refreshed");
            return;
        }
        let mark = cache.write_mark(&route.pool, db.as_deref());
        refresh::spawn(
            self.refresh_client.clone(),
            refresh::Refresh {
                snapshot,
                route: i,
                cache: cache.clone(),
                key,
                leader,
                request,
                body: body.map(bytes::Bytes::from),
                db,
                mark,
            },
        );
    }

    /// Answers from a found entry (`None`: there was none to answer from).
    async fn answer_found(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        cache: &QueryCache,
        found: Lookup,
        waited: bool,
    ) -> Option<Answered> {
        let (entry, outcome) = match found {
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
        ctx.cache_outcome = Some(outcome);
        let mut extra = Vec::new();
        if !ctx.quotas.is_empty() {
            extra.push(("ratelimit-policy", ratelimit::headers::policy(&ctx.quotas)));
            extra.extend(ratelimit::headers::current(&ctx.quotas).map(|c| ("ratelimit", c)));
        }
        let age = entry.age(cache.now());
        match answer::head(&entry, outcome, age, &ctx.request_id, &extra) {
            Ok(head) => {
                answer::write(session, head, &entry).await;
            }
            Err(e) => {
                tracing::error!(cache = %cache.config.name, error = %e, "a stored answer could not be written");
                json_error(session, 500, "cached answer unreadable", &ctx.request_id).await;
            }
        }
        // Only the request that found the entry stale (not one that waited) refreshes it.
        Some(Answered {
            refresh: outcome == Outcome::Stale && !waited,
        })
    }
}

/// A request answered from the cache.
struct Answered {
    /// The entry was stale: a refresh should go out.
    refresh: bool,
}

/// Reads a request body the cache key holds (its length is declared and small, see
/// `cache::request::wants_body`), keeping it for Pingora to send on to the backend.
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

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: SystemClock.now(),
            _active: self.active.start(),
            snapshot: None,
            route: None,
            request_id: HeaderValue::from_static(""),
            tries: Tries::default(),
            hash_key: None,
            sticky: None,
            refusal: None,
            identity: None,
            quotas: Vec::new(),
            line_charges: Vec::new(),
            lines: 0,
            last_byte: None,
            cache_outcome: None,
            storing: None,
            max_body: u64::MAX,
            body_read: 0,
        }
    }

    /// The head has been read: the connection's head deadline ends; the request id, first,
    /// as every answer from here on carries it.
    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(stream) = session.as_downstream().stream() {
            HeadTimed::head_read_on(stream);
        }
        ctx.request_id = request_id::of(session.req_header());
        Ok(())
    }

    /// Normalisation (400), route match (404), the body's declared size (413), then
    /// authentication (401) and authorization (403): one snapshot for the whole request.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        contain::phase("request_filter", &self.metrics, async {
            match normalize::request(session.req_header_mut(), &self.hardening) {
                Ok(close) if close => session.set_keepalive(None),
                Ok(_) => {}
                Err(refusal) => return self.refuse(session, ctx, refusal).await,
            }
            session
                .as_downstream_mut()
                .set_read_timeout(Some(self.hardening.body_idle_timeout));
            auth::strip_client_headers(session.req_header_mut());
            let snapshot = self.snapshot.load_full();
            let req = session.req_header();
            let route = match normalize::routing_host(req) {
                Ok(host) => snapshot.policy.route_index(
                    host.as_deref(),
                    req.uri.path(),
                    req.method.as_str(),
                ),
                Err(refusal) => return self.refuse(session, ctx, refusal).await,
            };
            let Some((i, route)) = route.and_then(|i| Some((i, snapshot.policy.routes.get(i)?)))
            else {
                let message = format!("no route for {} {}", req.method, req.uri.path());
                json_error(session, 404, &message, &ctx.request_id).await;
                return Ok(true);
            };
            ctx.route = Some(i);
            ctx.snapshot = Some(snapshot.clone());
            ctx.max_body = route.max_body_size;
            if declared_length(req).is_some_and(|n| n > route.max_body_size) {
                let refusal = too_large(&route.name, route.max_body_size);
                return self.refuse(session, ctx, refusal).await;
            }
            let Some(rule) = route.auth.as_ref() else {
                return self.limit_then_cache(session, ctx).await;
            };
            let peer = session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|s| s.extension.get::<PeerCert>());
            let creds = auth::credentials(session.req_header(), peer);
            let now_unix = wall_now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match auth::check(rule, &snapshot.auth, creds, now_unix, SystemClock.now()).await {
                Ok(id) => {
                    if !auth::forwards_token(&snapshot.auth, &id) {
                        session
                            .req_header_mut()
                            .remove_header(&http::header::AUTHORIZATION);
                    }
                    ctx.identity = Some(id);
                    // Limits come after authentication, so their keys can name the caller.
                    self.limit_then_cache(session, ctx).await
                }
                Err(e) => {
                    let (code, challenge) = e.challenge();
                    json_error_with(
                        session,
                        code,
                        &e.message(),
                        &ctx.request_id,
                        Some(challenge),
                    )
                    .await;
                    Ok(true)
                }
            }
        })
        .await
    }

    /// The route's `max_body_size` (413) as the body passes, and per-line costs: counts the
    /// body's lines, and charges them when it ends.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        contain::phase("request_body_filter", &self.metrics, async {
            if let Some(b) = body.as_ref() {
                ctx.body_read = ctx.body_read.saturating_add(b.len() as u64);
                if ctx.body_read > ctx.max_body {
                    self.metrics.refusal(&self.listener, "body_too_large");
                    let refusal = too_large(ctx.route_name(), ctx.max_body);
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(refusal.status),
                        refusal.message,
                    ));
                }
            }
            if ctx.line_charges.is_empty() {
                return Ok(());
            }
            if let Some(b) = body.as_ref().filter(|b| !b.is_empty()) {
                ctx.lines = ctx.lines.saturating_add(ratelimit::count_newlines(b));
                ctx.last_byte = b.last().copied();
            }
            if end_of_stream {
                let unterminated = ctx.last_byte.is_some_and(|b| b != b'\n');
                let lines = ctx.lines.saturating_add(u32::from(unterminated));
                // The head paid one token; the rest is charged now, even into debt.
                for (limiter, key) in std::mem::take(&mut ctx.line_charges) {
                    limiter.charge(&key, lines.saturating_sub(1)).await;
                }
            }
            Ok(())
        })
        .await
    }

    /// Backend choice: the route's pool, skipping backends this request already tried; a
    /// retry first waits its backoff.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        contain::phase("upstream_peer", &self.metrics, async {
            // An Arc clone, so the route can be read while the tries are updated.
            let snapshot = ctx.snapshot.clone();
            let (Some(snapshot), Some(i)) = (snapshot.as_ref(), ctx.route) else {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "no route in context",
                ));
            };
            let Some(route) = snapshot.policy.routes.get(i) else {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "route out of range",
                ));
            };
            let pool = snapshot.pools.get(&route.pool).ok_or_else(|| {
                Error::explain(
                    ErrorType::HTTPStatus(503),
                    format!("route {}: pool {} is gone", route.name, route.pool),
                )
            })?;
            if ctx.tries.is_first() {
                pool.live.budget.record_request(SystemClock.now());
                let headers = &session.req_header().headers;
                if pool.chooser.hashes() {
                    let keys = RequestKeys {
                        identity: ctx.identity.as_ref().map(|i| i.subject.as_str()),
                        tenant: ctx.identity.as_ref().and_then(|i| i.tenant.as_deref()),
                        client_ip: client_ip(session),
                        headers,
                    };
                    ctx.hash_key = key::hash_of(&pool.pool.hash_key, &keys);
                }
                ctx.sticky = pool
                    .pool
                    .sticky
                    .as_ref()
                    .and_then(|s| key::cookie(headers, &s.cookie))
                    .and_then(key::parse_token);
            } else {
                self.metrics.retry(&route.name);
                let p = &route.retries;
                let retry = ctx.tries.tried().len() as u32;
                let wait = backoff::delay(retry, p.backoff_base, p.backoff_max, &mut rand::rng());
                tokio::time::sleep(wait).await;
            }
            let now = SystemClock.now();
            let max = pool.pool.max_in_flight_per_backend;
            // Passed over: backends that filled up between the pick and the count (each pass
            // adds one, so this ends within the pool's size).
            let mut skip = Vec::new();
            let (picked, guard) = loop {
                let req = PickRequest {
                    tried: ctx.tries.tried(),
                    skip: &skip,
                    now,
                    key: ctx.hash_key,
                    sticky: ctx.sticky,
                };
                match pool.pick(&req) {
                    Ok(p) => match p.live.try_start_request(now, max) {
                        Some(guard) => break (p, guard),
                        None => skip.push(p.index),
                    },
                    Err(NoBackend::Full) => {
                        self.metrics.circuit_overflow(&pool.pool.name);
                        ctx.refusal = Some("every backend is at its limit of requests in flight");
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(503),
                            format!(
                                "route {}: every backend of pool {} has max_in_flight_per_backend requests",
                                route.name, route.pool
                            ),
                        ));
                    }
                    Err(NoBackend::Unavailable) => {
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(503),
                            format!(
                                "route {}: no healthy backend left in pool {}",
                                route.name, route.pool
                            ),
                        ));
                    }
                }
            };
            let addr = picked.address;
            ctx.tries.start(picked.index, addr, guard);
            let elapsed = now.saturating_duration_since(ctx.started);
            let wait = tries::try_timeout(route, elapsed);
            let mut peer = HttpPeer::new(addr, false, String::new());
            peer.options.connection_timeout = Some(route.connect_timeout.min(wait));
            peer.options.total_connection_timeout = Some(route.connect_timeout.min(wait));
            peer.options.read_timeout = Some(wait);
            peer.options.write_timeout = Some(wait);
            Ok(Box::new(peer))
        })
        .await
    }

    /// Failover: nothing reached the backend, so any method may go to the next one.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        contain::sync_phase(
            "fail_to_connect",
            &self.metrics,
            || {
                let backend = peer.address().to_string();
                ctx.record_try(false, &self.metrics);
                self.metrics
                    .upstream_error(ctx.route_name(), &backend, UpstreamErrorKind::Connect);
                if ctx.may_retry(session, Cause::Connect, &self.metrics) {
                    e.set_retry(true);
                }
                e.more_context(format!("route {}: backend {backend}", ctx.route_name()))
            },
            |panicked| panicked,
        )
    }

    /// Failover after the request went out: only before any byte of the answer came back,
    /// for a reset or a timed-out try when the policy names it, and only for idempotent
    /// methods whose body Pingora could still replay. A 5xx answer held back for a retry
    /// comes here too, already decided.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        mut e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        contain::sync_phase(
            "error_while_proxy",
            &self.metrics,
            || {
                let backend = peer.address().to_string();
                if ctx.tries.take_held() {
                    e.set_retry(true);
                    return e
                        .more_context(format!("route {}: backend {backend}", ctx.route_name()));
                }
                let upstream = *e.esource() == ErrorSource::Upstream;
                let kind = UpstreamErrorKind::of(&e);
                if upstream {
                    ctx.record_try(false, &self.metrics);
                    self.metrics
                        .upstream_error(ctx.route_name(), &backend, kind);
                }
                let cause = match kind {
                    UpstreamErrorKind::Reset => Some(Cause::Reset),
                    UpstreamErrorKind::Timeout => Some(Cause::Timeout),
                    _ => None,
                };
                let retry =
                    upstream && cause.is_some_and(|c| ctx.may_retry(session, c, &self.metrics));
                e.set_retry(retry);
                e.more_context(format!("route {}: backend {backend}", ctx.route_name()))
            },
            |panicked| panicked,
        )
    }

    /// Request ids, client addresses and the client's scheme travel to the backend.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        contain::phase("upstream_request_filter", &self.metrics, async {
            backend_headers(session, ctx, upstream)?;
            // An HTTP/1.0 client may send no Host, and an HTTP/1.1 backend needs one: the
            // backend's own address, as nginx's default `proxy_set_header Host $proxy_host`.
            if session.req_header().version == http::Version::HTTP_10
                && !upstream.headers.contains_key(http::header::HOST)
            {
                if let Some(backend) = ctx.tries.tried().last() {
                    upstream.insert_header(http::header::HOST, backend.to_string())?;
                }
            }
            Ok(())
        })
        .await
    }

    /// The backend's answer has begun. A 5xx the policy retries is held back (nothing has
    /// reached the client) and the request goes to another backend; anything else is the
    /// client's answer, and a failure from here on is not retried.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        contain::phase("upstream_response_filter", &self.metrics, async {
            let status = upstream_response.status.as_u16();
            ctx.record_try(status < 500, &self.metrics);
            if status >= 500 && ctx.may_retry(session, Cause::Status(status), &self.metrics) {
                ctx.tries.hold_for_retry();
                let backend = ctx
                    .tries
                    .tried()
                    .last()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                self.metrics
                    .upstream_error(ctx.route_name(), &backend, UpstreamErrorKind::Status);
                return Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    format!(
                        "route {}: backend {backend} answered {status}: retrying",
                        ctx.route_name()
                    ),
                ));
            }
            ctx.tries.answer_started();
            if let Some(storing) = ctx.storing.as_mut() {
                storing.head(upstream_response);
            }
            if (200..300).contains(&status) {
                invalidate_on_write(session.req_header(), ctx);
            }
            Ok(())
        })
        .await
    }

    /// The request id comes back to the client.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        contain::phase("response_filter", &self.metrics, async {
            upstream_response.insert_header(request_id::HEADER, ctx.request_id.clone())?;
            if let Some(outcome) = ctx.cache_outcome {
                upstream_response.insert_header("x-cache", outcome.header())?;
            }
            if let Some(cookie) = sticky_cookie(ctx) {
                upstream_response.append_header(http::header::SET_COOKIE, cookie)?;
            }
            if !ctx.quotas.is_empty() {
                upstream_response
                    .insert_header("ratelimit-policy", ratelimit::headers::policy(&ctx.quotas))?;
                if let Some(c) = ratelimit::headers::current(&ctx.quotas) {
                    upstream_response.insert_header("ratelimit", c)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// An answer the cache may store is kept as it passes, and stored at its end.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        contain::sync_phase(
            "response_body_filter",
            &self.metrics,
            || {
                if let Some(storing) = ctx.storing.as_mut() {
                    storing.body(body.as_ref(), end_of_stream);
                }
                Ok(None)
            },
            Err,
        )
    }

    /// Errors become JSON answers: no backend 503, upstream timeout 504, other upstream
    /// failures 502.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        contain::phase("fail_to_proxy", &self.metrics, async {
            let code = match (e.etype(), e.esource()) {
                (ErrorType::HTTPStatus(code), _) => *code,
                // The client stopped sending its body for longer than body_idle_timeout.
                (ErrorType::ReadTimedout, ErrorSource::Downstream) => 408,
                // The client stopped reading its answer: nobody to tell.
                (ErrorType::WriteTimedout, ErrorSource::Downstream) => 0,
                (ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout, _) => 504,
                (_, ErrorSource::Upstream) => 502,
                (ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed, ErrorSource::Downstream) => 0,
                (_, ErrorSource::Downstream) => 400,
                (_, ErrorSource::Internal | ErrorSource::Unset) => 500,
            };
            if code == 408 {
                self.metrics.refusal(&self.listener, "body_timeout");
            }
            if code > 0 && !ctx.tries.answered() {
                let message = match code {
                    503 => ctx
                        .refusal
                        .unwrap_or("no healthy backend available")
                        .to_string(),
                    504 => "upstream timed out".to_string(),
                    408 => "the request body stopped arriving (body_idle_timeout)".to_string(),
                    // The gateway's own: the body limit, and a contained panic.
                    413 => e.context.as_ref().map_or("request body too large", |c| c.as_str()).to_string(),
                    500 if matches!(e.etype(), ErrorType::HTTPStatus(_)) => "internal error".to_string(),
                    _ => format!("upstream error: {}", e.etype().as_str()),
                };
                tracing::warn!(request_id = ctx.request_id.to_str().unwrap_or_default(), code, error = %e, "request failed");
                json_error(session, code, &message, &ctx.request_id).await;
            }
            Ok(FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            })
        })
        .await
        .unwrap_or(FailToProxy {
            error_code: 500,
            can_reuse_downstream: false,
        })
    }

    /// The answer is counted with its route, status and latency.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let _ = contain::phase("logging", &self.metrics, async {
            let status = session
                .response_written()
                .map_or(StatusCode::from_u16(CLIENT_CLOSED), |r| Ok(r.status))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let took = SystemClock.now().saturating_duration_since(ctx.started);
            self.metrics.request(ctx.route_name(), status, took);
            ctx.tries.end();
            Ok(())
        })
        .await;
    }
}

/// The body length the request declares (`Content-Length`, checked by `normalize`).
fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The refusal of a body larger than its route takes.
fn too_large(route: &str, max: u64) -> Refusal {
    Refusal {
        status: 413,
        reason: "body_too_large",
        message: format!(
            "the request body is larger than route {route}'s max_body_size ({max} bytes)"
        ),
    }
}

/// The sticky cookie naming the backend that answered, when the pool is sticky and the
/// client's cookie named another one (or none).
fn sticky_cookie(ctx: &RequestCtx) -> Option<String> {
    let pool = ctx.pool()?;
    let sticky = pool.pool.sticky.as_ref()?;
    let token = pool.sticky_token(ctx.tries.current_index()?)?;
    (ctx.sticky != Some(token)).then(|| {
        format!(
            "{}={}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax",
            sticky.cookie,
            key::format_token(token),
            sticky.ttl.as_secs()
        )
    })
}

/// A write that succeeded (`POST .../write?db=X`) drops the cached answers about X from
/// the route's pool, in the caches that invalidate on writes.
fn invalidate_on_write(req: &RequestHeader, ctx: &RequestCtx) {
    if req.method != http::Method::POST || !req.uri.path().ends_with("/write") {
        return;
    }
    let (Some(snapshot), Some(route)) = (ctx.snapshot.as_ref(), ctx.route()) else {
        return;
    };
    if snapshot.caches.is_empty() {
        return;
    }
    let db = req
        .uri
        .query()
        .and_then(|q| crate::cache::key::param(q.as_bytes(), "db"));
    if let Some(db) = db {
        snapshot.caches.invalidate_db(&route.pool, &db);
    }
}

/// The headers the gateway adds to a request for a backend: the request id, the client's
/// address and scheme, and who the caller is (the pipeline's try and a cache refresh alike).
fn backend_headers(
    session: &Session,
    ctx: &RequestCtx,
    upstream: &mut RequestHeader,
) -> Result<()> {
    upstream.insert_header(request_id::HEADER, ctx.request_id.clone())?;
    if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
        let value = forwarded::for_value(upstream.headers.get(forwarded::FOR), client.ip());
        upstream.insert_header(forwarded::FOR, value)?;
    }
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    upstream.insert_header(forwarded::PROTO, forwarded::proto_value(tls))?;
    if let Some(id) = &ctx.identity {
        for (name, value) in auth::backend_headers(id) {
            if let Some(v) = value {
                upstream.insert_header(
                    name,
                    HeaderValue::from_bytes(v.as_bytes()).map_err(|_| {
                        Error::explain(ErrorType::InternalError, "identity header value")
                    })?,
                )?;
            }
        }
    }
    Ok(())
}
