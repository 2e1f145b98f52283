//! The bucket cache end to end: a real gateway in front of a real node, dashboard panels
//! asked through the gateway over windows that move with the clock, writes through the
//! gateway in between (new points at the moving end, late points into old buckets), and
//! every answer compared with the node's own answer to the same query. `X-Cache` shows
//! what the cache did; two tenants never share buckets.

// The helpers below set up test fixtures: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::path::Path;
use tests::gateway::GatewayProcess;
use tests::http::{self, Response};
use tests::{clock, TsdbProcess};

const S: i64 = 1_000_000_000;
const ACME: &str = "k-buckets-acme-0c41f7";
const GLOBEX: &str = "k-buckets-globex-9e2b13";

fn key_entry(key: &str, identity: &str, tenant: &str) -> String {
    let hash = tests::process::hash_api_key(key, false).unwrap();
    format!(
        "  - {hash}\n    identity: {identity}\n    tenant: {tenant}\n    roles: [reader, writer]\n"
    )
}

/// A node with database `d`, and a gateway whose query route caches by bucket (young
/// buckets and text answers dropped by writes through it, so answers stay exact).
fn start(dir: &Path) -> (TsdbProcess, GatewayProcess) {
    let node = TsdbProcess::builder()
        .arg("--create-database")
        .arg("d")
        .start()
        .unwrap();
    let keys = dir.join("api-keys.yaml");
    std::fs::write(
        &keys,
        format!(
            "keys:\n{}{}",
            key_entry(ACME, "acme-viewer", "acme"),
            key_entry(GLOBEX, "globex-viewer", "globex")
        ),
    )
    .unwrap();
    let policy = format!(
        "authenticators:
  keys:
    api_keys: {{ file: {keys} }}
caches:
  queries: {{ max_size: 64MiB, ttl: 5s, invalidate_on_write: true }}
pools:
  tsdb:
    backends:
      - {{ address: {addr} }}
    health_check: {{ path: /ping, interval: 10s, timeout: 1s }}
routes:
  - name: write
    match: {{ path_prefix: /write, methods: [POST] }}
    pool: tsdb
    auth: {{ any_of: [keys], roles: [writer] }}
  - name: query
    match: {{ path_prefix: /query }}
    pool: tsdb
    auth: {{ any_of: [keys], roles: [reader] }}
    cache: {{ use: queries, key: [method, path, query, body], buckets: {{ settle: 1m, ttl: 10m }} }}
",
        keys = keys.display(),
        addr = node.addr,
    );
    (node, GatewayProcess::start(&policy).unwrap())
}

fn token(key: &str) -> String {
    format!("Token {key}")
}

/// Writes `lines` (nanosecond times) through the gateway.
fn write(gw: &GatewayProcess, lines: &str) {
    let auth = token(ACME);
    let r = http::request(
        "POST",
        &format!("{}/write?db=d&precision=ns", gw.url()),
        &[("authorization", auth.as_str())],
        Some(lines.as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
}

/// Points of three hosts in two regions every 7 s from `from_s` to `to_s`.
fn points(from_s: i64, to_s: i64) -> String {
    let mut out = String::new();
    let mut t = from_s;
    while t < to_s {
        for (i, (host, region)) in [("a", "eu"), ("b", "eu"), ("c", "us")].iter().enumerate() {
            // Host c is quiet 3 minutes of every 10: empty buckets for the fills.
            if *host == "c" && t.rem_euclid(600) < 180 {
                continue;
            }
            let v = ((t * 31 + i as i64 * 17) % 97) as f64 / 4.0;
            out += &format!("cpu,host={host},region={region} v={v} {}\n", t * S);
        }
        t += 7;
    }
    out
}

fn query_path(q: &str, epoch: Option<&str>) -> String {
    let epoch = epoch.map(|e| format!("&epoch={e}")).unwrap_or_default();
    format!("/query?db=d{epoch}&q={}", http::urlencode(q))
}

fn via_gateway(gw: &GatewayProcess, key: &str, q: &str, epoch: Option<&str>) -> Response {
    let auth = token(key);
    let r = http::request(
        "GET",
        &format!("{}{}", gw.url(), query_path(q, epoch)),
        &[("authorization", auth.as_str())],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    r
}

fn via_node(node: &TsdbProcess, q: &str, epoch: Option<&str>) -> Value {
    let r = http::request(
        "GET",
        &format!("{}{}", node.url(), query_path(q, epoch)),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    json(&r.body)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn x_cache(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("-")
}

const PANELS: [&str; 7] = [
    "SELECT mean(v) FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(1m), host",
    "SELECT max(v), count(v) FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(30s) fill(none)",
    "SELECT percentile(v, 90) FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(2m), region fill(null)",
    "SELECT last(v) FROM cpu WHERE host =~ /a|c/ AND time >= {from} AND time <= {to} GROUP BY time(1m, 20s), *",
    "SELECT mean(v), count(v) FROM cpu WHERE host = 'c' AND time >= {from} AND time <= {to} GROUP BY time(1m) fill(previous)",
    "SELECT count(v), max(v) FROM cpu WHERE region = 'eu' AND time >= {from} AND time <= {to} GROUP BY time(1m), host fill(7)",
    // Not split (a bucket is interpolated from the next one with points): answered as the
    // node answers, cached by text.
    "SELECT mean(v) FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(1m) fill(linear)",
];
const SPLIT: usize = 6;

#[test]
fn dashboard_answers_through_the_bucket_cache_equal_the_nodes_as_the_window_moves_and_writes_land()
{
    let dir = tempfile::tempdir().unwrap();
    let (node, gw) = start(dir.path());
    let start_s = clock::wall_ns() as i64 / S;
    write(&gw, &points(start_s - 40 * 60, start_s + 1));
    let mut written_until = start_s + 1;
    let epochs = [Some("ms"), None, Some("s"), Some("ns")];
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for round in 0..6 {
        let now_s = clock::wall_ns() as i64 / S;
        if now_s + 1 > written_until {
            write(&gw, &points(written_until, now_s + 1));
            written_until = now_s + 1;
        }
        if round % 2 == 1 {
            // A late point into a bucket settled (and kept) long ago.
            let late = (now_s - 11 * 60 + 3) * S + 1;
            write(&gw, &format!("cpu,host=a,region=eu v=1000 {late}\n"));
        }
        for (i, template) in PANELS.iter().enumerate() {
            let to_ms = clock::wall_ns() as i64 / 1_000_000;
            let q = template
                .replace("{from}", &format!("{}ms", to_ms - 15 * 60 * 1000))
                .replace("{to}", &format!("{to_ms}ms"));
            let epoch = epochs[(round + i) % epochs.len()];
            let got = via_gateway(&gw, ACME, &q, epoch);
            let want = via_node(&node, &q, epoch);
            assert_eq!(json(&got.body), want, "round {round}, epoch {epoch:?}: {q}");
            let outcome = x_cache(&got).to_string();
            if i < SPLIT {
                let expected = if round == 0 { "MISS" } else { "PARTIAL" };
                assert_eq!(outcome, expected, "round {round}: {q}");
            } else {
                assert!(
                    outcome == "MISS" || outcome == "HIT",
                    "round {round}: {outcome}: {q}"
                );
            }
            *seen.entry(outcome).or_default() += 1;
        }
    }
    let status = http::request(
        "GET",
        &format!("{}/admin/status", gw.admin_url()),
        &[],
        None,
    )
    .unwrap();
    let caches = json(&status.body)["caches"].clone();
    let stats = &caches["queries"];
    assert!(stats["bucket_hits"].as_u64().unwrap() > 0, "{caches}");
    assert!(stats["buckets_fetched"].as_u64().unwrap() > 0, "{caches}");
    assert!(
        stats["bucket_invalidations"].as_u64().unwrap() > 0,
        "the late writes dropped kept buckets: {caches}"
    );
    assert_eq!(
        stats["partial"].as_u64(),
        seen.get("PARTIAL").map(|n| u64::from(*n))
    );
}

#[test]
fn a_settled_range_asked_again_is_a_hit_and_another_tenant_starts_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, gw) = start(dir.path());
    let now_s = clock::wall_ns() as i64 / S;
    write(&gw, &points(now_s - 30 * 60, now_s));
    // Whole minutes that ended more than the settle window ago.
    let to_s = (now_s / 60 - 5) * 60;
    let q = format!(
        "SELECT mean(v) FROM cpu WHERE time >= {}s AND time < {to_s}s GROUP BY time(1m), host",
        to_s - 20 * 60
    );
    let want = via_node(&node, &q, Some("ms"));
    let first = via_gateway(&gw, ACME, &q, Some("ms"));
    assert_eq!((x_cache(&first), json(&first.body)), ("MISS", want.clone()));
    let again = via_gateway(&gw, ACME, &q, Some("ms"));
    assert_eq!((x_cache(&again), json(&again.body)), ("HIT", want.clone()));
    // The other tenant asks the same: its own store, empty.
    let other = via_gateway(&gw, GLOBEX, &q, Some("ms"));
    assert_eq!((x_cache(&other), json(&other.body)), ("MISS", want.clone()));
    // A late write into one of the kept minutes: that minute is asked again, and seen.
    let late = (to_s - 10 * 60 + 30) * S;
    write(&gw, &format!("cpu,host=b,region=eu v=500 {late}\n"));
    let after = via_gateway(&gw, ACME, &q, Some("ms"));
    assert_eq!(x_cache(&after), "PARTIAL");
    assert_eq!(json(&after.body), via_node(&node, &q, Some("ms")));
    assert_ne!(json(&after.body), want, "the late point changed a mean");
}
