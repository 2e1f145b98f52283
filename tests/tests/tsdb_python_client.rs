//! The PyPI `influxdb` client (5.3.x), unchanged, must work against our node.
//! `tests/python/client_test.py PORT` does the client calls; it is first proven on a real influxd.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use tests::{under_ci, InfluxdProcess, TsdbProcess};

fn script() -> PathBuf {
    tests::workspace_root().join("tests/python/client_test.py")
}

/// Whether the client is importable. Without it: skip locally (returns false), fail under CI.
fn python_client_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import influxdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !under_ci(),
            "python3 cannot import the `influxdb` client under CI: run scripts/install-test-deps.sh"
        );
        eprintln!(
            "SKIPPED: python3 cannot import `influxdb`; run scripts/install-test-deps.sh to enable"
        );
    }
    ok
}

fn run_client_script(addr: SocketAddr, what: &str, log: impl Fn() -> String) {
    let out = Command::new("python3")
        .arg(script())
        .arg(addr.port().to_string())
        .output()
        .expect("running python3 tests/python/client_test.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "client_test.py against {what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log tail:\n{}",
        out.status,
        log()
    );
}

#[test]
fn python_client_script_passes_against_real_influxdb() {
    if !python_client_available() {
        return;
    }
    let influxd = InfluxdProcess::start().expect("starting influxd");
    run_client_script(influxd.addr, "influxd", || influxd.log_tail(4000));
}

#[test]
fn python_influxdb_client_works_unchanged_against_our_node() {
    if !python_client_available() {
        return;
    }
    let node = TsdbProcess::start().expect("starting tsdb-backend");
    run_client_script(node.addr, "tsdb-backend", || node.log_tail(4000));
}
