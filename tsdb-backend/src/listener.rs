//! Accepts the node's connections and tells handlers who connected.
//!
//! Handlers read [`Connection`] (axum's `ConnectInfo`): the remote address, for logs.

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub remote: SocketAddr,
    /// The client proved itself a peer on the connection (not yet used: no TLS).
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

/// Serves `router` on `tcp` until `shutdown` completes, then lets the requests in flight
/// finish.
pub async fn serve(
    tcp: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = router.into_make_service_with_connect_info::<Connection>();
    axum::serve(tcp, service)
        .with_graceful_shutdown(shutdown)
        .await
}
