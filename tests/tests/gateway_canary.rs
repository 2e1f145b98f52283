//! Canary releases end to end: a route split between two pools by weight (and by a header),
//! and `scripts/canary.sh` shifting the weights while traffic flows. A canary pool that
//! answers 5% errors is rolled back before its weight passes the first step; a healthy one
//! reaches 100%.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tests::gateway::{GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::request;
use tests::upstream::{Behaviour, FakeUpstream};
use tests::wait;

/// Health checks rare enough not to count among the requests a test makes.
const RARE_CHECKS: &str = QUIET_HEALTH_CHECK;

/// Pools `v1` and `v2` (one backend each) and the catch-all route `all` split between
/// them, v1 taking everything.
fn canary_policy(v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        "pools:\n  v1:\n    backends: [{{ address: {v1} }}]\n    {RARE_CHECKS}\n  v2:\n    backends: [{{ address: {v2} }}]\n    {RARE_CHECKS}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    split:\n      - {{ pool: v1, weight: 100 }}\n      - {{ pool: v2, weight: 0 }}\n"
    )
}

/// The split of route `name` in service, as `/admin/status` shows it.
fn split(gw: &GatewayProcess, name: &str) -> Vec<(String, u64)> {
    let status = gw.status().unwrap();
    let route = status["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name}: {status}"))
        .clone();
    route["split"]
        .as_array()
        .unwrap_or_else(|| panic!("route {name} is not a split: {route}"))
        .iter()
        .map(|s| {
            (
                s["pool"].as_str().unwrap().to_string(),
                s["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn weights(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(p, w)| (p.to_string(), *w)).collect()
}

/// Clients sending `GET /load` to the gateway until dropped (each thread at most
/// `MAX_PER_THREAD` requests), counting the answers.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

const MAX_PER_THREAD: u64 = 500_000;

impl Traffic {
    fn start(gw: &GatewayProcess, threads: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let url = format!("{}/load", gw.url());
        let threads = (0..threads)
            .map(|_| {
                let (stop, sent, url) = (stop.clone(), sent.clone(), url.clone());
                std::thread::spawn(move || {
                    for _ in 0..MAX_PER_THREAD {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if request("GET", &url, &[], None).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            sent,
            threads,
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `scripts/canary.sh` running, its output in files; killed by PID if the test ends first.
struct Canary {
    child: Child,
    dir: tempfile::TempDir,
}

impl Canary {
    fn start(gw: &GatewayProcess, args: &[&str]) -> Canary {
        let dir = tempfile::tempdir().unwrap();
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let policy = gw.policy_path();
        let child = Command::new("bash")
            .arg(tests::workspace_root().join("scripts/canary.sh"))
            .args(["--admin", &gw.admin_url(), "--route", "all"])
            .args(["--old", "v1", "--new", "v2"])
            .arg("--policy")
            .arg(&policy)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Canary { child, dir }
    }

    /// Waits (bounded) for the script to end: its status, stdout and stderr.
    fn finish(mut self, patience: Duration) -> (ExitStatus, String, String) {
        let child = &mut self.child;
        let status =
            wait::eventually_within("canary.sh to end", patience, &mut |_| Ok(child.try_wait()?));
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        let (out, err) = (read("stdout"), read("stderr"));
        match status {
            Ok(s) => (s, out, err),
            Err(e) => panic!("{e}\nstdout:\n{out}\nstderr:\n{err}"),
        }
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn policy_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_canary_answering_five_percent_errors_is_rolled_back_before_its_first_step_passes() {
    let v1 = FakeUpstream::new().name("v1").start().unwrap();
    let v2 = FakeUpstream::new()
        .name("v2")
        .behaviour(Behaviour::FailEvery {
            every: 20,
            status: 500,
        })
        .start()
        .unwrap();
    let gw = GatewayProcess::start(&canary_policy(v1.addr, v2.addr)).unwrap();
    let traffic = Traffic::start(&gw, 3);
    let canary = Canary::start(
        &gw,
        &[
            "--steps",
            "10,50,100",
            "--hold",
            "3s",
            "--judge-timeout",
            "20s",
            "--min-requests",
            "40",
            "--max-error-ratio",
            "0.01",
            "--max-p99",
            "5s",
            "--interval",
            "200ms",
        ],
    );
    let (status, out, err) = canary.finish(Duration::from_secs(45));
    let sent = traffic.sent.load(Ordering::Relaxed);
    drop(traffic);
    let context = format!("status {status}, {sent} requests sent\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(status.code(), Some(2), "{context}");
    assert!(out.contains("step 1/3: v1=90 v2=10"), "{context}");
    assert!(
        !out.contains("step 1 passed") && !out.contains("step 2/3") && !out.contains("v2=50"),
        "the canary never went past 10%: {context}"
    );
    assert!(err.contains("ROLLED BACK"), "{context}");
    assert!(err.contains("errors (ratio 0.0"), "the reason: {context}");
    // Rolled back in service and in the file.
    assert_eq!(split(&gw, "all"), weights(&[("v1", 100), ("v2", 0)]));
    let text = policy_text(&gw.policy_path());
    assert!(
        text.contains("{ pool: v1, weight: 100 }") && text.contains("{ pool: v2, weight: 0 }"),
        "{text}"
    );
    assert!(v2.requests() >= 40, "the canary was tried: {context}");
    // Nothing reaches the canary any more.
    let before = v2.requests();
    for _ in 0..20 {
        assert_eq!(
            request("GET", &format!("{}/after", gw.url()), &[], None)
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(v2.requests(), before);
}

#[test]
fn a_healthy_canary_reaches_all_of_the_traffic() {
    let v1 = FakeUpstream::new().name("v1").start().unwrap();
    let v2 = FakeUpstream::new().name("v2").start().unwrap();
    let gw = GatewayProcess::start(&canary_policy(v1.addr, v2.addr)).unwrap();
    let traffic = Traffic::start(&gw, 3);
    let canary = Canary::start(
        &gw,
        &[
            "--steps",
            "10,50,100",
            "--hold",
            "1s",
            "--judge-timeout",
            "20s",
            "--min-requests",
            "20",
            "--max-p99",
            "5s",
            "--interval",
            "200ms",
        ],
    );
    let (status, out, err) = canary.finish(Duration::from_secs(45));
    let sent = traffic.sent.load(Ordering::Relaxed);
    drop(traffic);
    let context = format!("status {status}, {sent} requests sent\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(status.code(), Some(0), "{context}");
    for step in ["step 1 passed", "step 2 passed", "step 3 passed"] {
        assert!(out.contains(step), "{step}: {context}");
    }
    assert!(
        out.contains("done: route all serves v1=0 v2=100"),
        "{context}"
    );
    assert_eq!(split(&gw, "all"), weights(&[("v1", 0), ("v2", 100)]));
    let text = policy_text(&gw.policy_path());
    assert!(
        text.contains("{ pool: v1, weight: 0 }") && text.contains("{ pool: v2, weight: 100 }"),
        "{text}"
    );
    let before = v1.requests();
    for _ in 0..20 {
        let r = request("GET", &format!("{}/after", gw.url()), &[], None).unwrap();
        assert_eq!((r.status, r.header("x-upstream")), (200, Some("v2")));
    }
    assert_eq!(v1.requests(), before, "the old pool gets nothing");
}

#[test]
fn a_split_sends_exact_shares_a_header_picks_its_pool_and_retries_stay_in_the_pool() {
    let v1 = FakeUpstream::new().name("v1").start().unwrap();
    // v2's first backend fails every request; its retries go to v2's other backend only.
    let v2a = FakeUpstream::new()
        .name("v2a")
        .behaviour(Behaviour::Status(503))
        .start()
        .unwrap();
    let v2b = FakeUpstream::new().name("v2b").start().unwrap();
    let policy = format!(
        "pools:\n  v1:\n    backends: [{{ address: {} }}]\n    {RARE_CHECKS}\n  v2:\n    backends: [{{ address: {} }}, {{ address: {} }}]\n    {RARE_CHECKS}\n    retries: {{ attempts: 2, on: [503], budget: {{ ratio: 100%, min_per_second: 100 }} }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    split: [ {{ pool: v1, weight: 3 }}, {{ pool: v2, weight: 1 }} ]\n    route_by_header: [ {{ header: X-Canary, value: \"1\", pool: v2 }} ]\n",
        v1.addr, v2a.addr, v2b.addr
    );
    let gw = GatewayProcess::start(&policy).unwrap();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let r = request("GET", &format!("{}{path}", gw.url()), headers, None).unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.header("x-upstream").unwrap().to_string()
    };
    let answered: Vec<String> = (0..40).map(|_| get("/split", &[])).collect();
    let by = |name: &str| answered.iter().filter(|u| *u == name).count();
    assert_eq!((by("v1"), by("v2b")), (30, 10), "3:1 exactly: {answered:?}");
    for _ in 0..6 {
        assert_eq!(get("/canary", &[("X-Canary", "1")]), "v2b");
    }
    assert_eq!(
        v1.requests_for("/canary"),
        0,
        "a header's requests, retries included"
    );
    assert!(v2a.requests_for("/canary") > 0, "v2a was tried and failed");
    assert_eq!(
        get("/other", &[("X-Canary", "2")]),
        "v1",
        "another value: the weights"
    );

    // Per route and pool in the metrics: v2's answers are the 10 + 6 the client saw. They
    // are counted as a request is logged, which may come just after its answer is read:
    // polled until they are, and then they must be exactly these.
    let lines = [
        "gateway_pool_requests_total{class=\"2xx\",pool=\"v1\",route=\"all\"} 31",
        "gateway_pool_requests_total{class=\"2xx\",pool=\"v2\",route=\"all\"} 16",
        "gateway_pool_request_duration_seconds_count{pool=\"v2\",route=\"all\"} 16",
    ];
    let metrics = wait::eventually("the pools' counts in /metrics", |last| {
        let m = request("GET", &format!("{}/metrics", gw.admin_url()), &[], None)?.body;
        let done = lines.iter().all(|l| m.contains(l));
        *last = m.clone();
        Ok(done.then_some(m))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    for line in lines {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    // A split no request could follow is refused, named at its line; the old one serves on.
    let path = gw.policy_path();
    let bad = policy_text(&path).replace(
        "split: [ { pool: v1, weight: 3 }, { pool: v2, weight: 1 } ]",
        "split: [ { pool: v1, weight: 0 }, { pool: v2, weight: 0 } ]",
    );
    std::fs::write(&path, bad).unwrap();
    let r = request(
        "POST",
        &format!("{}/admin/reload", gw.admin_url()),
        &[],
        Some(b""),
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let want = format!(
        "{}:12:12: routes[0].split: at least one weight must be more than 0",
        path.display()
    );
    assert!(r.body.contains(&want), "{want} not in {}", r.body);
    assert_eq!(split(&gw, "all"), weights(&[("v1", 3), ("v2", 1)]));
    let answered: Vec<String> = (0..4).map(|_| get("/still", &[])).collect();
    assert_eq!(
        answered.iter().filter(|u| *u == "v1").count(),
        3,
        "{answered:?}"
    );
}
