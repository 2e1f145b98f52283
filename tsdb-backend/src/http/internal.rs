//! The pool's internal endpoints, under `/internal/`: replication between nodes.
//!
//! They are not part of the InfluxDB API: a request without the `X-Tsdb-Peer` header that
//! shippers send gets the same 404 as any unknown path.

use super::{read_body, AppState};
use crate::replication::shipper::{decode_frames, Ack};
use crate::storage::ReplicateError;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::Arc;

use crate::replication::shipper::PEER_HEADER;

/// Largest internal request body: a full snapshot.
const MAX_INTERNAL_BODY: usize = 1 << 34;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/internal/replicate", post(replicate))
        .route("/internal/resync", post(resync))
        .route("/internal/snapshot", get(snapshot))
}

fn from_peer(headers: &HeaderMap) -> bool {
    headers.contains_key(PEER_HEADER)
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
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
    if !from_peer(&headers) {
        return not_found();
    }
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
    if !from_peer(&headers) {
        return not_found();
    }
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
async fn snapshot(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !from_peer(&headers) {
        return not_found();
    }
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
