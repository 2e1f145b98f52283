//! The export pipeline: the SDK's sampler and batch processor, and an OTLP/HTTP exporter of
//! our own that writes each batch as protobuf straight from the spans ([`crate::protobuf`]
//! says why) and posts it with ureq ([`crate::client`] says why).

use crate::client::Collector;
use crate::protobuf::Encoder;
use opentelemetry::trace::TracerProvider;
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter,
};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Spans waiting for export at most; beyond it a finished span is dropped (and not
/// exported), never waited for.
const QUEUE: usize = 8192;
/// Spans sent in one export at most: large batches keep the exporter's requests (and the
/// collector's work per span) few at high rates.
const BATCH: usize = 2048;
/// How long finished spans wait to be sent together, at most.
const DELAY: Duration = Duration::from_millis(500);
/// The longest a stopping process waits for its last spans to be sent.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);
/// One export's time limit, connection and answer included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how much to export.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The collector: `http://host:4318` (the traces path is added) or the full URL of its
    /// traces endpoint.
    pub endpoint: String,
    /// The fraction of new traces recorded (a caller's decision is kept).
    pub sample: f64,
    /// `service.name` of the spans.
    pub service: &'static str,
    /// `service.instance.id`: which process of the service.
    pub instance: String,
}

/// The pipeline could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("tracing endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

/// Told how each export went: the number of spans, and whether the collector took them
/// (`false`: lost to a collector that is down, refused or too slow). The binaries count it
/// in their metrics.
pub type ExportObserver = Arc<dyn Fn(u64, bool) + Send + Sync>;

/// Sends each batch to the collector as one OTLP/HTTP protobuf request, and reports what it
/// came to. Not retried: a batch the collector did not take is counted as failed, and the
/// next batch is tried afresh (a collector that is down must not grow the queue).
#[derive(Debug)]
struct OtlpHttp {
    collector: Collector,
    resource: Resource,
    /// The encoder's buffers and the request body, kept between batches. Only the batch
    /// processor's thread exports, so the lock is never contended.
    buffers: Mutex<(Encoder, Vec<u8>)>,
    observe: Observer,
    /// Whether the exporting thread (the SDK's, made by it) has been lowered to the
    /// reporting threads' priority yet: done at its first export.
    lowered: AtomicBool,
}

/// [`ExportObserver`] with a `Debug` the exporter's trait asks for.
struct Observer(ExportObserver);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl OtlpHttp {
    fn send(&self, batch: &[SpanData]) -> Result<(), String> {
        let mut buffers = self.buffers.lock().map_err(|_| "poisoned".to_string())?;
        let (encoder, body) = &mut *buffers;
        encoder.request(batch, &self.resource, body);
        self.collector.post(body)
    }
}

impl SpanExporter for OtlpHttp {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        if !self.lowered.swap(true, Ordering::Relaxed) {
            crate::background::lower_this_thread();
        }
        let result = self.send(&batch);
        (self.observe.0)(batch.len() as u64, result.is_ok());
        result.map_err(OTelSdkError::InternalFailure)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

/// A running export pipeline and the tracer that feeds it.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Tracing {
    /// Starts the pipeline (its export thread included). Nothing is sent until a span ends.
    pub fn start(settings: &Settings, observe: ExportObserver) -> Result<Tracing, TelemetryError> {
        let endpoint = traces_url(&settings.endpoint)?;
        let exporter = OtlpHttp {
            collector: Collector::new(endpoint, TIMEOUT),
            resource: Resource::builder_empty().build(),
            buffers: Mutex::new((Encoder::default(), Vec::new())),
            observe: Observer(observe),
            lowered: AtomicBool::new(false),
        };
        let batches = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE)
            .with_max_export_batch_size(BATCH)
            .with_scheduled_delay(DELAY)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batches)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample,
            ))))
            .with_resource(resource(settings))
            .build();
        let tracer = provider.tracer(settings.service);
        Ok(Tracing { provider, tracer })
    }

    pub fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }

    /// Sends what is queued (for at most [`SHUTDOWN_LIMIT`], so a collector that is down
    /// cannot hold a stop) and stops the export thread; for a process about to exit.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown_with_timeout(SHUTDOWN_LIMIT);
    }
}

/// The process the spans are of: its service, instance and version (and the SDK's own
/// attributes).
pub(crate) fn resource(settings: &Settings) -> Resource {
    Resource::builder()
        .with_service_name(settings.service)
        .with_attribute(KeyValue::new(
            "service.instance.id",
            settings.instance.clone(),
        ))
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The traces URL of a collector: its `/v1/traces` when `endpoint` names only the host (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does), else `endpoint` as written.
pub(crate) fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let bad = |reason: &str| TelemetryError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    let path = uri.path();
    Ok(if path.is_empty() || path == "/" {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    } else {
        endpoint.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_collector_address_gets_the_traces_path() {
        let url = |e: &str| traces_url(e).map_err(|e| e.to_string());
        assert_eq!(
            url("http://127.0.0.1:4318").as_deref(),
            Ok("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            url("http://c:4318/").as_deref(),
            Ok("http://c:4318/v1/traces")
        );
        assert_eq!(
            url("https://c/otlp/v1/traces").as_deref(),
            Ok("https://c/otlp/v1/traces")
        );
        assert!(url("ftp://c:1").is_err());
        assert!(url("c:4318").is_err());
        assert!(url("not a url").is_err());
    }
}
