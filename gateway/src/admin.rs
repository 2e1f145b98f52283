//! The admin port: liveness, readiness and status, apart from client traffic.

use crate::reload::Reloader;
use crate::runtime::Snapshot;
use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub reloader: Arc<Reloader>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/admin/status", get(status))
        .route("/admin/reload", axum::routing::post(reload))
        .with_state(state)
}

/// 200 once every pool has a healthy backend, 503 before.
async fn readyz(State(st): State<AdminState>) -> Response {
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

/// Pools, backends and their health, as JSON.
async fn status(State(st): State<AdminState>) -> Response {
    let snap = st.snapshot.load();
    let pools: serde_json::Map<String, serde_json::Value> = snap
        .pools
        .iter()
        .map(|(name, p)| {
            let backends: Vec<serde_json::Value> = p
                .pool
                .backends
                .iter()
                .zip(&p.health)
                .map(|(b, h)| {
                    serde_json::json!({
                        "address": b.address.to_string(),
                        "weight": b.weight.get(),
                        "healthy": h.is_healthy(),
                        "checks": h.checks.load(std::sync::atomic::Ordering::Relaxed),
                    })
                })
                .collect();
            (
                name.clone(),
                serde_json::json!({ "backends": backends, "healthy": p.healthy_count() }),
            )
        })
        .collect();
    let routes: Vec<serde_json::Value> = snap
        .policy
        .routes
        .iter()
        .map(|r| serde_json::json!({ "name": r.name, "pool": r.pool }))
        .collect();
    let r = &st.reloader;
    let body = serde_json::json!({
        "ready": snap.ready(),
        "pools": pools,
        "routes": routes,
        "reloads": {
            "ok": r.reloads_ok.load(std::sync::atomic::Ordering::Relaxed),
            "failed": r.reloads_failed.load(std::sync::atomic::Ordering::Relaxed),
            "last_error": *r.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        },
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Serves the admin port on its own thread and runtime, away from the proxy's workers.
pub fn spawn(addr: SocketAddr, state: AdminState) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "admin runtime");
                    return;
                }
            };
            rt.block_on(async move {
                // SIGHUP reloads the policies, as for nginx or HAProxy.
                let reloader = state.reloader.clone();
                tokio::spawn(async move {
                    use tokio::signal::unix::{signal, SignalKind};
                    let Ok(mut hup) = signal(SignalKind::hangup()) else {
                        tracing::warn!("cannot watch SIGHUP; reload with POST /admin/reload");
                        return;
                    };
                    while hup.recv().await.is_some() {
                        let r = reloader.clone();
                        let _ = tokio::task::spawn_blocking(move || r.reload()).await;
                    }
                });
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, router(state)).await {
                            tracing::error!(error = %e, "admin server stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "admin listener"),
                }
            });
        })
}
