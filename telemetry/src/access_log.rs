//! The access log: one line per request once its answer ends, as JSON or in NGINX's
//! `combined` format, to standard output or a file.
//!
//! The gateway and the TSDB node write the same lines (fields a node has no use for, such as
//! the route's tries or cache, stay empty), so one pipeline reads both.
//!
//! Writing never blocks a request: entries go through a bounded queue to a writer thread of
//! their own, which makes their lines (a request's thread only fills the entry's fields),
//! and an entry that finds the queue full is dropped and counted (each binary's
//! `*_access_log_dropped_total`). Credentials in the query string (`p=`, `u=`, `token=`,
//! ...) never reach the log: their values are replaced before a line is made.
//!
//! [`AccessLog::reopen`] (the binaries call it on SIGUSR1, as nginx does) has the writer
//! close the file and open it again by its name, so logrotate can move it away first.

mod json;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Lines waiting for the writer at most; beyond, lines are dropped (and counted).
pub const QUEUE_LINES: usize = 16 * 1024;

/// Query parameters whose values are credentials (InfluxDB's `u`/`p`, tokens and keys).
const SECRET_PARAMS: [&str; 9] = [
    "p",
    "u",
    "password",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
];

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Combined,
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// The bootstrap file's `access_log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub format: Format,
    pub to: Target,
}

/// What one line says about one request. Addresses, ids and the time are kept as values
/// and written as text by the writer thread, off the request's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// When the answer ended; written UTC, RFC 3339 with milliseconds.
    pub time: LineTime,
    pub request_id: String,
    /// Written as 32 hex digits; `""` without a trace.
    pub trace_id: Option<u128>,
    /// `""` when unknown.
    pub client: Option<std::net::IpAddr>,
    pub identity: Option<String>,
    pub tenant: Option<String>,
    pub method: http::Method,
    pub host: String,
    /// The path and query as the client sent them, credentials redacted ([`redact`]).
    pub path: String,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub upstream: Option<std::net::SocketAddr>,
    pub tries: usize,
    pub cache: Option<&'static str>,
    pub rate_limit: Option<&'static str>,
    pub route: String,
    pub pool: Option<String>,
    pub user_agent: Option<String>,
    /// In the combined format only.
    pub referer: Option<String>,
}

/// A line's time, kept as the clock gave it and written as [`time_text`] by the writer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineTime(pub std::time::SystemTime);

impl Default for LineTime {
    fn default() -> Self {
        LineTime(std::time::UNIX_EPOCH)
    }
}

impl std::fmt::Display for LineTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&time_text(self.0))
    }
}

/// A line's time: UTC, RFC 3339 with milliseconds (`2026-12-07T16:13:38.123Z`).
pub fn time_text(at: std::time::SystemTime) -> String {
    let at: chrono::DateTime<chrono::Utc> = at.into();
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `target` with the value of every credential parameter of its query replaced by
/// `REDACTED` (names kept, so the line still says a password was sent).
pub fn redact(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (name, value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        let decoded = form_urlencoded::parse(name.as_bytes())
            .next()
            .map(|(n, _)| n.to_ascii_lowercase())
            .unwrap_or_default();
        match value {
            Some(_) if SECRET_PARAMS.contains(&decoded.as_str()) => {
                out.push_str(name);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
    }
    out
}

impl Entry {
    /// One JSON object, no line end, the fields in their order here ([`json`]).
    pub fn json(&self) -> String {
        let mut out = Vec::with_capacity(512);
        json::write(self, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The line and its end, appended to `out`.
    fn write_line(&self, format: Format, out: &mut Vec<u8>) {
        match format {
            Format::Json => json::write(self, out),
            Format::Combined => out.extend_from_slice(self.combined().as_bytes()),
        }
        out.push(b'\n');
    }

    /// NGINX's `combined` format (`$remote_addr - $remote_user [$time_local] "$request"
    /// $status $body_bytes_sent "$http_referer" "$http_user_agent"`), then the request id,
    /// the duration in seconds and the upstream, as NGINX setups commonly add them.
    pub fn combined(&self) -> String {
        let mut line = String::with_capacity(256);
        let _ = write!(
            line,
            "{} - {} [{}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\" {} {:.3} {}",
            self.client.map_or_else(String::new, |ip| ip.to_string()),
            quoted_or_dash(self.identity.as_deref()),
            self.time,
            self.method,
            self.path,
            self.status,
            self.bytes_out,
            escape(self.referer.as_deref().unwrap_or("-")),
            escape(self.user_agent.as_deref().unwrap_or("-")),
            self.request_id,
            self.duration_ms / 1000.0,
            self.upstream
                .map_or_else(|| "-".to_string(), |a| a.to_string()),
        );
        line
    }
}

fn quoted_or_dash(v: Option<&str>) -> String {
    v.map_or_else(|| "-".to_string(), escape)
}

/// A field of a combined line: no quote, backslash or control byte can end or forge it.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// What the writer thread is sent: an entry (boxed: the queue's slots stay small), or a
/// nudge to look at the reopen flag.
#[derive(Debug)]
enum Message {
    Line(Box<Entry>),
    Reopen,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AccessLog {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
    /// Set by [`AccessLog::reopen`], taken by the writer before its next write.
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Starts the writer thread for `config`; the file is opened (created, appended to)
    /// now, so a path that cannot be written stops the start with its reason.
    pub fn start(config: &AccessLogConfig) -> std::io::Result<AccessLog> {
        let out = open(&config.to)?;
        let (queue, lines) = sync_channel(QUEUE_LINES);
        let to = config.to.clone();
        let format = config.format;
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                crate::background::lower_this_thread();
                write_lines(lines, out, format, &to, &flag)
            })?;
        Ok(AccessLog {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            reopen,
        })
    }

    /// Has the writer open the file again by its name before its next line (after a
    /// rotation moved it away). Never blocks: with a full queue the writer is busy and sees
    /// the flag at its next batch.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        let _ = self.queue.try_send(Message::Reopen);
    }

    /// Queues `entry` for its line; `false` when it was dropped (the writer is behind).
    pub fn log(&self, entry: Entry) -> bool {
        match self.queue.try_send(Message::Line(Box::new(entry))) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn open(to: &Target) -> std::io::Result<Box<dyn std::io::Write + Send>> {
    Ok(match to {
        Target::Stdout => Box::new(std::io::stdout()),
        Target::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    })
}

/// While lines come, how often the writer takes what is queued. Waking the writer for each
/// line would cost both threads a futex call and a context switch per request (measured:
/// about 10 µs of CPU per line); taking them in rounds costs a few wake-ups a second at any
/// rate, and a line reaches the file within a round.
const ROUND: Duration = Duration::from_millis(10);

/// The writer thread. Idle, it blocks until a line comes; then it takes the queue in rounds
/// of [`ROUND`], writing each round's lines into its buffer and the buffer to the file,
/// until a round finds nothing and it blocks again. The file is opened again when asked;
/// the thread ends when every sender is gone (after writing what it holds).
fn write_lines(
    lines: Receiver<Message>,
    out: Box<dyn std::io::Write + Send>,
    format: Format,
    to: &Target,
    reopen: &AtomicBool,
) {
    let mut writer = Writer {
        out: std::io::BufWriter::with_capacity(64 * 1024, out),
        format,
        to,
        reopen,
        line: Vec::with_capacity(1024),
        result: Ok(()),
        failing: false,
    };
    crate::rounds::run(&lines, ROUND, &mut writer);
}

/// The writer thread's state.
struct Writer<'a> {
    out: std::io::BufWriter<Box<dyn std::io::Write + Send>>,
    format: Format,
    to: &'a Target,
    reopen: &'a AtomicBool,
    /// One line at a time is made here, then copied into the file's buffer.
    line: Vec<u8>,
    /// The round's writes so far: after a failed one, the round's other lines are lost.
    result: std::io::Result<()>,
    /// Whether the last round failed (its error was logged).
    failing: bool,
}

impl crate::rounds::Rounds for Writer<'_> {
    type Message = Message;

    fn take(&mut self, message: Message) {
        if self.reopen.swap(false, Ordering::AcqRel) {
            // What was written to the old file goes there; the rest to the new one.
            let _ = self.out.flush();
            match open(self.to) {
                Ok(file) => self.out = std::io::BufWriter::with_capacity(64 * 1024, file),
                Err(e) => {
                    tracing::error!(to = ?self.to, error = %e, "the access log cannot be opened again; writing on to the old file")
                }
            }
        }
        if let (Message::Line(entry), Ok(())) = (message, &self.result) {
            self.line.clear();
            entry.write_line(self.format, &mut self.line);
            self.result = self.out.write_all(&self.line);
        }
    }

    fn round_ended(&mut self, took: usize) -> bool {
        self.finish();
        took > 0
    }

    fn finish(&mut self) {
        let result = std::mem::replace(&mut self.result, Ok(()));
        report(
            &mut self.failing,
            result.and_then(|()| self.out.flush()),
            self.to,
        );
    }
}

/// Logs a failed write once, until a write succeeds again.
fn report(failing: &mut bool, result: std::io::Result<()>, to: &Target) {
    match (result, *failing) {
        (Err(e), false) => {
            *failing = true;
            tracing::error!(to = ?to, error = %e, "the access log cannot be written; lines are lost until it can");
        }
        (Ok(()), true) => *failing = false,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_query_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact("/query?db=x&u=alice&p=s3cret&q=SELECT+1"),
            "/query?db=x&u=REDACTED&p=REDACTED&q=SELECT+1"
        );
        assert_eq!(redact("/x?Token=abc&token"), "/x?Token=REDACTED&token");
        assert_eq!(redact("/x?%70=abc"), "/x?%70=REDACTED", "an encoded name");
        assert_eq!(redact("/plain/path"), "/plain/path");
        assert_eq!(redact("/x?api_key=k&keys=1"), "/x?api_key=REDACTED&keys=1");
    }

    fn entry() -> Entry {
        Entry {
            time: LineTime(std::time::UNIX_EPOCH + Duration::from_millis(1_796_655_600_123)),
            request_id: "r1".into(),
            trace_id: Some(0x71),
            client: Some([127, 0, 0, 1].into()),
            identity: Some("svc \"a\"".into()),
            method: http::Method::GET,
            host: "h".into(),
            path: "/q".into(),
            status: 200,
            bytes_out: 12,
            duration_ms: 1.5,
            route: "query".into(),
            user_agent: Some("curl\n/8".into()),
            ..Entry::default()
        }
    }

    #[test]
    fn a_json_line_is_one_object_with_every_field() {
        let v: serde_json::Value = serde_json::from_str(&entry().json()).unwrap();
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["identity"], "svc \"a\"");
        assert!(v["upstream"].is_null());
        assert!(!entry().json().contains('\n'));
    }

    #[test]
    fn a_combined_line_cannot_be_forged_by_what_the_client_sent() {
        let line = entry().combined();
        assert_eq!(
            line,
            "127.0.0.1 - svc \\\"a\\\" [2026-12-07T15:00:00.123Z] \"GET /q HTTP/1.1\" 200 12 \"-\" \"curl\\x0a/8\" r1 0.002 -"
        );
    }

    #[test]
    fn lines_reach_the_file_and_a_full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(&AccessLogConfig {
            format: Format::Json,
            to: Target::File(path.clone()),
        })
        .unwrap();
        for _ in 0..3 {
            log.log(entry());
        }
        let mut text = String::new();
        // Polls for up to 10 s.
        for _ in 0..5000 {
            text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 3 {
                break;
            }
            std::thread::yield_now();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(text.lines().count(), 3, "{text}");
        let (queue, _kept) = sync_channel(1);
        let full = AccessLog {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            reopen: Arc::new(AtomicBool::new(false)),
        };
        assert!(full.log(entry()));
        assert!(!full.log(entry()));
        assert_eq!(full.dropped(), 1);
    }

    #[test]
    fn a_lines_time_is_utc_with_milliseconds() {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(time_text(at), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn a_reopen_sends_the_next_lines_to_a_new_file_by_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let log = AccessLog::start(&AccessLogConfig {
            format: Format::Json,
            to: Target::File(path.clone()),
        })
        .unwrap();
        let lines =
            |p: &std::path::Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
        let wait_for = |p: &std::path::Path, n: usize| {
            // Polls for up to 10 s.
            for _ in 0..5000 {
                if lines(p) == n {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            panic!("{} has {} lines, not {n}", p.display(), lines(p));
        };
        log.log(entry());
        wait_for(&path, 1);
        std::fs::rename(&path, &rotated).unwrap();
        log.log(entry());
        wait_for(&rotated, 2);
        log.reopen();
        log.log(entry());
        log.log(entry());
        wait_for(&path, 2);
        assert_eq!(lines(&rotated), 2);
    }
}
