//! Each request observed, around its handler: its access-log line (`--access-log`), its
//! span (`--otlp`; a `traceparent` from the gateway makes it a child of the gateway's try),
//! and its request id and trace id on every process-log event while it is handled.
//!
//! Handlers add spans for their steps with [`step`] (parse, WAL commit, query): the
//! request's span is the current OpenTelemetry context of the handler's task, so a step
//! needs no parent passed down.

use super::AppState;
use crate::listener::Connection;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use telemetry::access_log::{self, AccessLog, Entry};
use tracing::Instrument as _;

/// Where requests are reported; both off by default.
#[derive(Debug, Default)]
pub struct Observer {
    pub access_log: Option<AccessLog>,
    pub tracing: Option<Arc<telemetry::Tracing>>,
}

/// A span for one step of the request the current task is handling, ended when dropped;
/// `None` when that request is not recorded.
pub fn step(st: &AppState, name: &'static str) -> Option<opentelemetry_sdk::trace::Span> {
    let tracing = st.observer.tracing.as_ref()?;
    let cx = Context::current();
    if !cx.span().span_context().is_sampled() {
        return None;
    }
    Some(tracing.tracer().start_with_context(name, &cx))
}

/// Middleware: observes the request (inside `request_id::assign`, so its id is set).
pub async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = crate::clock::monotonic_now();
    let at = wall_clock(&st);
    let parent = telemetry::parent_from_headers(req.headers());
    let request_id = header_text(req.headers(), super::request_id::HEADER.as_str());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let cx = st.observer.tracing.as_ref().map(|t| {
        let name = format!("{} {}", req.method(), route.as_deref().unwrap_or("(none)"));
        let span = t
            .tracer()
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(at)
            .with_attributes([
                KeyValue::new("http.request.method", req.method().to_string()),
                KeyValue::new("url.path", req.uri().path().to_string()),
                KeyValue::new("tsdb.request_id", request_id.clone()),
            ])
            .start_with_context(t.tracer(), &parent);
        parent.with_span(span)
    });
    let trace = cx.as_ref().unwrap_or(&parent).span().span_context().clone();
    let trace_id = if trace.is_valid() {
        trace.trace_id().to_string()
    } else {
        String::new()
    };
    // What the access log needs of the request, taken before the handler owns it.
    let line = st.observer.access_log.as_ref().map(|_| Entry {
        time: access_log::LineTime(at),
        request_id: request_id.clone(),
        trace_id: trace
            .is_valid()
            .then(|| u128::from_be_bytes(trace.trace_id().to_bytes())),
        client: req
            .extensions()
            .get::<ConnectInfo<Connection>>()
            .map(|c| c.0.remote.ip()),
        method: req.method().clone(),
        host: header_text(req.headers(), header::HOST.as_str()),
        path: access_log::redact(req.uri().path_and_query().map_or("/", |p| p.as_str())),
        bytes_in: content_length(req.headers()),
        route: route.clone().unwrap_or_default(),
        user_agent: Some(header_text(req.headers(), header::USER_AGENT.as_str()))
            .filter(|s| !s.is_empty()),
        referer: Some(header_text(req.headers(), header::REFERER.as_str()))
            .filter(|s| !s.is_empty()),
        ..Entry::default()
    });
    let log_span = tracing::info_span!("request", request_id = %request_id, trace_id = %trace_id);
    let handled = next.run(req).instrument(log_span);
    let res = match &cx {
        Some(cx) => handled.with_context(cx.clone()).await,
        None => handled.await,
    };
    let status = res.status().as_u16();
    if let Some(cx) = cx {
        let span = cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if let Some(route) = &route {
            span.set_attribute(KeyValue::new("http.route", route.clone()));
        }
        if status >= 500 {
            span.set_status(Status::error(status.to_string()));
        }
        span.end_with_timestamp(at + started.elapsed());
    }
    if let (Some(log), Some(mut line)) = (&st.observer.access_log, line) {
        line.status = status;
        line.bytes_out = content_length(res.headers());
        line.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        if !log.log(line) {
            st.engine.metrics().access_log_dropped.inc();
        }
    }
    res
}

/// The node's wall clock (the engine's, which tests drive) as a `SystemTime`.
fn wall_clock(st: &AppState) -> std::time::SystemTime {
    let ns = u64::try_from(st.engine.now_ns()).unwrap_or(0);
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn header_text(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn content_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
