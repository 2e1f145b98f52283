//! A scriptable fake HTTP/1.1 upstream, so gateway tests can make a backend answer, stall,
//! reset or close on demand and see exactly what the proxy sent it.
//!
//! [`FakeUpstream::new`] returns a [`FakeUpstreamBuilder`]; [`FakeUpstreamBuilder::start`]
//! binds `127.0.0.1:0` in this process and serves on std threads: one accept thread, one
//! thread per connection. Connections are keep-alive; each request head (at most
//! [`MAX_HEAD`] bytes) is answered according to the current [`Behaviour`], and request bodies
//! (`Content-Length` or chunked) are read in small pieces, counted and discarded, so a body of
//! any size costs constant memory and [`FakeUpstream::body_bytes`] moves while it arrives.
//!
//! Invariants: every open connection is in a registry, so dropping the [`FakeUpstream`]
//! shuts all of them down (even [`Behaviour::Hang`]), closes the listener and waits, bounded
//! by [`DROP_PATIENCE`], for every thread to end. Nothing read from the network is unwrapped:
//! a malformed request gets a `400` (or the connection is closed) and the server keeps going.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Requests kept in [`FakeUpstream::recorded`]; later ones are counted but not kept.
pub const MAX_HISTORY: usize = 10_000;

/// Largest request head accepted (request line and headers, up to `\r\n\r\n`); longer heads
/// get `431` and the connection is closed.
pub const MAX_HEAD: usize = 64 * 1024;

/// How long dropping a [`FakeUpstream`] waits for its threads before leaving them detached.
pub const DROP_PATIENCE: Duration = Duration::from_secs(5);

/// Requests served on one connection before the server closes it (a bound, not a feature).
const MAX_REQUESTS_PER_CONNECTION: u64 = 1_000_000;
/// Connections accepted over the server's life (a bound, not a feature).
const MAX_CONNECTIONS: u64 = 10_000_000;
/// Consecutive failed `accept` calls after which the accept thread gives up.
const MAX_ACCEPT_ERRORS: u32 = 1_000;
/// Chunks read from one chunked body, and trailer lines after it.
const MAX_CHUNKS: u64 = 1 << 24;
const MAX_TRAILERS: usize = 1_000;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 4 * 1024;
/// Size of one socket read or write.
const IO_CHUNK: usize = 64 * 1024;
/// Bytes a closing or hanging connection drains from the client before it stops reading.
const MAX_DRAIN: u64 = 1 << 34;
/// How long [`Behaviour::Close`] keeps draining after its FIN, so the close stays a FIN and
/// does not turn into a RST (Linux resets on close when unread data is queued).
const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the upstream does with a request once its head has been read.
///
/// Every behaviour counts the request in [`FakeUpstream::requests`]. All but `Reset` and
/// `Close` also read (and count) the request body first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// `200` with the configured body ([`FakeUpstreamBuilder::body_size`] bytes); for path
    /// `/echo` a JSON description of the request instead (see [`FakeUpstream`]).
    #[default]
    Ok,
    /// Like `Ok`, but only after waiting this long (the wait ends early on drop).
    Slow(Duration),
    /// Never answer; hold the connection open until the client goes away or the upstream is
    /// dropped.
    Hang,
    /// Reset the connection (RST, `SO_LINGER` 0) right after the request head, unanswered.
    Reset,
    /// Close the connection (FIN) right after the request head, unanswered.
    Close,
    /// Answer with this status code and a short text body (no body for 204 and 304).
    Status(u16),
    /// Every `every`-th request the upstream receives (the 20th, the 40th, ... for 20,
    /// counted over all its requests) is answered as `Status(status)`, the others as `Ok`: a
    /// backend that fails a steady share of its requests (5% for 20).
    FailEvery { every: u64, status: u16 },
}

/// One request head as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Request method, as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Request target with its query string (`/write?db=x`).
    pub path: String,
    /// Headers in arrival order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Request body bytes read for this request (0 until the body is read, and for `Reset`
    /// and `Close`, which do not read it).
    pub body_len: u64,
}

impl RecordedRequest {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::header_in(&self.headers, name)
    }
}

/// Configuration of a [`FakeUpstream`], from [`FakeUpstream::new`].
///
/// Defaults: no failures, [`Behaviour::Ok`], a 2-byte body (`ok`), name `upstream`, no
/// extra answer headers, no labelled body.
#[derive(Debug, Clone)]
#[must_use]
pub struct FakeUpstreamBuilder {
    fail_times: u32,
    behaviour: Behaviour,
    body_size: usize,
    name: String,
    headers: Vec<(String, String)>,
    numbered: bool,
    echo_headers: Vec<String>,
}

impl Default for FakeUpstreamBuilder {
    fn default() -> Self {
        FakeUpstreamBuilder {
            fail_times: 0,
            behaviour: Behaviour::Ok,
            body_size: 2,
            name: "upstream".to_owned(),
            headers: Vec::new(),
            numbered: false,
            echo_headers: Vec::new(),
        }
    }
}

impl FakeUpstreamBuilder {
    /// The first `n` requests (hence the first `n` connections that send one, since each is
    /// reset) are answered as [`Behaviour::Reset`], whatever the behaviour; later ones follow it.
    pub fn fail_times(mut self, n: u32) -> Self {
        self.fail_times = n;
        self
    }

    /// The initial behaviour (change it later with [`FakeUpstream::set_behaviour`]).
    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    /// Size in bytes of the `200` body: `okokok...` cut to `n` bytes.
    pub fn body_size(mut self, n: usize) -> Self {
        self.body_size = n;
        self
    }

    /// Name sent back in every answer's `x-upstream` header, so a test sees which backend
    /// the proxy chose.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a header to every answer but the `400`/`431` for unreadable requests (e.g.
    /// `Cache-Control: no-store`); change the set later with
    /// [`FakeUpstream::set_response_headers`].
    pub fn response_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The `200` body (not for `/echo`) becomes the label `<name> #<n>`, where `n` is the
    /// 1-based number of this request among the request heads for its path (the part before
    /// `?`), so a test sees which backend request an answer came from. Replaces the
    /// [`Self::body_size`] body.
    pub fn numbered(mut self) -> Self {
        self.numbered = true;
        self
    }

    /// Implies [`Self::numbered`] and appends ` <header>=<value>` to the label for this
    /// request header (lower-cased name; value `-` when the request had none). May be given
    /// several times; the headers appear in that order.
    ///
    /// ```
    /// use tests::upstream::FakeUpstream;
    ///
    /// let up = FakeUpstream::new()
    ///     .name("b1")
    ///     .echo_header("X-Tenant")
    ///     .response_header("cache-control", "no-store")
    ///     .start()?;
    /// let url = format!("{}/q?x=1", up.url());
    /// let r = tests::http::request("GET", &url, &[("x-tenant", "a")], None)?;
    /// assert_eq!((r.body.as_str(), r.header("cache-control")), ("b1 #1 x-tenant=a", Some("no-store")));
    /// up.set_response_headers(&[]);
    /// let r = tests::http::request("GET", &url, &[], None)?;
    /// assert_eq!((r.body.as_str(), r.header("cache-control")), ("b1 #2 x-tenant=-", None));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn echo_header(mut self, name: &str) -> Self {
        self.numbered = true;
        self.echo_headers.push(name.to_ascii_lowercase());
        self
    }

    /// Binds `127.0.0.1:0` and starts serving on threads.
    pub fn start(self) -> anyhow::Result<FakeUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: self.name,
            body_size: self.body_size,
            numbered: self.numbered,
            echo_headers: self.echo_headers,
            headers: Mutex::new(self.headers),
            behaviour: Mutex::new(self.behaviour),
            fails_left: AtomicU32::new(self.fail_times),
            requests: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            last: Mutex::new(None),
            history: Mutex::new(Vec::new()),
            paths: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        // Counted before the thread exists, so a drop right after start waits for it.
        let live = Live::enter(&shared, None);
        let accept = std::thread::Builder::new()
            .name(format!("upstream-{}-accept", shared.name))
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    let _live = live;
                    accept_loop(&shared, &listener);
                }
            })?;
        Ok(FakeUpstream {
            addr,
            shared,
            accept: Some(accept),
        })
    }
}

/// A running fake upstream on `127.0.0.1`, serving until dropped.
///
/// Every answer carries `content-length`, `x-upstream: <name>` and, if the request had one,
/// its `x-request-id`. Under [`Behaviour::Ok`] and [`Behaviour::Slow`], a path ending in `/echo` (any
/// query) is answered, once the whole body was read, with
/// `{"method":..,"path":..,"headers":{name: value, ..},"body_len":N}` (repeated headers
/// joined with `, `). `Expect: 100-continue` on a request with a body gets `100 Continue`.
///
/// ```
/// use tests::upstream::{Behaviour, FakeUpstream};
///
/// let up = FakeUpstream::new().name("b1").body_size(5).start()?;
/// let r = tests::http::request("GET", &format!("{}/x", up.url()), &[], None)?;
/// assert_eq!((r.status, r.body.as_str(), r.header("x-upstream")), (200, "okoko", Some("b1")));
/// up.set_behaviour(Behaviour::Status(503));
/// let r = tests::http::request("GET", &format!("{}/x", up.url()), &[], None)?;
/// assert_eq!(r.status, 503);
/// assert_eq!(up.requests(), 2);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct FakeUpstream {
    /// Where it listens (`127.0.0.1:<ephemeral>`).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// A builder with the defaults listed on [`FakeUpstreamBuilder`].
    // The builder shape `FakeUpstream::new()...start()` is the harness convention (STYLE 13).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> FakeUpstreamBuilder {
        FakeUpstreamBuilder::default()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The name sent in `x-upstream`.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Request heads received so far, whatever the behaviour did with them.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Request body bytes received so far (all requests), counted as they arrive, so a test
    /// can prove a proxy streams a body rather than buffering it. Chunked framing is not
    /// counted, only chunk data.
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (tells keep-alive reuse from new connections).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most recent request head, with its body length once the body was read.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.shared.last).as_ref().map(|(_, r)| r.clone())
    }

    /// Every request received so far, in arrival order (the first [`MAX_HISTORY`]), each
    /// with its body length once the body was read: what a test inspects to prove the
    /// upstream never saw something.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.history)
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Changes the behaviour for requests whose head arrives from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = behaviour;
    }

    /// Stalls the whole server for `d` from now, as a GC pause or a stuck disk would: every
    /// answer due before the pause ends is sent when it ends (requests keep arriving and
    /// are read; only answers wait).
    pub fn pause(&self, d: Duration) {
        *lock(&self.shared.paused_until) = Some(crate::clock::now() + d);
    }

    /// Request heads received so far for `path` (the part before any `?`).
    pub fn requests_for(&self, path: &str) -> u64 {
        lock(&self.shared.paths).get(path).copied().unwrap_or(0)
    }

    /// Replaces the extra answer headers (see [`FakeUpstreamBuilder::response_header`]) for
    /// answers written from now on.
    pub fn set_response_headers(&self, headers: &[(&str, &str)]) {
        *lock(&self.shared.headers) = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }
}

impl fmt::Debug for FakeUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeUpstream")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        let open: Vec<TcpStream> = {
            let mut state = lock(&self.shared.state);
            state.stopping = true;
            state.open.drain().map(|(_, s)| s).collect()
        };
        // Wakes `Slow` and `Hang` waits.
        self.shared.changed.notify_all();
        // Wakes every read or write blocked on a connection, `Hang` included.
        for s in &open {
            let _ = s.shutdown(Shutdown::Both);
        }
        drop(open);
        // `accept` blocks; one connection of our own makes it look at `stopping` and return,
        // which drops (closes) the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let state = lock(&self.shared.state);
        let (mut state, timeout) = self
            .shared
            .changed
            .wait_timeout_while(state, DROP_PATIENCE, |s| s.live > 0)
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() {
            // Threads stuck past the patience are left detached rather than block the test.
            return;
        }
        let handles: Vec<JoinHandle<()>> = state.handles.drain(..).collect();
        drop(state);
        // Every thread has left its body (`live` is 0): these joins return at once.
        for h in handles.into_iter().chain(self.accept.take()) {
            let _ = h.join();
        }
    }
}

/// State shared by the handle, the accept thread and the connection threads.
struct Shared {
    name: String,
    body_size: usize,
    /// The `200` body is a label (see [`FakeUpstreamBuilder::numbered`]).
    numbered: bool,
    /// Request headers echoed into the label.
    echo_headers: Vec<String>,
    /// Extra headers on every answer.
    headers: Mutex<Vec<(String, String)>>,
    behaviour: Mutex<Behaviour>,
    fails_left: AtomicU32,
    requests: AtomicU64,
    body_bytes: AtomicU64,
    connections: AtomicU64,
    /// The last request, tagged with its sequence number so a slow body does not update a
    /// later request's record.
    last: Mutex<Option<(u64, RecordedRequest)>>,
    /// Every request received, in order (the first [`MAX_HISTORY`]), with its sequence
    /// number.
    history: Mutex<Vec<(u64, RecordedRequest)>>,
    /// Request heads by path (without the query string).
    paths: Mutex<HashMap<String, u64>>,
    /// Until when answers are held back (see [`FakeUpstream::pause`]).
    paused_until: Mutex<Option<std::time::Instant>>,
    state: Mutex<State>,
    /// Signalled when `state` changes (`stopping`, `live`).
    changed: Condvar,
}

/// Life-cycle state, under one lock so that "register a connection" and "stop and shut
/// everything down" cannot interleave.
#[derive(Default)]
struct State {
    stopping: bool,
    /// Threads (accept and connections) that have not finished.
    live: usize,
    next_id: u64,
    /// A clone of every open connection, so drop can shut them down.
    open: HashMap<u64, TcpStream>,
    /// Connection threads, joined on drop (finished ones are pruned on each accept).
    handles: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a thread as live until dropped (so a panicking thread is uncounted too) and
/// removes its connection from the registry.
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
            Ok((s, _)) => {
                // An answer is written in parts (head, body); without this, Nagle holds the
                // body until the client's delayed ACK, 40 ms later.
                let _ = s.set_nodelay(true);
                s
            }
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
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let live = Live::enter(shared, Some(id));
        let spawned = std::thread::Builder::new()
            .name(format!("upstream-{}-conn-{id}", shared.name))
            .spawn({
                let shared = Arc::clone(shared);
                move || {
                    // Declared first so it drops last, after the stream is closed.
                    let _live = live;
                    let _ = serve_connection(&shared, stream);
                }
            });
        // On a spawn error the closure (with `live` and the stream) is dropped: uncounted.
        if let Ok(h) = spawned {
            lock(&shared.state).handles.push(h);
        }
    }
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// True if a comma-separated header holds `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the client wants the connection kept after this answer (RFC 9112 9.3).
    fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.version != "HTTP/1.0" || self.has_token("connection", "keep-alive")
    }
}

/// How the request body is framed.
enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

fn body_framing(head: &Head) -> Result<BodyFraming, &'static str> {
    if let Some(te) = head.header("transfer-encoding") {
        // Chunked must be the last coding (RFC 9112 6.3); anything else we cannot frame.
        let last = te.rsplit(',').next().unwrap_or_default().trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(BodyFraming::Chunked)
        } else {
            Err("unsupported transfer-encoding")
        };
    }
    match head.header("content-length") {
        None => Ok(BodyFraming::None),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(0) => Ok(BodyFraming::None),
            Ok(n) => Ok(BodyFraming::Length(n)),
            Err(_) => Err("bad content-length"),
        },
    }
}

fn parse_head(raw: &[u8]) -> Result<Head, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("bad request line");
    };
    if method.is_empty() || path.is_empty() || !version.starts_with("HTTP/1.") {
        return Err("bad request line");
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').ok_or("header line without a colon")?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Ok(Head {
        method: method.to_owned(),
        path: path.to_owned(),
        version: version.to_owned(),
        headers,
    })
}

/// A connection with the bytes read past what was consumed (pipelined data, body starts).
struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    shared: &'a Shared,
}

impl Conn<'_> {
    /// Reads once more into `buf`; 0 means end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Takes bytes up to and including the first `delim` from the input, reading at most
    /// `max` bytes for it. `Ok(None)` on a clean end of stream before any byte.
    fn take_until(&mut self, delim: &[u8], max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut scanned: usize = 0;
        // Each pass reads at least one byte or returns, and `buf` is capped by `max`.
        for _ in 0..=max {
            let from = scanned.saturating_sub(delim.len() - 1);
            if let Some(pos) = self.buf[from..]
                .windows(delim.len())
                .position(|w| w == delim)
            {
                let end = from + pos + delim.len();
                return Ok(Some(self.buf.drain(..end).collect()));
            }
            scanned = self.buf.len();
            if self.buf.len() > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
        Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
    }

    /// A `\r\n`-terminated line (without it), for chunk sizes and trailers.
    fn line(&mut self) -> io::Result<String> {
        let line = self
            .take_until(b"\r\n", MAX_LINE)?
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        Ok(String::from_utf8_lossy(&line[..line.len() - 2]).into_owned())
    }

    /// Reads and discards `n` body bytes, counting each piece as it arrives.
    fn skip_body(&mut self, n: u64) -> io::Result<()> {
        let from_buf = n.min(self.buf.len() as u64) as usize;
        self.buf.drain(..from_buf);
        self.count(from_buf);
        let mut left = n - from_buf as u64;
        let mut chunk = vec![0u8; IO_CHUNK];
        // Each pass reads at least one byte or returns.
        while left > 0 {
            let want = left.min(IO_CHUNK as u64) as usize;
            let got = self.stream.read(&mut chunk[..want])?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.count(got);
            left -= got as u64;
        }
        Ok(())
    }

    fn count(&self, n: usize) {
        self.shared.body_bytes.fetch_add(n as u64, Ordering::SeqCst);
    }

    /// Reads a whole request body; returns its length (chunk data only).
    fn read_body(&mut self, framing: &BodyFraming) -> io::Result<u64> {
        match *framing {
            BodyFraming::None => Ok(0),
            BodyFraming::Length(n) => self.skip_body(n).map(|()| n),
            BodyFraming::Chunked => self.read_chunked(),
        }
    }

    fn read_chunked(&mut self) -> io::Result<u64> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let mut total = 0u64;
        for _ in 0..MAX_CHUNKS {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                for _ in 0..MAX_TRAILERS {
                    if self.line()?.is_empty() {
                        return Ok(total);
                    }
                }
                return Err(bad("too many trailers"));
            }
            self.skip_body(size)?;
            total = total.saturating_add(size);
            if !self.line()?.is_empty() {
                return Err(bad("chunk data longer than its size"));
            }
        }
        Err(bad("too many chunks"))
    }

    /// Reads and discards input until end of stream, an error or [`MAX_DRAIN`] bytes.
    fn drain_input(&mut self) {
        self.buf.clear();
        let mut chunk = vec![0u8; IO_CHUNK];
        let mut drained = 0u64;
        while drained < MAX_DRAIN {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n as u64,
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }
}

/// Serves requests on one connection until the client closes, asks to close, or a behaviour
/// ends the connection.
fn serve_connection(shared: &Shared, stream: TcpStream) -> io::Result<()> {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        shared,
    };
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let raw = match conn.take_until(b"\r\n\r\n", MAX_HEAD) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let answer = error_answer(shared, 431, "request head too large");
                return conn.write(&answer);
            }
            Err(e) => return Err(e),
        };
        let head = match parse_head(&raw[..raw.len() - 4]) {
            Ok(h) => h,
            Err(why) => return conn.write(&error_answer(shared, 400, why)),
        };
        let seq = shared.requests.fetch_add(1, Ordering::SeqCst);
        let bare = head.path.split('?').next().unwrap_or("").to_string();
        let path_seq = {
            let mut paths = lock(&shared.paths);
            let n = paths.entry(bare).or_insert(0);
            *n += 1;
            *n
        };
        let recorded = RecordedRequest {
            method: head.method.clone(),
            path: head.path.clone(),
            headers: head.headers.clone(),
            body_len: 0,
        };
        {
            let mut history = lock(&shared.history);
            if history.len() < MAX_HISTORY {
                history.push((seq, recorded.clone()));
            }
        }
        *lock(&shared.last) = Some((seq, recorded));
        let behaviour = match *lock(&shared.behaviour) {
            _ if take_failure(shared) => Behaviour::Reset,
            Behaviour::FailEvery { every, status }
                if every > 0 && (seq + 1).is_multiple_of(every) =>
            {
                Behaviour::Status(status)
            }
            Behaviour::FailEvery { .. } => Behaviour::Ok,
            b => b,
        };
        match behaviour {
            Behaviour::Reset => {
                // Linger 0 makes the close below (last fd: ours and the registry's) a RST.
                return set_linger_zero(&conn.stream);
            }
            Behaviour::Close => {
                conn.stream.shutdown(Shutdown::Write)?;
                conn.stream.set_read_timeout(Some(CLOSE_DRAIN_TIMEOUT))?;
                conn.drain_input();
                return Ok(());
            }
            Behaviour::Ok
            | Behaviour::Slow(_)
            | Behaviour::Hang
            | Behaviour::Status(_)
            | Behaviour::FailEvery { .. } => {}
        }
        let framing = match body_framing(&head) {
            Ok(f) => f,
            Err(why) => return conn.write(&error_answer(shared, 400, why)),
        };
        if !matches!(framing, BodyFraming::None) && head.has_token("expect", "100-continue") {
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body_len = conn.read_body(&framing)?;
        if let Some((s, r)) = lock(&shared.last).as_mut() {
            if *s == seq {
                r.body_len = body_len;
            }
        }
        if let Some((_, r)) = lock(&shared.history)
            .iter_mut()
            .rev()
            .find(|(s, _)| *s == seq)
        {
            r.body_len = body_len;
        }
        let keep_alive = head.keep_alive();
        let held = lock(&shared.paused_until)
            .map(|until| until.saturating_duration_since(crate::clock::now()))
            .filter(|d| !d.is_zero());
        if let Some(d) = held {
            if wait_until_stopping(shared, Some(d)) {
                return Ok(());
            }
        }
        match behaviour {
            Behaviour::Hang => {
                // Reading notices drop's shutdown and a client that leaves; after that, wait
                // for drop anyway, so a half-closed client still never sees an answer.
                conn.drain_input();
                wait_until_stopping(shared, None);
                return Ok(());
            }
            Behaviour::Slow(delay) => {
                if wait_until_stopping(shared, Some(delay)) {
                    return Ok(());
                }
                answer_ok(&mut conn, &head, body_len, keep_alive, path_seq)?;
            }
            Behaviour::Ok => answer_ok(&mut conn, &head, body_len, keep_alive, path_seq)?,
            Behaviour::Status(code) => {
                let body = format!("{} answers {code}\n", shared.name);
                let h = answer_head(shared, &head, code, "text/plain", body.len(), keep_alive);
                conn.write(h.as_bytes())?;
                if has_body(code) && head.method != "HEAD" {
                    conn.write(body.as_bytes())?;
                }
            }
            // Resolved to `Status` or `Ok` above.
            Behaviour::Reset | Behaviour::Close | Behaviour::FailEvery { .. } => {}
        }
        if !keep_alive || lock(&shared.state).stopping {
            return Ok(());
        }
    }
    Ok(())
}

/// Uses up one of the `fail_times` resets, if any are left.
fn take_failure(shared: &Shared) -> bool {
    shared
        .fails_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Waits until the upstream is dropped, at most `limit` (forever if `None`); true if it was.
fn wait_until_stopping(shared: &Shared, limit: Option<Duration>) -> bool {
    let state = lock(&shared.state);
    let state = match limit {
        Some(d) => {
            shared
                .changed
                .wait_timeout_while(state, d, |s| !s.stopping)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        }
        None => shared
            .changed
            .wait_while(state, |s| !s.stopping)
            .unwrap_or_else(PoisonError::into_inner),
    };
    state.stopping
}

/// The `200` answer: the `ok` body (or the label, see [`FakeUpstreamBuilder::numbered`];
/// `path_seq` is this request's number for its path), or the JSON description for `/echo`.
fn answer_ok(
    conn: &mut Conn<'_>,
    head: &Head,
    body_len: u64,
    keep_alive: bool,
    path_seq: u64,
) -> io::Result<()> {
    let shared = conn.shared;
    let send_body = head.method != "HEAD";
    let path_only = head.path.split('?').next().unwrap_or_default();
    if path_only == "/echo" || path_only.ends_with("/echo") {
        let mut headers = serde_json::Map::new();
        for (k, v) in &head.headers {
            let joined = match headers.get(k).and_then(|old| old.as_str()) {
                Some(old) => format!("{old}, {v}"),
                None => v.clone(),
            };
            headers.insert(k.clone(), serde_json::Value::String(joined));
        }
        let body = serde_json::json!({
            "method": head.method,
            "path": head.path,
            "headers": headers,
            "body_len": body_len,
        })
        .to_string();
        let h = answer_head(
            shared,
            head,
            200,
            "application/json",
            body.len(),
            keep_alive,
        );
        conn.write(h.as_bytes())?;
        if send_body {
            conn.write(body.as_bytes())?;
        }
        return Ok(());
    }
    if shared.numbered {
        let mut body = format!("{} #{path_seq}", shared.name);
        for name in &shared.echo_headers {
            body.push_str(&format!(" {name}={}", head.header(name).unwrap_or("-")));
        }
        let h = answer_head(shared, head, 200, "text/plain", body.len(), keep_alive);
        conn.write(h.as_bytes())?;
        if send_body {
            conn.write(body.as_bytes())?;
        }
        return Ok(());
    }
    let h = answer_head(
        shared,
        head,
        200,
        "text/plain",
        shared.body_size,
        keep_alive,
    );
    conn.write(h.as_bytes())?;
    if send_body {
        // A fixed pattern buffer written repeatedly: large bodies cost no memory.
        let pattern: Vec<u8> = b"ok".iter().copied().cycle().take(IO_CHUNK).collect();
        let mut left = shared.body_size;
        while left > 0 {
            let n = left.min(IO_CHUNK);
            conn.write(&pattern[..n])?;
            left -= n;
        }
    }
    Ok(())
}

/// Whether a status may carry a body (RFC 9110 15: not 1xx, 204, 304).
fn has_body(code: u16) -> bool {
    !(code < 200 || code == 204 || code == 304)
}

/// Status line and headers of an answer to `head`, ending with the blank line.
fn answer_head(
    shared: &Shared,
    head: &Head,
    code: u16,
    content_type: &str,
    body_len: usize,
    keep_alive: bool,
) -> String {
    let mut h = format!(
        "HTTP/1.1 {code} {}\r\nx-upstream: {}\r\n",
        reason(code),
        shared.name
    );
    if has_body(code) {
        h.push_str(&format!(
            "content-type: {content_type}\r\ncontent-length: {body_len}\r\n"
        ));
    }
    if let Some(id) = head.header("x-request-id") {
        h.push_str(&format!("x-request-id: {id}\r\n"));
    }
    for (k, v) in lock(&shared.headers).iter() {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    if !keep_alive {
        h.push_str("connection: close\r\n");
    }
    h.push_str("\r\n");
    h
}

/// A complete `connection: close` answer for a request that could not be read.
fn error_answer(shared: &Shared, code: u16, why: &str) -> Vec<u8> {
    let body = format!("{why}\n");
    format!(
        "HTTP/1.1 {code} {}\r\nx-upstream: {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        reason(code),
        shared.name,
        body.len()
    )
    .into_bytes()
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Sets `SO_LINGER` to {on, 0 s}, so that closing the socket sends a RST instead of a FIN
/// (std's `set_linger` is unstable).
#[allow(unsafe_code)]
fn set_linger_zero(stream: &TcpStream) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open for the borrow of `stream`; the option value points to a live
    // `linger` of exactly the length passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
