//! The exporter's HTTP client: one blocking POST per batch, with ureq.
//!
//! The SDK's batch processor exports from a plain thread of its own, where a blocking call
//! is what fits: reqwest's blocking client must not be made or dropped on an async runtime
//! (and its rustls needs a process-wide crypto provider), and hyper needs a runtime on the
//! export thread. Both binaries already link ureq for their other outgoing calls. Every
//! call is bounded by the agent's timeout, as the SDK asks of an exporter.

use std::time::Duration;

/// The most of a collector's answer read (it is only an acknowledgement).
const MAX_ANSWER: u64 = 1 << 20;

/// A collector's OTLP/HTTP traces endpoint.
#[derive(Debug)]
pub(crate) struct Collector {
    agent: ureq::Agent,
    url: String,
}

impl Collector {
    pub(crate) fn new(url: String, timeout: Duration) -> Collector {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Collector { agent, url }
    }

    /// Posts one `ExportTraceServiceRequest`; `Err` says why the collector did not take it.
    /// (A 2xx may still carry a partial success, spans the collector rejected; OTLP leaves
    /// those to the collector's own account, and they are not retried either way.)
    pub(crate) fn post(&self, body: &[u8]) -> Result<(), String> {
        let mut answer = self
            .agent
            .post(&self.url)
            .header("content-type", "application/x-protobuf")
            .send(body)
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = answer.status();
        // Read the answer through, so the connection is kept for the next batch.
        let _ = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{}: the collector answered {status}", self.url))
        }
    }
}
