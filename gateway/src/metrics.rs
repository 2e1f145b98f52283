//! The gateway's Prometheus metrics: what the data plane, the health checkers and the
//! reloader count, rendered as text at `GET /metrics` on the admin port.
//!
//! Counters are bumped where things happen; gauges that describe the current snapshot
//! (backend health, requests in flight, policy version) are filled in at scrape time from
//! the snapshot itself, so they can never drift from what `/admin/status` shows.

use crate::auth::api_keys::Counts as ApiKeyCounts;
use crate::cache::CacheStats;
use pingora::http::StatusCode;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The label for requests that matched no route.
pub const NO_ROUTE: &str = "(none)";

/// Every metric the gateway exports; shared behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `gateway_requests_total{route,status}`: answers sent, by route and status code.
    requests: IntCounterVec,
    /// `gateway_request_duration_seconds{route}`: from the request head to the last byte.
    duration: HistogramVec,
    /// `gateway_pool_requests_total{route,pool,class}`: requests a route sent on to a pool
    /// (not those refused or answered from the cache before), by the answer's status class.
    pool_requests: IntCounterVec,
    /// `gateway_pool_request_duration_seconds{route,pool}`: their time, head to last byte.
    pool_duration: HistogramVec,
    /// `gateway_access_log_dropped_total`: access-log lines dropped because the writer was
    /// behind (a request never waits for the log).
    access_log_dropped: IntCounter,
    /// `gateway_trace_spans_total{result}`: spans sent to the OTLP collector, `exported` or
    /// `failed` (collector down, refusing or too slow: spans lost, requests unaffected).
    trace_spans: IntCounterVec,
    /// `gateway_backend_response_seconds{pool,backend}`: from sending a try to its
    /// answer's head (or its failure), per backend (Envoy's `upstream_rq_time`).
    backend_latency: HistogramVec,
    /// `gateway_upstream_errors_total{route,backend,kind}`: failed tries, retried or not.
    upstream_errors: IntCounterVec,
    /// `gateway_retries_total{route}`: tries sent to another backend after a failure.
    retries: IntCounterVec,
    /// `gateway_health_transitions_total{pool,backend,to}`: `to` is `up` or `down`.
    health_transitions: IntCounterVec,
    /// `gateway_policy_reloads_total{result}`: `result` is `ok` or `failed`.
    reloads: IntCounterVec,
    /// `gateway_dns_resolution_failures_total{pool,name}`: resolutions of a backend's name
    /// that failed (it kept its last addresses).
    dns_failures: IntCounterVec,
    /// `gateway_ratelimit_decisions_total{limit,result,source}`: `result` admitted or
    /// limited; `source` local, redis, fallback (Redis did not answer) or unavailable.
    ratelimit: IntCounterVec,
    /// `gateway_outlier_ejections_total{pool,backend}`: backends ejected for failing
    /// requests.
    ejections: IntCounterVec,
    /// `gateway_retry_budget_exhausted_total{pool}`: retries refused by the budget.
    budget_exhausted: IntCounterVec,
    /// `gateway_circuit_breaker_overflows_total{pool}`: requests refused (503) because every
    /// backend was at `max_in_flight_per_backend`.
    circuit_overflows: IntCounterVec,
    /// `gateway_cache_*_total{cache}`: what each cache did, copied from its own counters at
    /// scrape time (they outlive reloads): hits, misses, stale, bypass, coalesced,
    /// evictions, refreshes, refresh_failures, invalidations, and the bucket path's
    /// partial, bucket_hits, buckets_fetched, bucket_invalidations.
    cache_counters: Vec<(CacheCounter, IntCounterVec)>,
    /// `gateway_refusals_total{listener,reason}`: requests and connections the hardening
    /// refused (a path, framing, header or host it would not pass on, a deadline or a limit).
    refusals: IntCounterVec,
    /// `gateway_connections_open{listener}`: client connections being served.
    connections_open: IntGaugeVec,
    /// `gateway_proxy_protocol_refused_total{listener,reason}`: connections closed at their
    /// PROXY header (untrusted, missing, malformed, too_long, timeout, closed).
    proxy_protocol_refused: IntCounterVec,
    /// `gateway_panics_total{phase}`: panics caught in a pipeline phase (answered 500).
    panics: IntCounterVec,
    /// `gateway_api_key_checks_total{authenticator,result}`: keys presented to an API-key
    /// authenticator, `accepted`, `unknown` or `busy` (no turn at an Argon2 check), copied
    /// from the authenticator's own counters at scrape time.
    api_key_checks: IntCounterVec,
    /// `gateway_api_key_file_reloads_total{authenticator,result}`: readings of a changed key
    /// file, `ok` (swapped in) or `failed` (the keys in force stay).
    api_key_reloads: IntCounterVec,
    /// `gateway_api_keys{authenticator}`: keys in force.
    api_keys: IntGaugeVec,
    /// `gateway_websocket_connections{route}`: upgraded connections open now.
    websocket_connections: IntGaugeVec,
    /// `gateway_websocket_upgrades_total{route,result}`: WebSocket handshakes by result:
    /// `upgraded` (the backend switched), `refused` (the route takes no upgrade: 403),
    /// `failed` (no backend switched: it answered otherwise, or no try succeeded).
    websocket_upgrades: IntCounterVec,
    cache_bytes: IntGaugeVec,
    cache_entries: IntGaugeVec,
    cache_max_bytes: IntGaugeVec,
    /// `gateway_ratelimit_redis_up`: 1 while global limits reach Redis, 0 while they
    /// degrade; absent when no limit is global (no Redis to reach), so an alert on 0 never
    /// fires for a gateway that has none.
    redis_up: IntGaugeVec,
    /// `gateway_ratelimit_instances`: gateways sharing the global limits (absent likewise).
    redis_instances: IntGaugeVec,
    backend_healthy: IntGaugeVec,
    backend_in_flight: IntGaugeVec,
    policy_version: IntGauge,
    policy_loaded: IntGauge,
}

/// One counter of a cache's [`CacheStats`].
type CacheCounter = fn(&CacheStats) -> &AtomicU64;

/// The cache counters: metric name, help, and where the count is kept.
const CACHE_COUNTERS: [(&str, &str, CacheCounter); 13] = [
    (
        "gateway_cache_hits_total",
        "Answers from a fresh cache entry (coalesced waits included)",
        |s| &s.hits,
    ),
    (
        "gateway_cache_misses_total",
        "Cacheable requests that went to a backend",
        |s| &s.misses,
    ),
    (
        "gateway_cache_stale_total",
        "Answers from an expired entry within stale_while_revalidate",
        |s| &s.stale,
    ),
    (
        "gateway_cache_bypass_total",
        "Requests on a cached route that did not look up (method, Cache-Control, a write query)",
        |s| &s.bypass,
    ),
    (
        "gateway_cache_coalesced_total",
        "Requests that waited for an identical request and were answered from its entry",
        |s| &s.coalesced,
    ),
    (
        "gateway_cache_evictions_total",
        "Entries dropped to keep the cache within max_size",
        |s| &s.evictions,
    ),
    (
        "gateway_cache_refreshes_total",
        "Background refreshes of stale entries that stored a fresh answer",
        |s| &s.refreshes,
    ),
    (
        "gateway_cache_refresh_failures_total",
        "Background refreshes that stored nothing",
        |s| &s.refresh_failures,
    ),
    (
        "gateway_cache_invalidations_total",
        "Invalidations: writes that dropped a database's entries, and purges",
        |s| &s.invalidations,
    ),
    (
        "gateway_cache_partial_total",
        "Dashboard queries answered from kept buckets and a fetch of the missing ones",
        |s| &s.partial,
    ),
    (
        "gateway_cache_bucket_hits_total",
        "Buckets of dashboard queries served from the cache",
        |s| &s.bucket_hits,
    ),
    (
        "gateway_cache_buckets_fetched_total",
        "Buckets of dashboard queries asked of a backend",
        |s| &s.buckets_fetched,
    ),
    (
        "gateway_cache_bucket_invalidations_total",
        "Kept bucket ranges dropped because a write through the gateway landed in them",
        |s| &s.buckets_invalidated,
    ),
];

/// Latency buckets in seconds: fine below a millisecond, where a proxy's own cost lives.
fn buckets() -> Vec<f64> {
    vec![
        0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        10.0, 30.0,
    ]
}

/// How a try to a backend failed, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Reset,
    /// The backend answered 5xx (counted when the answer was held back for a retry).
    Status,
    Other,
}

impl UpstreamErrorKind {
    /// What kind of failure an error on an established upstream connection is.
    pub fn of(e: &pingora::Error) -> Self {
        use pingora::ErrorType;
        match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => UpstreamErrorKind::Timeout,
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
                UpstreamErrorKind::Reset
            }
            _ => UpstreamErrorKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Status => "status",
            UpstreamErrorKind::Other => "other",
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from a request's head to its answer's last byte, by route",
            )
            .buckets(buckets()),
            &["route"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        let pool_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_pool_request_duration_seconds",
                "Time from a request's head to its answer's last byte, by route and the pool it went to",
            )
            .buckets(buckets()),
            &["route", "pool"],
        )?;
        registry.register(Box::new(pool_duration.clone()))?;
        let backend_latency = HistogramVec::new(
            HistogramOpts::new(
                "gateway_backend_response_seconds",
                "Time from sending a try to its answer's head or its failure, by pool and backend",
            )
            .buckets(buckets()),
            &["pool", "backend"],
        )?;
        registry.register(Box::new(backend_latency.clone()))?;
        // Which build is running, as Prometheus exporters say it: a gauge of 1.
        let build_info = IntGaugeVec::new(
            Opts::new("gateway_build_info", "The running build: version, always 1"),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        let access_log_dropped = IntCounter::new(
            "gateway_access_log_dropped_total",
            "Access-log lines dropped because the writer was behind",
        )?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        let trace_spans = IntCounterVec::new(
            Opts::new(
                "gateway_trace_spans_total",
                "Spans sent to the OTLP collector, by result (exported or failed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(trace_spans.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let m = Metrics {
            requests: counter(
                "gateway_requests_total",
                "Answers sent, by route and status code",
                &["route", "status"],
            )?,
            duration,
            pool_requests: counter(
                "gateway_pool_requests_total",
                "Requests a route sent on to a pool, by the answer's status class (1xx to 5xx)",
                &["route", "pool", "class"],
            )?,
            pool_duration,
            backend_latency,
            access_log_dropped,
            trace_spans,
            upstream_errors: counter(
                "gateway_upstream_errors_total",
                "Failed tries to a backend (connect, timeout, reset, other), retried or not",
                &["route", "backend", "kind"],
            )?,
            retries: counter(
                "gateway_retries_total",
                "Tries sent to another backend after a failed one",
                &["route"],
            )?,
            dns_failures: counter(
                "gateway_dns_resolution_failures_total",
                "Failed resolutions of a backend's name (its last addresses were kept), by pool and name",
                &["pool", "name"],
            )?,
            health_transitions: counter(
                "gateway_health_transitions_total",
                "Backends taken out (down) or put back (up) by their health checks",
                &["pool", "backend", "to"],
            )?,
            reloads: counter(
                "gateway_policy_reloads_total",
                "Policy reloads, by result (ok: swapped in; failed: refused, old policy kept)",
                &["result"],
            )?,
            ratelimit: counter(
                "gateway_ratelimit_decisions_total",
                "Rate-limit decisions by limit, result (admitted, limited) and source (local, redis, fallback, unavailable)",
                &["limit", "result", "source"],
            )?,
            ejections: counter(
                "gateway_outlier_ejections_total",
                "Backends ejected by outlier detection for failing requests",
                &["pool", "backend"],
            )?,
            budget_exhausted: counter(
                "gateway_retry_budget_exhausted_total",
                "Retries refused because the pool's retry budget was spent",
                &["pool"],
            )?,
            circuit_overflows: counter(
                "gateway_circuit_breaker_overflows_total",
                "Requests refused because every backend was at max_in_flight_per_backend",
                &["pool"],
            )?,
            cache_counters: CACHE_COUNTERS
                .iter()
                .map(|(name, help, read)| Ok((*read, counter(name, help, &["cache"])?)))
                .collect::<Result<_, prometheus::Error>>()?,
            refusals: counter(
                "gateway_refusals_total",
                "Requests and connections refused by a listener's hardening, by reason",
                &["listener", "reason"],
            )?,
            connections_open: gauge_vec(
                "gateway_connections_open",
                "Client connections being served, by listener",
                &["listener"],
            )?,
            proxy_protocol_refused: counter(
                "gateway_proxy_protocol_refused_total",
                "Connections closed at their PROXY header: from a peer not trusted (untrusted), a trusted peer without one (missing), malformed, too_long, timeout, closed",
                &["listener", "reason"],
            )?,
            panics: counter(
                "gateway_panics_total",
                "Panics caught in a phase of the request pipeline, each answered 500",
                &["phase"],
            )?,
            api_key_checks: counter(
                "gateway_api_key_checks_total",
                "Keys presented to an API-key authenticator, by result (accepted, unknown, busy)",
                &["authenticator", "result"],
            )?,
            api_key_reloads: counter(
                "gateway_api_key_file_reloads_total",
                "Readings of a changed API-key file, by result (ok: swapped in; failed: the keys in force stay)",
                &["authenticator", "result"],
            )?,
            api_keys: gauge_vec(
                "gateway_api_keys",
                "Keys in force, by API-key authenticator",
                &["authenticator"],
            )?,
            websocket_connections: gauge_vec(
                "gateway_websocket_connections",
                "Upgraded (WebSocket) connections open now, by route",
                &["route"],
            )?,
            websocket_upgrades: counter(
                "gateway_websocket_upgrades_total",
                "WebSocket handshakes by route and result (upgraded, refused, failed)",
                &["route", "result"],
            )?,
            cache_bytes: gauge_vec(
                "gateway_cache_bytes",
                "Weight of a cache's entries (keys, heads and bodies), in bytes",
                &["cache"],
            )?,
            cache_entries: gauge_vec(
                "gateway_cache_entries",
                "Entries held by a cache",
                &["cache"],
            )?,
            cache_max_bytes: gauge_vec(
                "gateway_cache_max_bytes",
                "A cache's max_size, in bytes",
                &["cache"],
            )?,
            redis_up: gauge_vec(
                "gateway_ratelimit_redis_up",
                "1 while global rate limits reach Redis, 0 while they degrade (absent without global limits)",
                &[],
            )?,
            redis_instances: gauge_vec(
                "gateway_ratelimit_instances",
                "Gateways sharing the global limits, as last seen in Redis (absent without global limits)",
                &[],
            )?,
            backend_healthy: gauge_vec(
                "gateway_backend_healthy",
                "1 when the backend passes its health checks, 0 when it is out",
                &["pool", "backend"],
            )?,
            backend_in_flight: gauge_vec(
                "gateway_backend_in_flight",
                "Requests sent to the backend and not finished",
                &["pool", "backend"],
            )?,
            policy_version: gauge(
                "gateway_policy_version",
                "Number of the policy in service: 1 at start, +1 per reload swapped in",
            )?,
            policy_loaded: gauge(
                "gateway_policy_loaded_timestamp_seconds",
                "When the policy in service was loaded (Unix time)",
            )?,
            registry,
        };
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    /// Counts one answer and its latency.
    pub fn request(&self, route: &str, status: StatusCode, took: Duration) {
        self.requests
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// Counts one answer to a request that went on to `pool`, by its status class, and its
    /// latency.
    pub fn pool_request(&self, route: &str, pool: &str, status: StatusCode, took: Duration) {
        let class = match status.as_u16() {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.pool_requests
            .with_label_values(&[route, pool, class])
            .inc();
        self.pool_duration
            .with_label_values(&[route, pool])
            .observe(took.as_secs_f64());
    }

    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }

    /// An export of `spans` spans to the OTLP collector ended (`exported`: it took them).
    pub fn trace_export(&self, spans: u64, exported: bool) {
        let result = if exported { "exported" } else { "failed" };
        self.trace_spans.with_label_values(&[result]).inc_by(spans);
    }

    /// One try's time to its answer's head (or its failure) at `backend` of `pool`. Once
    /// per try: the address is written on the stack, not into a new string.
    pub fn backend_response(&self, pool: &str, backend: std::net::SocketAddr, took: Duration) {
        use std::io::Write as _;
        // `[v6 address%scope]:port` is at most 55 bytes.
        let mut buf = [0u8; 64];
        let len = {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            match write!(cursor, "{backend}") {
                Ok(()) => cursor.position() as usize,
                Err(_) => return,
            }
        };
        let Ok(address) = std::str::from_utf8(&buf[..len]) else {
            return;
        };
        self.backend_latency
            .with_label_values(&[pool, address])
            .observe(took.as_secs_f64());
    }

    pub fn upstream_error(&self, route: &str, backend: &str, kind: UpstreamErrorKind) {
        self.upstream_errors
            .with_label_values(&[route, backend, kind.as_str()])
            .inc();
    }

    /// A request or connection refused by the listener's hardening.
    pub fn refusal(&self, listener: &str, reason: &str) {
        self.refusals.with_label_values(&[listener, reason]).inc();
    }

    /// A connection closed at its PROXY header.
    pub fn proxy_protocol_refused(&self, listener: &str, reason: &str) {
        self.proxy_protocol_refused
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// The gauge of a listener's open connections.
    pub fn connections_open(&self, listener: &str) -> IntGauge {
        self.connections_open.with_label_values(&[listener])
    }

    /// The gauge of a route's open upgraded connections.
    pub fn websocket_connections(&self, route: &str) -> IntGauge {
        self.websocket_connections.with_label_values(&[route])
    }

    /// A WebSocket handshake on `route` ended with `result` (`upgraded`, `refused`,
    /// `failed`).
    pub fn websocket_upgrade(&self, route: &str, result: &str) {
        self.websocket_upgrades
            .with_label_values(&[route, result])
            .inc();
    }

    /// A panic caught in a pipeline phase.
    pub fn panic(&self, phase: &str) {
        self.panics.with_label_values(&[phase]).inc();
    }

    /// Panics caught so far in a phase.
    pub fn panics_of(&self, phase: &str) -> u64 {
        self.panics.with_label_values(&[phase]).get()
    }

    /// Refusals so far on a listener for a reason.
    pub fn refusals_of(&self, listener: &str, reason: &str) -> u64 {
        self.refusals.with_label_values(&[listener, reason]).get()
    }

    pub fn retry(&self, route: &str) {
        self.retries.with_label_values(&[route]).inc();
    }

    pub fn ejection(&self, pool: &str, backend: &str) {
        self.ejections.with_label_values(&[pool, backend]).inc();
    }

    pub fn retry_budget_exhausted(&self, pool: &str) {
        self.budget_exhausted.with_label_values(&[pool]).inc();
    }

    pub fn circuit_overflow(&self, pool: &str) {
        self.circuit_overflows.with_label_values(&[pool]).inc();
    }

    pub fn health_transition(&self, pool: &str, backend: &str, up: bool) {
        let to = if up { "up" } else { "down" };
        self.health_transitions
            .with_label_values(&[pool, backend, to])
            .inc();
    }

    pub fn ratelimit(&self, limit: &str, allowed: bool, source: &str) {
        let result = if allowed { "admitted" } else { "limited" };
        self.ratelimit
            .with_label_values(&[limit, result, source])
            .inc();
    }

    pub fn dns_failure(&self, pool: &str, name: &str) {
        self.dns_failures.with_label_values(&[pool, name]).inc();
    }

    /// Failed resolutions of `name` in `pool` so far.
    pub fn dns_failures(&self, pool: &str, name: &str) -> u64 {
        self.dns_failures.with_label_values(&[pool, name]).get()
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Reloads so far with this result (`true`: swapped in).
    pub fn reloads(&self, ok: bool) -> u64 {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.with_label_values(&[result]).get()
    }

    /// Clears the gauges of backends and caches, before the current ones are set (so
    /// those of a pool or cache a reload removed disappear).
    pub fn clear_gauges(&self) {
        self.backend_healthy.reset();
        self.backend_in_flight.reset();
        self.cache_bytes.reset();
        self.cache_entries.reset();
        self.cache_max_bytes.reset();
        self.api_keys.reset();
        self.redis_up.reset();
        self.redis_instances.reset();
    }

    /// One API-key authenticator's counters (brought up to its own) and keys in force.
    pub fn api_key_gauges(&self, name: &str, counts: &ApiKeyCounts, keys: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let bring_up = |c: &IntCounterVec, result: &str, v: &AtomicU64| {
            let counter = c.with_label_values(&[name, result]);
            counter.inc_by(v.load(Relaxed).saturating_sub(counter.get()));
        };
        bring_up(&self.api_key_checks, "accepted", &counts.accepted);
        bring_up(&self.api_key_checks, "unknown", &counts.unknown);
        bring_up(&self.api_key_checks, "busy", &counts.busy);
        bring_up(&self.api_key_reloads, "ok", &counts.reloads_ok);
        bring_up(&self.api_key_reloads, "failed", &counts.reloads_failed);
        self.api_keys
            .with_label_values(&[name])
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
    }

    /// One backend's health and requests in flight.
    pub fn backend_gauges(&self, pool: &str, backend: &str, healthy: bool, in_flight: u64) {
        let labels = [pool, backend];
        self.backend_healthy
            .with_label_values(&labels)
            .set(i64::from(healthy));
        self.backend_in_flight
            .with_label_values(&labels)
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
    }

    /// One cache's counters (brought up to its own) and sizes.
    pub fn cache_gauges(&self, name: &str, stats: &CacheStats, bytes: u64, entries: u64, max: u64) {
        let name = [name];
        for (read, counter) in &self.cache_counters {
            let counter = counter.with_label_values(&name);
            let now = CacheStats::get(read(stats));
            counter.inc_by(now.saturating_sub(counter.get()));
        }
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.cache_bytes.with_label_values(&name).set(gauge(bytes));
        self.cache_entries
            .with_label_values(&name)
            .set(gauge(entries));
        self.cache_max_bytes
            .with_label_values(&name)
            .set(gauge(max));
    }

    /// Whether the global limits reach Redis, and how many gateways share them.
    pub fn redis_gauges(&self, up: bool, instances: u32) {
        const NO_LABELS: [&str; 0] = [];
        self.redis_up
            .with_label_values(&NO_LABELS)
            .set(i64::from(up));
        self.redis_instances
            .with_label_values(&NO_LABELS)
            .set(i64::from(instances));
    }

    /// Makes a backend's ejection counter exist (at 0 until it is ejected), so that an alert
    /// on its increase sees the first ejection as one.
    pub fn ejections_known(&self, pool: &str, backend: &str) {
        self.ejections.with_label_values(&[pool, backend]);
    }

    /// The policy in service: its number and when it was loaded.
    pub fn policy_gauges(&self, version: u64, loaded_at: SystemTime) {
        self.policy_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        let loaded = loaded_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.policy_loaded
            .set(i64::try_from(loaded).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric (the gauges as last set).
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_request_shows_in_the_text_with_its_route_and_status() {
        let m = Metrics::new().unwrap();
        m.request("query", StatusCode::OK, Duration::from_millis(3));
        m.request("query", StatusCode::OK, Duration::from_millis(4));
        m.request(NO_ROUTE, StatusCode::NOT_FOUND, Duration::from_micros(50));
        m.reload(false);
        let text = m.render().unwrap();
        assert!(
            text.contains("gateway_requests_total{route=\"query\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("gateway_requests_total{route=\"(none)\",status=\"404\"} 1"));
        assert!(text.contains("gateway_request_duration_seconds_count{route=\"query\"} 2"));
        assert!(text.contains("gateway_policy_reloads_total{result=\"failed\"} 1"));
        assert_eq!(m.reloads(false), 1);
        assert_eq!(m.reloads(true), 0);
    }

    #[test]
    fn redis_gauges_show_only_while_a_limit_is_global() {
        let m = Metrics::new().unwrap();
        assert!(!m.render().unwrap().contains("gateway_ratelimit_redis_up"));
        m.redis_gauges(false, 0);
        let text = m.render().unwrap();
        assert!(text.contains("gateway_ratelimit_redis_up 0"), "{text}");
        assert!(text.contains("gateway_ratelimit_instances 0"), "{text}");
        m.clear_gauges();
        m.redis_gauges(true, 2);
        let text = m.render().unwrap();
        assert!(text.contains("gateway_ratelimit_redis_up 1"), "{text}");
        assert!(text.contains("gateway_ratelimit_instances 2"), "{text}");
        m.clear_gauges();
        assert!(!m.render().unwrap().contains("gateway_ratelimit_redis_up"));
    }

    #[test]
    fn a_known_backend_shows_zero_ejections_before_its_first() {
        let m = Metrics::new().unwrap();
        m.ejections_known("tsdb", "127.0.0.1:8086");
        let text = m.render().unwrap();
        assert!(
            text.contains(
                "gateway_outlier_ejections_total{backend=\"127.0.0.1:8086\",pool=\"tsdb\"} 0"
            ),
            "{text}"
        );
        m.ejection("tsdb", "127.0.0.1:8086");
        m.ejections_known("tsdb", "127.0.0.1:8086");
        assert!(m.render().unwrap().contains(
            "gateway_outlier_ejections_total{backend=\"127.0.0.1:8086\",pool=\"tsdb\"} 1"
        ));
    }

    #[test]
    fn a_request_sent_to_a_pool_counts_by_route_pool_and_status_class() {
        let m = Metrics::new().unwrap();
        let ok = StatusCode::OK;
        m.pool_request("query", "v1", ok, Duration::from_millis(3));
        m.pool_request("query", "v2", ok, Duration::from_millis(3));
        m.pool_request(
            "query",
            "v2",
            StatusCode::BAD_GATEWAY,
            Duration::from_millis(300),
        );
        m.pool_request(
            "query",
            "v2",
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::ZERO,
        );
        let text = m.render().unwrap();
        for line in [
            "gateway_pool_requests_total{class=\"2xx\",pool=\"v1\",route=\"query\"} 1",
            "gateway_pool_requests_total{class=\"2xx\",pool=\"v2\",route=\"query\"} 1",
            "gateway_pool_requests_total{class=\"5xx\",pool=\"v2\",route=\"query\"} 2",
            "gateway_pool_request_duration_seconds_count{pool=\"v2\",route=\"query\"} 3",
            "gateway_pool_request_duration_seconds_bucket{pool=\"v2\",route=\"query\",le=\"0.25\"} 2",
            "gateway_pool_request_duration_seconds_bucket{pool=\"v2\",route=\"query\",le=\"0.5\"} 3",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn backend_response_times_and_the_build_show_in_the_text() {
        let m = Metrics::new().unwrap();
        let b: std::net::SocketAddr = "127.0.0.1:8086".parse().unwrap();
        m.backend_response("tsdb", b, Duration::from_millis(2));
        m.backend_response("tsdb", b, Duration::from_millis(40));
        let v6: std::net::SocketAddr = "[fe80::1:2:3:4%4294967295]:65535".parse().unwrap();
        m.backend_response("tsdb", v6, Duration::from_millis(1));
        let text = m.render().unwrap();
        assert!(
            text.contains(
                "gateway_backend_response_seconds_count{backend=\"127.0.0.1:8086\",pool=\"tsdb\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "gateway_backend_response_seconds_bucket{backend=\"127.0.0.1:8086\",pool=\"tsdb\",le=\"0.0025\"} 1"
        ));
        assert!(
            text.contains("backend=\"[fe80::1:2:3:4%4294967295]:65535\""),
            "the longest address fits: {text}"
        );
        assert!(
            text.contains(&format!(
                "gateway_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
