//! How this node calls its peers: one TLS setup for the links, and the headers that name
//! the node and prove it belongs to the pool.
//!
//! Every internal request (the shippers' replicate and resync, a rebuild's fetches) is made
//! by [`PeerClient::get`], [`PeerClient::post`] or [`PeerClient::put`]: `X-Tsdb-Peer: <node id>`
//! and `Authorization: Bearer <pool secret>`. Over `https://` the node also presents its
//! own certificate, which a peer with `--peer-ca` accepts instead of the secret. Agents
//! follow no redirects, so the secret goes only to the peer it was meant for.
//!
//! POSTs say `Expect: 100-continue` and send their body (batches of megabytes, whole
//! snapshots) only once the peer has accepted the headers. A peer that refuses them
//! answers `401` at once; without the wait, it would close the connection on a body it
//! never reads, and this node would see a broken pipe instead of the refusal.

use crate::peer_auth::PeerSecret;
use crate::tls::{self, Identity, PeerCa};
use std::time::Duration;

/// The header that names the node a request comes from (see `http/internal.rs`).
pub const PEER_HEADER: &str = "x-tsdb-peer";

/// A peer list that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PeerUrlError {
    #[error("peer {url}: expected an http:// or https:// URL")]
    Scheme { url: String },
    #[error(
        "peer {url}: an https peer needs --peer-ca, the CA that issued the peers' certificates \
         (the system's roots are not trusted for peers)"
    )]
    NoPeerCa { url: String },
}

/// Calls peers as this node.
#[derive(Clone)]
pub struct PeerClient {
    node_id: String,
    authorization: String,
    tls: ureq::tls::TlsConfig,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client for `peers`, which are checked first: each must be `http://` or `https://`,
    /// and `https://` needs `peer_ca`. `identity` (the node's `--tls-cert`/`--tls-key`) is
    /// presented as the client certificate on https links.
    pub fn new(
        node_id: &str,
        secret: &PeerSecret,
        peers: &[String],
        peer_ca: Option<&PeerCa>,
        identity: Option<&Identity>,
    ) -> Result<PeerClient, PeerUrlError> {
        for url in peers {
            let lower = url.to_ascii_lowercase();
            if lower.starts_with("https://") {
                if peer_ca.is_none() {
                    return Err(PeerUrlError::NoPeerCa { url: url.clone() });
                }
            } else if !lower.starts_with("http://") {
                return Err(PeerUrlError::Scheme { url: url.clone() });
            }
        }
        Ok(PeerClient {
            node_id: node_id.to_string(),
            authorization: secret.authorization(),
            tls: tls::peer_client_config(peer_ca, identity),
        })
    }

    /// An agent for peer requests: 4xx and 5xx are answers, not errors.
    pub fn agent(&self, connect: Duration, global: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(connect))
            .timeout_global(Some(global))
            .tls_config(self.tls.clone())
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

    /// A signed `PUT url` whose body waits for the peer's `100 Continue`.
    pub fn put(
        &self,
        agent: &ureq::Agent,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        self.sign(agent.put(url)).header("expect", "100-continue")
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
    use std::path::PathBuf;

    fn secret() -> PeerSecret {
        PeerSecret::parse(b"s", std::path::Path::new("s")).unwrap()
    }

    #[test]
    fn an_https_peer_needs_a_peer_ca() {
        let peers = vec!["http://a:1".to_string(), "https://b:2".to_string()];
        let err = PeerClient::new("n", &secret(), &peers, None, None).unwrap_err();
        assert!(matches!(&err, PeerUrlError::NoPeerCa { url } if url == "https://b:2"));
        assert!(err.to_string().contains("--peer-ca"), "{err}");
        let ca = PeerCa {
            path: PathBuf::from("ca.pem"),
            certs: Vec::new(),
        };
        assert!(PeerClient::new("n", &secret(), &peers, Some(&ca), None).is_ok());
    }

    #[test]
    fn a_peer_must_be_an_http_url() {
        let peers = vec!["127.0.0.1:8086".to_string()];
        let err = PeerClient::new("n", &secret(), &peers, None, None).unwrap_err();
        assert!(matches!(err, PeerUrlError::Scheme { .. }), "{err}");
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let secret = PeerSecret::parse(b"hunter2", std::path::Path::new("s")).unwrap();
        let c = PeerClient::new("n", &secret, &[], None, None).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
