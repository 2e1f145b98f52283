//! A tiny HTTP/1.1 server for `GET /jwks.json`, whose answer a test can change while the
//! gateway polls it; over TLS too, and with an OpenID discovery document.
//!
//! [`JwksServer::start`] binds `127.0.0.1:0` and serves on std threads (one accepting, one per
//! connection); [`JwksServer::start_tls`] does the same over TLS with a certificate from
//! [`crate::pki`]. `GET` (or `HEAD`) of `/jwks.json`, any query, gets the current status
//! ([`JwksServer::set_status`], default 200), `content-type: application/json`, the extra
//! headers of [`JwksServer::set_headers`] and the current body ([`JwksServer::set_body`]);
//! `/.well-known/openid-configuration` gets the body of [`JwksServer::set_discovery`] (404
//! until one is set; [`JwksServer::discovery_document`] writes one naming this server's key
//! set); other paths get 404, other methods 405. Connections are kept alive unless the client
//! says `Connection: close`; request bodies are not expected, so a request with one is
//! answered and its connection closed.
//!
//! Invariants: every request head is counted in [`JwksServer::requests`] before it is
//! answered; dropping the server shuts every connection down, stops the accept loop and
//! waits for the threads at most [`DROP_PATIENCE`].
//!
//! ```
//! use tests::jwks_server::JwksServer;
//!
//! let jwks = JwksServer::start(r#"{"keys":[]}"#)?;
//! let r = tests::http::request("GET", &jwks.url(), &[], None)?;
//! assert_eq!((r.status, r.body.as_str()), (200, r#"{"keys":[]}"#));
//! jwks.set_body(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#);
//! assert_eq!(jwks.requests(), 1);
//! # Ok::<(), anyhow::Error>(())
//! ```

use crate::pki::Issued;
use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The path served.
pub const PATH: &str = "/jwks.json";

/// Where the OpenID discovery document is served.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// How long dropping a [`JwksServer`] waits for its threads before leaving them detached.
pub const DROP_PATIENCE: Duration = Duration::from_secs(5);

/// Largest request head read (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Requests served on one connection before it is closed (a bound, not a feature).
const MAX_REQUESTS_PER_CONNECTION: u64 = 100_000;
/// Connections accepted over the server's life (a bound, not a feature).
const MAX_CONNECTIONS: u64 = 1_000_000;
/// Consecutive failed `accept` calls after which the accept thread gives up.
const MAX_ACCEPT_ERRORS: u32 = 1_000;

/// A running JWKS endpoint on `127.0.0.1`, serving until dropped.
pub struct JwksServer {
    /// Where it listens (`127.0.0.1:<ephemeral>`).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    body: Mutex<String>,
    discovery: Mutex<Option<String>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    headers: Mutex<Vec<(String, String)>>,
    status: AtomicU16,
    requests: AtomicU64,
    state: Mutex<State>,
    /// Signalled when `state.live` drops.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    stopping: bool,
    /// Threads that have not finished (accept and connections).
    live: usize,
    next_id: u64,
    /// A clone of every open connection, so drop can shut them down.
    open: HashMap<u64, TcpStream>,
    handles: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JwksServer {
    /// Binds `127.0.0.1:0` and serves `body` at [`PATH`].
    pub fn start(body: impl Into<String>) -> anyhow::Result<JwksServer> {
        JwksServer::serve(body.into(), None)
    }

    /// [`JwksServer::start`] over TLS, presenting `server` (a certificate for `127.0.0.1`
    /// from [`crate::pki::Ca::issue_server`]). A client that does not trust its CA ends the
    /// handshake; no request is counted then.
    pub fn start_tls(body: impl Into<String>, server: &Issued) -> anyhow::Result<JwksServer> {
        JwksServer::serve(body.into(), Some(Arc::new(server_config(server)?)))
    }

    fn serve(body: String, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<JwksServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            body: Mutex::new(body),
            discovery: Mutex::new(None),
            tls,
            headers: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            requests: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let live = Live::enter(&shared, None);
        let accept = std::thread::Builder::new()
            .name("jwks-accept".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    let _live = live;
                    accept_loop(&shared, &listener);
                }
            })?;
        Ok(JwksServer {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:<port>/jwks.json` (`https://` over TLS).
    pub fn url(&self) -> String {
        format!("{}{PATH}", self.base_url())
    }

    /// `http://127.0.0.1:<port>` (`https://` over TLS): an issuer URL for discovery.
    pub fn base_url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The body of [`DISCOVERY_PATH`] from now on (`None`: 404).
    pub fn set_discovery(&self, body: Option<String>) {
        *lock(&self.shared.discovery) = body;
    }

    /// A discovery document for `issuer` whose `jwks_uri` is this server's [`PATH`].
    pub fn discovery_document(&self, issuer: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "jwks_uri": self.url(),
            "id_token_signing_alg_values_supported": ["ES256"],
        })
        .to_string()
    }

    /// The body of answers from now on.
    pub fn set_body(&self, body: impl Into<String>) {
        *lock(&self.shared.body) = body.into();
    }

    /// The status of answers at [`PATH`] from now on (the body is sent with any status).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Extra headers of answers at [`PATH`] from now on (e.g. `cache-control: max-age=1`),
    /// replacing earlier ones.
    pub fn set_headers(&self, headers: &[(&str, &str)]) {
        *lock(&self.shared.headers) = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Request heads received so far, whatever their path.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for JwksServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksServer")
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        let open: Vec<TcpStream> = {
            let mut state = lock(&self.shared.state);
            state.stopping = true;
            state.open.drain().map(|(_, s)| s).collect()
        };
        for s in &open {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(open);
        // Wakes the blocking `accept`, which then sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let state = lock(&self.shared.state);
        let (mut state, timeout) = self
            .shared
            .changed
            .wait_timeout_while(state, DROP_PATIENCE, |s| s.live > 0)
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() {
            return;
        }
        let handles: Vec<JoinHandle<()>> = state.handles.drain(..).collect();
        drop(state);
        // `live` is 0: every thread has left its body, so these joins return at once.
        for h in handles.into_iter().chain(self.accept.take()) {
            let _ = h.join();
        }
    }
}

/// Counts a thread as live until dropped and unregisters its connection.
struct Live {
    shared: Arc<Shared>,
    conn: Option<u64>,
}

impl Live {
    fn enter(shared: &Arc<Shared>, conn: Option<u64>) -> Live {
        lock(&shared.state).live += 1;
        Live {
            shared: Arc::clone(shared),
            conn,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if let Some(id) = self.conn {
            state.open.remove(&id);
        }
        state.live = state.live.saturating_sub(1);
        drop(state);
        self.shared.changed.notify_all();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut errors = 0;
    for _ in 0..MAX_CONNECTIONS {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) if lock(&shared.state).stopping => return,
            Err(_) => {
                errors += 1;
                if errors >= MAX_ACCEPT_ERRORS {
                    return;
                }
                continue;
            }
        };
        errors = 0;
        let _ = stream.set_nodelay(true);
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        let id = {
            let mut state = lock(&shared.state);
            if state.stopping {
                return;
            }
            state.handles.retain(|h| !h.is_finished());
            let id = state.next_id;
            state.next_id += 1;
            state.open.insert(id, registered);
            id
        };
        let live = Live::enter(shared, Some(id));
        let spawned = std::thread::Builder::new()
            .name(format!("jwks-conn-{id}"))
            .spawn({
                let shared = Arc::clone(shared);
                move || {
                    let _live = live;
                    match shared.tls.clone() {
                        None => serve(&shared, stream),
                        Some(config) => {
                            if let Ok(conn) = rustls::ServerConnection::new(config) {
                                serve(&shared, TlsStream(rustls::StreamOwned::new(conn, stream)));
                            }
                        }
                    }
                }
            });
        if let Ok(h) = spawned {
            lock(&shared.state).handles.push(h);
        }
    }
}

/// The server's side of a TLS connection.
struct TlsStream(rustls::StreamOwned<rustls::ServerConnection, TcpStream>);

/// A connection: plaintext or TLS.
trait Conn: Read + Write {
    /// Ends the sending side (a TLS close_notify first).
    fn finish(&mut self);
}

impl Conn for TcpStream {
    fn finish(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Conn for TlsStream {
    fn finish(&mut self) {
        self.0.conn.send_close_notify();
        let _ = self.0.flush();
        let _ = self.0.sock.shutdown(Shutdown::Write);
    }
}

/// A TLS server configuration presenting `server` (ring, as everywhere here).
fn server_config(server: &Issued) -> anyhow::Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(&server.cert)
        .with_context(|| format!("reading {}", server.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", server.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&server.key)
        .with_context(|| format!("reading {}", server.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

/// Serves requests on one connection until it closes, errs or asks to close.
fn serve(shared: &Shared, mut stream: impl Conn) {
    let mut buf: Vec<u8> = Vec::new();
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Some(head) = read_head(&mut stream, &mut buf) else {
            return;
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let keep = match answer(shared, &head) {
            Some((bytes, keep)) => stream.write_all(&bytes).is_ok() && keep,
            None => {
                let _ = stream.write_all(&response(
                    400,
                    "text/plain",
                    &[],
                    "bad request\n",
                    true,
                    false,
                ));
                false
            }
        };
        if !keep {
            stream.finish();
            return;
        }
    }
}

/// Reads up to the end of the next request head; the bytes after it stay in `buf`.
/// `None` on end of stream, error, or a head over [`MAX_HEAD`].
fn read_head(stream: &mut impl Read, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    // Each pass reads at least one byte or returns; `buf` is capped by `MAX_HEAD`.
    for _ in 0..=MAX_HEAD {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..pos + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    None
}

/// The response to one request head and whether to keep the connection; `None` if the
/// head does not parse.
fn answer(shared: &Shared, head: &str) -> Option<(Vec<u8>, bool)> {
    let mut lines = head.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let mut close = version == "HTTP/1.0";
    let mut has_body = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("connection") {
            close = value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            has_body = true;
        }
    }
    let keep = !close && !has_body;
    let path = target.split('?').next().unwrap_or_default();
    let head_only = method == "HEAD";
    let bytes = match (method, path) {
        ("GET" | "HEAD", PATH) => {
            let status = shared.status.load(Ordering::SeqCst);
            let headers = lock(&shared.headers).clone();
            let body = lock(&shared.body).clone();
            response(
                status,
                "application/json",
                &headers,
                &body,
                !keep,
                head_only,
            )
        }
        ("GET" | "HEAD", DISCOVERY_PATH) => match lock(&shared.discovery).clone() {
            Some(doc) => response(200, "application/json", &[], &doc, !keep, head_only),
            None => response(404, "text/plain", &[], "not found\n", !keep, head_only),
        },
        ("GET" | "HEAD", _) => response(404, "text/plain", &[], "not found\n", !keep, head_only),
        _ => response(405, "text/plain", &[], "method not allowed\n", !keep, false),
    };
    Some((bytes, keep))
}

fn response(
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: &str,
    close: bool,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
