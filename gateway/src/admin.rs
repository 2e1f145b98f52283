//! The admin port: liveness, readiness, status, metrics and reload, apart from client
//! traffic, on a thread and runtime of its own. Mutating endpoints ask for the bearer
//! token when one is set (`admin/token.rs`).

pub mod replication;
pub mod shared;
pub mod token;

use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::runtime::{PoolState, Snapshot};
use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The access log, opened again on SIGUSR1.
    pub access_log: Option<crate::access_log::AccessLog>,
    /// `Some`: reload, purge, drain and undrain require it.
    pub token: Option<token::AdminToken>,
    /// The TSDB nodes' replication state, as the dashboard shows it.
    pub replication: Arc<replication::ReplicationView>,
    /// Status and metrics answers shared between dashboards (`?shared`).
    pub shared: Arc<shared::SharedAnswers>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub reloader: Arc<Reloader>,
    pub metrics: Arc<Metrics>,
    pub listeners: Arc<ListenerProbe>,
}

/// Whether the public listeners accept connections yet. The admin port comes up before
/// Pingora binds them, so readiness asks them itself (once they answered, it stops asking).
#[derive(Debug, Default)]
pub struct ListenerProbe {
    addresses: Vec<std::net::SocketAddr>,
    bound: std::sync::atomic::AtomicBool,
}

impl ListenerProbe {
    pub fn new(addresses: Vec<std::net::SocketAddr>) -> ListenerProbe {
        ListenerProbe {
            addresses,
            bound: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn accepting(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.bound.load(Ordering::Relaxed) {
            return true;
        }
        for a in &self.addresses {
            let connect = tokio::net::TcpStream::connect(a);
            match tokio::time::timeout(std::time::Duration::from_millis(500), connect).await {
                Ok(Ok(_)) => {}
                _ => return false,
            }
        }
        self.bound.store(true, Ordering::Relaxed);
        true
    }
}

/// The live dashboard: one self-contained page (its style and script inline, nothing
/// fetched from elsewhere) that reads `/admin/status` and `/metrics` every second.
const DASHBOARD: &str = include_str!("admin_page/dashboard.html");

pub fn router(state: AdminState) -> Router {
    let mutating = Router::new()
        .route("/admin/reload", axum::routing::post(reload))
        .route("/admin/cache/purge", axum::routing::post(purge))
        .route(
            "/admin/pools/{pool}/backends/{backend}/drain",
            axum::routing::post(drain),
        )
        .route(
            "/admin/pools/{pool}/backends/{backend}/undrain",
            axum::routing::post(undrain),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/admin/status", get(status))
        .route("/admin/replication", get(replication_state))
        .route("/metrics", get(metrics))
        .merge(mutating)
        .with_state(state)
}

/// `GET /admin/replication`: the TSDB nodes' replication state (`admin/replication.rs`).
async fn replication_state(State(st): State<AdminState>) -> Response {
    let snap = st.snapshot.load_full();
    let view = st.replication.current(&snap).await;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        view.to_string(),
    )
        .into_response()
}

/// A mutating request without the admin token (when one is set) is refused, 401.
async fn require_token(
    State(st): State<AdminState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match &st.token {
        Some(token) if !token.admits(req.headers()) => (
            StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                "Bearer realm=\"gateway admin\"",
            )],
            "this admin endpoint needs the admin token: Authorization: Bearer <token>\n",
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

async fn dashboard() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        DASHBOARD,
    )
        .into_response()
}

/// 200 once the listeners accept connections and every pool has a healthy backend, 503
/// before.
async fn readyz(State(st): State<AdminState>) -> Response {
    if !st.listeners.accepting().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the listeners are not accepting yet\n",
        )
            .into_response();
    }
    if st.snapshot.load().ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: a pool has no healthy backend\n",
        )
            .into_response()
    }
}

/// Reloads the policies now: 200 when swapped in, 400 with every error (`file:line:column:
/// field: message`) when refused; the current policy keeps serving either way.
async fn reload(State(st): State<AdminState>) -> Response {
    let r = st.reloader.clone();
    match tokio::task::spawn_blocking(move || r.reload()).await {
        Ok(Ok(())) => (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], "{\"reloaded\":true}\n".to_string()).into_response(),
        Ok(Err(e)) => (
            StatusCode::BAD_REQUEST,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "reloaded": false, "errors": e.0.iter().map(|x| x.to_string()).collect::<Vec<_>>() }).to_string(),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Takes a backend out of service gently: no new requests go to it, those in flight
/// finish (their count is in the answer and on the status page). For a rolling restart:
/// drain, wait for `in_flight` 0, restart, undrain.
async fn drain(
    State(st): State<AdminState>,
    axum::extract::Path((pool, backend)): axum::extract::Path<(String, String)>,
) -> Response {
    set_draining(&st, &pool, &backend, true)
}

/// Puts a drained backend back in service (it ramps up under the pool's `slow_start`).
async fn undrain(
    State(st): State<AdminState>,
    axum::extract::Path((pool, backend)): axum::extract::Path<(String, String)>,
) -> Response {
    set_draining(&st, &pool, &backend, false)
}

/// Drains or undrains every backend of `pool` that `backend` names (an address, or a name
/// and port); 404 naming what exists when nothing matches. The state lives with the
/// backend's live state, so it holds across policy reloads.
fn set_draining(st: &AdminState, pool: &str, backend: &str, draining: bool) -> Response {
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    let snap = st.snapshot.load_full();
    let Some(p) = snap.pools.get(pool) else {
        let known: Vec<&str> = snap.pools.keys().map(String::as_str).collect();
        let error = format!("no pool named {pool:?} (pools: {})", known.join(", "));
        return (
            StatusCode::NOT_FOUND,
            json,
            serde_json::json!({ "error": error }).to_string(),
        )
            .into_response();
    };
    let named = p.backends_named(backend);
    if named.is_empty() {
        let known: Vec<String> = p
            .pool
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        let error = format!(
            "pool {pool:?} has no backend {backend:?} (backends: {})",
            known.join(", ")
        );
        return (
            StatusCode::NOT_FOUND,
            json,
            serde_json::json!({ "error": error }).to_string(),
        )
            .into_response();
    }
    let now = SystemClock.now();
    let backends: Vec<serde_json::Value> = named
        .iter()
        .map(|&i| {
            let live = &p.backends[i];
            let address = p.pool.backends[i].address.to_string();
            if live.set_draining(draining, now) {
                tracing::info!(pool, backend = %address, draining, in_flight = live.in_flight(), "backend drain changed from the admin port");
            }
            serde_json::json!({
                "address": address,
                "draining": live.is_draining(),
                "in_flight": live.in_flight(),
            })
        })
        .collect();
    (
        json,
        serde_json::json!({ "pool": pool, "backends": backends }).to_string(),
    )
        .into_response()
}

/// Drops every entry of every cache, or of the one `?cache=NAME` names (404 if none has
/// that name); answers how many entries each held.
async fn purge(
    State(st): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let snap = st.snapshot.load_full();
    let wanted = q.get("cache");
    if let Some(name) = wanted.filter(|n| snap.caches.get(n).is_none()) {
        let known: Vec<&str> = snap.caches.iter().map(|c| c.config.name.as_str()).collect();
        return (
            StatusCode::NOT_FOUND,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": format!("no cache named {name:?} (caches: {})", known.join(", ")) }).to_string(),
        )
            .into_response();
    }
    let mut purged = serde_json::Map::new();
    for c in snap.caches.iter() {
        if wanted.is_some_and(|n| *n != c.config.name) {
            continue;
        }
        c.settle().await;
        purged.insert(c.config.name.clone(), c.purge().into());
    }
    tracing::info!(caches = ?purged.keys().collect::<Vec<_>>(), "cache purged from the admin port");
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "purged": purged }).to_string(),
    )
        .into_response()
}

/// The gauges read from the snapshot in service: backends, caches, Redis, the policy.
fn set_gauges(snap: &Snapshot, m: &Metrics) {
    m.clear_gauges();
    for p in snap.pools.values() {
        for (b, live) in p.pool.backends.iter().zip(&p.backends) {
            let addr = b.address.to_string();
            if p.live.outlier.is_some() {
                m.ejections_known(&p.pool.name, &addr);
            }
            m.backend_gauges(
                &p.pool.name,
                &addr,
                live.health.is_healthy(),
                live.in_flight(),
            );
        }
    }
    for c in snap.caches.iter() {
        m.cache_gauges(
            &c.config.name,
            c.stats(),
            c.bytes(),
            c.entries(),
            c.config.max_size,
        );
    }
    if let Some(redis) = snap.limits.redis() {
        m.redis_gauges(redis.state().is_connected(), redis.instances());
    }
    for s in snap.auth.api_key_stores() {
        m.api_key_gauges(s.name(), s.counts(), s.status().keys);
    }
    m.policy_gauges(snap.version, snap.loaded_at);
}

/// Prometheus text exposition.
async fn metrics(
    State(st): State<AdminState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    let shared = shared::asked(query.as_deref());
    if let Some(body) = shared.then(|| st.shared.fresh("metrics")).flatten() {
        return ([(axum::http::header::CONTENT_TYPE, TEXT)], body.to_string()).into_response();
    }
    let snap = st.snapshot.load_full();
    // Moka counts sizes lazily: let it catch up, so the gauges are exact.
    for c in snap.caches.iter() {
        c.settle().await;
    }
    set_gauges(&snap, &st.metrics);
    match st.metrics.render() {
        Ok(text) => {
            if shared {
                st.shared.keep("metrics", Arc::from(text.as_str()));
            }
            ([(axum::http::header::CONTENT_TYPE, TEXT)], text).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics: {e}\n")).into_response(),
    }
}

/// One pool on the status page: its settings, and each backend's health, load, latency,
/// recent outcomes, ejection and slow start, as the balancers read them now.
fn pool_status(p: &PoolState, now: std::time::Instant) -> serde_json::Value {
    let outlier = p.live.outlier.as_ref();
    let backends: Vec<serde_json::Value> = p
        .pool
        .backends
        .iter()
        .zip(&p.backends)
        .enumerate()
        .map(|(i, (b, live))| {
            let (recent, recent_failures) = live.recent_outcomes();
            let ejected_until = outlier.and_then(|d| d.ejected_until(i, now));
            serde_json::json!({
                "address": b.address.to_string(),
                "weight": b.weight.get(),
                "healthy": live.health.is_healthy(),
                // Drained by an operator: no new requests; `in_flight` says what is left.
                "draining": live.is_draining(),
                "in_flight": live.in_flight(),
                // Of those, the ones whose answer has not begun: what the balancers compare.
                "awaiting_answer": live.awaiting_answer(),
                // Peak-EWMA of its response times as of now (0: none measured).
                "latency_ewma_ms": live.latency.cost(now) * 1000.0,
                "checks": live.health.checks.load(Ordering::Relaxed),
                "tries": live.tries(),
                // Of the latest (up to 64) tries, how many there were and how many failed.
                "recent": { "tries": recent, "failures": recent_failures },
                "ejected": ejected_until.is_some(),
                "ejected_for_ms": ejected_until.map(|u| u.saturating_duration_since(now).as_millis() as u64),
                "times_ejected": outlier.map(|d| d.times_ejected(i, now)),
                "consecutive_failures": outlier.map(|d| d.consecutive_failures(i)),
                // The share of its traffic while it ramps up after coming back (null: full).
                "slow_start_share": p.ramp(i, now),
            })
        })
        .collect();
    let pool = &p.pool;
    let retries = &pool.retries;
    serde_json::json!({
        "algorithm": pool.algorithm.as_str(),
        "hash_key": pool.algorithm.hashes().then(|| pool.hash_key.describe()),
        "sticky_cookie": pool.sticky.as_ref().map(|s| s.cookie.clone()),
        "healthy": p.healthy_count(),
        "backends": backends,
        "outlier_detection": outlier.map(|d| {
            let c = d.config();
            serde_json::json!({
                "consecutive_failures": c.consecutive_failures.get(),
                "base_ejection_ms": c.base_ejection.as_millis() as u64,
                "max_ejected_percent": c.max_ejected_percent,
                "ejected": d.ejected_count(now),
                "overflows": d.overflows(),
            })
        }),
        "max_in_flight_per_backend": pool.max_in_flight_per_backend.map(|m| m.get()),
        "slow_start_ms": pool.slow_start.map(|d| d.as_millis() as u64),
        "retries": {
            "attempts": retries.attempts.get(),
            "on": retries.on.describe(),
            "budget_ratio": pool.retry_budget.ratio(),
            "budget_remaining": p.live.budget.remaining(now),
            "budget_exhausted": p.live.budget_exhausted.load(Ordering::Relaxed),
        },
    })
}

/// One route on the status page: its pool, or its split with each pool's weight; its
/// header rules; its cache and file.
fn route_status(r: &crate::config::policy::Route) -> serde_json::Value {
    let split = r.split.then(|| {
        r.targets
            .iter()
            .map(|t| serde_json::json!({ "pool": t.pool, "weight": t.weight }))
            .collect::<Vec<_>>()
    });
    let by_header: Vec<serde_json::Value> = r
        .by_header
        .iter()
        .map(|h| {
            serde_json::json!({
                "header": h.header.as_str(),
                "value": h.value.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes())),
                "pool": r.targets[h.target].pool,
            })
        })
        .collect();
    serde_json::json!({
        "name": r.name,
        // The one pool of a `pool:` route; null for a split (see `split`).
        "pool": (!r.split).then(|| &r.targets[0].pool),
        "split": split,
        "route_by_header": by_header,
        "cache": r.cache.as_ref().map(|c| &c.cache),
        "file": r.file.display().to_string(),
    })
}

/// The policy in service, pools with each backend's health and load, routes, reloads.
async fn status(
    State(st): State<AdminState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let shared = shared::asked(query.as_deref());
    if let Some(body) = shared.then(|| st.shared.fresh("status")).flatten() {
        return json_text(body.to_string());
    }
    let snap = st.snapshot.load_full();
    let now = crate::clock::SystemClock.now();
    let pools: serde_json::Map<String, serde_json::Value> = snap
        .pools
        .iter()
        .map(|(name, p)| (name.clone(), pool_status(p, now)))
        .collect();
    let routes: Vec<serde_json::Value> = snap.policy.routes.iter().map(route_status).collect();
    let limits: serde_json::Map<String, serde_json::Value> = snap
        .limits
        .iter()
        .map(|(name, l)| {
            let scope = match l.limit.scope {
                crate::config::policy::Scope::Local => "local",
                crate::config::policy::Scope::Global => "global",
            };
            let keys = l.local_buckets().map_or(0, |b| b.len());
            (
                name.clone(),
                serde_json::json!({
                    "scope": scope,
                    "rate": l.limit.rate.to_string(),
                    "burst": l.limit.burst.get(),
                    "key": l.limit.key.iter().map(|k| k.as_text()).collect::<Vec<_>>(),
                    "local_keys": keys,
                }),
            )
        })
        .collect();
    let redis = snap.limits.redis().map(|r| {
        let (state, since, error) = match r.state() {
            crate::ratelimit::global::RedisState::Connected => ("connected", None, None),
            crate::ratelimit::global::RedisState::Unreachable { since, last_error } => (
                "unreachable",
                Some(
                    crate::clock::SystemClock
                        .now()
                        .saturating_duration_since(since)
                        .as_secs_f64(),
                ),
                Some(last_error),
            ),
        };
        let stats = r.stats();
        serde_json::json!({
            "state": state,
            "unreachable_for_s": since,
            "last_error": error,
            "instances": r.instances(),
            "decisions_ok": stats.decisions_ok,
            "errors": stats.errors,
            "reconnects": stats.reconnects,
        })
    });
    let mut caches = serde_json::Map::new();
    for c in snap.caches.iter() {
        c.settle().await;
        let s = c.stats();
        let n = |v: &std::sync::atomic::AtomicU64| crate::cache::CacheStats::get(v);
        caches.insert(
            c.config.name.clone(),
            serde_json::json!({
                "max_size": c.config.max_size,
                "bytes": c.bytes(),
                "entries": c.entries(),
                "ttl_s": c.config.ttl.as_secs_f64(),
                "stale_while_revalidate_s": c.config.stale_while_revalidate.as_secs_f64(),
                "invalidate_on_write": c.config.invalidate_on_write,
                "in_flight": c.in_flight(),
                "hits": n(&s.hits),
                "misses": n(&s.misses),
                "stale": n(&s.stale),
                "bypass": n(&s.bypass),
                "coalesced": n(&s.coalesced),
                "evictions": n(&s.evictions),
                "refreshes": n(&s.refreshes),
                "refresh_failures": n(&s.refresh_failures),
                "partial": n(&s.partial),
                "bucket_hits": n(&s.bucket_hits),
                "buckets_fetched": n(&s.buckets_fetched),
                "bucket_invalidations": n(&s.buckets_invalidated),
            }),
        );
    }
    let r = &st.reloader;
    let names: Vec<serde_json::Value> = r
        .registries
        .names
        .status()
        .into_iter()
        .map(|((pool, name), n)| {
            serde_json::json!({
                "pool": pool,
                "name": name,
                "addresses": n.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "stale": n.stale,
                "failures": n.failures,
                "last_error": n.last_error,
                "resolved_s_ago": now.saturating_duration_since(n.resolved_at).as_secs_f64(),
            })
        })
        .collect();
    let loaded_at = chrono::DateTime::<chrono::Utc>::from(snap.loaded_at)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let body = serde_json::json!({
        "ready": snap.ready(),
        "policy": {
            "version": snap.version,
            "digest": snap.policy.digest,
            "loaded_at": loaded_at,
            "source": r.policies.display().to_string(),
        },
        "pools": pools,
        "routes": routes,
        "backend_names": names,
        "rate_limits": { "limits": limits, "redis": redis },
        "caches": caches,
        "authenticators": crate::auth::status(&snap.auth),
        "reloads": {
            "ok": st.metrics.reloads(true),
            "failed": st.metrics.reloads(false),
            "last_error": *r.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        },
    });
    let text = body.to_string();
    if shared {
        st.shared.keep("status", Arc::from(text.as_str()));
    }
    json_text(text)
}

fn json_text(body: String) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Binds the admin port, retrying for up to `patience` (an upgrade's new process waits for
/// the old one to let go of it).
fn bind(addr: SocketAddr, patience: Duration) -> std::io::Result<std::net::TcpListener> {
    let clock = SystemClock;
    let start = clock.now();
    let step = Duration::from_millis(100);
    for _ in 0..=patience.as_millis() / step.as_millis() {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse && clock.now() - start < patience =>
            {
                std::thread::sleep(step)
            }
            Err(e) => return Err(e),
        }
    }
    std::net::TcpListener::bind(addr)
}

/// Serves the admin port on its own thread and runtime, away from the proxy's workers, and
/// reloads the policies on SIGHUP.
///
/// With a `patience`, the port is bound in the background (an upgrade's new process must
/// not wait for it); without, a busy port is an error at once.
pub fn spawn(
    addr: SocketAddr,
    state: AdminState,
    patience: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let now = if patience.is_zero() {
        Some(std::net::TcpListener::bind(addr)?)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // SIGHUP reloads the policies, as for nginx or HAProxy. Registered before this returns,
    // so a SIGHUP never meets the default action (which would end the process).
    let mut hup = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    })?;
    // SIGUSR1 opens the access log's file again (after logrotate moved it), as for nginx.
    let mut usr1 = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    })?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            rt.block_on(async move {
                let reloader = state.reloader.clone();
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        let r = reloader.clone();
                        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                    }
                });
                let access_log = state.access_log.clone();
                tokio::spawn(async move {
                    while usr1.recv().await.is_some() {
                        if let Some(log) = &access_log {
                            log.reopen();
                            tracing::info!("SIGUSR1: the access log's file is opened again");
                        }
                    }
                });
                let listener = match now {
                    Some(l) => Ok(l),
                    None => tokio::task::spawn_blocking(move || bind(addr, patience))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e))),
                };
                let listener = match listener.and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::TcpListener::from_std(l)
                }) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, address = %addr, "admin port");
                        return;
                    }
                };
                if let Err(e) = axum::serve(listener, router(state)).await {
                    tracing::error!(error = %e, "admin server stopped");
                }
            });
        })
}
