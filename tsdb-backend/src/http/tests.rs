//! The router driven in memory: request ids, panics, and who may call `/internal/*`.

use super::*;
use crate::clock::ManualTime;
use crate::listener::Connection;
use crate::metrics::Metrics;
use crate::storage::EngineConfig;
use axum::extract::ConnectInfo;
use axum::http::Request;
use tower::ServiceExt;

const SECRET: &str = "pool-secret-for-tests";

/// A node on a temp dir (kept alive by the returned guard) and its router, with a `/boom`
/// route whose handler panics: the shipped binary has no such route.
fn node() -> (Router, Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        data_dir: dir.path().to_path_buf(),
        fsync: crate::storage::FsyncMode::Never,
        flush: crate::storage::FlushPolicy {
            max_wal_bytes: 1 << 30,
            quiet: std::time::Duration::from_secs(3600),
            ..crate::storage::FlushPolicy::default()
        },
        column_cache_bytes: 16 << 20,
        default_retention_ns: 0,
        default_shard_duration_ns: 0,
        node_id: "n0".into(),
        replication_backlog_bytes: None,
    };
    let metrics = Arc::new(Metrics::new().unwrap());
    let engine = Engine::open(config, Arc::new(ManualTime::new(1)), metrics).unwrap();
    let state = Arc::new(AppState {
        engine: Arc::new(engine),
        max_body_bytes: 1 << 20,
        replication: None,
        peer_secret: PeerSecret::parse(SECRET.as_bytes(), std::path::Path::new("s")).unwrap(),
        observer: super::observe::Observer::default(),
    });
    let boom: Router<Arc<AppState>> = Router::new().route(
        "/boom",
        get(|| async {
            let bug: Option<&str> = None;
            bug.map_or_else(|| panic!("a bug in a handler"), str::to_string)
        }),
    );
    (router_with(state.clone(), boom), state, dir)
}

async fn call(router: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let res = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get_req(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

fn replicate_req(headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::post("/internal/replicate?origin=x%2F1&after=0");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

fn counter(state: &AppState, reason: &str) -> u64 {
    state
        .engine
        .metrics()
        .peer_auth_failures
        .with_label_values(&[reason])
        .get()
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_an_insane_one_replaced() {
    let (router, _state, _dir) = node();
    let (status, headers, _) =
        call(&router, get_req("/ping", &[("x-request-id", "abc-123")])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(headers["x-request-id"], "abc-123");

    let long = "x".repeat(request_id::MAX_LEN + 1);
    let (_, headers, _) = call(&router, get_req("/ping", &[("x-request-id", &long)])).await;
    let given = headers["x-request-id"].to_str().unwrap();
    assert_ne!(given, long);
    assert_eq!(given.len(), 32, "a generated id: {given}");

    let (_, a, _) = call(&router, get_req("/no/such/path", &[])).await;
    let (_, b, _) = call(&router, get_req("/no/such/path", &[])).await;
    assert_ne!(
        a["x-request-id"], b["x-request-id"],
        "every request its own id"
    );
}

/// Held by the tests whose handlers panic: the panic hook is the process's, and a panic
/// of one on another thread would land in the other's log capture.
static PANICKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_panicking_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    PANICKING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn a_panicking_handler_answers_500_naming_the_request_and_is_counted() {
    let _alone = one_panicking_test_at_a_time();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(a_panicking_handler_answers_500());
}

async fn a_panicking_handler_answers_500() {
    let (router, state, _dir) = node();
    let (status, headers, body) =
        call(&router, get_req("/boom", &[("x-request-id", "req-42")])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(headers["x-request-id"], "req-42");
    assert_eq!(headers["x-tsdb-node"], "n0", "the node's headers too");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("req-42"), "{body}");
    assert!(
        !error.contains("a bug in a handler"),
        "the panic text stays in the log"
    );
    assert_eq!(state.engine.metrics().http_panics.get(), 1);

    // The router, like the connection, lives on.
    let (status, _, _) = call(&router, get_req("/ping", &[])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    call(&router, get_req("/boom", &[])).await;
    assert_eq!(state.engine.metrics().http_panics.get(), 2);
}

#[tokio::test]
async fn internal_requests_without_the_peer_header_are_not_found() {
    let (router, state, _dir) = node();
    let (status, _, body) = call(&router, replicate_req(&[])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "404 page not found\n");
    assert_eq!(
        counter(&state, "missing"),
        0,
        "not an authentication failure"
    );
}

#[tokio::test]
async fn the_peer_header_alone_is_refused_with_a_bearer_challenge() {
    let (router, state, _dir) = node();
    let (status, headers, body) = call(&router, replicate_req(&[("x-tsdb-peer", "n1")])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        r#"Bearer realm="tsdb-peers""#
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["error"].as_str().is_some(), "{body}");
    assert!(headers.contains_key("x-influxdb-error"));
    assert_eq!(
        headers[header::CONNECTION],
        "close",
        "the unread body ends the connection"
    );
    assert_eq!(counter(&state, "missing"), 1);
    assert_eq!(counter(&state, "wrong"), 0);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_the_right_one_admitted() {
    let (router, state, _dir) = node();
    for path in ["/internal/state?part=head", "/internal/blocks"] {
        let (status, _, _) = call(
            &router,
            get_req(
                path,
                &[("x-tsdb-peer", "n1"), ("authorization", "Bearer guess")],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let wrong = format!("Bearer {SECRET}x");
    let (status, _, body) = call(
        &router,
        replicate_req(&[("x-tsdb-peer", "n1"), ("authorization", &wrong)]),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.contains(SECRET), "the answer does not echo secrets");
    assert_eq!(counter(&state, "wrong"), 3);

    let right = format!("Bearer {SECRET}");
    let (status, _, body) = call(
        &router,
        replicate_req(&[("x-tsdb-peer", "n1"), ("authorization", &right)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, r#"{"applied":0}"#);
}

#[tokio::test]
async fn a_verified_peer_certificate_stands_in_for_the_secret() {
    let (router, state, _dir) = node();
    let with_conn = |peer_certificate: bool| {
        let mut req = replicate_req(&[("x-tsdb-peer", "n1")]);
        req.extensions_mut().insert(ConnectInfo(Connection {
            remote: ([127, 0, 0, 1], 40000).into(),
            peer_certificate,
        }));
        req
    };
    let (status, _, body) = call(&router, with_conn(true)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = call(&router, with_conn(false)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(counter(&state, "missing"), 1);
}

/// A log sink for one test's subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_panic_during_a_request_is_logged_once_at_error_with_its_request_id() {
    let _alone = one_panicking_test_at_a_time();
    panics::install_hook();
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let (router, _state, _dir) = node();
    // One thread: the subscriber is this thread's default, and the handler runs here.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let status = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            call(&router, get_req("/boom", &[("x-request-id", "req-77")]))
                .await
                .0
        })
    });
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("panicked")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("ERROR"), "{text}");
    assert!(lines[0].contains("request_id=req-77"), "{text}");
    assert!(lines[0].contains("a bug in a handler"), "{text}");
    assert!(
        lines[0].contains("http/tests.rs"),
        "where it happened: {text}"
    );
}

/// Issue 16: a key ending in a backslash panicked the parser and the client got an empty
/// reply; now the write of the good lines goes on and the 400 names the bad one.
#[test]
fn a_write_with_a_key_ending_in_a_backslash_is_a_partial_write_naming_the_line() {
    let body = b"cpu v=1 1\ncpu v=2 2\nc,p\\\\";
    let parsed = lineproto::parse_lines(body, Precision::Nanoseconds, 0);
    assert_eq!(parsed.points.len(), 2);
    let report = WriteReport {
        written: parsed.points.len(),
        rejected: Vec::new(),
    };
    let WriteOutcome::Partial { reasons, dropped } = outcome(parsed.errors, report) else {
        panic!("not a partial write");
    };
    assert_eq!(
        format!("partial write: {} dropped={dropped}", reasons.join("\n")),
        "partial write: unable to parse 'c,p\\\\': missing tag value dropped=1"
    );
}
