//! The PROXY protocol on a listener (`proxy_protocol: true`): the client of a connection
//! that a balancer passes on (HAProxy's `send-proxy`/`send-proxy-v2`, AWS NLB, Google's
//! and Azure's load balancers), read from the header that balancer puts before the
//! connection's first byte.
//!
//! The rules are HAProxy's `accept-proxy`, limited to the listener's `trusted_proxies`:
//!
//! - a TCP peer in `trusted_proxies` must begin with a valid header (v1 or v2) within the
//!   listener's `request_head_timeout`; a connection that sends none, a malformed one or
//!   not all of one is closed;
//! - a header from any other peer closes the connection: only a trusted balancer may name
//!   a client;
//! - any other peer without a header is served as on a listener without the setting, as
//!   its own client (callers that reach the listener directly, not through the balancer,
//!   keep working; they cannot claim another address, since their header is refused).
//!
//! Each closed connection is counted in `gateway_proxy_protocol_refused_total{listener,
//! reason}`.
//!
//! The header's source replaces the connection's peer address (and its destination the
//! local address) in the stream's socket digest, so whatever asks the connection who its
//! client is, from here on, is told the header's address: connection admission per client,
//! `X-Forwarded-For` and the client that `trusted_proxies` judges there, `client_ip` in
//! rate-limit and hash keys, `X-Forwarded-Port`, logs. LOCAL (the balancer's health checks)
//! and address-less headers leave the TCP peer in place.
//!
//! Plaintext listeners call [`ProxyProtocol::accept`] from [`super::Edge`] before HTTP/1 and
//! h2c are told apart; TLS listeners through Pingora's pre-TLS callback
//! ([`PreTlsProcess`]), before the handshake, where a balancer puts it.
//!
//! The header is read without taking a byte of what follows it: the first bytes are
//! peeked until a signature is whole or left (so a connection without a header keeps all
//! of its bytes), then exactly what [`header::decode`] says the header still needs.

pub mod header;

use crate::config::hardening::{Hardening, TrustedProxies};
use crate::metrics::Metrics;
use async_trait::async_trait;
use header::{decode, Header, Malformed, Progress, V2_SIGNATURE};
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, Peek, SocketDigest, UniqueID};
use pingora::{Error, ErrorType};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a connection was closed at its PROXY header.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("a PROXY header from a peer not in trusted_proxies")]
    Untrusted,
    #[error("no PROXY header from a trusted proxy")]
    Missing,
    #[error("malformed PROXY header: {0}")]
    Malformed(Malformed),
    #[error("PROXY header not complete within {0:?}")]
    Timeout(Duration),
    #[error("connection ended in the PROXY header: {0}")]
    Closed(std::io::Error),
}

impl Refused {
    /// The label of the refusal in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Untrusted => "untrusted",
            Refused::Missing => "missing",
            Refused::Malformed(Malformed::TooLong(_)) => "too_long",
            Refused::Malformed(Malformed::Invalid(_)) => "malformed",
            Refused::Timeout(_) => "timeout",
            Refused::Closed(_) => "closed",
        }
    }
}

/// One listener's PROXY protocol: whom it believes, for how long it waits.
#[derive(Debug)]
pub struct ProxyProtocol {
    listener: Arc<str>,
    trusted: TrustedProxies,
    deadline: Duration,
    metrics: Arc<Metrics>,
}

impl ProxyProtocol {
    /// The listener's setting: its `trusted_proxies` may (and must) send a header, within
    /// its `request_head_timeout`.
    pub fn new(listener: &str, hardening: &Hardening, metrics: Arc<Metrics>) -> Self {
        ProxyProtocol {
            listener: Arc::from(listener),
            trusted: hardening.trusted_proxies.clone(),
            deadline: hardening.request_head_timeout,
            metrics,
        }
    }

    /// Takes the connection's PROXY header off its front, as its peer must or may send
    /// one, and makes the header's source the connection's client. An error means the
    /// connection is to be closed; it has been counted and logged.
    pub async fn accept<S>(&self, stream: &mut S) -> Result<(), Refused>
    where
        S: AsyncRead + Peek + GetSocketDigest + UniqueID + Unpin + Send + ?Sized,
    {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).copied());
        let trusted = peer.is_some_and(|p| self.trusted.contains(p.ip()));
        let taken = tokio::time::timeout(self.deadline, take(stream, trusted))
            .await
            .unwrap_or(Err(Refused::Timeout(self.deadline)));
        match taken {
            Ok(Some(Header::Proxied {
                source,
                destination,
            })) => {
                tracing::trace!(listener = %self.listener, ?peer, client = %source, "PROXY header");
                set_addresses(stream, source, destination);
                Ok(())
            }
            Ok(Some(Header::Local) | None) => Ok(()),
            // A direct client that left, or sent nothing in time, before any header began:
            // not a PROXY matter, and counted as the head deadline counts it on any listener.
            Err(why @ (Refused::Closed(_) | Refused::Timeout(_))) if !trusted => {
                if matches!(why, Refused::Timeout(_)) {
                    self.metrics.refusal(&self.listener, "head_timeout");
                }
                Err(why)
            }
            Err(why) => {
                self.metrics
                    .proxy_protocol_refused(&self.listener, why.reason());
                tracing::debug!(listener = %self.listener, ?peer, error = %why, "connection closed");
                Err(why)
            }
        }
    }
}

#[async_trait]
impl PreTlsProcess for ProxyProtocol {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        self.accept(stream)
            .await
            .map_err(|why| Error::explain(ErrorType::Custom("PROXY protocol"), why.to_string()))
    }
}

/// The header at the stream's front: required from a `trusted` peer, refused from anyone
/// else; `None` when there is none (and then nothing was taken).
async fn take<S>(stream: &mut S, trusted: bool) -> Result<Option<Header>, Refused>
where
    S: AsyncRead + Peek + Unpin + Send + ?Sized,
{
    // The longest signature; `decode` decides before it is exceeded.
    let mut start = [0u8; V2_SIGNATURE.len()];
    let mut peeked = 0;
    let version = loop {
        match decode(&start[..peeked]) {
            Progress::Undecided if peeked < start.len() => {
                peeked += 1;
                match stream.try_peek(&mut start[..peeked]).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(Refused::Closed(std::io::Error::other(
                            "the stream cannot be peeked",
                        )))
                    }
                    Err(e) => return Err(Refused::Closed(e)),
                }
            }
            Progress::Undecided | Progress::Absent => {
                return if trusted {
                    Err(Refused::Missing)
                } else {
                    Ok(None)
                };
            }
            Progress::Incomplete { version, .. }
            | Progress::Complete { version, .. }
            | Progress::Malformed { version, .. } => break version,
        }
    };
    if !trusted {
        return Err(Refused::Untrusted);
    }
    // The bytes are the header's: take those peeked, then exactly what it still needs.
    // Each turn grows it, and `decode` ends it at its version's bound.
    let mut bytes = vec![0u8; peeked];
    stream
        .read_exact(&mut bytes)
        .await
        .map_err(Refused::Closed)?;
    loop {
        match decode(&bytes) {
            Progress::Incomplete { need, .. } => {
                let at = bytes.len();
                bytes.resize(at + need.get(), 0);
                stream
                    .read_exact(&mut bytes[at..])
                    .await
                    .map_err(Refused::Closed)?;
            }
            Progress::Complete { header, len, .. } if len == bytes.len() => {
                return Ok(Some(header));
            }
            Progress::Malformed { error, .. } => return Err(Refused::Malformed(error)),
            // A header shorter than what was read: only a line that ends early, which is
            // not valid; refused all the same rather than losing the bytes after it.
            other => {
                return Err(Refused::Malformed(Malformed::Invalid(format!(
                    "{version:?} header framed as {other:?}"
                ))))
            }
        }
    }
}

/// Makes `source` the connection's peer and `destination` its local address. Pingora
/// fills the digest's addresses at accept and they are set once, so a new digest over the
/// same socket replaces it (a listener's stream's id is its file descriptor).
fn set_addresses<S>(stream: &mut S, source: SocketAddr, destination: SocketAddr)
where
    S: GetSocketDigest + UniqueID + ?Sized,
{
    let digest = SocketDigest::from_raw_fd(stream.id());
    // A new digest's cells are empty: neither `set` can fail.
    let _ = digest.peer_addr.set(Some(PeerAddr::Inet(source)));
    let _ = digest.local_addr.set(Some(PeerAddr::Inet(destination)));
    stream.set_socket_digest(digest);
}

#[cfg(test)]
mod tests;
