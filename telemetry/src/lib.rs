//! What the gateway and the TSDB node report alike: their access log's lines and writer
//! ([`access_log`]), and their spans, exported over OTLP/HTTP (protobuf).
//!
//! Spans come in two ways, both ending in the same encoding ([`protobuf`]) and the same
//! counted export ([`ExportObserver`]: a collector that is down shows in the metrics, not in
//! latency), each behind a bounded queue and a thread of its own, so a request never waits
//! for the collector:
//! - [`Tracing`] (the TSDB node): the standard OpenTelemetry SDK. The node builds its spans
//!   with the `opentelemetry` API under a parent-based sampler (a caller's sampled flag
//!   decides; a new trace is sampled at the configured ratio of trace ids, so every hop of
//!   one trace decides alike), and the SDK's batch processor hands them to our exporter,
//!   which writes each batch's protobuf straight from the SDK's spans. This crate also reads
//!   a request's `traceparent` into the parent those spans hang under
//!   ([`parent_from_headers`]).
//! - [`SpanQueue`] (the gateway, whose spans are made at every proxied request): a record
//!   of plain values per request ([`SpanSource`]), written as protobuf on the export thread
//!   ([`EncodedSpans`]), with the SDK's sampling rule. `queue` says why.

pub mod access_log;
mod background;
mod client;
mod export;
pub mod protobuf;
mod queue;
mod ratio;
mod rounds;
pub mod text;

pub use export::{ExportObserver, Settings, TelemetryError, Tracing};
pub use protobuf::{Attr, EncodedSpans, SpanFields};
pub use queue::{SpanQueue, SpanSource};
pub use ratio::{parse_ratio, RatioError};

use opentelemetry::Context;

/// The caller's span from a request's `traceparent` and `tracestate` (W3C Trace Context, by
/// the SDK's own propagator): the parent of a span of this process, or an empty context when
/// the request carries no valid one.
pub fn parent_from_headers(headers: &http::HeaderMap) -> Context {
    use opentelemetry::propagation::TextMapPropagator;
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .extract(&opentelemetry_http::HeaderExtractor(headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceContextExt};

    /// The ids and flag of a span, as a `traceparent` carries them.
    fn ids_of(context: &SpanContext) -> (u128, u64, bool) {
        (
            u128::from_be_bytes(context.trace_id().to_bytes()),
            u64::from_be_bytes(context.span_id().to_bytes()),
            context.is_sampled(),
        )
    }

    #[test]
    fn a_callers_state_is_kept_with_its_ids_and_a_bad_state_dropped() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-00000000000000000000000000000abc-0000000000000012-01",
            ),
        );
        h.insert("tracestate", http::HeaderValue::from_static("vendor=1"));
        let sc = parent_from_headers(&h).span().span_context().clone();
        assert!(sc.is_remote());
        assert_eq!(ids_of(&sc), (0xabc, 0x12, true));
        assert_eq!(sc.trace_state().get("vendor"), Some("1"));
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-00000000000000000000000000000abc-0000000000000012-00",
            ),
        );
        h.insert(
            "tracestate",
            http::HeaderValue::from_static("not a state,,="),
        );
        let sc = parent_from_headers(&h).span().span_context().clone();
        assert!(!sc.is_sampled());
        assert_eq!(sc.trace_state().header(), "");
    }

    #[test]
    fn a_requests_traceparent_is_its_parent_and_a_bad_one_none() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        );
        let sc = parent_from_headers(&h).span().span_context().clone();
        assert_eq!(
            ids_of(&sc),
            (0x0af7651916cd43dd8448eb211c80319c, 0xb7ad6b7169203331, true)
        );
        h.insert("traceparent", http::HeaderValue::from_static("00-00-00-01"));
        assert!(!parent_from_headers(&h).span().span_context().is_valid());
    }
}
