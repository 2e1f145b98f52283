//! The pool's internal endpoints, under `/internal/`: replication between nodes.
//!
//! They are not part of the InfluxDB API: a request without the `X-Tsdb-Peer` header that
//! peers send gets the same 404 as any unknown path. The header names the sender and
//! proves nothing: a request that carries it must also prove that it comes from the pool,
//! with a TLS client certificate that verified against `--peer-ca` or with the pool's
//! shared secret (`Authorization: Bearer <secret>`, see `peer_auth.rs`). Without either it
//! is answered `401` with `WWW-Authenticate: Bearer realm="tsdb-peers"`, counted in
//! `tsdb_peer_auth_failures_total` and logged at warn with the remote address, and
//! nothing is applied.

use super::{read_body, AppState};
use crate::listener::Connection;
use crate::peer_auth::Proof;
use crate::replication::client::PEER_HEADER;
use crate::replication::shipper::{decode_frames, Ack};
use crate::storage::ReplicateError;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest internal request body: a full snapshot.
const MAX_INTERNAL_BODY: usize = 1 << 34;

/// The challenge of a refused internal request.
const CHALLENGE: &str = r#"Bearer realm="tsdb-peers""#;

pub(super) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/internal/replicate", post(replicate))
        .route("/internal/resync", post(resync))
        .route("/internal/snapshot", get(snapshot))
        .route_layer(axum::middleware::from_fn_with_state(state, admit_peers))
}

/// Lets through only requests that name a peer and prove it (see the module docs).
async fn admit_peers(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(claimed) = req.headers().get(PEER_HEADER) else {
        return super::not_found().await;
    };
    let connection = req
        .extensions()
        .get::<ConnectInfo<Connection>>()
        .map(|c| c.0);
    if connection.is_some_and(|c| c.peer_certificate) {
        return next.run(req).await;
    }
    let proof = st.peer_secret.check(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    );
    if proof == Proof::Valid {
        return next.run(req).await;
    }
    st.engine
        .metrics()
        .peer_auth_failures
        .with_label_values(&[proof.reason()])
        .inc();
    // The claimed name is the client's text: quoted and cut, never the credential.
    let claimed: String = String::from_utf8_lossy(claimed.as_bytes())
        .chars()
        .take(64)
        .collect();
    tracing::warn!(
        remote = %connection.map_or_else(|| "unknown".into(), |c| c.remote.to_string()),
        peer = ?claimed,
        path = %req.uri().path(),
        secret = proof.reason(),
        "refused an internal request: no peer certificate and a missing or wrong pool secret"
    );
    let message = match proof {
        Proof::Missing => "peer authentication required: no pool secret",
        _ => "peer authentication failed: wrong pool secret",
    };
    let mut res = error(StatusCode::UNAUTHORIZED, message.into());
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    if req.version() < Version::HTTP_2 {
        // The body stays unread, so the connection cannot carry another request: say so,
        // or a client would send its next one on a connection about to be closed.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

fn ack(code: StatusCode, applied: u64) -> Response {
    super::json_response(
        code,
        serde_json::to_string(&Ack { applied }).unwrap_or_default(),
    )
}

fn error(code: StatusCode, message: String) -> Response {
    super::error_response(code, &message)
}

/// `POST /internal/replicate?origin=ID&after=N`: entries a peer accepted from its clients.
async fn replicate(
    State(st): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(origin) = params.get("origin").filter(|o| !o.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "origin is required".into());
    };
    let after = params
        .get("after")
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0);
    let body = match read_body(&headers, body, MAX_INTERNAL_BODY).await {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.to_string()),
    };
    let Some(frames) = decode_frames(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "malformed replication frames".into(),
        );
    };
    match st.engine.apply_replicated(origin, after, frames).await {
        Ok(applied) => ack(StatusCode::OK, applied),
        Err(ReplicateError::Behind { applied }) => ack(StatusCode::CONFLICT, applied),
        Err(e @ ReplicateError::Decode { .. }) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(ReplicateError::Storage(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /internal/resync?origin=ID`: a peer's full snapshot, merged into this node.
async fn resync(
    State(st): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let origin = params.get("origin").cloned().unwrap_or_default();
    let body = match read_body(&headers, body, MAX_INTERNAL_BODY).await {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.to_string()),
    };
    match st.engine.merge_snapshot(&body).await {
        Ok(()) => {
            tracing::info!(origin = %origin, bytes = body.len(), "merged a peer's snapshot");
            ack(StatusCode::OK, st.engine.catalog().applied_from(&origin))
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("resync from {origin}: {e}"),
        ),
    }
}

/// `GET /internal/snapshot`: this node's whole state, for a node rebuilding itself.
async fn snapshot(State(st): State<Arc<AppState>>) -> Response {
    let engine = st.engine.clone();
    match tokio::task::spawn_blocking(move || engine.snapshot_bytes()).await {
        Ok(Ok(bytes)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
