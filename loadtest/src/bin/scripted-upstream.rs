//! A scripted backend for benchmarks: a tiny HTTP/1.1 server that answers every request
//! the same way, fast, slowed or failing, so a pool can be given one slow or one broken
//! member on purpose (`scripts/bench-balancing.sh`).
//!
//! ```text
//! scripted-upstream --listen 127.0.0.1:PORT --name NAME [--delay-ms N] [--status CODE]
//! ```
//!
//! Each request is answered after `N` ms (default 0) with status `CODE` (default 200),
//! `X-Upstream: NAME` and the body `NAME`, head and body in one write. `GET /ping` is
//! answered 200 at once, whatever the script, so health checks see a live process.
//! One thread per connection (at most 4,096), keep-alive; a request head over 64 KiB, a
//! malformed one, a chunked body or 2 minutes idle close the connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MAX_HEAD: u64 = 64 * 1024;
const MAX_BODY: u64 = 64 * 1024 * 1024;
const MAX_CONNECTIONS: usize = 4096;
const IDLE: Duration = Duration::from_secs(120);
const USAGE: &str =
    "usage: scripted-upstream --listen ADDR:PORT --name NAME [--delay-ms N] [--status CODE]";

struct Script {
    name: String,
    delay: Duration,
    status: u16,
}

fn main() -> ExitCode {
    let (listen, script) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("scripted-upstream: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("scripted-upstream: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let script = Arc::new(script);
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming().flatten() {
        // Past the limit a connection is closed at once (dropped).
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let (script, done) = (Arc::clone(&script), Arc::clone(&open));
        // A connection's error only ends that connection.
        let spawned = std::thread::Builder::new().spawn(move || {
            let _ = serve(stream, &script);
            done.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    }
    ExitCode::SUCCESS
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(String, Script), String> {
    let (mut listen, mut name, mut delay_ms, mut status) = (None, None, 0, 200);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad {flag} {value}");
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--name" => name = Some(value),
            "--delay-ms" => delay_ms = value.parse().map_err(|_| bad())?,
            "--status" => match value.parse() {
                Ok(code @ 200..=599) => status = code,
                _ => return Err(bad()),
            },
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let name = name.ok_or("--name is required")?;
    let delay = Duration::from_millis(delay_ms);
    let listen = listen.ok_or("--listen is required")?;
    Ok((
        listen,
        Script {
            name,
            delay,
            status,
        },
    ))
}

fn serve(stream: TcpStream, script: &Script) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(head) = read_head(&mut reader)? {
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.lines();
        let mut words = lines.next().unwrap_or_default().split_whitespace();
        let (Some(method), Some(path), Some(version)) = (words.next(), words.next(), words.next())
        else {
            return Ok(());
        };
        let (mut length, mut close) = (0, version == "HTTP/1.0");
        for (key, value) in lines.filter_map(|l| l.split_once(':')) {
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "content-length" => match value.parse() {
                    Ok(n) if n <= MAX_BODY => length = n,
                    _ => return Ok(()),
                },
                "transfer-encoding" => return Ok(()),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if io::copy(&mut reader.by_ref().take(length), &mut io::sink())? != length {
            return Ok(());
        }
        let ping = method == "GET" && path == "/ping";
        let status = if ping { 200 } else { script.status };
        if !ping && !script.delay.is_zero() {
            std::thread::sleep(script.delay);
        }
        let reason = if status == 200 { "OK" } else { "Scripted" };
        let body = if method == "HEAD" { "" } else { &script.name };
        let connection = if close { "Connection: close\r\n" } else { "" };
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\
             X-Upstream: {}\r\n{connection}\r\n{body}",
            script.name.len(),
            script.name
        );
        writer.write_all(answer.as_bytes())?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// The next request head, up to and including its blank line; `None` at a clean end of
/// the connection; an error past [`MAX_HEAD`] bytes or on a cut head.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let room = MAX_HEAD.saturating_sub(head.len() as u64);
        let start = head.len();
        let n = reader.by_ref().take(room).read_until(b'\n', &mut head)?;
        if n == 0 && head.is_empty() {
            return Ok(None);
        }
        if !head.ends_with(b"\n") {
            let why = "request head cut, or over 64 KiB";
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
    }
}
