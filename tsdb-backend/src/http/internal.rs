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
use crate::replication::transfer::MAX_BLOCK_BYTES;
use crate::storage::transfer::{hash_text, parse_hash, ReceiveError, Received, StatePart};
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

/// Largest replicate or resync request body (a batch of entries, a state part).
const MAX_INTERNAL_BODY: usize = 1 << 34;

/// The challenge of a refused internal request.
const CHALLENGE: &str = r#"Bearer realm="tsdb-peers""#;

pub(super) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/internal/replicate", post(replicate))
        .route("/internal/resync", post(resync))
        .route("/internal/state", get(state_part))
        .route("/internal/blocks", get(blocks))
        .route("/internal/block", get(get_block).put(put_block))
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

/// `POST /internal/resync?origin=ID`: part of a peer's state (`storage/transfer.rs`; a
/// whole snapshot from an older release too), merged into this node.
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
            tracing::info!(origin = %origin, bytes = body.len(), "merged a peer's state");
            ack(StatusCode::OK, st.engine.catalog().applied_from(&origin))
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("resync from {origin}: {e}"),
        ),
    }
}

/// `GET /internal/state?part=catalog|head`: part of this node's state, for a node that
/// rebuilds itself (see `storage/transfer.rs`).
async fn state_part(
    State(st): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let part = match params.get("part").map(String::as_str) {
        Some("catalog") => StatePart::Catalog,
        Some("head") => StatePart::Head,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("part must be catalog or head, not {other:?}"),
            )
        }
    };
    let engine = st.engine.clone();
    match tokio::task::spawn_blocking(move || engine.state_bytes(part)).await {
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

/// `GET /internal/blocks`: every block this node serves, by database and content hash.
async fn blocks(State(st): State<Arc<AppState>>) -> Response {
    super::json_response(
        StatusCode::OK,
        serde_json::to_string(&st.engine.block_list()).unwrap_or_default(),
    )
}

/// The `db` and `hash` of a block request, or why they are missing.
fn block_params(params: &HashMap<String, String>) -> Result<(String, u64), &'static str> {
    let db = params
        .get("db")
        .filter(|d| !d.is_empty())
        .ok_or("db is required")?;
    let hash = params
        .get("hash")
        .and_then(|h| parse_hash(h))
        .ok_or("hash is required: 16 hex digits")?;
    Ok((db.clone(), hash))
}

/// `GET /internal/block?db=NAME&hash=HEX`: one block's file, streamed.
async fn get_block(
    State(st): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let (db, hash) = match block_params(&params) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, why.into()),
    };
    let Some(reader) = st.engine.block_reader(&db, hash) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no block {} in database \"{db}\"", hash_text(hash)),
        );
    };
    let len = reader.len();
    // 1 MiB at a time, read off the async workers.
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let n = std::io::Read::read(&mut reader, &mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, reader))
        })
        .await
        .map_err(std::io::Error::other);
        match read {
            Ok(Ok((buf, _))) if buf.is_empty() => None,
            Ok(Ok((buf, reader))) => Some((Ok(axum::body::Bytes::from(buf)), Some(reader))),
            Ok(Err(e)) | Err(e) => Some((Err(e), None)),
        }
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// `PUT /internal/block?db=NAME&hash=HEX`: a block a resynchronising peer sends, written to
/// a file as it arrives, then checked and stored (`Engine::receive_block`).
async fn put_block(
    State(st): State<Arc<AppState>>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (db, hash) = match block_params(&params) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, why.into()),
    };
    if super::declared_length(&headers).is_some_and(|n| n > MAX_BLOCK_BYTES) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "block too large".into());
    }
    let path = match st.engine.incoming_block_path() {
        Ok(p) => p,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    if let Err(e) = save_body(body, &path).await {
        let _ = tokio::fs::remove_file(&path).await;
        return error(e.0, e.1);
    }
    let engine = st.engine.clone();
    let outcome = tokio::task::spawn_blocking(move || engine.receive_block(&db, hash, &path)).await;
    match outcome {
        Ok(Ok(received)) => {
            let (outcome, id) = match received {
                Received::Stored { id } => ("stored", Some(id)),
                Received::AlreadyHeld => ("already_held", None),
                Received::AllDeleted => ("all_deleted", None),
                Received::DatabaseDropped => ("database_dropped", None),
            };
            super::json_response(
                StatusCode::OK,
                serde_json::json!({ "outcome": outcome, "id": id }).to_string(),
            )
        }
        Ok(Err(e @ ReceiveError::Invalid(_))) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e @ ReceiveError::DatabaseNotFound(_))) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Ok(Err(ReceiveError::Storage(e))) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Writes a request body to `path` as it arrives (at most `MAX_BLOCK_BYTES`) and fsyncs it.
async fn save_body(body: Body, path: &std::path::Path) -> Result<(), (StatusCode, String)> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let local = |e: std::io::Error| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}: {e}", path.display()),
        )
    };
    let mut file = tokio::fs::File::create(path).await.map_err(local)?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| (StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        total += chunk.len() as u64;
        if total > MAX_BLOCK_BYTES {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "block too large".into()));
        }
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.sync_all().await.map_err(local)
}
