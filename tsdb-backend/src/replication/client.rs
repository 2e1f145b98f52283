//! How this node calls its peers: one TLS setup for the links, and the headers that name
//! the node and prove it belongs to the pool.
//!
//! Every internal request (the shippers' replicate and resync, the bootstrap's snapshot
//! fetch) is made by [`PeerClient::get`] or [`PeerClient::post`]: `X-Tsdb-Peer: <node id>`
//! and `Authorization: Bearer <pool secret>`. Agents follow no redirects, so the secret
//! goes only to the peer it was meant for.
//!
//! POSTs say `Expect: 100-continue` and send their body (batches of megabytes, whole
//! snapshots) only once the peer has accepted the headers. A peer that refuses them
//! answers `401` at once; without the wait, it would close the connection on a body it
//! never reads, and this node would see a broken pipe instead of the refusal.

use crate::peer_auth::PeerSecret;
use std::time::Duration;

/// The header that names the node a request comes from (see `http/internal.rs`).
pub const PEER_HEADER: &str = "x-tsdb-peer";

/// A peer list that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PeerUrlError {
    #[error("peer {url}: expected an http:// URL")]
    Scheme { url: String },
}

/// Calls peers as this node.
#[derive(Clone)]
pub struct PeerClient {
    node_id: String,
    authorization: String,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client for `peers`, which are checked first: each must be `http://`.
    pub fn new(
        node_id: &str,
        secret: &PeerSecret,
        peers: &[String],
    ) -> Result<PeerClient, PeerUrlError> {
        for url in peers {
            if !url.to_ascii_lowercase().starts_with("http://") {
                return Err(PeerUrlError::Scheme { url: url.clone() });
            }
        }
        Ok(PeerClient {
            node_id: node_id.to_string(),
            authorization: secret.authorization(),
        })
    }

    /// An agent for peer requests: 4xx and 5xx are answers, not errors.
    pub fn agent(&self, connect: Duration, global: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(connect))
            .timeout_global(Some(global))
            .build()
            .into()
    }

    /// A signed `GET url`.
    pub fn get(
        &self,
        agent: &ureq::Agent,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.sign(agent.get(url))
    }

    /// A signed `POST url` whose body waits for the peer's `100 Continue`.
    pub fn post(
        &self,
        agent: &ureq::Agent,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        self.sign(agent.post(url)).header("expect", "100-continue")
    }

    /// Adds the headers every internal request carries.
    fn sign<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        request
            .header(PEER_HEADER, &self.node_id)
            .header("authorization", &self.authorization)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> PeerSecret {
        PeerSecret::parse(b"s", std::path::Path::new("s")).unwrap()
    }

    #[test]
    fn a_peer_must_be_an_http_url() {
        let peers = vec!["127.0.0.1:8086".to_string()];
        let err = PeerClient::new("n", &secret(), &peers).unwrap_err();
        assert!(matches!(err, PeerUrlError::Scheme { .. }), "{err}");
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let secret = PeerSecret::parse(b"hunter2", std::path::Path::new("s")).unwrap();
        let c = PeerClient::new("n", &secret, &[]).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
