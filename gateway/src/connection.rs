//! The life of a client connection around its requests: whether the listener takes it
//! (connection limits), the deadline on each request head, the wait between keep-alive
//! requests, how many requests it may carry, and HTTP/1.1 pipelining.
//!
//! Pingora's HTTP app reads each request head and runs the pipeline (`proxy.rs`); its own
//! connection loop has no total deadline on a head (only one per read), so it is replaced
//! here for HTTP/1: [`Edge`] is the listener's app, and hands each request to Pingora.
//! HTTP/2 connections (ALPN `h2`, or h2c by prior knowledge) go to Pingora's loop whole.
//!
//! ```text
//! accept ─▶ PROXY header, on a listener with proxy_protocol (proxy_protocol.rs) ── refused: close
//!        ─▶ admission (max_connections, max_connections_per_client) ── full: 503, close
//!        ─▶ h2? ── Pingora's HTTP/2 loop
//!        ─▶ HTTP/1: per request  [head within request_head_timeout] ─▶ Pingora: pipeline
//!                   then keep-alive (idle_timeout, max_requests_per_connection) or close
//! ```

pub mod admission;
pub mod head;
pub mod proxy_protocol;

use crate::config::hardening::Hardening;
use crate::metrics::Metrics;
use admission::{Admission, Refused};
use async_trait::async_trait;
use head::{HeadClock, HeadTimed};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::{HttpProxy, ProxyHttp};
use pingora::server::ShutdownWatch;
use proxy_protocol::ProxyProtocol;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The first bytes of an HTTP/2 connection by prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The longest the gateway spends telling a refused client why.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// One listener's application: its connection rules around the proxy (`SV`, the pipeline:
/// `proxy::Gateway` in the running gateway).
pub struct Edge<SV> {
    proxy: Arc<HttpProxy<SV>>,
    listener: String,
    hardening: Hardening,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    /// Plaintext HTTP/2 by prior knowledge is taken on this listener.
    h2c: bool,
    /// The PROXY header read before anything else (plaintext listeners; a TLS listener
    /// reads it before its handshake, in Pingora's pre-TLS callback).
    proxy_protocol: Option<Arc<ProxyProtocol>>,
}

impl<SV> std::fmt::Debug for Edge<SV> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("listener", &self.listener)
            .field("hardening", &self.hardening)
            .field("admission", &self.admission)
            .field("h2c", &self.h2c)
            .finish_non_exhaustive()
    }
}

impl<SV> Edge<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    pub fn new(
        proxy: HttpProxy<SV>,
        listener: &str,
        hardening: Hardening,
        metrics: Arc<Metrics>,
        h2c: bool,
    ) -> Self {
        let admission = Admission::new(
            hardening.max_connections,
            hardening.max_connections_per_client,
            metrics.connections_open(listener),
        );
        Edge {
            proxy: Arc::new(proxy),
            listener: listener.to_string(),
            hardening,
            admission,
            metrics,
            h2c,
            proxy_protocol: None,
        }
    }

    /// Reads a PROXY header at the start of each connection (a plaintext listener with
    /// `proxy_protocol: true`).
    pub fn with_proxy_protocol(mut self, proxy_protocol: Arc<ProxyProtocol>) -> Self {
        self.proxy_protocol = Some(proxy_protocol);
        self
    }

    /// Whether the connection speaks HTTP/2: chosen by ALPN on TLS, or (on an h2c
    /// listener) opened with the preface, which must arrive within the head deadline.
    async fn is_h2(&self, stream: &mut Stream) -> Option<bool> {
        if stream.get_ssl_digest().is_some() {
            return Some(matches!(stream.selected_alpn_proto(), Some(ALPN::H2)));
        }
        if !self.h2c {
            return Some(false);
        }
        let mut buf = [0u8; H2_PREFACE.len()];
        let peek = tokio::time::timeout(
            self.hardening.request_head_timeout,
            stream.try_peek(&mut buf),
        );
        match peek.await {
            // A stream that cannot peek is taken for HTTP/1.
            Ok(Ok(peeked)) => Some(peeked && buf == H2_PREFACE),
            Ok(Err(_)) => None,
            Err(_) => {
                self.metrics.refusal(&self.listener, "head_timeout");
                None
            }
        }
    }

    /// HTTP/1 requests one after another on the connection, each head within its deadline.
    async fn serve_http1(&self, stream: Stream, shutdown: &ShutdownWatch) {
        let clock = HeadClock::new(self.hardening.request_head_timeout);
        let stream: Stream = Box::new(HeadTimed::new(stream, clock.clone()));
        let mut session = ServerSession::new_http1(stream);
        let idle = self.hardening.idle_timeout.as_secs().max(1);
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(idle) });
        // Pingora counts reuses: the first request plus this many more.
        session
            .set_keepalive_reuses_remaining(Some(self.hardening.max_requests_per_connection - 1));
        // Pipelined requests are answered in order instead of being dropped with the
        // connection after an answer that said keep-alive.
        session.set_pipelining_enabled(true);
        // The first head's time runs from the accept (`HeadClock::new`): a client that
        // sends nothing at all is cut as one that sends too slowly. One watch for the
        // connection's life, so no request pays for setting it up.
        let watch = clock.watch();
        tokio::pin!(watch);
        loop {
            // The proxy marks the head as read (`HeadTimed::head_read_on`).
            let served = tokio::select! {
                biased;
                served = self.proxy.process_new_http(session, shutdown) => served,
                () = &mut watch => {
                    // Dropping the request drops the connection: nothing was answered yet.
                    self.metrics.refusal(&self.listener, "head_timeout");
                    tracing::debug!(listener = %self.listener, "request head not complete in time: connection closed");
                    return;
                }
            };
            let Some(reused) = served else {
                return;
            };
            let (stream, settings) = reused.consume();
            clock.idle();
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
        }
    }

    /// Tells a refused HTTP/1 client why, briefly, then closes.
    async fn refuse(&self, mut stream: Stream, why: Refused) {
        self.metrics.refusal(&self.listener, why.reason());
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return;
        }
        let body =
            crate::respond::error_body(&format!("too many connections ({})", why.reason()), "");
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let write = async {
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
            stream.flush().await
        };
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
    }
}

#[async_trait]
impl<SV> ServerApp for Edge<SV>
where
    SV: ProxyHttp + Send + Sync + 'static,
    SV::CTX: Send + Sync,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // First: the client counted below may be the one the header names.
        if let Some(pp) = &self.proxy_protocol {
            pp.accept(&mut *stream).await.ok()?;
        }
        let client = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _admitted = match self.admission.admit(client) {
            Ok(admitted) => admitted,
            Err(why) => {
                self.refuse(stream, why).await;
                return None;
            }
        };
        match self.is_h2(&mut stream).await? {
            true => self.proxy.process_new(stream, shutdown).await,
            false => {
                self.serve_http1(stream, shutdown).await;
                None
            }
        }
    }

    async fn cleanup(&self) {
        // Wakes the requests parked between keep-alive reads so a stop does not wait on them.
        ServerApp::cleanup(&*self.proxy).await;
    }
}
