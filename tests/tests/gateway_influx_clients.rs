//! Real InfluxDB 1.x clients, unchanged, write and query through the gateway in front of
//! the bundled TSDB nodes with an API key given as their own credentials: the PyPI
//! `influxdb` client (username and password, sent as Basic) and the `influx` CLI
//! (`-username` / `-password`). A wrong password is refused by the gateway.
//!
//! The tools come from `scripts/install-test-deps.sh`; without them a test is skipped
//! with a message locally and fails under CI.

// The helpers below set up test fixtures: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use tests::gateway::GatewayProcess;
use tests::{under_ci, Pool};

const KEY: &str = "k-influx-clients-5d2a9e0b77";

fn sha256_entry(key: &str) -> String {
    tests::process::hash_api_key(key, false).unwrap()
}

/// Two TSDB nodes behind the gateway; one caller's requests all go to one node (ring hash
/// on the identity), so a client reads what it just wrote without waiting for replication.
/// Every route takes the key file's key (identity `influx-user`, reader and writer).
fn start(dir: &Path) -> (Pool, GatewayProcess) {
    let pool = Pool::start(2).unwrap();
    let keys = dir.join("api-keys.yaml");
    std::fs::write(
        &keys,
        format!(
            "keys:\n  - {}\n    identity: influx-user\n    tenant: acme\n    roles: [reader, writer]\n",
            sha256_entry(KEY)
        ),
    )
    .unwrap();
    let backends: String = pool
        .nodes()
        .iter()
        .map(|n| format!("      - {{ address: {} }}\n", n.addr))
        .collect();
    let policy = format!(
        "authenticators:
  influx:
    api_keys: {{ file: {} }}
pools:
  tsdb:
    algorithm: ring_hash
    hash_key: identity
    backends:
{backends}    health_check: {{ path: /ping, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2 }}
routes:
  - name: write
    match: {{ path_prefix: /write, methods: [POST] }}
    pool: tsdb
    auth: {{ any_of: [influx], roles: [writer] }}
  - name: query
    match: {{ path_prefix: /query }}
    pool: tsdb
    auth: {{ any_of: [influx], roles: [reader] }}
  - name: ping
    match: {{ path: /ping }}
    pool: tsdb
    auth: {{ any_of: [influx] }}
",
        keys.display()
    );
    let gw = GatewayProcess::start(&policy).unwrap();
    (pool, gw)
}

/// Whether `probe` runs; without it: skip locally (false), fail under CI.
fn available(what: &str, probe: &mut Command) -> bool {
    let ok = probe.output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !under_ci(),
            "{what} is missing under CI: run scripts/install-test-deps.sh"
        );
        eprintln!("SKIPPED: {what} is not installed; run scripts/install-test-deps.sh to enable");
    }
    ok
}

#[test]
fn the_python_influxdb_client_writes_and_queries_with_the_key_as_its_password() {
    if !available(
        "the python `influxdb` client",
        Command::new("python3").args(["-c", "import influxdb"]),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pool, gw) = start(dir.path());
    let out = Command::new("python3")
        .arg(tests::workspace_root().join("tests/python/client_test.py"))
        .arg(gw.addr.port().to_string())
        .args(["grafana", KEY])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "client_test.py through the gateway failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\ngateway log:\n{}\nnodes:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        gw.log(),
        pool.logs(4000)
    );
}

/// `influx -host 127.0.0.1 -port P -username U -password PASSWORD <args>`.
fn influx(gw: &GatewayProcess, password: &str, args: &[&str]) -> Output {
    Command::new("influx")
        .args(["-host", "127.0.0.1", "-port"])
        .arg(gw.addr.port().to_string())
        .args(["-username", "telegraf", "-password", password])
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_influx_cli_writes_and_queries_with_the_key_as_its_password() {
    if !available("the `influx` CLI", Command::new("influx").arg("-version")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_pool, gw) = start(dir.path());
    let created = influx(&gw, KEY, &["-execute", "CREATE DATABASE clidb"]);
    assert!(created.status.success(), "{}\n{}", text(&created), gw.log());
    for line in [
        "INSERT cpu,host=a value=1.5 946684800000000000",
        "INSERT cpu,host=b value=2.5 946684810000000000",
    ] {
        let w = influx(&gw, KEY, &["-database", "clidb", "-execute", line]);
        assert!(w.status.success(), "{line}: {}\n{}", text(&w), gw.log());
    }
    let q = influx(
        &gw,
        KEY,
        &[
            "-database",
            "clidb",
            "-format",
            "json",
            "-precision",
            "s",
            "-execute",
            "SELECT value, host FROM cpu",
        ],
    );
    assert!(q.status.success(), "{}", text(&q));
    let json: serde_json::Value =
        serde_json::from_slice(&q.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&q)));
    let series = &json["results"][0]["series"][0];
    assert_eq!(series["name"], "cpu", "{json}");
    assert_eq!(
        series["values"],
        serde_json::json!([[946684800, 1.5, "a"], [946684810, 2.5, "b"]]),
        "{json}"
    );

    let refused = influx(&gw, "not-the-key", &["-execute", "SHOW DATABASES"]);
    let said = text(&refused);
    // The CLI prints the error of the gateway's JSON body.
    assert!(!refused.status.success(), "{said}");
    assert!(
        String::from_utf8_lossy(&refused.stdout)
            .contains("ERR: invalid credentials: unknown api key"),
        "{said}"
    );
    assert!(!said.contains("clidb"), "{said}");
}
