//! A rolling restart under load, end to end, the way an operator runs it: `scripts/start.sh`
//! starts the example stack (the shipped `config/gateway.yaml` and `policies/tsdb.yaml`,
//! their ports moved to free ones, the binaries the tests use) in a temp dir, and
//! `loadtest/scenarios/rolling-restart.yaml` sends writes and queries through the gateway
//! while its event runs `scripts/rolling-restart.sh`. Not one request may fail, the restart
//! must finish (every node has a new PID) while the load still runs, and every acknowledged
//! write must be on every node afterwards (counted on each node directly).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tests::http::{self, Method};
use tests::process::{gateway_bin, loadtest_bin, signal, tsdb_backend_bin};
use tests::wait::eventually_within;
use tests::{free_port, workspace_root, TempDir};

/// The example stack of `scripts/start.sh`, run on free ports in a temp dir.
struct Stack {
    start_sh: Child,
    dir: TempDir,
    http_port: u16,
    admin_port: u16,
    node_ports: [u16; 3],
}

/// Copies `from` (relative to the workspace) to `to`, each `(old, new)` replaced; every old
/// text must be there, so a change to the shipped file shows here.
fn copy_with(from: &str, to: &Path, replace: &[(String, String)]) {
    let mut text = std::fs::read_to_string(workspace_root().join(from)).unwrap();
    for (old, new) in replace {
        assert!(text.contains(old.as_str()), "{from} no longer holds {old}");
        text = text.replace(old.as_str(), new);
    }
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::write(to, text).unwrap();
}

impl Stack {
    fn start() -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("rolling-restart-")
            .tempdir()
            .unwrap();
        let [http_port, https_port, admin_port] = [(); 3].map(|_| free_port().unwrap());
        let node_ports = [(); 3].map(|_| free_port().unwrap());
        let ports = |old: [u16; 3], new: [u16; 3]| -> Vec<(String, String)> {
            old.iter()
                .zip(new)
                .map(|(o, n)| (format!("127.0.0.1:{o}"), format!("127.0.0.1:{n}")))
                .collect()
        };
        copy_with(
            "config/gateway.yaml",
            &dir.path().join("config/gateway.yaml"),
            &ports([8080, 8443, 9090], [http_port, https_port, admin_port]),
        );
        copy_with(
            "policies/tsdb.yaml",
            &dir.path().join("policies/tsdb.yaml"),
            &ports([8086, 8087, 8088], node_ports),
        );
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let bin_dir = tsdb_backend_bin().unwrap().parent().unwrap().to_path_buf();
        assert_eq!(
            gateway_bin().unwrap().parent().unwrap(),
            bin_dir,
            "the gateway and the node are built in one place"
        );
        let log = std::fs::File::create(dir.path().join("start.out")).unwrap();
        let start_sh = Command::new("bash")
            .arg(workspace_root().join("scripts/start.sh"))
            .env("HOME", dir.path().join("home"))
            .env("DATA", dir.path().join("data"))
            .env("CONFIG", dir.path().join("config/gateway.yaml"))
            .env("NODE_PORTS", node_ports.map(|p| p.to_string()).join(" "))
            .env(
                "GATEWAY_PORTS",
                format!("{http_port} {https_port} {admin_port}"),
            )
            .env("BIN_DIR", &bin_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("running scripts/start.sh");
        let mut stack = Stack {
            start_sh,
            dir,
            http_port,
            admin_port,
            node_ports,
        };
        let admin = format!("http://127.0.0.1:{}/readyz", stack.admin_port);
        let pool_env = stack.data().join("pool.env");
        let ready = eventually_within(
            "scripts/start.sh to have the stack ready",
            Duration::from_secs(60),
            &mut |last| {
                if let Some(status) = stack.start_sh.try_wait()? {
                    anyhow::bail!("scripts/start.sh exited ({status})");
                }
                match http::request("GET", &admin, &[], None) {
                    Ok(r) if r.status == 200 && pool_env.is_file() => Ok(Some(())),
                    Ok(r) => {
                        *last = format!("readyz {}", r.status);
                        Ok(None)
                    }
                    Err(e) => {
                        *last = format!("{e:#}");
                        Ok(None)
                    }
                }
            },
        );
        if let Err(e) = ready {
            panic!("{e:#}\n{}", stack.output());
        }
        stack
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What start.sh printed, and the tail of every log in the data dir.
    fn output(&self) -> String {
        let mut out =
            std::fs::read_to_string(self.dir.path().join("start.out")).unwrap_or_default();
        for log in ["n0.log", "n1.log", "n2.log", "gateway.log"] {
            out += &format!(
                "\n----- {log} -----\n{}",
                tests::process::log_tail(&self.data().join(log), 3000)
            );
        }
        out
    }

    /// The PID node `i` runs as now, as start.sh and rolling-restart.sh record it.
    fn node_pid(&self, i: usize) -> u32 {
        let text = std::fs::read_to_string(self.data().join(format!("n{i}.pid"))).unwrap();
        text.trim().parse().unwrap()
    }

    /// `SELECT count(v) FROM rolling` on node `i`, asked directly.
    fn count_on(&self, i: usize) -> anyhow::Result<u64> {
        let (status, json) = http::query(
            format!("127.0.0.1:{}", self.node_ports[i]),
            Some("telemetry"),
            "SELECT count(v) FROM rolling",
            None,
            Method::Get,
        )?;
        anyhow::ensure!(status == 200, "answered {status}: {json}");
        json["results"][0]["series"][0]["values"][0][1]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no count in {json}"))
    }
}

impl Drop for Stack {
    /// SIGTERM to start.sh, which stops what it started (nodes by their PID files); then
    /// SIGKILL to whatever of this stack still runs (a process whose command line names
    /// this temp dir, by the PIDs recorded), should start.sh not have finished the job.
    fn drop(&mut self) {
        signal(self.start_sh.id(), libc::SIGTERM);
        let child = &mut self.start_sh;
        let stopped = eventually_within("start.sh to stop", Duration::from_secs(30), &mut |_| {
            Ok(child.try_wait()?.map(|_| ()))
        });
        if stopped.is_err() {
            let _ = self.start_sh.kill();
            let _ = self.start_sh.wait();
        }
        let ours = self.dir.path().to_string_lossy().into_owned();
        for file in ["n0.pid", "n1.pid", "n2.pid", "gateway.pid"] {
            let Ok(text) = std::fs::read_to_string(self.data().join(file)) else {
                continue;
            };
            let Ok(pid) = text.trim().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&ours) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// The figure `key` of a report's summary object.
fn figure(summary: &serde_json::Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {summary}"))
}

#[test]
fn writes_and_queries_through_a_rolling_restart_all_succeed_and_every_write_is_on_every_node() {
    let stack = Stack::start();
    let before: Vec<u32> = (0..3).map(|i| stack.node_pid(i)).collect();
    let out = stack.dir.path().join("report");
    const DURATION_S: f64 = 40.0;
    let run = Command::new(loadtest_bin().unwrap())
        .current_dir(workspace_root())
        .env("HOME", stack.dir.path().join("home"))
        .arg("run")
        .arg("loadtest/scenarios/rolling-restart.yaml")
        .args([
            "--set",
            &format!("TARGET=http://127.0.0.1:{}", stack.http_port),
        ])
        .args(["--set", &format!("DATA={}", stack.data().display())])
        .args(["--set", &format!("DURATION={DURATION_S}s")])
        .args(["--set", "RATE=100"])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("running loadtest");
    let summary = String::from_utf8_lossy(&run.stdout).into_owned();
    eprintln!("{summary}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap_or_else(|e| {
            panic!(
                "no report ({e}): {summary}{}\n{}",
                String::from_utf8_lossy(&run.stderr),
                stack.output()
            )
        }))
        .unwrap();
    let event = &report["events"][0];
    let restart_output = event["output"].as_str().unwrap_or_default();
    assert_eq!(
        event["exit_code"].as_i64(),
        Some(0),
        "scripts/rolling-restart.sh failed:\n{restart_output}\n{}",
        stack.output()
    );
    // The restart ran whole under load: its last line says when it finished, from its start.
    let finished_s: f64 = restart_output
        .lines()
        .rfind(|l| l.contains("done:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("no `done:` line in\n{restart_output}"));
    let started_s = event["started_s"].as_f64().unwrap();
    assert!(
        started_s + finished_s < DURATION_S,
        "the restart ended at {:.1}s, after the load ({DURATION_S}s):\n{restart_output}",
        started_s + finished_s
    );
    let after: Vec<u32> = (0..3).map(|i| stack.node_pid(i)).collect();
    for i in 0..3 {
        assert_ne!(
            before[i], after[i],
            "n{i} was not restarted:\n{restart_output}"
        );
    }

    // Not one request failed, was refused or went unanswered.
    let overall = &report["overall"];
    let requests = figure(overall, "requests");
    assert!(requests >= 3000, "{requests} requests: {summary}");
    assert_eq!(
        figure(overall, "ok"),
        requests,
        "every request answered 2xx: {overall}\n{summary}\n{}",
        stack.output()
    );
    assert_eq!(run.status.code(), Some(0), "loadtest: {summary}");

    // Every acknowledged write (one new point each) is on every node, asked directly, once
    // the last ones have been shipped.
    let writes = &report["requests"][0];
    assert!(
        writes["label"].as_str().unwrap().starts_with("POST /write"),
        "{writes}"
    );
    let acknowledged = figure(&writes["summary"], "ok");
    assert!(acknowledged > 1000, "{acknowledged} writes acknowledged");
    let counts = eventually_within(
        "every node to hold every acknowledged write",
        Duration::from_secs(30),
        &mut |last| {
            let counts: Vec<String> = (0..3)
                .map(|i| match stack.count_on(i) {
                    Ok(n) => n.to_string(),
                    Err(e) => format!("{e:#}"),
                })
                .collect();
            *last = format!("{counts:?} of {acknowledged}");
            Ok(counts
                .iter()
                .all(|c| *c == acknowledged.to_string())
                .then_some(counts))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", stack.output()));
    eprintln!(
        "rolling restart under load: {requests} requests, 0 failed; {acknowledged} writes on \
         every node {counts:?}; restart {finished_s:.1}s\n{restart_output}"
    );
}
