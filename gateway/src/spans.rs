//! One request's spans, when the bootstrap file asks for `tracing`: the gateway's hop (a
//! server span, child of the client's span when it sent a `traceparent`) and one client span
//! per try at a backend, whose id the backend receives as its parent. A backend that
//! continues the trace (the TSDB node does) hangs its spans under the try that reached it.
//!
//! The sampler decides once, at the hop's span: a trace not sampled costs its ids and
//! nothing more, and the hop's `traceparent` then says so to the backend. Spans are handed to
//! the export pipeline (`telemetry`) when they end; a request never waits for the collector.

use crate::trace_context::{TraceContext, SAMPLED};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use std::net::SocketAddr;
use std::time::SystemTime;

/// The longest path kept in a span attribute, in bytes.
const MAX_PATH: usize = 256;

/// A recorded request's spans.
#[derive(Debug)]
pub struct RequestSpans {
    tracer: SdkTracer,
    /// The hop's span, as a parent for the tries.
    hop: Context,
    /// The try in progress (ended when the next starts, or with the request).
    current: Option<Span>,
    tries: u32,
}

/// How a request ended, for its span.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub method: &'a str,
    pub status: u16,
    pub route: &'a str,
    pub pool: Option<&'a str>,
    pub request_id: &'a str,
    pub client: Option<std::net::IpAddr>,
}

impl RequestSpans {
    /// Starts the hop's span in `trace` (the client's trace, or a new one) and, if the trace
    /// is sampled, takes the span's ids into `trace` so the answer and the backend carry
    /// them. `None` when the trace is not sampled: nothing is recorded.
    pub fn start(
        tracer: &SdkTracer,
        trace: &mut TraceContext,
        tracestate: Option<&str>,
        method: &str,
        path: &str,
        at: SystemTime,
    ) -> Option<RequestSpans> {
        let parent = match trace.parent_id {
            Some(parent) => {
                telemetry::remote_parent(trace.trace_id, parent, trace.sampled(), tracestate)
            }
            None => Context::new(),
        };
        let span = tracer
            .span_builder(method.to_string())
            .with_kind(SpanKind::Server)
            .with_start_time(at)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("url.path", bounded(path).to_string()),
            ])
            .start_with_context(tracer, &parent);
        if !span.is_recording() {
            return None;
        }
        let (trace_id, span_id, _) = telemetry::ids_of(span.span_context());
        trace.trace_id = trace_id;
        trace.span_id = span_id;
        trace.flags |= SAMPLED;
        Some(RequestSpans {
            tracer: tracer.clone(),
            hop: parent.with_span(span),
            current: None,
            tries: 0,
        })
    }

    /// A try begins at `backend`: the previous try's span ends, a new one starts. Returns the
    /// new span's id, the parent the backend is told of.
    pub fn start_try(&mut self, backend: SocketAddr, method: &str, at: SystemTime) -> u64 {
        self.end_try(at);
        self.tries += 1;
        let span = self
            .tracer
            .span_builder(method.to_string())
            .with_kind(SpanKind::Client)
            .with_start_time(at)
            .with_attributes([
                KeyValue::new("server.address", backend.ip().to_string()),
                KeyValue::new("server.port", i64::from(backend.port())),
                KeyValue::new("gateway.try", i64::from(self.tries)),
            ])
            .start_with_context(&self.tracer, &self.hop);
        let (_, span_id, _) = telemetry::ids_of(span.span_context());
        self.current = Some(span);
        span_id
    }

    /// The current try's answer began with `status`.
    pub fn try_answered(&mut self, status: u16) {
        if let Some(span) = self.current.as_mut() {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                span.set_status(Status::error(format!("{status}")));
            }
        }
    }

    /// The current try failed before an answer (`kind`: connect, timeout, reset, ...).
    pub fn try_failed(&mut self, kind: &'static str) {
        if let Some(span) = self.current.as_mut() {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(kind));
        }
    }

    fn end_try(&mut self, at: SystemTime) {
        if let Some(mut span) = self.current.take() {
            span.end_with_timestamp(at);
        }
    }

    /// The answer ended: the last try's span and the hop's end, the hop's named by its route
    /// (`GET route`, as the semantic conventions name a server span).
    pub fn end(mut self, outcome: &Outcome<'_>, at: SystemTime) {
        self.end_try(at);
        let span = self.hop.span();
        span.update_name(format!("{} {}", outcome.method, outcome.route));
        span.set_attribute(KeyValue::new("http.route", outcome.route.to_string()));
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(outcome.status),
        ));
        span.set_attribute(KeyValue::new(
            "gateway.request_id",
            outcome.request_id.to_string(),
        ));
        span.set_attribute(KeyValue::new("gateway.tries", i64::from(self.tries)));
        if let Some(pool) = outcome.pool {
            span.set_attribute(KeyValue::new("gateway.pool", pool.to_string()));
        }
        if let Some(client) = outcome.client {
            span.set_attribute(KeyValue::new("client.address", client.to_string()));
        }
        if outcome.status >= 500 {
            span.set_status(Status::error(format!("{}", outcome.status)));
        }
        span.end_with_timestamp(at);
    }
}

/// `path` cut to at most [`MAX_PATH`] bytes, at a character boundary.
fn bounded(path: &str) -> &str {
    if path.len() <= MAX_PATH {
        return path;
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}
