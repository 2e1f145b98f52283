//! A lighter way in for spans made at every request: the request's thread hands over a
//! record of plain values ([`SpanSource`]), and the export thread writes its spans' protobuf
//! straight from it ([`EncodedSpans`]), then posts a batch as [`crate::Tracing`]'s exporter
//! does.
//!
//! Why not the SDK's spans on the request's thread: a span of the SDK is a `Context`, a
//! lock, a `Vec` of attributes each copied into its own `String` (addresses formatted
//! there and then), a channel slot of a few hundred bytes and, at the end, its `SpanData`
//! moved across. For the gateway's hop and try spans that was about 10,000 instructions on
//! the request's thread, and with the export thread's work the gateway kept only 0.75× its
//! throughput with every trace recorded (`docs/benchmarks.md`). Here the request's thread
//! fills a record it already has the values for and sends one pointer; nothing is
//! formatted until the export thread writes it, and nothing is allocated per span there
//! either (making `SpanData` of the record first, then dropping it, was a third of what was
//! left).
//!
//! What stays the SDK's: the resource, the protocol's encoding of a span (the unit tests of
//! [`EncodedSpans`] hold it to the SDK's conversion of the same span) and the sampling rule
//! ([`sampled`] decides as `Sampler::TraceIdRatioBased` does, so a trace is recorded at
//! every hop or at none). The TSDB node, whose spans are fewer per request and not on a
//! proxy's path, keeps the SDK's pipeline ([`crate::Tracing`]).

use crate::client::Collector;
use crate::export::{resource, traces_url, ExportObserver, Settings, TelemetryError};
use crate::protobuf::{EncodedSpans, Encoder};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::Duration;

/// Records waiting for export at most; beyond it a record is dropped (its spans counted as
/// failed), never waited for.
const QUEUE: usize = 8192;
/// Spans sent in one export at most (as many as pending, up to this).
const BATCH: usize = 2048;
/// How often the thread takes what is queued while records come (`crate::rounds` says why
/// not at each record).
const ROUND: Duration = Duration::from_millis(50);
/// Rounds a record waits at most before it is sent: 500 ms.
const ROUNDS_PER_EXPORT: u32 = 10;
/// The longest a stopping process waits for its last spans to be sent.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);
/// One export's time limit, connection and answer included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What a request's thread hands over: the values of one or more spans, written as
/// protobuf on the export thread.
pub trait SpanSource: Send {
    /// How many spans [`SpanSource::write`] writes (to count them when dropped).
    fn count(&self) -> usize;
    /// Its spans, written into `out`.
    fn write(self: Box<Self>, out: &mut EncodedSpans);
}

enum Message {
    Record(Box<dyn SpanSource>),
    /// Send what is pending now, then say so.
    Flush(SyncSender<()>),
}

/// The sending side and the sampling rule. Cheap to share; never blocks a request.
pub struct SpanQueue {
    queue: SyncSender<Message>,
    observe: ExportObserver,
    /// [`sampled`]'s bound for the configured ratio.
    bound: Option<u64>,
}

impl std::fmt::Debug for SpanQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanQueue")
            .field("bound", &self.bound)
            .finish()
    }
}

impl SpanQueue {
    /// Starts the export thread. Nothing is sent until a record comes.
    pub fn start(
        settings: &Settings,
        observe: ExportObserver,
    ) -> Result<SpanQueue, TelemetryError> {
        let collector = Collector::new(traces_url(&settings.endpoint)?, TIMEOUT);
        let resource = resource(settings);
        let scope = InstrumentationScope::builder(settings.service).build();
        let (queue, records) = sync_channel(QUEUE);
        let exporting = Exporter {
            collector,
            resource,
            scope,
            encoder: Encoder::default(),
            body: Vec::new(),
            spans: EncodedSpans::default(),
            rounds: 0,
            observe: observe.clone(),
        };
        std::thread::Builder::new()
            .name("span-export".into())
            .spawn(move || {
                crate::background::lower_this_thread();
                run(&records, exporting)
            })
            .map_err(|e| TelemetryError::Endpoint {
                endpoint: settings.endpoint.clone(),
                reason: format!("the export thread cannot start: {e}"),
            })?;
        Ok(SpanQueue {
            queue,
            observe,
            bound: ratio_bound(settings.sample),
        })
    }

    /// Whether a new trace (one no caller decided for) is recorded.
    pub fn sampled(&self, trace_id: u128) -> bool {
        sampled(self.bound, trace_id)
    }

    /// Queues `record`; when the queue is full it is dropped and its spans counted as
    /// failed.
    pub fn send(&self, record: Box<dyn SpanSource>) {
        let count = record.count() as u64;
        if self.queue.try_send(Message::Record(record)).is_err() {
            (self.observe)(count, false);
        }
    }

    /// Sends what is queued (waiting [`SHUTDOWN_LIMIT`] at most, so a collector that is
    /// down cannot hold a stop); for a process about to exit.
    pub fn shutdown(&self) {
        let (done, finished) = sync_channel(1);
        // A full queue is drained within a round; try again until then.
        let mut message = Message::Flush(done);
        for _ in 0..20 {
            match self.queue.try_send(message) {
                Ok(()) => {
                    let _ = finished.recv_timeout(SHUTDOWN_LIMIT);
                    return;
                }
                Err(TrySendError::Full(m)) => {
                    message = m;
                    std::thread::sleep(ROUND / 4);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// `Sampler::TraceIdRatioBased`'s bound: a trace is recorded when its id's low 64 bits,
/// shifted right once, are below it. `None` records every trace.
fn ratio_bound(ratio: f64) -> Option<u64> {
    (ratio < 1.0).then(|| (ratio.max(0.0) * (1u64 << 63) as f64) as u64)
}

fn sampled(bound: Option<u64>, trace_id: u128) -> bool {
    bound.is_none_or(|bound| ((trace_id as u64) >> 1) < bound)
}

/// The export thread's state.
struct Exporter {
    collector: Collector,
    resource: Resource,
    scope: InstrumentationScope,
    encoder: Encoder,
    body: Vec<u8>,
    /// The batch being made.
    spans: EncodedSpans,
    /// Rounds since the last export.
    rounds: u32,
    observe: ExportObserver,
}

impl Exporter {
    fn export(&mut self) {
        if self.spans.is_empty() {
            return;
        }
        self.encoder
            .scope_request(&self.spans, &self.scope, &self.resource, &mut self.body);
        let ok = self.collector.post(&self.body).is_ok();
        (self.observe)(self.spans.len() as u64, ok);
        self.spans.clear();
        self.rounds = 0;
    }
}

/// Takes the records in rounds (`crate::rounds`): every [`ROUND`] while they come, sent
/// every [`ROUNDS_PER_EXPORT`] rounds (or at [`BATCH`] spans, or when a flush asks). Ends,
/// after sending what it holds, when every sender is gone.
fn run(records: &Receiver<Message>, mut exporter: Exporter) {
    crate::rounds::run(records, ROUND, &mut exporter);
}

impl crate::rounds::Rounds for Exporter {
    type Message = Message;

    fn take(&mut self, message: Message) {
        match message {
            Message::Record(record) => {
                record.write(&mut self.spans);
                if self.spans.len() >= BATCH {
                    self.export();
                }
            }
            Message::Flush(done) => {
                self.export();
                let _ = done.try_send(());
            }
        }
    }

    fn round_ended(&mut self, took: usize) -> bool {
        self.rounds += 1;
        if self.rounds >= ROUNDS_PER_EXPORT {
            self.export();
        }
        let busy = took > 0 || !self.spans.is_empty();
        if !busy {
            self.rounds = 0;
        }
        busy
    }

    fn finish(&mut self) {
        self.export();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanKind, TraceId};
    use opentelemetry::Context;
    use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};
    use std::sync::Arc;

    struct Two;

    impl SpanSource for Two {
        fn count(&self) -> usize {
            2
        }
        fn write(self: Box<Self>, _: &mut EncodedSpans) {}
    }

    #[test]
    fn a_record_that_finds_the_queue_full_is_counted_as_failed_not_waited_for() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let told = seen.clone();
        let (queue, _held) = sync_channel(1);
        let spans = SpanQueue {
            queue,
            observe: Arc::new(move |n, ok| told.lock().unwrap().push((n, ok))),
            bound: None,
        };
        spans.send(Box::new(Two));
        assert!(seen.lock().unwrap().is_empty(), "queued");
        spans.send(Box::new(Two));
        assert_eq!(*seen.lock().unwrap(), [(2, false)]);
    }

    #[test]
    fn a_new_trace_is_sampled_as_the_sdks_ratio_sampler_samples_it() {
        let mut seed: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
        for ratio in [0.0, 0.001, 0.1, 0.5, 0.999, 1.0, 2.0, -1.0] {
            let sdk = Sampler::TraceIdRatioBased(ratio);
            let bound = ratio_bound(ratio);
            for _ in 0..2_000 {
                // A xorshift walk over ids, so every bit pattern of the low half comes up.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let theirs = sdk
                    .should_sample(
                        Some(&Context::new()),
                        TraceId::from(seed),
                        "x",
                        &SpanKind::Server,
                        &[],
                        &[],
                    )
                    .decision;
                assert_eq!(
                    sampled(bound, seed),
                    theirs == SamplingDecision::RecordAndSample,
                    "ratio {ratio}, id {seed:032x}"
                );
            }
        }
    }
}
