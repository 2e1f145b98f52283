//! The request pipeline (Pingora's `ProxyHttp`). This file is the list of phases; each
//! step is a function of the concern that owns it and returns whether the request goes
//! on or the answer to send. Per-request state lives in `RequestCtx` only.
//!
//! ```text
//! early_request_filter     the head was read: the connection's head deadline stops;
//!                          assign the request id
//! request_filter           the steps, in order:
//!                            normalize::request   normalise the request or refuse it (400, 501)
//!                            route::resolve       the policy's snapshot, once; the route (404)
//!                                                 and its pool (header rule, else weights)
//!                            declared body size   against the route's max_body_size (413)
//!                            websocket::check     an upgrade the route does not take (403)
//!                            auth::authenticate   who is calling (401), with which roles (403)
//!                            ratelimit::admit     the route's limits (429)
//!                            cache::step::lookup  answer from the cache (HIT, STALE), or wait
//!                                                 for an identical request on its way
//! request_body_filter      the route's max_body_size as the body passes (413); count the
//!                          lines of a body whose limits charge per line (not the bytes of
//!                          an upgraded connection)
//! upstream_peer            pick a backend of the request's pool: healthy, not tried, not
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
//! response_filter          the common headers (`respond::add_common`); a 101 opens the
//!                          WebSocket tunnel (counted until the request ends)
//! response_body_filter     the body of an answer marked for the cache, stored at its end
//! fail_to_proxy            the failure as a `Refusal`, answered as JSON (502, 503, 504, 408,
//!                          413)
//! logging                  count the answer and its latency (per route, and per route and
//!                          pool when it went on to its pool)
//! ```
//!
//! Every answer (a backend's, the cache's, the gateway's own) gets its common headers from
//! `respond::add_common`; every refusal its status, body and headers from `refusal.rs`.
//! Every phase runs inside `contain`: a panic in it is answered 500, not a dropped
//! connection. Time comes from the gateway's clock (`clock.rs`).

use crate::access_log::{self, AccessLog};
use crate::auth;
use crate::auth::identity::Identity;
use crate::auth::mtls::PeerCert;
use crate::balance::key::{self, RequestKeys};
use crate::cache::answer;
use crate::cache::flight::Join;
use crate::cache::request::{self as cache_request, Caller, Storing};
use crate::cache::step::{self as cache_step, BucketJob, CacheStep, Found, StaleKey};
use crate::cache::written::WrittenReader;
use crate::cache::Outcome;
use crate::cache::{
    bucketed,
    entry::{self, Entry},
    QueryCache,
};
use crate::clock::{wall_now, Clock};
use crate::config::hardening::{Hardening, TrustedProxies};
use crate::connection::head::HeadTimed;
use crate::contain::{self, RequestIds};
use crate::fetch;
use crate::forwarded;
use crate::metrics::{Metrics, UpstreamErrorKind, NO_ROUTE};
use crate::normalize;
use crate::ratelimit::{self, Admitted};
use crate::refresh;
use crate::refusal::Refusal;
use crate::request_id;
use crate::respond::{self, Common};
use crate::retry::backoff;
use crate::retry::condition::{self, Cause};
use crate::route::{self, Routed};
use crate::runtime::{PickRequest, PoolState};
use crate::shutdown::{ActiveRequest, ActiveRequests};
use crate::spans::{self, RequestSpans};
use crate::trace_context::{self, TraceContext};
use crate::tries::{NoRetry, Tries};
use crate::upstream;
use crate::websocket::{self, Tunnel};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader, StatusCode};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// The gateway's proxy service: reads the current snapshot per request.
#[derive(Debug)]
pub struct Gateway {
    pub snapshot: Arc<ArcSwap<crate::runtime::Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// Requests being served, for the graceful stop.
    pub active: Arc<ActiveRequests>,
    /// The client of the gateway's own requests: cache refreshes, bucket fetches.
    pub own_client: Arc<crate::fetch::OwnClient>,
    /// The listener this service serves, and its rules for requests.
    pub listener: Arc<str>,
    pub hardening: Hardening,
    /// Monotonic time for deadlines, latencies, limits and health.
    pub clock: Arc<dyn Clock>,
    /// One line per request, when the bootstrap file asks for it.
    pub access_log: Option<AccessLog>,
    /// Spans exported over OTLP, when the bootstrap file asks for them.
    pub tracing: Option<Arc<telemetry::SpanQueue>>,
}

/// Everything one request carries through the phases, grouped by concern.
#[derive(Debug)]
pub struct RequestCtx {
    started: Instant,
    _active: ActiveRequest,
    request_id: HeaderValue,
    /// The trace this request belongs to and the gateway's span in it (set with the request
    /// id), and that span's `traceparent` as sent on and echoed.
    trace: Option<TraceContext>,
    traceparent: HeaderValue,
    /// The request's spans, when its trace is recorded (`spans.rs`), and the `traceparent`
    /// the current try sends (its own span as the backend's parent).
    spans: Option<Box<RequestSpans>>,
    try_traceparent: Option<HeaderValue>,
    /// The client's address: the TCP peer, or what trusted proxies say (`forwarded.rs`).
    client: Option<std::net::IpAddr>,
    /// The snapshot and the matched route in it, from the route step on.
    routed: Option<Routed>,
    /// Who is calling, when the route authenticates.
    identity: Option<Identity>,
    /// The route's rate limits as this request left them, and per-line charges.
    limits: Limits,
    /// What the route's cache did, and the answer to store as it passes.
    cache: CacheState,
    /// The body bytes read so far (bounded by the route's `max_body_size`).
    body_read: u64,
    /// The tries at the pool's backends, and how they ended.
    tries: Tries,
    /// What picking a backend reads from the request, taken at the first try.
    pick: PickKeys,
    /// The request went on to its pool (a backend was sought), so its answer is the pool's
    /// in `gateway_pool_requests_total`.
    to_pool: bool,
    /// A WebSocket handshake on a route that takes it, then the upgraded connection.
    tunnel: Option<Tunnel>,
    /// The times a write's body touches, read as it passes, when the policy keeps buckets.
    written: Option<Box<WrittenReader>>,
}

/// The rate-limit state of a request.
#[derive(Debug, Default)]
struct Limits {
    admitted: Admitted,
    /// Lines of the body so far, and its last byte (a last line without its newline
    /// counts too), for limits that charge per line.
    lines: u32,
    last_byte: Option<u8>,
}

/// The cache state of a request (`outcome: None`: the route has no cache).
#[derive(Debug, Default)]
struct CacheState {
    outcome: Option<Outcome>,
    storing: Option<Box<Storing>>,
}

/// The request's hash key, hashed (for `ring_hash` and `maglev`), and the backend token of
/// the client's sticky cookie.
#[derive(Debug, Default)]
struct PickKeys {
    hash: Option<u64>,
    sticky: Option<u64>,
}

impl RequestCtx {
    fn route_name(&self) -> &str {
        self.routed
            .as_ref()
            .map_or(NO_ROUTE, |r| r.route().name.as_str())
    }

    fn pool(&self) -> Option<&PoolState> {
        self.routed.as_ref()?.pool()
    }

    /// The headers this request's answer carries, whoever makes it.
    fn common<'a>(&'a self, sticky_cookie: Option<&'a str>) -> Common<'a> {
        Common {
            request_id: &self.request_id,
            traceparent: &self.traceparent,
            cache: self.cache.outcome,
            quotas: &self.limits.admitted.quotas,
            sticky_cookie,
        }
    }

    /// Whether the failed try may be retried (see [`Tries::may_retry`]); a refusal by the
    /// budget is counted.
    fn may_retry(&self, session: &Session, cause: Cause, metrics: &Metrics, now: Instant) -> bool {
        let Some(routed) = &self.routed else {
            return false;
        };
        let Some(pool) = routed.pool() else {
            return false;
        };
        let request = condition::Request {
            idempotent: session.req_header().method.is_idempotent(),
            replayable: !session.as_ref().retry_buffer_truncated(),
        };
        let elapsed = now.saturating_duration_since(self.started);
        match self.tries.may_retry(routed, cause, request, elapsed, now) {
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
    fn record_try(&mut self, ok: bool, metrics: &Metrics, now: Instant) {
        let Some(pool) = self.routed.as_ref().and_then(Routed::pool) else {
            return;
        };
        if let Some((backend, e)) = upstream::record(&mut self.tries, pool, ok, metrics, now) {
            let ids = self.ids();
            tracing::warn!(pool = %pool.pool.name, backend = %backend, for_ms = e.duration.as_millis() as u64, times = e.times, request_id = ids.request_id.to_str().unwrap_or_default(), trace_id = %ids.trace_hex(), "outlier detection ejected a backend that failed requests");
        }
    }

    /// The ids a log event about this request carries.
    fn ids(&self) -> RequestIds {
        RequestIds {
            request_id: self.request_id.clone(),
            trace_id: self.trace.map(|t| t.trace_id),
        }
    }
}

/// The gateway's TCP peer: the client, or a proxy in front of it.
fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// 499 (nginx's "client closed request") when the client left before any answer.
const CLIENT_CLOSED: u16 = 499;

/// How a step ends the request early.
enum Stop {
    /// The gateway answers it itself.
    Refused(Refusal),
    /// Found in the cache.
    Cached(Found),
    /// Reading the request failed (the client's fault or gone).
    Failed(Box<Error>),
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Self {
        Stop::Refused(r)
    }
}

impl Gateway {
    /// The steps of `request_filter`, in order (see the module docs); `Ok` goes on to a
    /// backend.
    async fn steps(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Stop> {
        if normalize::request(session.req_header_mut(), &self.hardening).map_err(Refusal::from)? {
            session.set_keepalive(None);
        }
        session
            .as_downstream_mut()
            .set_read_timeout(Some(self.hardening.body_idle_timeout));
        auth::strip_client_headers(session.req_header_mut());
        ctx.client = peer_ip(session).map(|peer| {
            let forwarded = session.req_header().headers.get(forwarded::FOR);
            forwarded::client(peer, forwarded, &self.hardening.trusted_proxies)
        });

        let routed = route::resolve(self.snapshot.load_full(), session.req_header())?;
        ctx.routed = Some(routed.clone());
        let route = routed.route();
        if declared_length(session.req_header()).is_some_and(|n| n > route.max_body_size) {
            return Err(too_large(&route.name, route.max_body_size).into());
        }
        ctx.tunnel = websocket::check(session.req_header_mut(), route, &self.metrics)
            .map_err(Refusal::from)?;
        if let Some(tunnel) = &ctx.tunnel {
            // The client's side waits, and is waited for, up to the idle timeout.
            let downstream = session.as_downstream_mut();
            downstream.set_read_timeout(Some(tunnel.idle_timeout()));
            downstream.set_write_timeout(Some(tunnel.idle_timeout()));
        }

        if let Some(rule) = &route.auth {
            let peer = session
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|s| s.extension.get::<PeerCert>())
                .cloned();
            let now_unix = wall_now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let req = session.req_header_mut();
            let auths = &routed.snapshot().auth;
            let id = auth::authenticate(req, peer.as_ref(), rule, auths, now_unix, self.now())
                .await
                .map_err(Refusal::from)?;
            ctx.identity = Some(id);
        }

        // Limits come after authentication, so their keys can name the caller.
        let id = ctx.identity.as_ref();
        let src = ratelimit::KeySource {
            identity: id.map(|i| i.subject.as_str()),
            tenant: id.and_then(|i| i.tenant.as_deref()),
            client_ip: ctx.client,
            route: &route.name,
            headers: &session.req_header().headers,
            claims: id.map_or(&[], |i| i.claims.as_slice()),
        };
        let links = routed.links();
        ctx.limits.admitted = ratelimit::admit(&links.limits, route.cost, &src, &self.metrics)
            .await
            .map_err(Refusal::from)?;

        // A handshake is never answered from a cache.
        let (Some(settings), Some(cache), None) = (&route.cache, &links.cache, &ctx.tunnel) else {
            return Ok(());
        };
        let caller = Caller {
            tenant: id.and_then(|i| i.tenant.as_deref()),
            identity: id.map(|i| i.subject.as_str()),
        };
        match cache_step::lookup(session, settings, cache, caller, routed.pool_name()).await {
            Ok(CacheStep::Proceed { outcome, storing }) => {
                ctx.cache = CacheState {
                    outcome: Some(outcome),
                    storing,
                };
                Ok(())
            }
            Ok(CacheStep::Answer(found)) => Err(Stop::Cached(found)),
            Ok(CacheStep::Buckets(job)) => {
                match self
                    .answer_by_bucket(session, ctx, &routed, cache, *job)
                    .await
                {
                    Some(found) => Err(Stop::Cached(found)),
                    // On to a backend as it came, its answer not stored.
                    None => {
                        cache.stats().count(Outcome::Miss);
                        ctx.cache = CacheState {
                            outcome: Some(Outcome::Miss),
                            storing: None,
                        };
                        Ok(())
                    }
                }
            }
            Err(e) => Err(Stop::Failed(e)),
        }
    }

    /// The bucket path (`cache/bucketed.rs`): the kept buckets of the query's shape, and
    /// one request of the gateway's own for the missing ones. `None`: the request goes on
    /// to a backend as it came (no plan for its range, the fetch failed or did not read).
    async fn answer_by_bucket(
        &self,
        session: &Session,
        ctx: &RequestCtx,
        routed: &Routed,
        cache: &Arc<QueryCache>,
        job: BucketJob,
    ) -> Option<Found> {
        let BucketJob {
            ask,
            store,
            settle,
            brief,
        } = job;
        let now_ns = cache.wall_ns();
        let as_ns = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let prepared = bucketed::prepare(&store, &ask, now_ns, as_ns(settle))?;
        let (cached, fetched_buckets) = bucketed::counts(ask.shape.grid, &prepared.plan);
        let fail = |why: &dyn std::fmt::Display| {
            let ids = ctx.ids();
            tracing::warn!(route = %routed.route().name, error = %why, request_id = ids.request_id.to_str().unwrap_or_default(), trace_id = %ids.trace_hex(), "bucket fetch unused: the request goes to a backend as it came");
        };
        let (fetched, headers) = if prepared.plan.fetch.is_empty() {
            let headers = store
                .headers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            (Vec::new(), headers)
        } else {
            let mut request = cache_request::refresh_request(session.req_header().clone());
            if let Err(e) =
                backend_headers(session, ctx, &self.hardening.trusted_proxies, &mut request)
            {
                fail(&e);
                return None;
            }
            let request = match bucketed::fetch_request(request, &ask, &prepared.plan) {
                Ok(r) => r,
                Err(e) => {
                    fail(&e);
                    return None;
                }
            };
            let now = || cache.now();
            let answer = fetch::fetch(
                &self.own_client.0,
                routed,
                request,
                None,
                cache.config.max_entry_size,
                &self.metrics,
                &now,
            )
            .await;
            let answer = match answer {
                Ok(a) if a.head.status.as_u16() == 200 => a,
                Ok(a) => {
                    fail(&format_args!(
                        "backend {} answered {}",
                        a.backend, a.head.status
                    ));
                    return None;
                }
                Err(e) => {
                    fail(&e);
                    return None;
                }
            };
            let series = match bucketed::read_fetched(&answer.body, prepared.plan.fetch.len()) {
                Ok(s) => s,
                Err(e) => {
                    fail(&e);
                    return None;
                }
            };
            let headers = entry::stored_headers(&answer.head);
            *store
                .headers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = headers.clone();
            (series, headers)
        };
        let body = match bucketed::complete(
            &store,
            &ask,
            &prepared,
            &fetched,
            now_ns,
            now_ns.saturating_add(as_ns(brief)),
        ) {
            Ok(b) => b,
            Err(e) => {
                fail(&e);
                return None;
            }
        };
        if !prepared.plan.fetch.is_empty() {
            cache.reweigh(&ask.key, &store);
        }
        let outcome = match (cached, prepared.plan.fetch.is_empty()) {
            (_, true) => Outcome::Hit,
            (0, false) => Outcome::Miss,
            _ => Outcome::Partial,
        };
        let stats = cache.stats();
        stats.count(outcome);
        stats
            .bucket_hits
            .fetch_add(cached, std::sync::atomic::Ordering::Relaxed);
        stats
            .buckets_fetched
            .fetch_add(fetched_buckets, std::sync::atomic::Ordering::Relaxed);
        let entry = Entry {
            headers,
            body: bytes::Bytes::from(body),
            stored_at: cache.now(),
            fresh_for: Duration::ZERO,
            stale_for: Duration::ZERO,
            pool: Arc::from(routed.pool_name()),
            db: ask.db,
        };
        Some(Found {
            entry: Arc::new(entry),
            outcome,
            age: Duration::ZERO,
            refresh: None,
        })
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Answers a refusal (counted when it breaks the listener's rules).
    async fn refuse(&self, session: &mut Session, ctx: &RequestCtx, refusal: &Refusal) {
        if let Some(reason) = refusal.counted_as() {
            self.metrics.refusal(&self.listener, reason);
        }
        respond::refusal(session, refusal, &ctx.common(None)).await;
    }

    /// Answers from the cache; a stale entry sends one refresh.
    async fn answer_cached(&self, session: &mut Session, ctx: &mut RequestCtx, found: Found) {
        ctx.cache.outcome = Some(found.outcome);
        let head = answer::head(&found.entry, found.age)
            .and_then(|mut head| add_common(&mut head, ctx).map(|_| head));
        match head {
            Ok(head) => {
                answer::write(session, head, &found.entry).await;
            }
            Err(e) => {
                let ids = ctx.ids();
                tracing::error!(route = %ctx.route_name(), error = %e, request_id = ids.request_id.to_str().unwrap_or_default(), trace_id = %ids.trace_hex(), "a stored answer could not be written");
                let unreadable = Refusal::Internal {
                    message: "cached answer unreadable",
                };
                respond::refusal(session, &unreadable, &ctx.common(None)).await;
            }
        }
        if let Some(stale) = found.refresh {
            self.refresh(session, ctx, stale);
        }
    }

    /// Sends one background refresh of a stale entry, unless one is on its way already.
    fn refresh(&self, session: &Session, ctx: &RequestCtx, stale: StaleKey) {
        let Some(routed) = ctx.routed.as_ref() else {
            return;
        };
        let route = routed.route();
        let Some(cache) = &routed.links().cache else {
            return;
        };
        let Join::Lead(leader) = cache.join(&stale.key) else {
            return;
        };
        let mut request = cache_request::refresh_request(session.req_header().clone());
        // The answer is out already: a refresh that cannot be sent is skipped.
        if let Err(e) = backend_headers(session, ctx, &self.hardening.trusted_proxies, &mut request)
        {
            let ids = ctx.ids();
            tracing::warn!(route = %route.name, error = %e, request_id = ids.request_id.to_str().unwrap_or_default(), trace_id = %ids.trace_hex(), "stale entry not refreshed");
            return;
        }
        let mark = cache.write_mark(routed.pool_name(), stale.db.as_deref());
        refresh::spawn(
            self.own_client.clone(),
            refresh::Refresh {
                routed: routed.clone(),
                cache: cache.clone(),
                key: stale.key,
                leader,
                request,
                body: stale.body.map(bytes::Bytes::from),
                db: stale.db,
                mark,
            },
            self.metrics.clone(),
        );
    }
}

/// The common headers of this request's answer (`respond::add_common`), with the sticky
/// cookie of the backend that answered.
fn add_common(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    let cookie = sticky_cookie(ctx);
    respond::add_common(resp, &ctx.common(cookie.as_deref()))
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: self.now(),
            _active: self.active.start(),
            request_id: HeaderValue::from_static(""),
            trace: None,
            traceparent: HeaderValue::from_static(""),
            spans: None,
            try_traceparent: None,
            client: None,
            routed: None,
            identity: None,
            limits: Limits::default(),
            cache: CacheState::default(),
            body_read: 0,
            tries: Tries::default(),
            pick: PickKeys::default(),
            to_pool: false,
            tunnel: None,
            written: None,
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
        let req = session.req_header();
        let mut trace = TraceContext::of(req);
        if let Some(tracing) = &self.tracing {
            let tracestate = req
                .headers
                .get(trace_context::TRACESTATE)
                .and_then(|v| v.to_str().ok());
            ctx.spans = RequestSpans::start(
                tracing,
                &mut trace,
                tracestate,
                req.method.as_str(),
                req.uri.path(),
                crate::clock::wall_now(),
            )
            .map(Box::new);
        }
        ctx.traceparent = trace.header();
        ctx.trace = Some(trace);
        Ok(())
    }

    /// The steps (see the module docs); `true` when the request was answered here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        contain::phase("request_filter", &self.metrics, ctx.ids(), async {
            match self.steps(session, ctx).await {
                Ok(()) => Ok(false),
                Err(Stop::Refused(refusal)) => {
                    self.refuse(session, ctx, &refusal).await;
                    Ok(true)
                }
                Err(Stop::Cached(found)) => {
                    self.answer_cached(session, ctx, found).await;
                    Ok(true)
                }
                Err(Stop::Failed(e)) => Err(e),
            }
        })
        .await
    }

    /// The route's `max_body_size` (413) as the body passes, and per-line costs: counts the
    /// body's lines, and charges them when it ends.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        contain::phase("request_body_filter", &self.metrics, ctx.ids(), async {
            // After a 101 the bytes are the upgraded protocol's, not a body.
            if session.was_upgraded() {
                return Ok(());
            }
            if let (Some(b), Some(routed)) = (body.as_ref(), &ctx.routed) {
                if ctx.body_read == 0 && ctx.written.is_none() {
                    ctx.written = written_reader(session.req_header(), routed).map(Box::new);
                }
                ctx.body_read = ctx.body_read.saturating_add(b.len() as u64);
                let route = routed.route();
                if ctx.body_read > route.max_body_size {
                    return Err(too_large(&route.name, route.max_body_size).into_error());
                }
                if let Some(w) = ctx.written.as_mut() {
                    w.feed(b);
                }
            }
            let limits = &mut ctx.limits;
            if limits.admitted.line_charges.is_empty() {
                return Ok(());
            }
            if let Some(b) = body.as_ref().filter(|b| !b.is_empty()) {
                limits.lines = limits.lines.saturating_add(ratelimit::count_newlines(b));
                limits.last_byte = b.last().copied();
            }
            if end_of_stream {
                let unterminated = limits.last_byte.is_some_and(|b| b != b'\n');
                let lines = limits.lines.saturating_add(u32::from(unterminated));
                // The head paid one token; the rest is charged now, even into debt.
                for (limiter, key) in std::mem::take(&mut limits.admitted.line_charges) {
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
        contain::phase("upstream_peer", &self.metrics, ctx.ids(), async {
            // A clone (two Arcs), so the route can be read while the tries are updated.
            let Some(routed) = ctx.routed.clone() else {
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "no route in context",
                ));
            };
            let route = routed.route();
            let Some(pool) = routed.pool() else {
                return Err(Refusal::NoHealthyBackend.into_error().more_context(format!(
                    "route {}: pool {} is gone",
                    route.name,
                    routed.pool_name()
                )));
            };
            ctx.to_pool = true;
            if ctx.tries.is_first() {
                pool.live.budget.record_request(self.now());
                let headers = &session.req_header().headers;
                if pool.chooser.hashes() {
                    let keys = RequestKeys {
                        identity: ctx.identity.as_ref().map(|i| i.subject.as_str()),
                        tenant: ctx.identity.as_ref().and_then(|i| i.tenant.as_deref()),
                        client_ip: ctx.client,
                        headers,
                    };
                    ctx.pick.hash = key::hash_of(&pool.pool.hash_key, &keys);
                }
                ctx.pick.sticky = pool
                    .pool
                    .sticky
                    .as_ref()
                    .and_then(|s| key::cookie(headers, &s.cookie))
                    .and_then(key::parse_token);
            } else {
                self.metrics.retry(&route.name);
                let p = routed.retries();
                let retry = ctx.tries.tried().len() as u32;
                let wait = backoff::delay(retry, p.backoff_base, p.backoff_max, &mut rand::rng());
                tokio::time::sleep(wait).await;
            }
            let now = self.now();
            let max = pool.pool.max_in_flight_per_backend;
            // Passed over: backends that filled up between the pick and the count (each pass
            // adds one, so this ends within the pool's size).
            let mut skip = Vec::new();
            let (picked, guard) = loop {
                let req = PickRequest {
                    tried: ctx.tries.tried(),
                    skip: &skip,
                    now,
                    key: ctx.pick.hash,
                    sticky: ctx.pick.sticky,
                };
                match pool.pick(&req) {
                    Ok(p) => match p.live.try_start_request(now, max) {
                        Some(guard) => break (p, guard),
                        None => skip.push(p.index),
                    },
                    Err(no) => {
                        let refusal = Refusal::from(no);
                        if matches!(refusal, Refusal::PoolFull) {
                            self.metrics.circuit_overflow(&pool.pool.name);
                        }
                        let context = format!(
                            "route {}: pool {}: {refusal}",
                            route.name,
                            routed.pool_name()
                        );
                        return Err(refusal.into_error().more_context(context));
                    }
                }
            };
            let (index, addr) = (picked.index, picked.address);
            ctx.tries.start(index, addr, guard);
            if let (Some(spans), Some(trace)) = (ctx.spans.as_mut(), &ctx.trace) {
                let span_id = spans.start_try(addr, crate::clock::wall_now());
                ctx.try_traceparent = Some(trace.header_for(span_id));
            }
            let elapsed = now.saturating_duration_since(ctx.started);
            let mut peer = upstream::peer(route, routed.retries(), pool, index, elapsed);
            if let Some(tunnel) = &ctx.tunnel {
                tunnel.apply(&mut peer);
            }
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
            ctx.ids(),
            || {
                let backend = peer.address().to_string();
                let now = self.now();
                ctx.record_try(false, &self.metrics, now);
                if let Some(spans) = ctx.spans.as_mut() {
                    spans.try_failed(UpstreamErrorKind::Connect.as_str());
                }
                self.metrics
                    .upstream_error(ctx.route_name(), &backend, UpstreamErrorKind::Connect);
                if ctx.may_retry(session, Cause::Connect, &self.metrics, now) {
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
            ctx.ids(),
            || {
                let backend = peer.address().to_string();
                if ctx.tries.take_held() {
                    e.set_retry(true);
                    return e
                        .more_context(format!("route {}: backend {backend}", ctx.route_name()));
                }
                let kind = UpstreamErrorKind::of(&e);
                // An upgraded connection silent for its idle timeout ends so: no backend
                // failed.
                let idle_end = kind == UpstreamErrorKind::Timeout
                    && ctx.tunnel.as_ref().is_some_and(Tunnel::is_open);
                let upstream = *e.esource() == ErrorSource::Upstream && !idle_end;
                let now = self.now();
                if upstream {
                    ctx.record_try(false, &self.metrics, now);
                    if let Some(spans) = ctx.spans.as_mut() {
                        spans.try_failed(kind.as_str());
                    }
                    self.metrics
                        .upstream_error(ctx.route_name(), &backend, kind);
                }
                let cause = match kind {
                    UpstreamErrorKind::Reset => Some(Cause::Reset),
                    UpstreamErrorKind::Timeout => Some(Cause::Timeout),
                    _ => None,
                };
                let retry = upstream
                    && cause.is_some_and(|c| ctx.may_retry(session, c, &self.metrics, now));
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
        contain::phase("upstream_request_filter", &self.metrics, ctx.ids(), async {
            backend_headers(session, ctx, &self.hardening.trusted_proxies, upstream)?;
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
        contain::phase(
            "upstream_response_filter",
            &self.metrics,
            ctx.ids(),
            async {
                let status = upstream_response.status.as_u16();
                let now = self.now();
                ctx.record_try(status < 500, &self.metrics, now);
                if let Some(spans) = ctx.spans.as_mut() {
                    spans.try_answered(status);
                }
                if status >= 500
                    && ctx.may_retry(session, Cause::Status(status), &self.metrics, now)
                {
                    ctx.tries.hold_for_retry();
                    let backend = ctx
                        .tries
                        .tried()
                        .last()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    self.metrics.upstream_error(
                        ctx.route_name(),
                        &backend,
                        UpstreamErrorKind::Status,
                    );
                    return Err(Error::explain(
                        ErrorType::HTTPStatus(status),
                        format!(
                            "route {}: backend {backend} answered {status}: retrying",
                            ctx.route_name()
                        ),
                    ));
                }
                ctx.tries.answer_started();
                if let Some(storing) = ctx.cache.storing.as_mut() {
                    storing.head(upstream_response);
                }
                if (200..300).contains(&status) {
                    invalidate_on_write(session.req_header(), ctx);
                }
                Ok(())
            },
        )
        .await
    }

    /// The common headers go back to the client with the backend's answer; a 101 that
    /// completes a WebSocket handshake opens the tunnel.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        contain::phase("response_filter", &self.metrics, ctx.ids(), async {
            if session.is_upgrade(upstream_response) == Some(true) {
                if let (Some(tunnel), Some(routed)) = (ctx.tunnel.as_mut(), &ctx.routed) {
                    tunnel.opened(&self.metrics, &routed.route().name, self.now());
                }
            }
            add_common(upstream_response, ctx)
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
            ctx.ids(),
            || {
                if let Some(storing) = ctx.cache.storing.as_mut() {
                    storing.body(body.as_ref(), end_of_stream);
                }
                Ok(None)
            },
            Err,
        )
    }

    /// A failure becomes its refusal's answer (`refusal.rs`): no backend 503, upstream
    /// timeout 504, other upstream failures 502, a stalled body 408, a body too large 413.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        contain::phase("fail_to_proxy", &self.metrics, ctx.ids(), async {
            let refusal = Refusal::of_proxy_error(e);
            let code = refusal.as_ref().map_or(0, Refusal::status);
            if let Some(refusal) = refusal.filter(|_| !ctx.tries.answered()) {
                tracing::warn!(request_id = ctx.request_id.to_str().unwrap_or_default(), trace_id = %ctx.trace.map(|t| t.trace_id_hex()).unwrap_or_default(), code, error = %e, "request failed");
                self.refuse(session, ctx, &refusal).await;
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

    /// An upgraded connection that ends by its idle timeout is not an error to log.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        ctx.tunnel.as_ref().is_some_and(Tunnel::is_open)
            && matches!(
                e.etype(),
                ErrorType::ReadTimedout | ErrorType::WriteTimedout
            )
    }

    /// The answer is counted with its route, status and latency (of an upgrade: to its
    /// 101); an upgraded connection stops counting as open.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let _ = contain::phase("logging", &self.metrics, ctx.ids(), async {
            let status = session
                .response_written()
                .map_or(StatusCode::from_u16(CLIENT_CLOSED), |r| Ok(r.status))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let tunnel = ctx.tunnel.take();
            let end = tunnel.as_ref().and_then(Tunnel::opened_at);
            let took = end
                .unwrap_or_else(|| self.now())
                .saturating_duration_since(ctx.started);
            self.metrics.request(ctx.route_name(), status, took);
            if let Some(routed) = ctx.routed.as_ref().filter(|_| ctx.to_pool) {
                let route = &routed.route().name;
                self.metrics
                    .pool_request(route, routed.pool_name(), status, took);
            }
            let logged = ctx.routed.as_ref().is_none_or(|r| {
                r.route()
                    .access_log
                    .wants(status.as_u16(), || rand::random_range(0..1_000_000))
            });
            if let Some(log) = self.access_log.as_ref().filter(|_| logged) {
                if !log.log(access_entry(session, ctx, status, took)) {
                    self.metrics.access_log_dropped();
                }
            }
            if let Some(tunnel) = tunnel {
                tunnel.ended(&self.metrics, ctx.route_name());
            }
            if let (Some(spans), Some(queue)) = (ctx.spans.take(), self.tracing.as_ref()) {
                let outcome = spans::Outcome {
                    status: status.as_u16(),
                    route: ctx.route_name(),
                    pool: ctx.pool().map(|p| p.pool.name.as_str()),
                    request_id: ctx.request_id.to_str().unwrap_or_default(),
                    client: ctx.client.or_else(|| peer_ip(session)),
                };
                spans.end(queue, &outcome, crate::clock::wall_now());
            }
            ctx.tries.end();
            Ok(())
        })
        .await;
    }
}

/// The access-log line of a request whose answer ended with `status` after `took`.
fn access_entry(
    session: &Session,
    ctx: &RequestCtx,
    status: StatusCode,
    took: Duration,
) -> access_log::Entry {
    let req = session.req_header();
    let header = |name: http::header::HeaderName| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let downstream = session.as_downstream();
    let limited = status == StatusCode::TOO_MANY_REQUESTS;
    access_log::Entry {
        time: access_log::LineTime(crate::clock::wall_now()),
        request_id: ctx.request_id.to_str().unwrap_or_default().to_string(),
        trace_id: ctx.trace.map(|t| t.trace_id),
        client: ctx.client.or_else(|| peer_ip(session)),
        identity: ctx.identity.as_ref().map(|i| i.subject.clone()),
        tenant: ctx.identity.as_ref().and_then(|i| i.tenant.clone()),
        method: req.method.clone(),
        host: header(http::header::HOST)
            .or_else(|| req.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default(),
        path: access_log::redact(req.uri.path_and_query().map_or("/", |p| p.as_str())),
        status: status.as_u16(),
        bytes_in: downstream.body_bytes_read() as u64,
        bytes_out: downstream.body_bytes_sent() as u64,
        duration_ms: took.as_secs_f64() * 1000.0,
        upstream: ctx.tries.tried().last().copied(),
        tries: ctx.tries.tried().len(),
        cache: ctx.cache.outcome.map(|o| o.header()),
        rate_limit: if limited {
            Some("limited")
        } else if ctx.limits.admitted.quotas.is_empty() {
            None
        } else {
            Some("admitted")
        },
        route: ctx.route_name().to_string(),
        pool: ctx.pool().map(|p| p.pool.name.clone()),
        user_agent: header(http::header::USER_AGENT),
        referer: header(http::header::REFERER),
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
    Refusal::BodyTooLarge {
        route: route.to_string(),
        max,
    }
}

/// The sticky cookie naming the backend that answered, when the pool is sticky and the
/// client's cookie named another one (or none).
fn sticky_cookie(ctx: &RequestCtx) -> Option<String> {
    let pool = ctx.pool()?;
    let sticky = pool.pool.sticky.as_ref()?;
    let token = pool.sticky_token(ctx.tries.current_index()?)?;
    (ctx.pick.sticky != Some(token)).then(|| {
        format!(
            "{}={}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax",
            sticky.cookie,
            key::format_token(token),
            sticky.ttl.as_secs()
        )
    })
}

/// A write that succeeded (`POST .../write?db=X`) drops the cached answers about X from
/// every pool the route may send to (the pools of a split hold the same data, and the
/// write reached one of them), in the caches that invalidate on writes.
fn invalidate_on_write(req: &RequestHeader, ctx: &mut RequestCtx) {
    if req.method != http::Method::POST || !req.uri.path().ends_with("/write") {
        return;
    }
    let Some(routed) = ctx.routed.as_ref() else {
        return;
    };
    let (snapshot, route) = (routed.snapshot(), routed.route());
    if snapshot.caches.is_empty() {
        return;
    }
    let db = req
        .uri
        .query()
        .and_then(|q| crate::cache::key::param(q.as_bytes(), "db"));
    let Some(db) = db else {
        return;
    };
    for pool in route.pools() {
        snapshot.caches.invalidate_db(pool, &db);
    }
    // The kept buckets the write's points landed in (all of the database's, when its body
    // went unread: a write with no reader, or one that streamed nothing).
    let written =
        ctx.written
            .take()
            .map(|w| w.finish())
            .unwrap_or(crate::cache::written::Written {
                unreadable: true,
                ..Default::default()
            });
    let now_ns = crate::clock::wall_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    for pool in route.pools() {
        snapshot
            .caches
            .invalidate_written(pool, &db, &written, now_ns);
    }
}

/// A reader of the times a write touches, for a `POST .../write` when the policy has caches.
fn written_reader(req: &RequestHeader, routed: &Routed) -> Option<WrittenReader> {
    if req.method != http::Method::POST
        || !req.uri.path().ends_with("/write")
        || routed.snapshot().caches.is_empty()
    {
        return None;
    }
    let precision = req
        .uri
        .query()
        .and_then(|q| crate::cache::key::param(q.as_bytes(), "precision"));
    WrittenReader::new(precision.as_deref())
}

/// The headers the gateway adds to a request for a backend: the request id, the client's
/// address (`forwarded.rs`: believed only from a trusted proxy), how the request came in
/// (scheme, host, port), and who the caller is (the pipeline's try and a cache refresh
/// alike).
fn backend_headers(
    session: &Session,
    ctx: &RequestCtx,
    trusted: &TrustedProxies,
    upstream: &mut RequestHeader,
) -> Result<()> {
    upstream.insert_header(request_id::HEADER, ctx.request_id.clone())?;
    if let Some(trace) = &ctx.trace {
        let traceparent = ctx.try_traceparent.as_ref().unwrap_or(&ctx.traceparent);
        upstream.insert_header(trace_context::TRACEPARENT, traceparent.clone())?;
        if !trace.continued() {
            // State of another trace, or of none: not the backend's to read.
            upstream.remove_header(trace_context::TRACESTATE);
        }
    }
    if let Some(peer) = peer_ip(session) {
        let value = forwarded::for_value(upstream.headers.get(forwarded::FOR), peer, trusted);
        upstream.insert_header(forwarded::FOR, value)?;
    }
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    upstream.insert_header(forwarded::PROTO, forwarded::proto_value(tls))?;
    if let Some(host) = session
        .req_header()
        .headers
        .get(http::header::HOST)
        .cloned()
    {
        upstream.insert_header(forwarded::HOST, host)?;
    }
    if let Some(local) = session.server_addr().and_then(|a| a.as_inet()) {
        upstream.insert_header(forwarded::PORT, HeaderValue::from(local.port()))?;
    }
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
