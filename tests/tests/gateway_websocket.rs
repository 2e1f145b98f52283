//! WebSockets through the gateway, with a real client and a real server (tokio-tungstenite)
//! on either side of it: messages both ways over one upgraded connection, an idle timeout
//! apart from the request timeout, open connections in the metrics, an upgrade refused on a
//! route that does not take it (and never seen by the backend), and a graceful stop with a
//! connection open.

use futures_util::{SinkExt, StreamExt};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tests::clock;
use tests::gateway::GatewayProcess;
use tests::http::{raw_request, request};
use tests::wait::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the echo server saw.
#[derive(Debug, Default)]
struct Stats {
    /// Requests that asked to upgrade (counted from the head, before any handshake).
    upgrade_requests: AtomicU64,
    /// WebSocket connections open now.
    open: AtomicU64,
    /// WebSocket connections that ended.
    closed: AtomicU64,
}

/// A WebSocket echo server on a free loopback port: each text or binary message goes back
/// as it came. A request that does not ask to upgrade (a health check) is answered
/// `200 ok` and its connection closed. Its tasks end with the runtime that runs them.
struct Echo {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl Echo {
    fn start(rt: &Runtime) -> Echo {
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("binding the echo server");
        let addr = listener.local_addr().expect("its address");
        let stats = Arc::new(Stats::default());
        let shared = stats.clone();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, shared.clone()));
            }
        });
        Echo { addr, stats }
    }

    fn upgrade_requests(&self) -> u64 {
        self.stats.upgrade_requests.load(Ordering::SeqCst)
    }

    fn open(&self) -> u64 {
        self.stats.open.load(Ordering::SeqCst)
    }
}

async fn serve(mut tcp: TcpStream, stats: Arc<Stats>) {
    let Some(head) = peek_head(&tcp).await else {
        return;
    };
    if !head.to_ascii_lowercase().contains("\r\nupgrade:") {
        let mut consumed = vec![0u8; head.len()];
        if tcp.read_exact(&mut consumed).await.is_ok() {
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            let _ = tcp.write_all(answer).await;
        }
        return;
    }
    stats.upgrade_requests.fetch_add(1, Ordering::SeqCst);
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    stats.open.fetch_add(1, Ordering::SeqCst);
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
    stats.open.fetch_sub(1, Ordering::SeqCst);
    stats.closed.fetch_add(1, Ordering::SeqCst);
}

/// The request head at the front of the stream, left unread (at most 16 KiB, waiting
/// about a second at most for it to be whole).
async fn peek_head(tcp: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..1000 {
        let n = tcp.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf[..end + 4]).into_owned());
        }
        if n == buf.len() {
            return None;
        }
        // Part of a head: the rest is on its way.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// One pool (the echo server) behind two routes: `ws` (paths under `/ws`) takes WebSocket
/// upgrades as `websocket` says, with `request` as its request timeout; `plain` (every
/// other path) takes none.
fn policy(backend: SocketAddr, request: &str, websocket: &str) -> String {
    format!(
        "pools:\n  echo:\n    backends:\n      - {{ address: {backend} }}\nroutes:\n  - name: ws\n    match: {{ path_prefix: /ws }}\n    pool: echo\n    timeouts: {{ request: {request} }}\n    websocket: {websocket}\n  - name: plain\n    match: {{ path_prefix: / }}\n    pool: echo\n"
    )
}

async fn connect(addr: SocketAddr, path: &str) -> Result<Ws, tungstenite::Error> {
    let (ws, answer) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await?;
    assert_eq!(answer.status(), 101);
    Ok(ws)
}

/// Sends `text` and reads its echo (within the patience).
async fn round_trip(ws: &mut Ws, text: &str) -> anyhow::Result<()> {
    ws.send(Message::text(text)).await?;
    let echo = tokio::time::timeout(tests::patience(), ws.next())
        .await
        .map_err(|_| anyhow::anyhow!("no echo of {text:?}"))?;
    match echo {
        Some(Ok(Message::Text(t))) if t.as_str() == text => Ok(()),
        other => anyhow::bail!("echo of {text:?}: {other:?}"),
    }
}

/// Reads until the connection ends (a close frame, its end, or an error), within the
/// patience; false if it was still open then.
async fn ends(ws: &mut Ws) -> bool {
    let read_all = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(tests::patience(), read_all)
        .await
        .is_ok()
}

/// Message `i` of the stream: texts and binaries of many sizes, some larger than any
/// buffer on the way (100 KB), each one telling which it is.
fn message(i: usize) -> Message {
    if i % 500 == 7 {
        let bytes: Vec<u8> = (0..100_000).map(|j| (i + j) as u8).collect();
        Message::binary(bytes)
    } else if i.is_multiple_of(2) {
        Message::text(format!("text {i} {}", "x".repeat(i % 300)))
    } else {
        let bytes: Vec<u8> = (0..(i % 1000)).map(|j| (i * 31 + j) as u8).collect();
        Message::binary([&(i as u64).to_be_bytes()[..], &bytes].concat())
    }
}

fn metrics(gw: &GatewayProcess) -> String {
    let r = request("GET", &format!("{}/metrics", gw.admin_url()), &[], None).expect("metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The value of one series (`name{labels}` exactly as rendered) in a Prometheus text.
fn series(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// Polls `/metrics` until the series reads `want`.
fn series_until(gw: &GatewayProcess, name: &str, want: f64) {
    eventually(&format!("{name} to read {want}"), |last| {
        let v = series(&metrics(gw), name);
        *last = format!("{v:?}");
        Ok((v == Some(want)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
}

const OPEN: &str = "gateway_websocket_connections{route=\"ws\"}";

#[test]
fn ten_thousand_messages_pass_both_ways_over_one_upgraded_connection() {
    let rt = runtime();
    let echo = Echo::start(&rt);
    let gw = GatewayProcess::start(&policy(echo.addr, "5s", "true")).unwrap();
    const N: usize = 10_000;
    rt.block_on(async {
        let ws = connect(gw.addr, "/ws/echo")
            .await
            .expect("the handshake passes");
        let (mut tx, mut rx) = ws.split();
        // Sending and reading at once, so both directions carry bytes together.
        let sender = tokio::spawn(async move {
            for i in 0..N {
                tx.send(message(i)).await?;
            }
            anyhow::Ok(tx)
        });
        for i in 0..N {
            let got = tokio::time::timeout(tests::patience(), rx.next())
                .await
                .unwrap_or_else(|_| panic!("message {i} did not come back"));
            match got {
                Some(Ok(m)) => assert!(m == message(i), "message {i} came back changed"),
                other => panic!("message {i}: {other:?}"),
            }
        }
        let mut tx = sender.await.unwrap().expect("every message sent");
        tx.send(Message::Close(None)).await.unwrap();
        let ws = tx.reunite(rx).unwrap();
        let mut ws = ws;
        assert!(ends(&mut ws).await, "the close is answered");
    });
    assert_eq!(
        echo.upgrade_requests(),
        1,
        "one connection carried them all"
    );
    eventually("the backend's side to close", |_| {
        Ok((echo.open() == 0).then_some(()))
    })
    .unwrap();
}

#[test]
fn an_idle_connection_outlives_the_request_timeout_and_is_closed_at_the_idle_timeout() {
    let rt = runtime();
    let echo = Echo::start(&rt);
    let request_timeout = Duration::from_millis(500);
    let idle_timeout = Duration::from_secs(2);
    let gw = GatewayProcess::start(&policy(echo.addr, "500ms", "{ idle_timeout: 2s }")).unwrap();
    rt.block_on(async {
        let mut ws = connect(gw.addr, "/ws/idle")
            .await
            .expect("the handshake passes");
        round_trip(&mut ws, "first").await.unwrap();
        // Silent three times the request timeout: nothing arrives, nothing closes.
        let quiet = tokio::time::timeout(request_timeout * 3, ws.next()).await;
        assert!(quiet.is_err(), "something arrived while idle: {quiet:?}");
        round_trip(&mut ws, "after the request timeout")
            .await
            .expect("the connection outlived the request timeout");
        let since_last = clock::now();
        assert!(
            ends(&mut ws).await,
            "the idle connection was not closed within the patience"
        );
        let idle = clock::now().duration_since(since_last);
        // The last byte passed just before `since_last`: allow for its way to the client.
        assert!(
            idle + Duration::from_millis(100) >= idle_timeout,
            "closed after {idle:?} of silence, before the idle timeout"
        );
    });
    eventually("the backend's side to close", |_| {
        Ok((echo.open() == 0).then_some(()))
    })
    .unwrap();
    assert!(
        !gw.log().contains("Fail to proxy"),
        "an idle end is not logged as a failure:\n{}",
        gw.log()
    );
}

#[test]
fn open_upgraded_connections_show_in_the_metrics_until_they_close() {
    let rt = runtime();
    let echo = Echo::start(&rt);
    let gw = GatewayProcess::start(&policy(echo.addr, "5s", "true")).unwrap();
    let mut first = rt.block_on(connect(gw.addr, "/ws/a")).unwrap();
    let mut second = rt.block_on(connect(gw.addr, "/ws/b")).unwrap();
    series_until(&gw, OPEN, 2.0);
    rt.block_on(async {
        round_trip(&mut first, "one").await.unwrap();
        first.close(None).await.unwrap();
        assert!(ends(&mut first).await);
    });
    series_until(&gw, OPEN, 1.0);
    rt.block_on(async {
        round_trip(&mut second, "two").await.unwrap();
        // Gone without a close frame: the TCP connection just ends.
        drop(second);
    });
    series_until(&gw, OPEN, 0.0);
    let text = metrics(&gw);
    let upgraded = "gateway_websocket_upgrades_total{result=\"upgraded\",route=\"ws\"}";
    assert_eq!(series(&text, upgraded), Some(2.0), "{text}");
    let answered = "gateway_requests_total{route=\"ws\",status=\"101\"}";
    assert_eq!(series(&text, answered), Some(2.0), "{text}");
}

#[test]
fn an_upgrade_on_a_route_without_websocket_is_refused_and_never_reaches_the_backend() {
    let rt = runtime();
    let echo = Echo::start(&rt);
    let gw = GatewayProcess::start(&policy(echo.addr, "5s", "true")).unwrap();
    let refused = rt.block_on(connect(gw.addr, "/plain/ws"));
    match refused {
        Err(tungstenite::Error::Http(answer)) => {
            assert_eq!(answer.status(), 403);
            let body =
                String::from_utf8_lossy(answer.body().as_deref().unwrap_or_default()).into_owned();
            assert!(
                body.contains("route plain does not take upgrades to websocket"),
                "{body}"
            );
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    // Another protocol is refused even where WebSockets pass.
    let other = raw_request(
        gw.addr,
        "GET",
        "/ws/x",
        &[("Connection", "Upgrade"), ("Upgrade", "foo/1")],
        b"",
    )
    .unwrap();
    assert_eq!(other.status, 403, "{}", other.body);
    assert!(other.body.contains("upgrades to foo/1"), "{}", other.body);
    // An offer of h2c is dropped: the request is served as the plain request it also is.
    let h2c = raw_request(
        gw.addr,
        "GET",
        "/plain/h2c",
        &[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!((h2c.status, h2c.body.as_str()), (200, "ok"));
    assert_eq!(echo.upgrade_requests(), 0, "the backend saw no upgrade");
    // The same handshake where the route takes it reaches the backend.
    let mut ws = rt.block_on(connect(gw.addr, "/ws/ok")).unwrap();
    rt.block_on(round_trip(&mut ws, "through")).unwrap();
    assert_eq!(echo.upgrade_requests(), 1);
    let text = metrics(&gw);
    let refused = "gateway_websocket_upgrades_total{result=\"refused\",route=\"plain\"}";
    assert_eq!(series(&text, refused), Some(1.0), "{text}");
}

#[test]
fn a_graceful_stop_lets_an_open_connection_work_until_the_drain_deadline_then_cuts_it() {
    let rt = runtime();
    let echo = Echo::start(&rt);
    let mut gw = GatewayProcess::builder(&policy(echo.addr, "1s", "true"))
        .drain_timeout("3s")
        .start()
        .unwrap();
    let mut ws = rt.block_on(connect(gw.addr, "/ws/drain")).unwrap();
    rt.block_on(round_trip(&mut ws, "before")).unwrap();
    let addr = gw.addr;
    assert!(tests::process::signal(gw.pid(), libc::SIGTERM));
    eventually("the listener to close", |_| {
        Ok(
            StdTcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_err()
                .then_some(()),
        )
    })
    .expect("no new connection once stopping");
    // The open connection keeps working while the gateway drains; it carries messages
    // until the process is gone.
    let carried = rt.block_on(async {
        let mut carried = 0u32;
        for i in 0..1000 {
            if round_trip(&mut ws, &format!("draining {i}")).await.is_err() {
                break;
            }
            carried += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        carried
    });
    assert!(
        carried >= 5,
        "only {carried} messages passed while draining"
    );
    assert!(carried < 1000, "the connection outlived the drain deadline");
    let exit = gw.wait_exit().expect("exited at the deadline");
    assert_eq!(exit.code(), Some(0), "{}", gw.log());
    assert!(
        gw.log().contains("drain deadline passed"),
        "the open connection held the drain to its deadline:\n{}",
        gw.log()
    );
}
