//! The gateway is not tied to the bundled TSDB nodes: in front of two Debian
//! `victoria-metrics` instances (line protocol on `/write`, PromQL on `/api/v1/query`), with
//! API keys, a rate limit charged by lines and failover between the two.
//!
//! - callers without a key, or with a key the file does not list, get 401 and reach neither
//!   instance; a listed key given as `Authorization: Token` or as Basic credentials writes;
//! - the limit counts lines: a caller's second large batch runs into debt, the third is 429;
//! - one instance killed: every write that follows is acknowledged by the other, and reads
//!   through the gateway find them all.
//!
//! Skips, saying why, where `victoria-metrics` is not installed and cannot be
//! (`scripts/install-test-deps.sh` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tests::gateway::GatewayProcess;
use tests::http::{request, urlencode, Response};
use tests::process::victoria_metrics_bin;
use tests::wait::eventually_within;
use tests::VictoriaMetricsProcess;

const WRITER_KEY: &str = "vm-writer-key-0f3a9c";
const FAILOVER_KEY: &str = "vm-failover-key-77d1e2";

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Two keys, each its own caller for the per-identity limit.
fn keys_file() -> String {
    format!(
        "keys:\n  - {{ sha256: {}, identity: telegraf, tenant: t1, roles: [writer] }}\n  - {{ sha256: {}, identity: failover, tenant: t1, roles: [writer] }}\n",
        sha256_hex(WRITER_KEY),
        sha256_hex(FAILOVER_KEY)
    )
}

/// Writes charged by lines (150 at once, 1 a second back) and PromQL reads, both behind the
/// API keys, both failing over on a refused connection.
fn policy(
    keys: &std::path::Path,
    a: &VictoriaMetricsProcess,
    b: &VictoriaMetricsProcess,
) -> String {
    format!(
        "authenticators:
  keys:
    api_keys: {{ file: {keys} }}
rate_limits:
  lines: {{ key: [identity], rate: 60/m, burst: 150 }}
pools:
  vm:
    backends:
      - {{ address: {a} }}
      - {{ address: {b} }}
    health_check: {{ path: /ping, interval: 250ms, timeout: 250ms, healthy_threshold: 1, unhealthy_threshold: 2 }}
routes:
  - name: write
    match: {{ path: /write, methods: [POST] }}
    pool: vm
    auth: {{ any_of: [keys] }}
    rate_limit: [lines]
    rate_limit_cost: lines
    retries: {{ attempts: 2, on: [connect], backoff: {{ base: 1ms, max: 5ms }} }}
  - name: promql
    match: {{ path_prefix: /api/v1/ }}
    pool: vm
    auth: {{ any_of: [keys] }}
    retries: {{ attempts: 2, on: [connect], backoff: {{ base: 1ms, max: 5ms }} }}
",
        keys = keys.display(),
        a = a.addr,
        b = b.addr,
    )
}

/// `n` lines of measurement `m`, each its own series (`i` from `first`).
fn lines(m: &str, first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("{m},i={i} v={i}i\n"))
        .collect()
}

fn write(gw: &GatewayProcess, auth: Option<&str>, body: &str) -> Response {
    let mut headers = vec![("content-type", "text/plain")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    request(
        "POST",
        &format!("{}/write?db=e2e", gw.url()),
        &headers,
        Some(body.as_bytes()),
    )
    .unwrap()
}

fn token(key: &str) -> String {
    format!("Token {key}")
}

fn basic(user: &str, key: &str) -> String {
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{key}"));
    format!("Basic {creds}")
}

/// PromQL's `count(<metric>)` at `base` (an instance, or the gateway with a key).
fn count(base: &str, auth: Option<&str>, metric: &str) -> anyhow::Result<u64> {
    let url = format!(
        "{base}/api/v1/query?query={}",
        urlencode(&format!("count({metric})"))
    );
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let r = request("GET", &url, &headers, None)?;
    anyhow::ensure!(r.status == 200, "{url}: {} {}", r.status, r.body);
    Ok(r.json()["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0))
}

/// Polls until `counts()` gives `want` (VictoriaMetrics shows a write once its in-memory
/// buffer is flushed, about a second later).
fn wait_for(what: &str, want: u64, counts: &mut dyn FnMut() -> anyhow::Result<u64>) {
    eventually_within(what, Duration::from_secs(30), &mut |last| {
        let got = counts()?;
        *last = format!("{got}");
        Ok((got == want).then_some(()))
    })
    .unwrap();
}

#[test]
fn api_keys_a_line_limit_and_failover_in_front_of_victoria_metrics() {
    if victoria_metrics_bin().is_none() {
        eprintln!(
            "skipped: victoria-metrics is not installed (scripts/install-test-deps.sh installs it)"
        );
        return;
    }
    let mut a = VictoriaMetricsProcess::start().unwrap();
    let b = VictoriaMetricsProcess::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    std::fs::write(&keys, keys_file()).unwrap();
    let gw = GatewayProcess::start(&policy(&keys, &a, &b)).unwrap();

    // No key, an unlisted key: refused at the gateway.
    let none = write(&gw, None, &lines("refused", 0, 1));
    assert_eq!(none.status, 401, "{}", none.body);
    let wrong = write(
        &gw,
        Some(&token("not-a-listed-key")),
        &lines("refused", 0, 1),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);

    // A listed key, as an InfluxDB 2.x client and as a 1.x client sends it. The second batch
    // is admitted at its head and leaves the caller 50 lines in debt; the third is refused.
    let first = write(&gw, Some(&token(WRITER_KEY)), &lines("m", 0, 100));
    assert_eq!(first.status, 204, "{}", first.body);
    let second = write(
        &gw,
        Some(&basic("telegraf", WRITER_KEY)),
        &lines("m", 100, 100),
    );
    assert_eq!(second.status, 204, "{}", second.body);
    let third = write(&gw, Some(&token(WRITER_KEY)), &lines("m", 200, 10));
    assert_eq!(third.status, 429, "{}", third.body);
    assert!(third.body.contains("lines"), "{}", third.body);
    // The two instances do not replicate: the batches are shared between them.
    wait_for("200 lines of m over both instances", 200, &mut || {
        Ok(count(&a.url(), None, "m_v")? + count(&b.url(), None, "m_v")?)
    });
    for vm in [&a, &b] {
        assert_eq!(
            count(&vm.url(), None, "refused_v").unwrap(),
            0,
            "a refused write reached {}",
            vm.url()
        );
    }
    // Reads through the gateway need a key too.
    let read = count(&gw.url(), Some(&token(WRITER_KEY)), "m_v").unwrap();
    assert!([100, 200].contains(&read), "{read}");
    let unkeyed = request(
        "GET",
        &format!("{}/api/v1/query?query=m_v", gw.url()),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(unkeyed.status, 401, "{}", unkeyed.body);

    // One instance killed: every write is acknowledged by the other, and reads find them.
    a.kill9();
    let auth = token(FAILOVER_KEY);
    for batch in 0..10 {
        let r = write(&gw, Some(&auth), &lines("after_kill", batch * 10, 10));
        assert_eq!(r.status, 204, "batch {batch}: {}", r.body);
    }
    // Reads fail over too: only the live instance answers, and it has them all.
    let auth = token(WRITER_KEY);
    wait_for("after_kill_v through the gateway", 100, &mut || {
        count(&gw.url(), Some(&auth), "after_kill_v")
    });
    assert_eq!(count(&b.url(), None, "after_kill_v").unwrap(), 100);
}
