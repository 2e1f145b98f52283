//! The load generator against an in-process scripted server: exact open-loop counts, the
//! weighted mix, latency that a stalled server cannot hide, SLO exit codes, `compare`,
//! `validate`.

use loadtest::engine::{self, RunOptions};
use loadtest::report::Report;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tests::process::loadtest_bin;
use tests::upstream::{Behaviour, FakeUpstream};

fn scenario(text: &str) -> loadtest::scenario::Scenario {
    let env = |_: &str| None;
    match loadtest::scenario::parse_str(text, Path::new("test.yaml"), &[], &env) {
        Ok(s) => s,
        Err(e) => panic!("scenario:\n{e}"),
    }
}

fn quiet() -> RunOptions {
    RunOptions {
        progress: false,
        ..RunOptions::default()
    }
}

#[test]
fn an_open_loop_run_sends_exactly_rate_times_duration() {
    let up = FakeUpstream::new().start().unwrap();
    let s = scenario(&format!(
        "name: exact\ntarget: {}\nstages:\n  - {{ duration: 1s, rate: 400 }}\n  - {{ duration: 3s, rate: 400 }}\nrequests:\n  - {{ method: GET, path: /x }}\nmax_connections: 32\n",
        up.url()
    ));
    let report = engine::run(&s, &quiet()).unwrap();
    assert_eq!(up.requests(), 1600, "400/s for 4 s, every one sent");
    assert_eq!(report.stages[0].summary.requests, 400);
    assert!(
        report.stages[0].warmup,
        "the first of two stages is the warm-up"
    );
    assert_eq!(
        report.overall.requests, 1200,
        "the warm-up is not in the verdict"
    );
    assert_eq!(report.overall.ok, 1200);
    assert_eq!(report.overall.asked_rate, Some(400.0));
    // Whether the generator kept its schedule depends on the machine's load (tests run in
    // parallel, unoptimised): not asserted here; the counts above hold either way.
    let sent: u64 = report.timeline.iter().map(|s| s.sent).sum();
    assert_eq!(sent, 1600);
    assert!(
        report.timeline.iter().take(4).all(|s| s.sent == 400),
        "400 due in each of the four seconds: {:?}",
        report.timeline.iter().map(|s| s.sent).collect::<Vec<_>>()
    );
}

#[test]
fn checks_count_the_answers_that_held_them_and_time_placeholders_reach_the_server() {
    let up = FakeUpstream::new().start().unwrap();
    let s = scenario(&format!(
        "name: checks\ntarget: {}\nstages:\n  - {{ duration: 1s, rate: 200 }}\nrequests:\n  \
         - path: \"/echo?from=${{now_ms - 1h}}&to=${{now_ms}}\"\n    check:\n      \
         - {{ status: 200 }}\n      - {{ json: method, equals: GET }}\n      \
         - {{ name: headers kept, json: headers.host, exists: true }}\n      \
         - {{ json: results.0.series, exists: true }}\n",
        up.url()
    ));
    let before_ms = tests::clock::wall_ns() as i64 / 1_000_000;
    let report = engine::run(&s, &quiet()).unwrap();
    let after_ms = tests::clock::wall_ns() as i64 / 1_000_000;
    assert_eq!(report.overall.ok, 200);
    let checks: Vec<(&str, u64, u64)> = report.requests[0]
        .checks
        .iter()
        .map(|c| (c.name.as_str(), c.held, c.failed))
        .collect();
    assert_eq!(
        checks,
        [
            ("status is 200", 200, 0),
            ("method == \"GET\"", 200, 0),
            ("headers kept", 200, 0),
            ("results.0.series exists", 0, 200),
        ]
    );
    // Each request carried the hour before it was sent and the time it was sent.
    let paths = up.recorded();
    assert_eq!(paths.len(), 200);
    for r in paths {
        let query = r.path.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let mut from = 0i64;
        let mut to = 0i64;
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("from", v)) => from = v.parse().unwrap(),
                Some(("to", v)) => to = v.parse().unwrap(),
                _ => {}
            }
        }
        assert_eq!(to - from, 3_600_000, "{}", r.path);
        assert!(
            (before_ms..=after_ms).contains(&to),
            "{} not in the run",
            r.path
        );
    }
    let text = loadtest::summary::render(&report);
    assert!(
        text.contains("check results.0.series exists of request 1: 0/200 held (200 failed)"),
        "{text}"
    );
    let page = loadtest::html::render(&report);
    assert!(page.contains("<h3>Checks</h3>") && page.contains("headers kept"));
}

#[test]
fn the_weighted_mix_reaches_the_server_in_its_proportions() {
    let up = FakeUpstream::new().start().unwrap();
    let s = scenario(&format!(
        "name: mix\ntarget: {}\nstages:\n  - {{ duration: 2s, rate: 1000 }}\nrequests:\n  - {{ weight: 3, method: GET, path: /a }}\n  - {{ weight: 1, method: POST, path: /b, body: \"m v=1\" }}\n",
        up.url()
    ));
    let report = engine::run(&s, &quiet()).unwrap();
    assert_eq!(report.overall.ok, 2000);
    let (a, b) = (up.requests_for("/a"), up.requests_for("/b"));
    assert_eq!(a + b, 2000);
    // A seeded draw of 2,000: 3/4 within 3 percentage points.
    let share = a as f64 / 2000.0;
    assert!((share - 0.75).abs() < 0.03, "/a {a}, /b {b}");
}

#[test]
fn a_server_that_stalls_one_second_moves_the_open_loop_p99_to_about_a_second() {
    let up = FakeUpstream::new().start().unwrap();
    let s = scenario(&format!(
        "name: stall\ntarget: {}\nstages:\n  - {{ duration: 4s, rate: 200 }}\nrequests:\n  - {{ method: GET, path: /x }}\nmax_connections: 64\n",
        up.url()
    ));
    let stall = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            up.pause(Duration::from_secs(1));
        });
        let report = engine::run(&s, &quiet()).unwrap();
        h.join().unwrap();
        report
    });
    let l = &stall.overall.latency;
    // 200 of the 800 requests fell due during the stall and waited 0 to 1000 ms for it, so
    // the slowest percent waited nearly the whole second (each from its scheduled time,
    // also those that queued for one of the 64 connections).
    assert!(l.p99_ms >= 900.0, "p99 {} ms", l.p99_ms);
    assert!(l.p50_ms < 100.0, "p50 {} ms", l.p50_ms);
    assert_eq!(stall.overall.ok, 800, "every request answered in the end");

    // The same stall under a closed loop of 4 workers: only 4 requests see it.
    let closed = scenario(&format!(
        "name: stall-closed\ntarget: {}\nconcurrency: 4\nduration: 4s\nrequests:\n  - {{ method: GET, path: /x }}\n",
        up.url()
    ));
    let report = std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            up.pause(Duration::from_secs(1));
        });
        let report = engine::run(&closed, &quiet()).unwrap();
        h.join().unwrap();
        report
    });
    let c = &report.overall.latency;
    assert!(
        c.max_ms >= 900.0,
        "the stalled requests: max {} ms",
        c.max_ms
    );
    assert!(
        c.p99_ms < l.p99_ms / 5.0,
        "closed-loop p99 {} ms hides the stall the open loop shows ({} ms)",
        c.p99_ms,
        l.p99_ms
    );
}

fn write_scenario(dir: &Path, name: &str, url: &str, slo: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {name}\ntarget: {url}\nstages:\n  - {{ duration: 1s, rate: 50 }}\nrequests:\n  - {{ method: GET, path: / }}\nslo:\n{slo}"
        ),
    )
    .expect("writing the scenario");
    path
}

#[test]
fn the_binary_writes_both_reports_and_exits_2_only_when_an_slo_fails() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Slow(Duration::from_millis(20)))
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = write_scenario(
        dir.path(),
        "good",
        &up.url(),
        "  - p99 < 5s\n  - error_rate < 1%\n",
    );
    let out = dir.path().join("out");
    let run = Command::new(loadtest_bin().unwrap())
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("all SLOs hold"), "{text}");
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report.overall.requests, 50);
    assert!(report.overall.latency.p50_ms >= 20.0);
    assert!(report.scenario_yaml.contains("name: good"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 4, "four plots");

    let strict = write_scenario(dir.path(), "strict", &up.url(), "  - p99 < 1ms\n");
    let run = Command::new(loadtest_bin().unwrap())
        .args(["run", "--quiet"])
        .arg(&strict)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("FAIL"));
}

#[test]
fn compare_flags_a_p99_regression_and_exits_1_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let before = Report::example();
    let mut after = before.clone();
    after.overall.latency.p99_ms *= 1.5;
    let (b, a) = (
        dir.path().join("before.json"),
        dir.path().join("after.json"),
    );
    std::fs::write(&b, serde_json::to_string(&before).unwrap()).unwrap();
    std::fs::write(&a, serde_json::to_string(&after).unwrap()).unwrap();
    let bin = loadtest_bin().unwrap();
    let strict = Command::new(&bin)
        .arg("compare")
        .arg(&b)
        .arg(&a)
        .arg("--fail-on-regression")
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(1), "{strict:?}");
    assert!(String::from_utf8_lossy(&strict.stdout).contains("1.50"));
    let plain = Command::new(&bin)
        .arg("compare")
        .arg(&b)
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(0));
    let better = Command::new(&bin)
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .arg("--fail-on-regression")
        .output()
        .unwrap();
    assert_eq!(
        better.status.code(),
        Some(0),
        "an improvement is no regression"
    );
}

#[test]
fn validate_names_the_file_line_and_field_of_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "name: bad\ntarget: http://127.0.0.1:1\nstages:\n  - { duration: 5, rate: 10 }\nrequests:\n  - { method: GET, pth: / }\n",
    )
    .unwrap();
    let out = Command::new(loadtest_bin().unwrap())
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("bad.yaml:"), "{text}");
    assert!(text.contains("pth") || text.contains("duration"), "{text}");
}

#[test]
fn an_https_target_is_loaded_over_tls_with_the_scenario_ca() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = tests::gateway::GatewayProcess::builder(&tests::gateway::catch_all_policy(
        &[up.addr],
        "5s",
        1,
    ))
    .tls()
    .start()
    .unwrap();
    let port = gw.tls_addr.unwrap().port();
    let s = scenario(&format!(
        "name: tls\ntarget: https://localhost:{port}\ntls: {{ ca: {} }}\nstages:\n  - {{ duration: 1s, rate: 100 }}\nrequests:\n  - {{ method: GET, path: /x }}\n",
        gw.ca_path().display()
    ));
    let report = engine::run(&s, &quiet()).unwrap();
    assert_eq!(report.overall.ok, 100, "{:?}", report.overall.status);
    assert_eq!(report.target, format!("https://localhost:{port}"));
}
