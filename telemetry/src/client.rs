//! The exporter's HTTP client: ureq, behind `opentelemetry-http`'s trait.
//!
//! The OTLP crate's own clients are reqwest (whose blocking client must not be made or
//! dropped on an async runtime, and whose rustls needs a process-wide crypto provider) or
//! hyper (which needs a runtime on the export thread). The SDK's batch processor exports
//! from a plain thread of its own, where a blocking call is what fits; both binaries
//! already link ureq for their other outgoing calls. Every call is bounded by the agent's
//! timeout, as the SDK asks of an exporter.

use bytes::Bytes;
use http::{Request, Response};
use opentelemetry_http::{HttpClient, HttpError};
use std::time::Duration;

/// The most of a collector's answer read (it is only an acknowledgement).
const MAX_ANSWER: u64 = 1 << 20;

#[derive(Debug)]
pub(crate) struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    pub(crate) fn new(timeout: Duration) -> UreqClient {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // The exporter reads the status itself (and retries what OTLP says it may).
            .http_status_as_error(false)
            .build()
            .into();
        UreqClient { agent }
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let answer = self.agent.run(request.map(|b| b.to_vec()))?;
        let (parts, mut body) = answer.into_parts();
        let bytes = body.with_config().limit(MAX_ANSWER).read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(bytes)))
    }
}
