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
fn the_tsdb_node_logs_json_lines_when_asked_with_the_request_in_its_events() {
    let mut node = TsdbProcess::builder()
        .arg("--log-format")
        .arg("json")
        .start()
        .unwrap();
    // An internal request without the pool's secret is refused and logged at warn, while
    // the request is handled: its event carries the request's id and trace id.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = tests::http::request(
        "POST",
        &format!("{}/internal/replicate", node.url()),
        &[
            ("x-request-id", "probe-7f3a"),
            ("x-tsdb-peer", "n9"),
            ("traceparent", &format!("00-{trace}-b7ad6b7169203331-01")),
        ],
        Some(b""),
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    let line = eventually("the refusal's event in the log", |last| {
        let log = node.log_tail(64 * 1024);
        *last = log.clone();
        Ok(json_lines(&log)
            .into_iter()
            .find(|l| l.to_string().contains("probe-7f3a")))
    })
    .unwrap();
    node.stop();
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["span"]["request_id"], "probe-7f3a", "{line}");
    assert_eq!(line["span"]["trace_id"], trace, "{line}");
}
