//! `--log-format json`: the gateway and the TSDB node write their process log as one JSON
//! object per line (level, message, fields), for log collectors; `text` stays the default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use tests::http::request;
use tests::process::gateway_bin;
use tests::wait::eventually;
use tests::{free_port, TsdbProcess};

/// Every non-empty line of `log` as a JSON object with a level and a message; at least one.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}"))
        })
        .collect();
    assert!(!lines.is_empty(), "no log lines");
    for l in &lines {
        assert!(l["level"].is_string(), "{l}");
        assert!(l["message"].is_string(), "{l}");
        assert!(l["timestamp"].is_string(), "{l}");
    }
    lines
}

/// Kills the child when dropped, so a failed assertion leaves no gateway behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_gateway_logs_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/p.yaml"),
        "pools:\n  up:\n    backends:\n      - { address: 127.0.0.1:1 }\nroutes:\n  - name: all\n    match: { path_prefix: / }\n    pool: up\n",
    )
    .unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - {{ name: public, address: 127.0.0.1:{port} }}\nadmin: {{ address: 127.0.0.1:{admin} }}\npolicies: policies/\nthreads: 1\n"
        ),
    )
    .unwrap();
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(gateway_bin().unwrap())
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let _gw = Killed(child);
    // A request to a backend that refuses connections: a warning with its request id.
    eventually("the gateway to answer", |last| {
        match request("GET", &format!("http://127.0.0.1:{port}/x"), &[], None) {
            Ok(r) => Ok(Some(r.status)),
            Err(e) => {
                *last = e.to_string();
                Ok(None)
            }
        }
    })
    .unwrap();
    let lines = eventually("the request's failure in the log", |last| {
        let text = std::fs::read_to_string(&log_path)?;
        *last = text.clone();
        Ok(text.contains("request failed").then_some(text))
    })
    .unwrap();
    let events = json_lines(&lines);
    let failed = events
        .iter()
        .find(|e| e["message"] == "request failed")
        .expect("the failed request's event");
    assert_eq!(
        failed["request_id"].as_str().map(str::len),
        Some(32),
        "{failed}"
    );
    assert_eq!(
        failed["trace_id"].as_str().map(str::len),
        Some(32),
        "{failed}"
    );
}

#[test]
fn the_tsdb_node_logs_json_lines_when_asked() {
    let mut node = TsdbProcess::builder()
        .arg("--log-format")
        .arg("json")
        .start()
        .unwrap();
    let log = node.log_tail(64 * 1024);
    node.stop();
    json_lines(&log);
}
