//! The InfluxDB 1.x HTTP API (plus the 2.x write endpoint): the node's thin I/O edge.
//!
//! Handlers decode the request (query string, form body, gzip, size limit), call the line
//! protocol parser, the storage engine or the query engine, and encode the answer in the
//! shapes and status codes InfluxDB 1.x uses, so existing clients work unchanged.
//!
//! Around every handler, outermost first: the request id (`request_id.rs`), the access log,
//! spans and log context (`observe.rs`), the common headers, and the panic catcher
//! (`panics.rs`), so that even a panic's `500` carries the id and the node's headers and is
//! logged.

use crate::clock::monotonic_now;
use crate::lineproto::{self, LineError};
use crate::metrics::{PeerFigures, StorageFigures};
use crate::model::Precision;
use crate::peer_auth::PeerSecret;
use crate::query::executor;
use crate::query::result::{render, render_error};
use crate::replication::shipper::{LinkState, PeerReport, Replication};
use crate::storage::{Engine, RawLines, Rejection, StorageError, WriteReport};
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry::trace::Span as _;
use opentelemetry::KeyValue;
use std::io::Read;
use std::sync::Arc;

/// The version we announce in `X-Influxdb-Version`: the 1.x API level we implement.
pub const INFLUXDB_VERSION: &str = "1.8.10";

mod internal;
pub mod observe;
pub mod panics;
pub mod params;
pub mod request_id;

use params::Params;

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Largest accepted request body, after gzip decompression too.
    pub max_body_bytes: usize,
    /// The shippers to the peers, when the node is in a pool.
    pub replication: Option<Arc<Replication>>,
    /// The pool's shared secret, which `/internal/*` requests must carry (or a peer's
    /// client certificate).
    pub peer_secret: PeerSecret,
    /// The access log and span export, when asked for (`observe.rs`).
    pub observer: observe::Observer,
}

/// The router with every endpoint of the node.
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// The router with `extra` routes beside the node's own (tests add a panicking one).
fn router_with(state: Arc<AppState>, extra: Router<Arc<AppState>>) -> Router {
    Router::new()
        .merge(extra)
        .route("/ping", get(ping).head(ping))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/write", post(write_v1))
        .route("/api/v2/write", post(write_v2))
        .route("/query", get(query).post(query))
        .route("/debug/flush", post(debug_flush))
        .merge(internal::routes(state.clone()))
        .fallback(not_found)
        .layer(panics::layer(state.engine.metrics().http_panics.clone()))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            add_headers,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// Every answer names the API level and the node that gave it (`X-Tsdb-Node`), so a client
/// behind a balancer can tell which replica answered.
async fn add_headers(State(st): State<Arc<AppState>>, mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        "x-influxdb-version",
        HeaderValue::from_static(INFLUXDB_VERSION),
    );
    h.insert("x-influxdb-build", HeaderValue::from_static("OSS"));
    if let Ok(v) = HeaderValue::from_str(st.engine.node_id()) {
        h.insert("x-tsdb-node", v);
    }
    res
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `POST /debug/flush`: writes the head into blocks now and answers once that is durable
/// (as VictoriaMetrics' `/internal/force_flush`), for operators and benchmarks.
async fn debug_flush(State(st): State<Arc<AppState>>) -> Response {
    let engine = st.engine.clone();
    match tokio::task::spawn_blocking(move || engine.flush_now()).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => json_response(
            storage_error_status(&e),
            serde_json::json!({ "error": e.to_string() }).to_string(),
        ),
        Err(e) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": e.to_string() }).to_string(),
        ),
    }
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let writable = st.engine.is_writable();
    let peers = replication_reports(&st);
    let damaged = st.engine.damaged();
    let disk_full = st.engine.is_disk_full();
    let (status, message) = if !writable {
        ("fail", "wal failed: read-only until restarted".to_string())
    } else if disk_full {
        (
            "fail",
            "disk full: writes refused until space is freed; queries served".to_string(),
        )
    } else if !damaged.is_empty() {
        (
            "degraded",
            format!(
                "{} damaged file(s) set aside; serving the rest",
                damaged.len()
            ),
        )
    } else {
        ("pass", "ready for queries and writes".to_string())
    };
    let memory = st.engine.memory();
    let body = serde_json::json!({
        "name": "tsdb-backend",
        "message": message,
        "status": status,
        "checks": [],
        "damaged": damaged,
        "storage": memory,
        "version": INFLUXDB_VERSION,
        "node": { "id": st.engine.node_id(), "origin": st.engine.origin() },
        "wal": {
            "last_seq": st.engine.last_seq(),
            "bytes": st.engine.metrics().wal_bytes.get(),
        },
        "peers": peers,
    });
    let code = if writable && !disk_full {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, body.to_string())
}

/// The peers' replication state, also copied into the metrics.
fn replication_reports(st: &AppState) -> Vec<PeerReport> {
    let Some(r) = &st.replication else {
        return Vec::new();
    };
    let reports = r.reports(st.engine.now_ns());
    let m = st.engine.metrics();
    for p in &reports {
        m.peer_replication(
            &p.url,
            PeerFigures {
                lag_entries: p.lag_entries,
                lag_seconds: p.lag_seconds,
                backlog_bytes: p.backlog_bytes,
                resyncing: p.state == LinkState::Resyncing,
                shipped_entries: p.shipped_entries,
                resyncs: p.resyncs,
            },
        );
    }
    reports
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    replication_reports(&st);
    let use_ = st.engine.memory();
    let m = st.engine.metrics();
    m.storage_gauges(StorageFigures {
        head_values: use_.head_values,
        head_bytes_estimate: use_.head_bytes_estimate,
        column_cache_bytes: use_.column_cache_bytes,
        blocks: use_.blocks,
        block_bytes: use_.block_bytes,
        damaged_files: st.engine.damaged().len() as u64,
        wal_failed: !st.engine.is_writable(),
        disk_full: st.engine.is_disk_full(),
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
        .into_response()
}

fn json_response(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An error in InfluxDB's shape: `{"error":"..."}` plus the `X-Influxdb-Error` header.
fn error_response(code: StatusCode, message: &str) -> Response {
    let mut res = json_response(code, render_error(message));
    if let Ok(v) = HeaderValue::from_str(&message.replace(['\r', '\n'], " ")) {
        res.headers_mut().insert("x-influxdb-error", v);
    }
    res
}

/// A request body that could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("http: request body too large")]
    TooLarge,
    #[error("reading request body: {0}")]
    Read(String),
    #[error("invalid gzip body: {0}")]
    Gzip(String),
}

impl BodyError {
    fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) | BodyError::Gzip(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads the whole body within `max` bytes, inflating it if it is gzip-encoded.
/// The body length a request declares (`Content-Length`), if it is a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, BodyError> {
    if declared_length(headers).is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let bytes = match Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(BodyError::TooLarge)
        }
        Err(e) => return Err(BodyError::Read(e.to_string())),
    };
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return Ok(bytes);
    }
    // Bound the inflated size too: a small gzip bomb must not exhaust memory.
    let mut out = Vec::with_capacity(bytes.len() * 4);
    flate2::read::GzDecoder::new(&bytes[..])
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Gzip(e.to_string()))?;
    if out.len() > max {
        return Err(BodyError::TooLarge);
    }
    Ok(Bytes::from(out))
}

/// At most this many parse errors are listed in one answer; the count says how many more.
const MAX_REPORTED_ERRORS: usize = 100;

/// What became of a write, before it is turned into a response.
#[derive(Debug)]
enum WriteOutcome {
    Stored,
    /// Nothing parsed: InfluxDB answers with the parse errors alone.
    Unparsable(Vec<LineError>),
    /// Some points were stored, others dropped for these reasons.
    Partial {
        reasons: Vec<String>,
        dropped: usize,
    },
}

fn describe_parse_errors(errors: &[LineError]) -> Vec<String> {
    let mut out: Vec<String> = errors
        .iter()
        .take(MAX_REPORTED_ERRORS)
        .map(|e| e.to_string())
        .collect();
    if errors.len() > MAX_REPORTED_ERRORS {
        out.push(format!(
            "... and {} more unparsable lines",
            errors.len() - MAX_REPORTED_ERRORS
        ));
    }
    out
}

fn outcome(parse_errors: Vec<LineError>, report: WriteReport) -> WriteOutcome {
    if report.written == 0 && report.rejected.is_empty() && !parse_errors.is_empty() {
        return WriteOutcome::Unparsable(parse_errors);
    }
    if parse_errors.is_empty() && report.rejected.is_empty() {
        return WriteOutcome::Stored;
    }
    let mut reasons = Vec::new();
    // Storage-level rejections first, as InfluxDB reports them.
    let mut beyond = 0;
    for r in &report.rejected {
        match r {
            Rejection::TypeConflict(c) => {
                if reasons.len() < MAX_REPORTED_ERRORS {
                    reasons.push(c.to_string());
                }
            }
            Rejection::BeyondRetention => beyond += 1,
            Rejection::TimeTag { measurement } => {
                if reasons.len() < MAX_REPORTED_ERRORS {
                    reasons.push(format!(
                        "invalid tag key: input tag \"time\" on measurement \"{measurement}\" is invalid"
                    ));
                }
            }
            Rejection::TimeFieldOnly { measurement } => {
                if reasons.len() < MAX_REPORTED_ERRORS {
                    reasons.push(format!(
                        "invalid field name: input field \"time\" on measurement \"{measurement}\" is invalid"
                    ));
                }
            }
        }
    }
    if beyond > 0 {
        reasons.push("points beyond retention policy".to_string());
    }
    reasons.extend(describe_parse_errors(&parse_errors));
    WriteOutcome::Partial {
        reasons,
        dropped: report.rejected.len() + parse_errors.len(),
    }
}

/// Parses and stores a body; shared by the v1 and v2 endpoints.
async fn store(
    st: &AppState,
    db: &str,
    precision: Precision,
    body: &Bytes,
) -> Result<WriteOutcome, StorageError> {
    let now = st.engine.now_ns();
    let parse_span = observe::step(st, "parse");
    let parsed = if body.len() > 1 << 20 {
        // Large bodies are parsed off the async workers so pings and queries stay prompt.
        let body = body.clone();
        tokio::task::spawn_blocking(move || lineproto::parse_lines(&body, precision, now))
            .await
            .map_err(|_| StorageError::ShuttingDown)?
    } else {
        lineproto::parse_lines(body, precision, now)
    };
    if let Some(mut span) = parse_span {
        span.set_attribute(KeyValue::new("tsdb.points", parsed.points.len() as i64));
        span.set_attribute(KeyValue::new(
            "tsdb.parse_errors",
            parsed.errors.len() as i64,
        ));
    }
    let report = if parsed.points.is_empty() {
        // Still check the database, so a write to an unknown one is a 404 even if empty.
        if st.engine.catalog().database(db).is_none() {
            return Err(StorageError::DatabaseNotFound(db.to_string()));
        }
        WriteReport::default()
    } else {
        // A body that parsed whole may be logged as sent (see `Engine::write`).
        let raw = parsed.errors.is_empty().then_some(RawLines {
            body,
            precision,
            default_time_ns: now,
        });
        let _commit = observe::step(st, "wal commit");
        st.engine.write(db, parsed.points, raw).await?
    };
    Ok(outcome(parsed.errors, report))
}

/// A write refused for now (the head is full, the node is stopping, the disk is full) tells
/// the client when to come back; InfluxDB clients and Telegraf honour `Retry-After`.
fn retry_later(mut res: Response) -> Response {
    if matches!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE
    ) {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

fn storage_error_status(e: &StorageError) -> StatusCode {
    match e {
        StorageError::DatabaseNotFound(_) => StatusCode::NOT_FOUND,
        StorageError::ShuttingDown | StorageError::WalFailed | StorageError::Overloaded { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        StorageError::DiskFull(_) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn write_v1(
    State(st): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = monotonic_now();
    let params = params::from_query(query.as_deref());
    let res = retry_later(write_v1_inner(&st, &params, &headers, body).await);
    let m = st.engine.metrics();
    m.write_requests
        .with_label_values(&[res.status().as_str()])
        .inc();
    m.write_duration.observe(started.elapsed().as_secs_f64());
    res
}

async fn write_v1_inner(
    st: &AppState,
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let (db, precision) = match params::write_target(params) {
        Ok(target) => target,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    // A policy that does not exist is refused, as InfluxDB refuses it (with a 500), rather
    // than the points landing in the default one.
    if let Some(rp) = params.get("rp").filter(|rp| !rp.is_empty()) {
        if !policy_exists(st, db, rp) {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("retention policy not found: {rp}"),
            );
        }
    }
    let body = match read_body(headers, body, st.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(e.status(), &e.to_string()),
    };
    match store(st, db, precision, &body).await {
        Ok(WriteOutcome::Stored) => StatusCode::NO_CONTENT.into_response(),
        Ok(WriteOutcome::Unparsable(errors)) => error_response(
            StatusCode::BAD_REQUEST,
            &describe_parse_errors(&errors).join("\n"),
        ),
        Ok(WriteOutcome::Partial { reasons, dropped }) => error_response(
            StatusCode::BAD_REQUEST,
            &format!("partial write: {} dropped={dropped}", reasons.join("\n")),
        ),
        Err(e) => error_response(storage_error_status(&e), &e.to_string()),
    }
}

/// Whether database `db` has policy `rp` (a database that does not exist is the write's
/// own error, reported as before).
fn policy_exists(st: &AppState, db: &str, rp: &str) -> bool {
    st.engine.catalog().database(db).is_none_or(|d| {
        crate::storage::catalog::read(&d.policies)
            .list
            .iter()
            .any(|p| p.name == rp)
    })
}

/// `POST /api/v2/write?bucket=db[/rp]&org=&precision=ns|us|ms|s`: the 2.x write path, mapped
/// to the database named by the bucket. Errors use the 2.x shape `{"code":..,"message":..}`.
async fn write_v2(
    State(st): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let params = params::from_query(query.as_deref());
    let v2_error = |code: StatusCode, kind: &str, message: &str| {
        json_response(
            code,
            serde_json::json!({ "code": kind, "message": message }).to_string(),
        )
    };
    let bucket = params.get("bucket").map(String::as_str).unwrap_or("");
    let mut parts = bucket.splitn(2, '/');
    let db = parts.next().unwrap_or("");
    if db.is_empty() {
        return v2_error(StatusCode::BAD_REQUEST, "invalid", "bucket is required");
    }
    if let Some(rp) = parts.next().filter(|rp| !rp.is_empty()) {
        if !policy_exists(&st, db, rp) {
            return v2_error(
                StatusCode::NOT_FOUND,
                "not found",
                &format!("bucket \"{bucket}\" not found"),
            );
        }
    }
    let precision_text = params.get("precision").map(String::as_str).unwrap_or("ns");
    let Some(precision) = Precision::parse(precision_text) else {
        return v2_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("invalid precision \"{precision_text}\": expected one of ns, us, ms, s"),
        );
    };
    let body = match read_body(&headers, body, st.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return v2_error(e.status(), "invalid", &e.to_string()),
    };
    match store(&st, db, precision, &body).await {
        Ok(WriteOutcome::Stored) => StatusCode::NO_CONTENT.into_response(),
        Ok(WriteOutcome::Unparsable(errors)) => v2_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &describe_parse_errors(&errors).join("\n"),
        ),
        Ok(WriteOutcome::Partial { reasons, dropped }) => v2_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("partial write: {} dropped={dropped}", reasons.join("\n")),
        ),
        Err(StorageError::DatabaseNotFound(_)) => v2_error(
            StatusCode::NOT_FOUND,
            "not found",
            &format!("bucket \"{bucket}\" not found"),
        ),
        Err(e) => retry_later(v2_error(
            storage_error_status(&e),
            "internal error",
            &e.to_string(),
        )),
    }
}

async fn query(
    State(st): State<Arc<AppState>>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = monotonic_now();
    let mut params = params::from_query(query.as_deref());
    // POST bodies may carry the parameters as a form, as the InfluxDB clients send them.
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if method == Method::POST && is_form {
        match read_body(&headers, body, st.max_body_bytes).await {
            Ok(b) => params::add_form(&mut params, &b),
            Err(e) => return error_response(e.status(), &e.to_string()),
        }
    }
    let res = query_inner(&st, &method, &params).await;
    let m = st.engine.metrics();
    m.query_requests
        .with_label_values(&[res.status().as_str()])
        .inc();
    m.query_duration.observe(started.elapsed().as_secs_f64());
    res
}

async fn query_inner(st: &AppState, method: &Method, params: &Params) -> Response {
    let request = match params::query_request(params, method == Method::POST) {
        Ok(request) => request,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let _query = observe::step(st, "query");
    match executor::run(&st.engine, request.text, &request.params).await {
        Ok(results) => json_response(StatusCode::OK, render(&results, request.epoch)),
        Err(executor::RunError::Parse(e)) => error_response(
            StatusCode::BAD_REQUEST,
            &format!("error parsing query: {e}"),
        ),
        Err(executor::RunError::UnknownZone(name)) => error_response(
            StatusCode::BAD_REQUEST,
            &format!("error parsing query: unable to find time zone {name}"),
        ),
    }
}

#[cfg(test)]
mod tests;
