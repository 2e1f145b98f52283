//! HTTP/1.1 connections to the target (hyper's client connections, no pool of hyper's
//! own): opened on demand, kept alive, and shared by the open-loop requests through a
//! [`Pool`] bounded by `max_connections`; a closed-loop worker owns one [`Connection`].

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::Poll;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// A request as the generator sends it.
pub type Request = http::Request<Full<Bytes>>;

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body_bytes: u64,
    /// The body, when the request carried [`KeepBody`] and it was at most
    /// [`crate::check::MAX_CHECKED_BODY`] bytes.
    pub body: Option<Bytes>,
}

/// Marks a request whose answer's body is kept (a check reads it); others are counted only.
#[derive(Debug, Clone, Copy)]
pub struct KeepBody;

/// Why there was no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("no answer before the timeout")]
    Timeout,
    /// Every connection stayed busy until the request's deadline: it was never sent.
    #[error("no free connection before the timeout (max_connections busy)")]
    NoConnection,
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// A connection's byte stream: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// hyper's side of a connection: the future that does its I/O.
type Driver = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Io>>, Full<Bytes>>;

/// How to open TLS to an `https://` target: the CAs it may be signed by, a client
/// certificate for mTLS, and the name to check its certificate against.
#[derive(Clone)]
pub struct Tls {
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the CA bundle and the client certificate of a scenario's `tls`.
    pub fn new(settings: &crate::scenario::ClientTls, host: &str) -> anyhow::Result<Tls> {
        use anyhow::Context;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(&settings.ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("tls.ca {}", settings.ca.display()))?;
        for ca in cas {
            roots.add(ca)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match &settings.client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .with_context(|| format!("tls.client_cert {}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("tls.client_key {}", key.display()))?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
            name: ServerName::try_from(host.to_string())?,
        })
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// The connection's I/O when this connection drives it itself (one owner, one task);
    /// `None` when it runs on a task of its own (shared connections).
    driver: Option<Pin<Box<Driver>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("owned", &self.driver.is_some())
            .finish_non_exhaustive()
    }
}

async fn handshake(
    addr: SocketAddr,
    tls: Option<&Tls>,
) -> Result<(SendRequest<Full<Bytes>>, Driver), SendError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| SendError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let io: Box<dyn Io> = match tls {
        None => Box::new(stream),
        Some(t) => Box::new(
            t.connector
                .connect(t.name.clone(), stream)
                .await
                .map_err(|source| SendError::Connect { addr, source })?,
        ),
    };
    hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|source| SendError::Handshake { addr, source })
}

impl Connection {
    /// Connects (TCP_NODELAY) and runs the HTTP/1.1 handshake; the connection's I/O runs on
    /// a task of its own until either side closes it, so any task may send on it.
    pub async fn open(addr: SocketAddr, tls: Option<&Tls>) -> Result<Connection, SendError> {
        let (sender, conn) = handshake(addr, tls).await?;
        tokio::spawn(async move {
            // An error here is the connection closing; the next send on it says so.
            let _ = conn.await;
        });
        Ok(Connection {
            sender,
            driver: None,
        })
    }

    /// Like [`Connection::open`], but the I/O is driven by whoever sends on it: for a
    /// connection with one owner (a closed-loop worker), this saves a task switch each way
    /// per request (measured: about a tenth of the generator's time per request).
    pub async fn open_owned(addr: SocketAddr, tls: Option<&Tls>) -> Result<Connection, SendError> {
        let (sender, conn) = handshake(addr, tls).await?;
        Ok(Connection {
            sender,
            driver: Some(Box::pin(conn)),
        })
    }

    /// Sends one request and reads its whole answer (the body is counted, and kept only
    /// for a request marked [`KeepBody`]).
    pub async fn send(&mut self, req: Request) -> Result<Answer, SendError> {
        let sender = &mut self.sender;
        let keep = req.extensions().get::<KeepBody>().is_some();
        let work = async move {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            let mut body_bytes = 0u64;
            let mut kept: Option<Vec<u8>> = keep.then(Vec::new);
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame?.data_ref() {
                    body_bytes += data.len() as u64;
                    if let Some(k) = kept.as_mut() {
                        if k.len() + data.len() <= crate::check::MAX_CHECKED_BODY {
                            k.extend_from_slice(data);
                        } else {
                            kept = None;
                        }
                    }
                }
            }
            Ok(Answer {
                status,
                body_bytes,
                body: kept.map(Bytes::from),
            })
        };
        let Some(driver) = self.driver.as_mut() else {
            return work.await;
        };
        let mut work = std::pin::pin!(work);
        let mut driver_done = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = work.as_mut().poll(cx) {
                return Poll::Ready(r);
            }
            if !driver_done {
                if let Poll::Ready(_closed) = driver.as_mut().poll(cx) {
                    // The connection ended; the request's side sees it as an error now.
                    driver_done = true;
                    return work.as_mut().poll(cx);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Whether another request may go on this connection.
    pub fn reusable(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// Connections shared by open-loop requests: at most `max` at once, idle ones reused.
#[derive(Debug)]
pub struct Pool {
    addr: SocketAddr,
    tls: Option<Tls>,
    permits: Semaphore,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    pub fn new(addr: SocketAddr, max: usize, tls: Option<Tls>) -> Pool {
        Pool {
            addr,
            tls,
            permits: Semaphore::new(max),
            idle: Mutex::new(Vec::with_capacity(max)),
        }
    }

    /// Sends `req` on a free connection, waiting for one if all `max` are busy; gives up
    /// at `deadline` (waiting for a connection, connecting and the answer all count).
    pub async fn send(&self, req: Request, deadline: Instant) -> Result<Answer, SendError> {
        let permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| SendError::NoConnection)?
            .map_err(|_| SendError::NoConnection)?;
        let result = tokio::time::timeout_at(deadline, async {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut conn = match idle {
                Some(c) if c.reusable() => c,
                _ => Connection::open(self.addr, self.tls.as_ref()).await?,
            };
            let answer = conn.send(req).await?;
            if conn.reusable() {
                self.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(conn);
            }
            Ok(answer)
        })
        .await
        .unwrap_or(Err(SendError::Timeout));
        drop(permit);
        result
    }
}
