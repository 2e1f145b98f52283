//! Accepts the node's connections, plain TCP or TLS, and tells handlers who connected.
//!
//! Handlers read [`Connection`] (axum's `ConnectInfo`): the remote address for logs, and
//! whether the client showed a TLS certificate that verified against `--peer-ca`, which
//! `/internal/*` takes as a peer's proof instead of the pool secret.
//!
//! TLS handshakes run in tasks of their own, each bounded by [`HANDSHAKE_TIMEOUT`], so a
//! client that stalls in its handshake delays nobody else; finished connections are handed
//! to axum's serve loop, which owns them from there (HTTP/1.1 or h2, graceful shutdown).

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use rustls::ServerConfig;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections that finished their handshake and wait for the serve loop.
const READY_QUEUE: usize = 128;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub remote: SocketAddr,
    /// The client showed a TLS certificate that verified against `--peer-ca` (rustls
    /// refuses the handshake for one that does not, so a certificate here is a verified one).
    pub peer_certificate: bool,
}

impl Connected<IncomingStream<'_, TcpListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Connection {
            remote: *stream.remote_addr(),
            peer_certificate: false,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Connection {
            remote: *stream.remote_addr(),
            peer_certificate: stream.io().get_ref().1.peer_certificates().is_some(),
        }
    }
}

/// A TCP listener whose connections come out of a TLS handshake.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            local,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ends only when aborted, i.e. when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    mut tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        // axum's accept for TcpListener retries errors itself (and backs off on EMFILE).
        let (stream, remote) = Listener::accept(&mut tcp).await;
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // Fails only when the server is shutting down: the connection is dropped.
                    let _ = ready.send((tls, remote)).await;
                }
                // Under TLS 1.3 a client sees a refused certificate only as a generic alert:
                // the reason is here.
                Ok(Err(e)) => tracing::info!(remote = %remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::info!(remote = %remote, "TLS handshake timed out"),
            }
        });
    }
}

/// Serves `router` on `tcp` (over TLS with `tls`) until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn serve(
    tcp: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = router.into_make_service_with_connect_info::<Connection>();
    match tls {
        None => {
            axum::serve(tcp, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            axum::serve(TlsListener::new(tcp, config)?, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
