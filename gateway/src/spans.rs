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
//! record ([`telemetry::SpanSource`]), which writes their protobuf, every attribute
//! formatted there, off the request's thread. `telemetry::queue` says why.

use crate::trace_context::{TraceContext, SAMPLED};
use opentelemetry::trace::{SpanKind, TraceState};
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;
use telemetry::{Attr, EncodedSpans, SpanFields, SpanQueue};

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

    fn write(self: Box<Self>, out: &mut EncodedSpans) {
        let s = &self.spans;
        // The client's `tracestate` as W3C reads it: one that does not parse is not passed
        // on into the spans (as the SDK would not either).
        let state = s
            .tracestate
            .as_deref()
            .and_then(|t| t.parse::<TraceState>().ok())
            .map(|t| t.header())
            .unwrap_or_default();
        let method = s.method.unwrap_or("HTTP");
        // Statuses as text and attributes on the stack: writing a span allocates nothing.
        for (n, t) in s.tries.iter().enumerate() {
            let mut status_text = itoa::Buffer::new();
            let status = t.status.map(|code| status_text.format(code));
            // A try that failed says how; one answered 5xx says with what.
            let error = t.error.or(status.filter(|_| t.status >= Some(500)));
            let mut attributes = Attributes::<5>::new();
            attributes.push("server.address", Attr::Ip(t.backend.ip()));
            attributes.push("server.port", Attr::Int(i64::from(t.backend.port())));
            attributes.push("gateway.try", Attr::Int(n as i64 + 1));
            if let Some(code) = t.status {
                attributes.push("http.response.status_code", Attr::Int(i64::from(code)));
            }
            if let Some(kind) = t.error {
                attributes.push("error.type", Attr::Str(kind));
            }
            out.push(
                &SpanFields {
                    trace_id: s.trace_id,
                    span_id: t.span_id,
                    parent: Some((s.span_id, false)),
                    trace_state: &state,
                    kind: SpanKind::Client,
                    name: [method, ""],
                    start: t.start,
                    end: t.end.unwrap_or(self.end),
                    error,
                },
                attributes.as_slice(),
            );
        }
        let mut status_text = itoa::Buffer::new();
        let status = status_text.format(self.status);
        let mut attributes = Attributes::<9>::new();
        attributes.push(
            "http.request.method",
            Attr::Str(s.method.unwrap_or("_OTHER")),
        );
        attributes.push("url.path", Attr::Str(&s.path));
        attributes.push(
            "http.response.status_code",
            Attr::Int(i64::from(self.status)),
        );
        attributes.push("gateway.request_id", Attr::Str(&self.request_id));
        attributes.push("gateway.tries", Attr::Int(s.tries.len() as i64));
        attributes.push("http.route", Attr::Str(&self.route));
        if let Some(original) = &s.method_original {
            attributes.push("http.request.method_original", Attr::Str(original));
        }
        if let Some(pool) = &self.pool {
            attributes.push("gateway.pool", Attr::Str(pool));
        }
        if let Some(ip) = self.client {
            attributes.push("client.address", Attr::Ip(ip));
        }
        out.push(
            &SpanFields {
                trace_id: s.trace_id,
                span_id: s.span_id,
                parent: s.parent_id.map(|p| (p, true)),
                trace_state: &state,
                kind: SpanKind::Server,
                name: [method, &self.route],
                start: s.start,
                end: self.end,
                error: (self.status >= 500).then_some(status),
            },
            attributes.as_slice(),
        );
    }
}

/// Up to `N` attributes of a span, on the stack; one more than `N` is dropped (the
/// callers above push at most `N`).
struct Attributes<'a, const N: usize> {
    items: [(&'static str, Attr<'a>); N],
    len: usize,
}

impl<'a, const N: usize> Attributes<'a, N> {
    fn new() -> Self {
        Attributes {
            items: [("", Attr::Int(0)); N],
            len: 0,
        }
    }

    fn push(&mut self, key: &'static str, value: Attr<'a>) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (key, value);
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[(&'static str, Attr<'a>)] {
        &self.items[..self.len]
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

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message as _;

    fn attribute(span: &Span, key: &str) -> Option<Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    }

    fn text(v: &str) -> Option<Value> {
        Some(Value::StringValue(v.to_string()))
    }

    fn int(v: i64) -> Option<Value> {
        Some(Value::IntValue(v))
    }

    /// What `ended` writes, decoded with the protocol's own types.
    fn written_spans(ended: Box<Ended>) -> Vec<Span> {
        let mut spans = EncodedSpans::default();
        ended.write(&mut spans);
        let mut body = Vec::new();
        telemetry::protobuf::Encoder::default().scope_request(
            &spans,
            &opentelemetry::InstrumentationScope::builder("gateway").build(),
            &opentelemetry_sdk::Resource::builder_empty().build(),
            &mut body,
        );
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        request.resource_spans[0].scope_spans[0].spans.clone()
    }

    #[test]
    fn a_tracestate_is_written_into_the_spans_as_w3c_reads_it_and_a_bad_one_not_at_all() {
        for (sent, written) in [
            ("not a state,,=", ""),
            // More than W3C's 32 entries: the first 32 are kept, as the SDK keeps them.
            (&*"a=b,".repeat(40), &*vec!["a=b"; 32].join(",")),
            ("a=1, b=2", "a=1,b=2"),
        ] {
            let mut spans = RequestSpans {
                trace_id: 0xabc,
                span_id: 0x11,
                parent_id: Some(0x22),
                tracestate: Some(sent.to_string()),
                method: Some("GET"),
                method_original: None,
                path: "/".into(),
                start: UNIX_EPOCH,
                tries: Vec::new(),
            };
            spans.start_try("10.0.0.1:80".parse().unwrap(), UNIX_EPOCH);
            let all = written_spans(Box::new(Ended {
                spans,
                end: UNIX_EPOCH,
                status: 200,
                route: "r".into(),
                pool: None,
                request_id: "q".into(),
                client: None,
            }));
            assert_eq!(all.len(), 2);
            for span in all {
                assert_eq!(span.trace_state, written, "{sent:?}");
            }
        }
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
        let [a, b, hop] = &written_spans(ended)[..] else {
            panic!("three spans")
        };
        let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert_eq!(hop.name, "HTTP write");
        assert_eq!(hop.kind, 2, "server");
        assert_eq!(hop.parent_span_id, 0x22u64.to_be_bytes());
        assert_eq!(hop.flags, 0x301, "sampled, parent remote");
        assert_eq!(hop.trace_state, "vendor=1");
        assert_eq!(attribute(hop, "http.request.method"), text("_OTHER"));
        assert_eq!(
            attribute(hop, "http.request.method_original"),
            text("PURGE")
        );
        assert_eq!(attribute(hop, "client.address"), text("192.0.2.7"));
        assert_eq!(attribute(hop, "gateway.tries"), int(2));
        assert_eq!(attribute(hop, "gateway.pool"), text("tsdb"));
        assert_eq!(attribute(hop, "http.route"), text("write"));
        assert_eq!(attribute(hop, "http.response.status_code"), int(504));
        let status = hop.status.clone().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "504"));
        assert_eq!(
            (hop.start_time_unix_nano, hop.end_time_unix_nano),
            (nanos(at(0)), nanos(at(9)))
        );
        for (t, id, end) in [(a, first, at(5)), (b, second, at(9))] {
            assert_eq!(t.span_id, id.to_be_bytes());
            assert_eq!(t.trace_id, 0xabcu128.to_be_bytes());
            assert_eq!(t.parent_span_id, 0x11u64.to_be_bytes());
            assert_eq!(t.flags, 0x101, "sampled, parent local");
            assert_eq!(t.kind, 3, "client");
            assert_eq!(t.name, "HTTP");
            assert_eq!(t.end_time_unix_nano, nanos(end));
        }
        assert_eq!(attribute(a, "server.address"), text("10.0.0.1"));
        assert_eq!(attribute(a, "server.port"), int(8086));
        assert_eq!(attribute(a, "http.response.status_code"), int(503));
        assert_eq!(a.status.clone().unwrap().message, "503");
        assert_eq!(attribute(b, "error.type"), text("timeout"));
        assert_eq!(attribute(b, "gateway.try"), int(2));
        assert_eq!(b.status.clone().unwrap().message, "timeout");
    }
}
