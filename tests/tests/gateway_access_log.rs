//! The access log end to end: with `access_log: { format: json, to: <file> }` every request
//! gets one JSON line once its answer ends, with its fields, for a 200, a 401, a 429, a
//! cache hit, a retried 503 and a client that hangs up; the credentials a client sent (an
//! API key as `p=`, a token) never appear in it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::time::Duration;
use tests::gateway::{GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::request;
use tests::upstream::{Behaviour, FakeUpstream};
use tests::wait::eventually;

const KEY: &str = "access-log-key-5f1c0e";
const QUERY: &str = "/query?db=d&q=SELECT+mean%28v%29+FROM+m";

fn policy(ok: &FakeUpstream, failing: &FakeUpstream, slow: &FakeUpstream, keys: &str) -> String {
    let hc = QUIET_HEALTH_CHECK;
    format!(
        "authenticators:
  keys:
    api_keys: {{ file: {keys} }}
caches:
  queries: {{ max_size: 16MiB, ttl: 60s }}
rate_limits:
  one: {{ key: [client_ip], rate: 1/h, burst: 1 }}
pools:
  up:
    backends:
      - {{ address: {ok} }}
    {hc}
  flaky:
    algorithm: round_robin
    backends:
      - {{ address: {failing} }}
      - {{ address: {ok} }}
    {hc}
  slow:
    backends:
      - {{ address: {slow} }}
    {hc}
routes:
  - name: keyed
    match: {{ path_prefix: /keyed }}
    pool: up
    auth: {{ any_of: [keys] }}
  - name: limited
    match: {{ path_prefix: /limited }}
    pool: up
    rate_limit: [one]
  - name: query
    match: {{ path_prefix: /query }}
    pool: up
    cache: {{ use: queries, key: [method, path, query] }}
  - name: flaky
    match: {{ path_prefix: /flaky }}
    pool: flaky
    retries: {{ attempts: 2, on: [503] }}
  - name: slow
    match: {{ path_prefix: /slow }}
    pool: slow
  - name: open
    match: {{ path_prefix: / }}
    pool: up
",
        ok = ok.addr,
        failing = failing.addr,
        slow = slow.addr,
    )
}

#[test]
fn every_request_gets_one_json_line_with_its_fields_and_no_credentials() {
    let ok = FakeUpstream::new().start().unwrap();
    let failing = FakeUpstream::new()
        .behaviour(Behaviour::Status(503))
        .start()
        .unwrap();
    let slow = FakeUpstream::new()
        .behaviour(Behaviour::Slow(Duration::from_secs(30)))
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    let digest: String = Sha256::digest(KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &keys,
        format!("keys:\n  - {{ sha256: {digest}, identity: telegraf, tenant: t1 }}\n"),
    )
    .unwrap();
    let gw = GatewayProcess::builder(&policy(&ok, &failing, &slow, &keys.display().to_string()))
        .bootstrap_line("access_log: { format: json, to: access.log }")
        .start()
        .unwrap();
    let get = |path: &str, headers: &[(&str, &str)]| {
        request("GET", &format!("{}{path}", gw.url()), headers, None).unwrap()
    };
    let mut sent = Vec::new();
    let mut expect = |r: tests::http::Response, status: u16, what: &str| {
        assert_eq!(r.status, status, "{what}: {}", r.body);
        sent.push((
            r.header("x-request-id").unwrap().to_string(),
            status,
            what.to_string(),
        ));
    };
    expect(get("/hello?x=1", &[]), 200, "ok");
    expect(
        get("/keyed/w", &[("authorization", "Token wrong-secret-token")]),
        401,
        "refused",
    );
    expect(
        get(&format!("/keyed/q?db=d&u=telegraf&p={KEY}"), &[]),
        200,
        "keyed",
    );
    expect(get("/limited", &[]), 200, "first");
    expect(get("/limited", &[]), 429, "limited");
    expect(get(QUERY, &[]), 200, "miss");
    expect(get(QUERY, &[]), 200, "hit");
    expect(get("/flaky/a", &[]), 200, "flaky a");
    expect(get("/flaky/b", &[]), 200, "flaky b");
    // A client that hangs up before its answer.
    {
        let mut s = std::net::TcpStream::connect(gw.addr).unwrap();
        s.write_all(b"GET /slow/away HTTP/1.1\r\nHost: gw\r\nX-Request-Id: hung-up-1\r\n\r\n")
            .unwrap();
        eventually("the slow backend to get the request", |_| {
            Ok((slow.requests_for("/slow/away") == 1).then_some(()))
        })
        .unwrap();
    }

    let path = gw.dir().join("access.log");
    let lines: Vec<serde_json::Value> = eventually("every request's line", |last| {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        *last = text.clone();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        Ok((lines.len() > sent.len()).then_some(lines))
    })
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(KEY), "the key is in the log:\n{text}");
    assert!(!text.contains("wrong-secret-token"), "{text}");
    let line = |id: &str| {
        let mine: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["request_id"] == id).collect();
        assert_eq!(mine.len(), 1, "{id}: {mine:?}");
        mine[0].clone()
    };
    for (id, status, what) in &sent {
        let l = line(id);
        assert_eq!(l["status"], *status, "{what}: {l}");
        for field in [
            "time",
            "trace_id",
            "client",
            "method",
            "host",
            "path",
            "route",
            "duration_ms",
            "bytes_in",
            "bytes_out",
            "tries",
        ] {
            assert!(!l[field].is_null(), "{what}: no {field} in {l}");
        }
        assert_eq!(l["trace_id"].as_str().map(str::len), Some(32), "{l}");
        assert!(
            l["time"].as_str().unwrap().ends_with('Z'),
            "UTC, RFC 3339: {l}"
        );
    }
    let by = |what: &str| line(&sent.iter().find(|s| s.2 == what).unwrap().0);
    let keyed = by("keyed");
    assert_eq!(keyed["identity"], "telegraf");
    assert_eq!(keyed["tenant"], "t1");
    // The key was taken out of the target before the backend (and the log) saw it.
    assert_eq!(keyed["path"], "/keyed/q?db=d");
    assert_eq!(by("ok")["upstream"], ok.addr.to_string());
    assert_eq!(by("ok")["pool"], "up");
    assert_eq!(by("limited")["rate_limit"], "limited");
    assert_eq!(by("miss")["cache"], "MISS");
    assert_eq!(by("hit")["cache"], "HIT");
    let retried: Vec<u64> = ["flaky a", "flaky b"]
        .iter()
        .map(|w| by(w)["tries"].as_u64().unwrap())
        .collect();
    assert!(
        retried.contains(&2),
        "one of the two met the 503 and was retried: {retried:?}"
    );
    let hung = line("hung-up-1");
    assert_eq!(hung["status"], 499, "{hung}");
    assert_eq!(hung["route"], "slow");
}
