//! An upstream that speaks HTTP/1.1 and HTTP/2, in plaintext (HTTP/2 by prior knowledge,
//! h2c) or over TLS (the version chosen by ALPN), optionally requiring a client
//! certificate: what the gateway's `tls` and `protocol` pool settings are tested against.
//!
//! It answers every request `200` with a JSON description of it
//! (`{"version":"HTTP/2.0","path":"/x","client_cert":true}`) and records the same in
//! [`Http2Upstream::seen`] once its body has ended; a request refused at the TLS
//! handshake is never seen. [`Http2Upstream::body_bytes`] counts request body bytes as
//! they arrive, so a test can tell a streamed body from a buffered one.
//!
//! [`Http2Upstream::plain`] or [`Http2Upstream::tls`] return a builder;
//! [`Http2UpstreamBuilder::start`] binds `127.0.0.1:0` and serves on a tokio runtime of its
//! own thread until the upstream is dropped (then the runtime, its connections with it, is
//! shut down).

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// One request as the upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    pub path: String,
    /// Whether the connection came with a (verified) client certificate.
    pub client_cert: bool,
}

/// How to start an [`Http2Upstream`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Http2UpstreamBuilder {
    tls: Option<(PathBuf, PathBuf)>,
    client_ca: Option<PathBuf>,
    alpn: Vec<Vec<u8>>,
}

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub struct Http2Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    body_bytes: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Requests kept in [`Http2Upstream::seen`].
const MAX_SEEN: usize = 100_000;

impl Http2Upstream {
    /// Plaintext: HTTP/1.1, or HTTP/2 when the connection opens with its preface (h2c).
    pub fn plain() -> Http2UpstreamBuilder {
        Http2UpstreamBuilder {
            tls: None,
            client_ca: None,
            alpn: Vec::new(),
        }
    }

    /// TLS with this certificate chain and key (PEM), offering `h2` and `http/1.1` by ALPN.
    pub fn tls(cert: &Path, key: &Path) -> Http2UpstreamBuilder {
        Http2UpstreamBuilder {
            tls: Some((cert.to_path_buf(), key.to_path_buf())),
            client_ca: None,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        }
    }

    /// Request body bytes received so far, counted as they arrive.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }

    /// The counter behind [`Http2Upstream::body_bytes`], for a reader on another thread.
    pub fn body_counter(&self) -> Arc<AtomicU64> {
        self.body_bytes.clone()
    }

    /// Every request served so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Http2Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Http2UpstreamBuilder {
    /// Requires a client certificate issued by a CA of this PEM bundle.
    pub fn client_ca(mut self, ca: &Path) -> Self {
        self.client_ca = Some(ca.to_path_buf());
        self
    }

    /// Offers only `http/1.1` by ALPN (a backend that does not speak HTTP/2 over TLS).
    pub fn http1_only(mut self) -> Self {
        self.alpn = vec![b"http/1.1".to_vec()];
        self
    }

    fn acceptor(&self) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
        let Some((cert, key)) = &self.tls else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("reading {}", cert.display()))?
            .collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("reading {}", key.display()))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca)? {
                    roots.add(c?)?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols = self.alpn.clone();
        Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }

    /// Binds `127.0.0.1:0` and serves until dropped.
    pub fn start(self) -> anyhow::Result<Http2Upstream> {
        let acceptor = self.acceptor()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let counted = body_bytes.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let record = seen.clone();
        let thread = std::thread::Builder::new()
            .name(format!("http2-upstream-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = serve(listener, acceptor, record, counted) => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Http2Upstream {
            addr,
            seen,
            body_bytes,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Accepts connections until the listener fails; each one is served on its own task.
async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    seen: Arc<Mutex<Vec<Seen>>>,
    body_bytes: Arc<AtomicU64>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let seen = seen.clone();
        let body_bytes = body_bytes.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(TokioIo::new(tcp), false, seen, body_bytes).await,
                Some(a) => {
                    // A refused handshake (wrong CA, no client certificate) ends here.
                    let Ok(tls) = a.accept(tcp).await else { return };
                    let client_cert = tls.get_ref().1.peer_certificates().is_some();
                    connection(TokioIo::new(tls), client_cert, seen, body_bytes).await
                }
            }
        });
    }
}

/// Serves one connection in HTTP/1.1 or HTTP/2, whichever it opens with.
async fn connection<I>(
    io: TokioIo<I>,
    client_cert: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
    body_bytes: Arc<AtomicU64>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let seen = seen.clone();
        let body_bytes = body_bytes.clone();
        async move {
            let version = format!("{:?}", req.version());
            let path = req.uri().path().to_string();
            // Read the body to its end, counting it as it comes; the request is recorded
            // once it was all received.
            let mut body = req.into_body();
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    body_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            let s = Seen {
                version,
                path,
                client_cert,
            };
            let body = serde_json::json!({
                "version": s.version,
                "path": s.path,
                "client_cert": s.client_cert,
            })
            .to_string();
            let mut list = seen.lock().unwrap_or_else(PoisonError::into_inner);
            if list.len() < MAX_SEEN {
                list.push(s);
            }
            drop(list);
            hyper::Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}
