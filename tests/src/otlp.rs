//! An OTLP/HTTP trace receiver: what the gateway's and the TSDB node's span export is
//! tested against. It takes `POST /v1/traces` (protobuf), decodes each request with the
//! protocol's own types (`opentelemetry-proto`) and keeps the spans; anything else is a 404.
//! [`OtlpReceiver::refusing`] answers every export 503, as a collector in trouble does;
//! [`OtlpReceiver::counting`] only counts the spans (reading the protobuf's framing, not
//! decoding the spans), so a benchmark's collector takes as little of the machine as it can.
//!
//! It serves on a tokio runtime of its own thread until dropped, like the other fakes.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Spans kept at most (a benchmark's sink counts the rest).
const MAX_KEPT: usize = 100_000;

/// One span as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of its resource.
    pub service: String,
    pub name: String,
    /// Lower-case hex, as in a `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP's span kind: 2 server, 3 client, 1 internal.
    pub kind: i32,
    /// Attributes with their values as text.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The value of attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    count: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// A receiver that accepts every export.
    pub fn start() -> anyhow::Result<OtlpReceiver> {
        OtlpReceiver::serve(Mode::Keep)
    }

    /// A receiver that refuses every export with 503.
    pub fn refusing() -> anyhow::Result<OtlpReceiver> {
        OtlpReceiver::serve(Mode::Refuse)
    }

    /// A receiver that accepts every export and only counts its spans ([`count_spans`]).
    pub fn counting() -> anyhow::Result<OtlpReceiver> {
        OtlpReceiver::serve(Mode::Count)
    }

    /// The collector's base URL (the exporters add `/v1/traces`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many spans arrived (also past [`MAX_KEPT`]).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn serve(mode: Mode) -> anyhow::Result<OtlpReceiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let spans = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (kept, counted) = (spans.clone(), count.clone());
        let thread = std::thread::Builder::new()
            .name(format!("otlp-receiver-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, mode, kept, counted) => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(OtlpReceiver {
            addr,
            spans,
            count,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a receiver does with an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Keep,
    Count,
    Refuse,
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    mode: Mode,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    count: Arc<AtomicU64>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (spans, count) = (spans.clone(), count.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (spans, count) = (spans.clone(), count.clone());
                async move {
                    let path_ok = req.uri().path() == "/v1/traces";
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let ok = || Bytes::from(ExportTraceServiceResponse::default().encode_to_vec());
                    let (status, answer) = if !path_ok {
                        (404, Bytes::new())
                    } else if mode == Mode::Refuse {
                        (503, Bytes::new())
                    } else if mode == Mode::Count {
                        match count_spans(&body) {
                            Some(n) => {
                                count.fetch_add(n, Ordering::Relaxed);
                                (200, ok())
                            }
                            None => (400, Bytes::new()),
                        }
                    } else {
                        match ExportTraceServiceRequest::decode(body) {
                            Ok(request) => {
                                let got = flatten(request);
                                count.fetch_add(got.len() as u64, Ordering::Relaxed);
                                let mut list = spans.lock().unwrap_or_else(PoisonError::into_inner);
                                let room = MAX_KEPT.saturating_sub(list.len());
                                list.extend(got.into_iter().take(room));
                                (200, ok())
                            }
                            Err(_) => (400, Bytes::new()),
                        }
                    };
                    hyper::Response::builder()
                        .status(status)
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(answer))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The number of spans in an encoded `ExportTraceServiceRequest`, read from the protobuf's
/// framing alone: the `spans` (field 2) of every `scope_spans` (field 2) of every
/// `resource_spans` (field 1). `None` for bytes that are not such a message.
pub fn count_spans(message: &[u8]) -> Option<u64> {
    let mut n = 0;
    for (field, resource) in fields(message)? {
        if field != 1 {
            continue;
        }
        for (field, scope) in fields(resource?)? {
            if field != 2 {
                continue;
            }
            n += fields(scope?)?
                .iter()
                .filter(|(field, body)| *field == 2 && body.is_some())
                .count() as u64;
        }
    }
    Some(n)
}

/// The fields of one protobuf message: each field number, with its bytes when it is
/// length-delimited (`None` for the other wire types, whose values are skipped).
#[allow(clippy::type_complexity)]
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, Option<&[u8]>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let value = match key & 7 {
            0 => {
                varint(&mut buf)?;
                None
            }
            1 => {
                buf = buf.get(8..)?;
                None
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let (body, rest) = (buf.get(..len)?, buf.get(len..)?);
                buf = rest;
                Some(body)
            }
            5 => {
                buf = buf.get(4..)?;
                None
            }
            _ => return None,
        };
        out.push((key >> 3, value));
    }
    Some(out)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Every span of an export request, with its resource's service name.
fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(text_of)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    kind: s.kind,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text_of(kv)))
                        .collect(),
                });
            }
        }
    }
    out
}

fn text_of(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(i: u8) -> Span {
        Span {
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            name: format!("span {i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            attributes: vec![KeyValue {
                key: "k".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(i64::from(i))),
                }),
                ..KeyValue::default()
            }],
            ..Span::default()
        }
    }

    #[test]
    fn the_framing_count_agrees_with_a_full_decode() {
        let scope = |spans: Vec<Span>| ScopeSpans {
            spans,
            ..ScopeSpans::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource::default()),
                    scope_spans: vec![scope((0..3).map(span).collect()), scope(vec![span(9)])],
                    ..ResourceSpans::default()
                },
                ResourceSpans {
                    scope_spans: vec![scope((0..5).map(span).collect())],
                    ..ResourceSpans::default()
                },
            ],
        };
        let bytes = request.encode_to_vec();
        assert_eq!(count_spans(&bytes), Some(9));
        assert_eq!(
            flatten(ExportTraceServiceRequest::decode(&bytes[..]).unwrap()).len(),
            9
        );
        assert_eq!(count_spans(&[]), Some(0));
        assert_eq!(
            count_spans(&bytes[..bytes.len() - 3]),
            None,
            "a cut message"
        );
        assert_eq!(count_spans(&[0x0a, 0xff]), None, "a length past the end");
    }
}
