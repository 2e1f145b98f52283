//! Who may speak for the pool: `/internal/*` takes only peers that prove themselves, with
//! the pool's shared secret or (over TLS with `--peer-ca`) a client certificate; the
//! `X-Tsdb-Peer` header alone opens nothing. Also the node's HTTPS, its start-up refusals,
//! and its request ids.
//!
//! Every test starts its own real `tsdb-backend` processes on free loopback ports, with
//! `HOME` in a temp dir (see `tests::process`), and waits by bounded polling.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tests::http::{self, Method};
use tests::pki::{Ca, ClientId, Issued};
use tests::pool::{health, node_id, peer_report};
use tests::tls_client::TlsConn;
use tests::{converged, eventually, Pool, TsdbProcess};
use tsdb_backend::model::Precision;
use tsdb_backend::replication::shipper::encode_frames;
use tsdb_backend::storage::entry::Entry;
use tsdb_backend::storage::log_tail::Item;
use tsdb_backend::storage::version::{node_rank, Version};

const DB: &str = "auth";
const COUNT_BY_BATCH: &str = "SELECT count(v) FROM m GROUP BY b";
/// Points per batch.
const LINES: u64 = 10;
const CHALLENGE: &str = r#"Bearer realm="tsdb-peers""#;

// ---------------------------------------------------------------------------------------------
// helpers

/// Line protocol of batch `id`: measurement `m`, tag `b=<id>`, [`LINES`] points.
fn batch_body(id: u64) -> String {
    sized_batch_body(id, LINES)
}

/// Batch `id` with `lines` points (timestamps unique per batch below 10^6 lines).
fn sized_batch_body(id: u64, lines: u64) -> String {
    (0..lines)
        .map(|i| {
            format!(
                "m,b={id} v={i}i {}\n",
                1_600_000_000_000_000_000 + id * 1_000_000 + i
            )
        })
        .collect()
}

/// Points of the batch big enough that a peer cannot take its replication request into
/// its socket buffers unread (about 4 MB of line protocol).
const BIG: u64 = 100_000;

/// A replicate request body carrying batch `id` as entry 1 of origin `intruder/1`: what a
/// node would apply if it took the request.
fn forged_frames(id: u64) -> Vec<u8> {
    let version = Version {
        hlc: 1_600_000_000_000 << 16,
        node: node_rank("intruder"),
    };
    let payload = Entry::encode_lines(
        DB,
        Precision::Nanoseconds,
        0,
        version,
        batch_body(id).as_bytes(),
    )
    .expect("encoding an entry");
    encode_frames(&[Item {
        seq: 1,
        at_ns: 0,
        payload: Arc::new(payload),
    }])
}

const FORGED_URL: &str = "/internal/replicate?origin=intruder%2F1&after=0";

/// Writes `text` to `dir/name` with mode 0600 and returns the path.
fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// Batch id → points stored, from the body of [`COUNT_BY_BATCH`].
fn counts_by_batch(body: &str) -> BTreeMap<u64, u64> {
    let json: Value = serde_json::from_str(body).expect("count answer is JSON");
    json["results"][0]["series"]
        .as_array()
        .map(|series| {
            series
                .iter()
                .filter_map(|s| {
                    let id = s["tags"]["b"].as_str()?.parse().ok()?;
                    Some((id, s["values"][0][1].as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn counts_on(node: &TsdbProcess) -> BTreeMap<u64, u64> {
    let r = http::query_response(node.addr, Some(DB), COUNT_BY_BATCH, None, Method::Get)
        .expect("the node answers /query");
    assert_eq!(r.status, 200, "{}", r.body);
    counts_by_batch(&r.body)
}

/// `CREATE DATABASE` on `node` over plain HTTP.
fn create_db(node: &TsdbProcess) {
    let (status, json) = http::query(
        node.addr,
        None,
        &format!("CREATE DATABASE {DB}"),
        None,
        Method::Post,
    )
    .expect("the node answers /query");
    assert_eq!(status, 200, "{json}");
}

fn write_acked(node: &TsdbProcess, id: u64) {
    let (status, body) = http::write(node.addr, DB, &batch_body(id), None).expect("write");
    assert_eq!(status, 204, "batch {id} to {}: {body}", node.addr);
}

/// The value of the sample `name{labels}` in a node's `/metrics`.
fn metric(node: &TsdbProcess, sample: &str) -> Option<f64> {
    let text = http::request("GET", &format!("{}/metrics", node.url()), &[], None)
        .expect("metrics")
        .body;
    text.lines().find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits until `from`'s `/health` reports the link to `to` in `state`; returns the report.
fn link_becomes(pool: &Pool, from: usize, to: usize, state: &str) -> Value {
    let url = pool.node(to).url();
    eventually(
        &format!("{} to report {} as {state}", node_id(from), node_id(to)),
        |last| {
            let h = health(pool.node(from))?;
            let p = peer_report(&h, &url).cloned().unwrap_or(Value::Null);
            *last = p.to_string();
            Ok((p["state"] == state).then_some(p))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)))
}

/// One request over a fresh TLS connection trusting `ca`; the status and the body as text.
fn tls_request(
    node: &TsdbProcess,
    ca: &Path,
    client: Option<&Issued>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let cert = client.map(|c| (c.cert.as_path(), c.key.as_path()));
    let mut conn = TlsConn::connect(node.addr, ca, cert)?;
    let (status, _, body) = conn.request_with(method, path, headers, body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `CREATE DATABASE` on a node over TLS, by a client without a certificate.
fn tls_create_db(node: &TsdbProcess, ca: &Path) {
    let form = format!("q={}", http::urlencode(&format!("CREATE DATABASE {DB}")));
    let (status, body) = tls_request(
        node,
        ca,
        None,
        "POST",
        "/query",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .expect("query over TLS");
    assert_eq!(status, 200, "{body}");
}

/// Writes batch `id` to a node over TLS, by a client without a certificate.
fn tls_write_acked(node: &TsdbProcess, ca: &Path, id: u64) {
    let path = format!("/write?db={DB}");
    let (status, body) = tls_request(
        node,
        ca,
        None,
        "POST",
        &path,
        &[],
        batch_body(id).as_bytes(),
    )
    .expect("write over TLS");
    assert_eq!(status, 204, "batch {id}: {body}");
}

/// Batch id → points stored on a node, read over TLS.
fn tls_counts(node: &TsdbProcess, ca: &Path) -> anyhow::Result<BTreeMap<u64, u64>> {
    let query = format!("/query?db={DB}&q={}", http::urlencode(COUNT_BY_BATCH));
    let (status, body) = tls_request(node, ca, None, "GET", &query, &[], b"")?;
    anyhow::ensure!(status == 200, "{status} {body}");
    Ok(counts_by_batch(&body))
}

/// Without the terminal colours the node's log has when it is not sent to a terminal.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence ends with its first letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `/health` of a node over TLS (no client certificate).
fn tls_health(node: &TsdbProcess, ca: &Path) -> anyhow::Result<Value> {
    let (status, body) = tls_request(node, ca, None, "GET", "/health", &[], b"")?;
    anyhow::ensure!(status == 200, "/health answered {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// The pool's certificates: a CA, and one certificate for every node (`localhost` and
/// `127.0.0.1`, server and client usages).
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    node: Issued,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new(dir.path(), "pool-ca").expect("CA");
    let node = ca
        .issue_node(dir.path(), "node", &["localhost", "127.0.0.1"])
        .expect("node certificate");
    Pki { dir, ca, node }
}

fn tls_pool(pki: &Pki, size: usize) -> tests::pool::PoolBuilder {
    Pool::builder(size)
        .https(&pki.ca.cert)
        .arg("--tls-cert")
        .arg(&pki.node.cert)
        .arg("--tls-key")
        .arg(&pki.node.key)
}

// ---------------------------------------------------------------------------------------------
// the pool secret

#[test]
fn the_peer_header_alone_injects_nothing_and_only_the_pool_secret_applies_a_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(dir.path(), "secret", "  the-pool-secret\n");
    let node = TsdbProcess::builder()
        .arg("--peer-secret-file")
        .arg(&secret)
        .start()
        .expect("a node starts");
    create_db(&node);
    let url = format!("{}{FORGED_URL}", node.url());
    let body = forged_frames(7);

    for (what, auth) in [
        ("no secret", None),
        ("a wrong secret", Some("Bearer the-pool-secreT")),
        (
            "the secret in another scheme",
            Some("Basic the-pool-secret"),
        ),
    ] {
        let mut headers = vec![("X-Tsdb-Peer", "intruder")];
        headers.extend(auth.map(|a| ("Authorization", a)));
        let r = http::request("POST", &url, &headers, Some(&body))
            .unwrap_or_else(|e| panic!("{what}: {e:#}\n{}", node.log_tail(3000)));
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.header("www-authenticate"), Some(CHALLENGE), "{what}");
        assert!(
            r.json()["error"].as_str().is_some(),
            "{what}: an InfluxDB error body: {}",
            r.body
        );
        assert!(!r.body.contains("the-pool-secret"), "{what}: {}", r.body);
    }
    assert_eq!(
        counts_on(&node),
        BTreeMap::new(),
        "nothing was injected\n{}",
        node.log_tail(3000)
    );
    let missing = r#"tsdb_peer_auth_failures_total{reason="missing"}"#;
    let wrong = r#"tsdb_peer_auth_failures_total{reason="wrong"}"#;
    assert_eq!(metric(&node, missing), Some(2.0));
    assert_eq!(metric(&node, wrong), Some(1.0));
    let log = strip_ansi(&node.log_tail(20_000));
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused an internal request"))
        .collect();
    assert_eq!(refusals.len(), 3, "one warning per refusal:\n{log}");
    assert!(
        refusals
            .iter()
            .all(|l| l.contains("WARN") && l.contains("remote=127.0.0.1:")),
        "at warn, naming the remote address:\n{log}"
    );
    assert!(
        !log.contains("the-pool-secret"),
        "the log never shows the secret"
    );

    let r = http::request(
        "POST",
        &url,
        &[
            ("X-Tsdb-Peer", "intruder"),
            ("Authorization", "Bearer the-pool-secret"),
        ],
        Some(&body),
    )
    .expect("request");
    assert_eq!(r.status, 200, "the pool's secret: {}", r.body);
    assert_eq!(r.json()["applied"], 1);
    assert_eq!(counts_on(&node), BTreeMap::from([(7, LINES)]));
}

#[test]
fn nodes_with_different_secrets_do_not_replicate_until_the_secrets_agree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let alpha = secret_file(dir.path(), "alpha", "alpha-secret\n");
    let bravo = secret_file(dir.path(), "bravo", "bravo-secret\n");
    let mut pool = Pool::builder(2)
        .node_arg(0, "--peer-secret-file")
        .node_arg(0, &alpha)
        .node_arg(1, "--peer-secret-file")
        .node_arg(1, &bravo)
        .start()
        .expect("a pool of 2 starts");
    for node in pool.nodes() {
        create_db(node);
    }
    write_acked(pool.node(0), 0);
    write_acked(pool.node(1), 1);

    for (from, to) in [(0, 1), (1, 0)] {
        let report = link_becomes(&pool, from, to, "unauthorized");
        assert!(
            report["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("401")),
            "{report}"
        );
        assert!(
            report["lag_entries"].as_u64().is_some_and(|n| n > 0),
            "{report}"
        );
    }
    assert_eq!(counts_on(pool.node(0)), BTreeMap::from([(0, LINES)]));
    assert_eq!(counts_on(pool.node(1)), BTreeMap::from([(1, LINES)]));
    // A refused request is seen as refused also when its body is too large for the peer to
    // take in unread: node 0 now ships about 4 MB per attempt.
    let wrong = r#"tsdb_peer_auth_failures_total{reason="wrong"}"#;
    let before = metric(pool.node(1), wrong).unwrap_or(0.0);
    assert!(before >= 1.0, "node 1 counted node 0's refused requests");
    let (status, body) =
        http::write(pool.node(0).addr, DB, &sized_batch_body(2, BIG), None).expect("write");
    assert_eq!(status, 204, "{body}");
    tests::wait::eventually_within(
        "node 0 to try node 1 twice more",
        Duration::from_secs(30),
        &mut |last| {
            let now = metric(pool.node(1), wrong).unwrap_or(0.0);
            *last = format!("{now} refusals, {before} before the big batch");
            Ok((now >= before + 2.0).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)));
    let log = pool.node(0).log_tail(20_000);
    assert!(
        !log.contains("replication to peer failing"),
        "the link stayed unauthorized, never a transport failure:\n{log}"
    );
    let h = health(pool.node(0)).expect("health");
    assert_eq!(
        peer_report(&h, &pool.node(1).url()).map(|p| p["state"].clone()),
        Some(Value::from("unauthorized")),
        "{h}"
    );
    assert_eq!(
        log.matches("the pool's secrets differ").count(),
        1,
        "said once, not per retry:\n{log}"
    );

    // The operator gives node 1 the pool's secret and restarts it.
    std::fs::write(&bravo, "alpha-secret\n").expect("fixing the secret");
    pool.node_mut(1).restart().expect("node 1 restarts");
    let agreed = converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        counts_by_batch(&agreed[0]),
        BTreeMap::from([(0, LINES), (1, LINES), (2, BIG)]),
        "every acknowledged batch on both nodes"
    );
    for (from, to) in [(0, 1), (1, 0)] {
        link_becomes(&pool, from, to, "ok");
    }
}

#[test]
fn a_pool_started_without_a_secret_flag_shares_the_secret_created_in_home() {
    let pool = Pool::start(3).expect("a pool of 3 starts");
    create_db(pool.node(0));
    for (i, node) in pool.nodes().iter().enumerate() {
        eventually(&format!("{DB} on {}", node_id(i)), |last| {
            let r = http::query_response(node.addr, None, "SHOW DATABASES", None, Method::Get)?;
            *last = r.body.clone();
            Ok(r.body.contains(DB).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)));
    }
    for i in 0..3 {
        write_acked(pool.node(i), i as u64);
    }
    let agreed = converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        counts_by_batch(&agreed[0]),
        BTreeMap::from([(0, LINES), (1, LINES), (2, LINES)])
    );

    let path = pool.home().join(".tsdb-backend/peer-secret");
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("its directory")), 0o700);
    let secret = std::fs::read_to_string(&path).expect("the secret");
    assert!(
        secret.trim().len() == 64 && secret.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "32 random bytes as hex: {secret:?}"
    );
    let logs = pool.logs(20_000);
    assert_eq!(
        logs.matches("created the pool's peer secret").count(),
        1,
        "one node created it, the others read it:\n{logs}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS

#[test]
fn a_pool_over_tls_replicates_over_https_and_clients_need_no_certificate() {
    let pki = pki();
    let ca = pki.ca.cert.clone();
    let pool = tls_pool(&pki, 2)
        .arg("--peer-ca")
        .arg(&ca)
        .start()
        .expect("a TLS pool of 2 starts");
    let (n0, n1) = (pool.node(0), pool.node(1));
    assert!(n0.url().starts_with("https://"));

    // An ordinary client, without a certificate: DDL and a write on node 0.
    tls_create_db(n0, &ca);
    tls_write_acked(n0, &ca, 3);

    // It reaches node 1 over https.
    eventually("batch 3 on node 1, read over TLS", |last| {
        let counts = tls_counts(n1, &ca)?;
        *last = format!("{counts:?}");
        Ok((counts == BTreeMap::from([(3, LINES)])).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)));
    let h = tls_health(n0, &ca).expect("health over TLS");
    let link = peer_report(&h, &n1.url()).cloned().unwrap_or(Value::Null);
    assert_eq!(link["state"], "ok", "{h}");

    // HTTP/2 by ALPN, for clients that offer it.
    let client = tests::h2::tls_client(&ca, tests::h2::Protocol::Http2).expect("h2 client");
    let res = client
        .get(format!("https://localhost:{}/ping", n1.addr.port()))
        .send()
        .expect("ping over h2");
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
}

#[test]
fn a_client_certificate_from_the_peer_ca_stands_in_for_the_secret() {
    let pki = pki();
    let ca = pki.ca.cert.clone();
    let dir = pki.dir.path();
    // Different secrets: only the certificates can let the nodes replicate.
    let alpha = secret_file(dir, "alpha", "alpha-secret");
    let bravo = secret_file(dir, "bravo", "bravo-secret");
    let pool = tls_pool(&pki, 2)
        .arg("--peer-ca")
        .arg(&ca)
        .node_arg(0, "--peer-secret-file")
        .node_arg(0, &alpha)
        .node_arg(1, "--peer-secret-file")
        .node_arg(1, &bravo)
        .start()
        .expect("a TLS pool of 2 starts");
    for node in pool.nodes() {
        tls_create_db(node, &ca);
    }
    tls_write_acked(pool.node(0), &ca, 0);
    tls_write_acked(pool.node(1), &ca, 1);
    let both = BTreeMap::from([(0, LINES), (1, LINES)]);
    for (i, node) in pool.nodes().iter().enumerate() {
        eventually(&format!("both batches on {}", node_id(i)), |last| {
            let counts = tls_counts(node, &ca)?;
            *last = format!("{counts:?}");
            Ok((counts == both).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)));
    }
    for (from, to) in [(0, 1), (1, 0)] {
        let url = pool.node(to).url();
        eventually(
            &format!("{} to report {} ok", node_id(from), node_id(to)),
            |last| {
                let h = tls_health(pool.node(from), &ca)?;
                let p = peer_report(&h, &url).cloned().unwrap_or(Value::Null);
                *last = p.to_string();
                Ok((p["state"] == "ok").then_some(()))
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)));
    }

    // A request by hand: the certificate, no secret.
    let peer = pki
        .ca
        .issue_client(dir, "peer", ClientId::Cn("peer"))
        .expect("client certificate");
    let node = pool.node(0);
    let body = forged_frames(9);
    let header = [("X-Tsdb-Peer", "peer")];
    let (status, answer) =
        tls_request(node, &ca, None, "POST", FORGED_URL, &header, &body).expect("request");
    assert_eq!(status, 401, "without a certificate: {answer}");
    let (status, answer) =
        tls_request(node, &ca, Some(&peer), "POST", FORGED_URL, &header, &body).expect("request");
    assert_eq!(status, 200, "with the certificate: {answer}");
}

#[test]
fn a_peer_ca_that_did_not_issue_the_peers_certificates_fails_the_link() {
    let pki = pki();
    let other = Ca::new(pki.dir.path(), "other-ca").expect("another CA");
    let pool = tls_pool(&pki, 2)
        .node_arg(0, "--peer-ca")
        .node_arg(0, &other.cert)
        .node_arg(1, "--peer-ca")
        .node_arg(1, &pki.ca.cert)
        .start()
        .expect("a TLS pool of 2 starts");
    // Something for node 0 to ship.
    tls_create_db(pool.node(0), &pki.ca.cert);
    let url = pool.node(1).url();
    let report = eventually("node 0 to report its link to node 1 failing", |last| {
        let h = tls_health(pool.node(0), &pki.ca.cert)?;
        let p = peer_report(&h, &url).cloned().unwrap_or(Value::Null);
        *last = p.to_string();
        Ok((p["state"] == "retrying").then_some(p))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)));
    let error = report["last_error"].as_str().unwrap_or_default();
    assert!(
        error.to_ascii_lowercase().contains("certificate"),
        "the reason names the certificate: {report}"
    );
}

// ---------------------------------------------------------------------------------------------
// start-up refusals

#[test]
fn an_https_peer_without_a_peer_ca_stops_the_node_at_start() {
    let err = TsdbProcess::builder()
        .arg("--peers")
        .arg("https://127.0.0.1:9")
        .start()
        .expect_err("the node must not start");
    let text = format!("{err:#}");
    assert!(
        text.contains("https://127.0.0.1:9") && text.contains("--peer-ca"),
        "{text}"
    );
}

#[test]
fn an_empty_or_missing_secret_file_stops_the_node_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = secret_file(dir.path(), "empty", " \n");
    let missing = dir.path().join("missing");
    for (path, why) in [(&empty, "is empty"), (&missing, "No such file")] {
        let err = TsdbProcess::builder()
            .arg("--peer-secret-file")
            .arg(path)
            .start()
            .expect_err("the node must not start");
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("peer secret file {}", path.display())) && text.contains(why),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// request ids

#[test]
fn answers_carry_the_clients_request_id_or_a_new_one() {
    let node = TsdbProcess::start().expect("a node starts");
    let ping = |id: Option<&str>| {
        let headers: Vec<(&str, &str)> = id.map(|v| ("X-Request-Id", v)).into_iter().collect();
        let r =
            http::request("GET", &format!("{}/ping", node.url()), &headers, None).expect("ping");
        r.header("x-request-id").map(str::to_string)
    };
    assert_eq!(ping(Some("dash-7f3a")).as_deref(), Some("dash-7f3a"));
    let long = "a".repeat(129);
    for insane in [long.as_str(), "two words"] {
        let got = ping(Some(insane)).expect("an id");
        assert_ne!(got, insane);
        assert_eq!(got.len(), 32, "{got}");
    }
    let (a, b) = (ping(None).expect("an id"), ping(None).expect("an id"));
    assert_ne!(a, b);
    // Also on errors the node answers itself.
    let r = http::request(
        "GET",
        &format!("{}/query?db={DB}", node.url()),
        &[("X-Request-Id", "q-1")],
        None,
    )
    .expect("query");
    assert_eq!((r.status, r.header("x-request-id")), (400, Some("q-1")));
}
