//! One request's spans, when the bootstrap file asks for `tracing`: the gateway's hop (a
//! server span, child of the client's span when it sent a `traceparent`) and one client span
//! per try at a backend, whose id the backend receives as its parent. A backend that
//! continues the trace (the TSDB node does) hangs its spans under the try that reached it.
//!
//! The sampling rule decides once, at the hop: a trace the client sent is recorded when the
//! client says it samples it, a new one by its id at the configured ratio (the SDK's rule,
//! so every hop decides alike). A trace not recorded costs its ids and nothing more, and
//! the hop's `traceparent` then says so to the backend.
//!
//! While the request runs, its spans are plain values here (ids, times, the backend's
//! address, the try's status); when the answer ends they go to the export thread as one
//! record ([`telemetry::SpanSource`]), which makes the SDK's `SpanData` of them, with every
//! attribute formatted there, off the request's thread. `telemetry::queue` says why.

use crate::trace_context::{TraceContext, SAMPLED};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;
use telemetry::SpanQueue;

/// The longest path kept in a span attribute, in bytes.
const MAX_PATH: usize = 256;

/// A recorded request's spans, while it runs.
#[derive(Debug)]
pub struct RequestSpans {
    trace_id: u128,
    /// The hop's span.
    span_id: u64,
    /// The client's span, when the trace is the client's.
    parent_id: Option<u64>,
    /// The client's `tracestate`, passed on with the trace.
    tracestate: Option<String>,
    /// The method, when HTTP defines it.
    method: Option<&'static str>,
    /// The method as sent, when it is not one of HTTP's.
    method_original: Option<String>,
    path: String,
    start: SystemTime,
    tries: Vec<Try>,
}

/// One try at a backend.
#[derive(Debug)]
struct Try {
    span_id: u64,
    backend: SocketAddr,
    start: SystemTime,
    /// Set when the next try starts, else the request's end.
    end: Option<SystemTime>,
    status: Option<u16>,
    error: Option<&'static str>,
}

/// How a request ended, for its span.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub status: u16,
    pub route: &'a str,
    pub pool: Option<&'a str>,
    pub request_id: &'a str,
    pub client: Option<IpAddr>,
}

impl RequestSpans {
    /// Starts the hop's span in `trace` (the client's trace, or a new one) if the trace is
    /// sampled, and marks `trace` sampled so the answer and the backend say so. `None` when
    /// the trace is not sampled: nothing is recorded.
    pub fn start(
        queue: &SpanQueue,
        trace: &mut TraceContext,
        tracestate: Option<&str>,
        method: &str,
        path: &str,
        at: SystemTime,
    ) -> Option<RequestSpans> {
        let sampled = match trace.parent_id {
            Some(_) => trace.sampled(),
            None => queue.sampled(trace.trace_id),
        };
        if !sampled {
            return None;
        }
        trace.flags |= SAMPLED;
        let known = known_method(method);
        Some(RequestSpans {
            trace_id: trace.trace_id,
            span_id: trace.span_id,
            parent_id: trace.parent_id,
            tracestate: trace.parent_id.and(tracestate).map(str::to_string),
            method: known,
            method_original: known.is_none().then(|| bounded(method).to_string()),
            path: bounded(path).to_string(),
            start: at,
            tries: Vec::new(),
        })
    }

    /// A try begins at `backend`: the previous try's span ends. Returns the new span's id,
    /// the parent the backend is told of.
    pub fn start_try(&mut self, backend: SocketAddr, at: SystemTime) -> u64 {
        self.end_try(at);
        let span_id = crate::trace_context::new_span_id();
        self.tries.push(Try {
            span_id,
            backend,
            start: at,
            end: None,
            status: None,
            error: None,
        });
        span_id
    }

    /// The current try's answer began with `status`.
    pub fn try_answered(&mut self, status: u16) {
        if let Some(t) = self.tries.last_mut() {
            t.status = Some(status);
        }
    }

    /// The current try failed before an answer (`kind`: connect, timeout, reset, ...).
    pub fn try_failed(&mut self, kind: &'static str) {
        if let Some(t) = self.tries.last_mut() {
            t.error = Some(kind);
        }
    }

    fn end_try(&mut self, at: SystemTime) {
        if let Some(t) = self.tries.last_mut() {
            t.end.get_or_insert(at);
        }
    }

    /// The answer ended: the spans go to the export thread.
    pub fn end(mut self, queue: &SpanQueue, outcome: &Outcome<'_>, at: SystemTime) {
        self.end_try(at);
        queue.send(Box::new(Ended {
            spans: self,
            end: at,
            status: outcome.status,
            route: outcome.route.to_string(),
            pool: outcome.pool.map(str::to_string),
            request_id: outcome.request_id.to_string(),
            client: outcome.client,
        }));
    }
}

/// A request's spans once its answer ended: what the export thread makes spans of.
#[derive(Debug)]
struct Ended {
    spans: RequestSpans,
    end: SystemTime,
    status: u16,
    route: String,
    pool: Option<String>,
    request_id: String,
    client: Option<IpAddr>,
}

impl telemetry::SpanSource for Ended {
    fn count(&self) -> usize {
        1 + self.spans.tries.len()
    }

    fn spans(self: Box<Self>, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
        let Ended {
            spans: s,
            end,
            status,
            route,
            pool,
            request_id,
            client,
        } = *self;
        let state = s
            .tracestate
            .as_deref()
            .and_then(|t| t.parse::<TraceState>().ok())
            .unwrap_or_default();
        let context = |span_id: u64| {
            SpanContext::new(
                TraceId::from(s.trace_id),
                SpanId::from(span_id),
                TraceFlags::SAMPLED,
                false,
                state.clone(),
            )
        };
        let method = s.method.unwrap_or("HTTP");
        let tries = s.tries.len();
        for (n, t) in s.tries.into_iter().enumerate() {
            let mut attributes = vec![
                KeyValue::new("server.address", telemetry::text::ip_string(t.backend.ip())),
                KeyValue::new("server.port", i64::from(t.backend.port())),
                KeyValue::new("gateway.try", n as i64 + 1),
            ];
            let mut span_status = Status::Unset;
            if let Some(code) = t.status {
                attributes.push(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 500 {
                    span_status = Status::error(code.to_string());
                }
            }
            if let Some(kind) = t.error {
                attributes.push(KeyValue::new("error.type", kind));
                span_status = Status::error(kind);
            }
            out.push(span(
                context(t.span_id),
                (SpanId::from(s.span_id), false),
                SpanKind::Client,
                Cow::Borrowed(method),
                (t.start, t.end.unwrap_or(end)),
                attributes,
                span_status,
                scope,
            ));
        }
        let mut attributes = vec![
            KeyValue::new("http.request.method", s.method.unwrap_or("_OTHER")),
            KeyValue::new("url.path", s.path),
        ];
        if let Some(original) = s.method_original {
            attributes.push(KeyValue::new("http.request.method_original", original));
        }
        attributes.extend([
            KeyValue::new("http.response.status_code", i64::from(status)),
            KeyValue::new("gateway.request_id", request_id),
            KeyValue::new("gateway.tries", tries as i64),
        ]);
        if let Some(pool) = pool {
            attributes.push(KeyValue::new("gateway.pool", pool));
        }
        if let Some(ip) = client {
            attributes.push(KeyValue::new(
                "client.address",
                telemetry::text::ip_string(ip),
            ));
        }
        // The route last: its name is moved into the span's name after.
        let name = format!("{method} {route}");
        attributes.push(KeyValue::new("http.route", route));
        let hop_status = if status >= 500 {
            Status::error(status.to_string())
        } else {
            Status::Unset
        };
        let parent = match s.parent_id {
            Some(id) => (SpanId::from(id), true),
            None => (SpanId::INVALID, false),
        };
        out.push(span(
            context(s.span_id),
            parent,
            SpanKind::Server,
            Cow::Owned(name),
            (s.start, end),
            attributes,
            hop_status,
            scope,
        ));
    }
}

/// One finished span as the SDK's exporters take it.
#[allow(clippy::too_many_arguments)]
fn span(
    context: SpanContext,
    (parent_span_id, parent_span_is_remote): (SpanId, bool),
    span_kind: SpanKind,
    name: Cow<'static, str>,
    (start_time, end_time): (SystemTime, SystemTime),
    attributes: Vec<KeyValue>,
    status: Status,
    scope: &InstrumentationScope,
) -> SpanData {
    SpanData {
        span_context: context,
        parent_span_id,
        parent_span_is_remote,
        span_kind,
        name,
        start_time,
        end_time,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// One of HTTP's own methods, as a `'static` name (a span's name and attribute borrow it
/// instead of copying it); `None` for any other, which the semantic conventions name
/// `HTTP` in a span's name and `_OTHER` in its attribute, so a client cannot fill the
/// collector with names of its own.
fn known_method(method: &str) -> Option<&'static str> {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|m| *m == method)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};
    use telemetry::SpanSource as _;

    #[test]
    fn only_https_own_methods_name_a_span() {
        assert_eq!(known_method("GET"), Some("GET"));
        assert_eq!(known_method("PATCH"), Some("PATCH"));
        assert_eq!(known_method("get"), None, "methods are case-sensitive");
        assert_eq!(known_method("PURGE"), None);
        assert_eq!(bounded(&"é".repeat(200)).len(), 256);
    }

    fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn a_retried_request_becomes_a_hop_and_one_child_per_try() {
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_000_000 + ms);
        let mut spans = RequestSpans {
            trace_id: 0xabc,
            span_id: 0x11,
            parent_id: Some(0x22),
            tracestate: Some("vendor=1".into()),
            method: None,
            method_original: Some("PURGE".into()),
            path: "/x".into(),
            start: at(0),
            tries: Vec::new(),
        };
        let first = spans.start_try("10.0.0.1:8086".parse().unwrap(), at(1));
        spans.try_answered(503);
        let second = spans.start_try("10.0.0.2:8086".parse().unwrap(), at(5));
        spans.try_failed("timeout");
        assert_ne!(first, second);
        spans.end_try(at(9));
        let ended = Box::new(Ended {
            spans,
            end: at(9),
            status: 504,
            route: "write".into(),
            pool: Some("tsdb".into()),
            request_id: "r-1".into(),
            client: Some([192, 0, 2, 7].into()),
        });
        assert_eq!(ended.count(), 3);
        let mut out = Vec::new();
        ended.spans(&InstrumentationScope::builder("gateway").build(), &mut out);
        let [a, b, hop] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(hop.name, "HTTP write");
        assert_eq!(hop.span_kind, SpanKind::Server);
        assert_eq!(hop.parent_span_id, SpanId::from(0x22u64));
        assert!(hop.parent_span_is_remote);
        assert_eq!(hop.span_context.trace_state().get("vendor"), Some("1"));
        assert_eq!(
            attribute(hop, "http.request.method"),
            Some(&"_OTHER".into())
        );
        assert_eq!(
            attribute(hop, "http.request.method_original"),
            Some(&"PURGE".into())
        );
        assert_eq!(attribute(hop, "client.address"), Some(&"192.0.2.7".into()));
        assert_eq!(attribute(hop, "gateway.tries"), Some(&2i64.into()));
        assert_eq!(attribute(hop, "http.route"), Some(&"write".into()));
        assert_eq!(hop.status, Status::error("504"));
        assert_eq!((hop.start_time, hop.end_time), (at(0), at(9)));
        for (t, id, end) in [(a, first, at(5)), (b, second, at(9))] {
            assert_eq!(t.span_context.span_id(), SpanId::from(id));
            assert_eq!(t.span_context.trace_id(), TraceId::from(0xabcu128));
            assert_eq!(t.parent_span_id, SpanId::from(0x11u64));
            assert!(!t.parent_span_is_remote);
            assert_eq!(t.span_kind, SpanKind::Client);
            assert_eq!(t.end_time, end);
        }
        assert_eq!(attribute(a, "server.address"), Some(&"10.0.0.1".into()));
        assert_eq!(
            attribute(a, "http.response.status_code"),
            Some(&503i64.into())
        );
        assert_eq!(a.status, Status::error("503"));
        assert_eq!(attribute(b, "error.type"), Some(&"timeout".into()));
        assert_eq!(attribute(b, "gateway.try"), Some(&2i64.into()));
    }
}
