//! Checks of the harness itself (no tsdb-backend needed): ports, bounded waits, JSON
//! comparison, and that influxd processes are started, restarted and killed by PID.

use std::time::Duration;

use serde_json::json;
use tests::diff::{json_eq, unified_diff};
use tests::http::{self, Method};
use tests::wait::eventually_within;
use tests::{assert_eventually, free_port, InfluxdProcess};

fn process_exists(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie would still have one, so this also proves
    // the harness waits for its children.
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn free_ports_are_distinct_and_never_the_shared_influx_ports() {
    let ports: Vec<u16> = (0..50).map(|_| free_port().expect("free port")).collect();
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ports.len(), "ports repeat: {ports:?}");
    assert!(!ports.contains(&8086) && !ports.contains(&8088));
}

#[test]
fn eventually_gives_up_within_its_patience() {
    let start = tests::clock::now();
    let mut polls = 0;
    let r: anyhow::Result<()> =
        eventually_within("never", Duration::from_millis(200), &mut |last| {
            polls += 1;
            *last = format!("poll {polls}");
            Ok(None)
        });
    let err = r.expect_err("must time out").to_string();
    assert!(err.contains("never") && err.contains("poll"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(polls <= 10, "{polls} polls in 200 ms");
}

#[test]
fn eventually_returns_as_soon_as_the_condition_holds() {
    let mut n = 0;
    let v = tests::eventually("third poll", |_| {
        n += 1;
        Ok((n >= 3).then_some(n))
    })
    .expect("condition holds");
    assert_eq!(v, 3);
    let mut m = 0;
    assert_eventually!(
        {
            m += 1;
            m == 2
        },
        "second poll"
    );
}

#[test]
fn json_comparison_treats_integral_floats_as_integers() {
    assert!(json_eq(&json!(1), &json!(1.0)));
    assert!(json_eq(&json!([1, 2.5]), &json!([1.0, 2.5])));
    assert!(!json_eq(&json!(1), &json!(2)));
    assert!(!json_eq(&json!(1), &json!("1")));
    assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
    assert!(json_eq(
        &json!({"a": 1, "b": 2}),
        &json!({"b": 2, "a": 1.0})
    ));
    assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": null})));
    // nanosecond timestamps beyond 2^53 compare exactly
    assert!(!json_eq(
        &json!(946684800123456789_i64),
        &json!(946684800123456788_i64)
    ));
    let d = unified_diff("a\nb\nc\n", "a\nx\nc\n");
    assert!(
        d.contains("-b") && d.contains("+x") && d.contains(" a"),
        "{d}"
    );
}

#[test]
fn influxd_starts_privately_restarts_and_is_killed_by_pid_on_drop() {
    let mut influxd = InfluxdProcess::start().expect("starting influxd");
    assert_ne!(influxd.addr.port(), 8086);
    assert_ne!(influxd.rpc_addr.port(), 8088);
    let dir = influxd.dir().to_path_buf();
    let pid = influxd.pid().expect("running");
    assert!(process_exists(pid));

    let (s, _) = http::query(influxd.addr, None, "CREATE DATABASE db", None, Method::Post)
        .expect("create database");
    assert_eq!(s, 200);
    let (s, body) = http::write(influxd.addr, "db", "m v=1 946684800", Some("s")).expect("write");
    assert_eq!(s, 204, "{body}");

    influxd.kill9();
    assert!(!process_exists(pid), "pid {pid} survived kill9");
    influxd
        .restart()
        .expect("restart on the same port and dirs");
    let pid2 = influxd.pid().expect("running again");
    let (s, body) = http::query(
        influxd.addr,
        Some("db"),
        "SELECT count(v) FROM m",
        None,
        Method::Get,
    )
    .expect("query after restart");
    assert_eq!(s, 200);
    assert_eq!(
        body.pointer("/results/0/series/0/values/0/1"),
        Some(&json!(1))
    );

    drop(influxd);
    assert!(!process_exists(pid2), "pid {pid2} survived drop");
    assert!(!dir.exists(), "temp dir {} not removed", dir.display());
}

#[test]
fn http_client_returns_error_statuses_as_values() {
    let influxd = InfluxdProcess::start().expect("starting influxd");
    let (s, body) = http::query(influxd.addr, None, "SELEC", None, Method::Get).expect("query");
    assert_eq!(s, 400);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("error parsing query")));
    let (s, body) = http::write(influxd.addr, "nope", "m v=1", None).expect("write");
    assert_eq!(s, 404, "{body}");
    let r = http::request("GET", &format!("{}/ping", influxd.url()), &[], None).expect("ping");
    assert_eq!(r.status, 204);
    assert!(r.header("X-Influxdb-Version").is_some());
}
