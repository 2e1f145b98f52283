//! The WebSocket benchmark's two ends (`scripts/bench-websocket.sh`): an echo server, and a
//! load client that keeps N connections echoing for T seconds and reports messages/s.
//!
//! ```text
//! ws_bench echo --listen 127.0.0.1:PORT [--threads 1]
//! ws_bench load --url ws://HOST:PORT/PATH [--connections 32] [--duration 10] [--warmup 2]
//!               [--size 128] [--window 1] [--threads 1]
//! ```
//!
//! `echo` sends each text or binary message back as it came; a request that does not ask to
//! upgrade (a health check) gets `200 ok` and its connection closed. `load` opens
//! `--connections` WebSockets, keeps `--window` binary messages of `--size` bytes in flight on
//! each (a new one sent as each echo arrives, its length checked), and after `--warmup`
//! seconds counts the echoes of the next `--duration` seconds. It prints one tab-separated
//! line: messages/s (echoes received per second, all connections), p50 and p99 round trip in
//! microseconds, errors (connections that failed, echoes of the wrong length). Both ends
//! run on `--threads` tokio worker threads (1: a current-thread runtime).

use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str = "usage: ws_bench echo --listen ADDR [--threads N]\n       ws_bench load --url ws://HOST:PORT/PATH [--connections N] [--duration S] [--warmup S] [--size BYTES] [--window N] [--threads N]";

/// The most connections `load` opens, and the longest it runs.
const MAX_CONNECTIONS: u64 = 10_000;
const MAX_SECONDS: u64 = 3_600;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("echo") => Options::parse(&args[1..]).and_then(|o| run(o.threads, echo(o))),
        Some("load") => Options::parse(&args[1..]).and_then(|o| run(o.threads, load(o))),
        _ => Err(anyhow::anyhow!("a command: echo or load")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws_bench: {e:#}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    listen: String,
    url: String,
    connections: u64,
    duration: u64,
    warmup: u64,
    size: usize,
    window: u64,
    threads: usize,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut o = Options {
            listen: String::new(),
            url: String::new(),
            connections: 32,
            duration: 10,
            warmup: 2,
            size: 128,
            window: 1,
            threads: 1,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
            let number = || -> anyhow::Result<u64> {
                value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{flag} {value:?}: not a whole number"))
            };
            match flag.as_str() {
                "--listen" => o.listen = value.clone(),
                "--url" => o.url = value.clone(),
                "--connections" => o.connections = number()?.clamp(1, MAX_CONNECTIONS),
                "--duration" => o.duration = number()?.clamp(1, MAX_SECONDS),
                "--warmup" => o.warmup = number()?.min(MAX_SECONDS),
                "--size" => o.size = number()?.clamp(1, 16 << 20) as usize,
                "--window" => o.window = number()?.clamp(1, 1024),
                "--threads" => o.threads = number()?.clamp(1, 64) as usize,
                other => anyhow::bail!("unknown argument {other}"),
            }
        }
        Ok(o)
    }
}

fn run(
    threads: usize,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    rt.block_on(work)
}

async fn echo(o: Options) -> anyhow::Result<()> {
    anyhow::ensure!(!o.listen.is_empty(), "echo needs --listen");
    let listener = TcpListener::bind(&o.listen).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve(tcp));
    }
}

async fn serve(mut tcp: TcpStream) {
    let Some(head_len) = peek_head(&tcp).await else {
        return;
    };
    let mut head = vec![0u8; head_len];
    if tcp.peek(&mut head).await.is_err() {
        return;
    }
    if !String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .contains("\r\nupgrade:")
    {
        if tcp.read_exact(&mut head).await.is_ok() {
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            let _ = tcp.write_all(answer).await;
        }
        return;
    }
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

/// The length of the request head at the front of the stream, left unread (at most 16 KiB,
/// about a second at most for it to be whole).
async fn peek_head(tcp: &TcpStream) -> Option<usize> {
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..1000 {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 || n == buf.len() {
            return None;
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end + 4);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// What the connections of a load run measured.
#[derive(Debug, Default)]
struct Tally {
    errors: AtomicU64,
}

async fn load(o: Options) -> anyhow::Result<()> {
    anyhow::ensure!(o.url.starts_with("ws://"), "load needs --url ws://...");
    let start = clock::now();
    let counted_from = start + Duration::from_secs(o.warmup);
    let end = counted_from + Duration::from_secs(o.duration);
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for _ in 0..o.connections {
        let (o, tally) = (o.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            match connection(&o, counted_from, end).await {
                Ok(rtts) => rtts,
                Err(e) => {
                    if tally.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("ws_bench: a connection failed: {e:#}");
                    }
                    Vec::new()
                }
            }
        }));
    }
    let mut rtts: Vec<u32> = Vec::new();
    for t in tasks {
        rtts.extend(t.await.unwrap_or_default());
    }
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{:.1}\t{}\t{}\t{}",
        rtts.len() as f64 / o.duration as f64,
        pct(0.50),
        pct(0.99),
        tally.errors.load(Ordering::Relaxed)
    );
    Ok(())
}

/// One connection's run: round trips (µs) of the echoes received between `from` and `end`.
async fn connection(o: &Options, from: Instant, end: Instant) -> anyhow::Result<Vec<u32>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(o.url.as_str()).await?;
    let payload = Message::binary(vec![b'x'; o.size]);
    let mut sent: VecDeque<Instant> = VecDeque::new();
    for _ in 0..o.window {
        ws.send(payload.clone()).await?;
        sent.push_back(clock::now());
    }
    let mut rtts = Vec::new();
    loop {
        let remaining = end.saturating_duration_since(clock::now());
        if remaining.is_zero() {
            break;
        }
        let Ok(echo) = tokio::time::timeout(remaining, ws.next()).await else {
            break;
        };
        let echo = echo.ok_or_else(|| anyhow::anyhow!("closed by the server"))??;
        let now = clock::now();
        let Some(at) = sent.pop_front() else {
            anyhow::bail!("an echo of nothing sent");
        };
        anyhow::ensure!(
            echo.len() == o.size,
            "an echo of {} bytes for {}",
            echo.len(),
            o.size
        );
        if now >= from {
            rtts.push(u32::try_from(now.duration_since(at).as_micros()).unwrap_or(u32::MAX));
        }
        ws.send(payload.clone()).await?;
        sent.push_back(clock::now());
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    Ok(rtts)
}
