//! The gateway against scripted backends: timeouts, streaming, retries after a reset, TLS
//! and HTTP/2, graceful stop, zero-downtime upgrade, metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::gateway::{catch_all_policy, GatewayProcess};
use tests::h2::{h2c_client, tls_client, Protocol};
use tests::http::request;
use tests::upstream::{Behaviour, FakeUpstream};
use tests::wait::eventually;

/// One request on a connection of its own (`Connection: close`); the status code, or the
/// transport error.
fn get_on_new_connection(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {text:?}"))?;
    Ok(status)
}

/// Waits until each backend's first health probe has arrived (probes count as requests),
/// so later request counts are exact.
fn after_first_probe(ups: &[&FakeUpstream]) {
    eventually("the first health probes", |_| {
        Ok(ups.iter().all(|u| u.requests() >= 1).then_some(()))
    })
    .expect("health probes");
}

/// Sends `path` on a connection of its own from another thread and returns once the
/// backend has the request (it is in flight through the gateway).
fn request_in_flight(
    gw: &GatewayProcess,
    up: &FakeUpstream,
    path: &'static str,
) -> std::thread::JoinHandle<anyhow::Result<u16>> {
    after_first_probe(&[up]);
    let before = up.requests();
    let addr = gw.addr;
    let client = std::thread::spawn(move || get_on_new_connection(addr, path));
    eventually("the request at the backend", |_| {
        Ok((up.requests() > before).then_some(()))
    })
    .expect("the request reached the backend");
    client
}

#[test]
fn a_backend_that_never_answers_is_a_json_504_after_the_request_timeout() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Hang)
        .start()
        .unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[up.addr], "300ms", 1)).unwrap();
    let res = request("GET", &format!("{}/stuck", gw.url()), &[], None).unwrap();
    assert_eq!(res.status, 504, "{}", res.body);
    assert_eq!(res.json()["error"], "upstream timed out");
    assert!(res.header("x-request-id").is_some());
}

#[test]
fn a_20_mb_body_reaches_the_backend_while_the_client_is_still_sending_it() {
    const TOTAL: usize = 20 * 1024 * 1024;
    let up = FakeUpstream::new().start().unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[up.addr], "10s", 1)).unwrap();
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /write?db=big HTTP/1.1\r\nHost: test\r\nContent-Length: {TOTAL}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let first = 1024 * 1024;
    for _ in 0..first / chunk.len() {
        s.write_all(&chunk).unwrap();
    }
    // A proxy that buffered the whole body would forward nothing yet.
    eventually("the first megabyte at the backend", |last| {
        *last = format!("{} bytes", up.body_bytes());
        Ok((up.body_bytes() >= 512 * 1024).then_some(()))
    })
    .expect("the body is streamed, not buffered");
    for _ in 0..(TOTAL - first) / chunk.len() {
        s.write_all(&chunk).unwrap();
    }
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(up.body_bytes(), TOTAL as u64);
    assert_eq!(up.last_request().map(|r| r.body_len), Some(TOTAL as u64));
}

#[test]
fn a_reset_before_any_answer_byte_is_retried_for_get_but_never_for_post() {
    let bad = FakeUpstream::new()
        .behaviour(Behaviour::Reset)
        .name("bad")
        .start()
        .unwrap();
    let good = FakeUpstream::new().name("good").start().unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[bad.addr, good.addr], "5s", 2)).unwrap();
    after_first_probe(&[&bad, &good]);

    let (bad0, good0) = (bad.requests(), good.requests());
    for i in 0..10 {
        let res = request("GET", &format!("{}/q?i={i}", gw.url()), &[], None).unwrap();
        assert_eq!(res.status, 200, "GET {i}: {}", res.body);
        assert_eq!(res.header("x-upstream"), Some("good"));
    }
    assert!(
        bad.requests() > bad0,
        "round robin sent some GETs to the resetting backend first"
    );
    assert_eq!(good.requests() - good0, 10);

    // A POST may have been acted upon before the reset: it is answered 502, never resent.
    let (bad1, good1) = (bad.requests(), good.requests());
    let mut statuses = Vec::new();
    for i in 0..10 {
        let res = request(
            "POST",
            &format!("{}/w?i={i}", gw.url()),
            &[],
            Some(b"m v=1"),
        )
        .unwrap();
        statuses.push(res.status);
    }
    let to_bad = bad.requests() - bad1;
    let to_good = good.requests() - good1;
    assert_eq!(
        to_bad + to_good,
        10,
        "each POST reached one backend once: {statuses:?}"
    );
    assert!(to_bad > 0, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count() as u64,
        to_bad
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count() as u64,
        to_good
    );
}

#[test]
fn http2_over_tls_with_a_generated_ca_and_h2c_reach_the_backend() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = GatewayProcess::builder(&catch_all_policy(&[up.addr], "5s", 1))
        .tls()
        .h2c()
        .start()
        .unwrap();
    let tls = gw.tls_addr.unwrap();
    let url = format!("https://localhost:{}/echo", tls.port());

    let h2 = tls_client(&gw.ca_path(), Protocol::Http2).unwrap();
    let res = h2.get(&url).send().unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let echo: serde_json::Value = serde_json::from_str(&res.text().unwrap()).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https", "{echo}");
    assert_eq!(echo["method"], "GET");

    let h1 = tls_client(&gw.ca_path(), Protocol::Http1).unwrap();
    let res = h1.get(&url).send().unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_11);
    assert_eq!(res.status(), 200);

    let h2c = h2c_client().unwrap();
    let res = h2c
        .get(format!("http://{}/echo", gw.h2c_addr.unwrap()))
        .send()
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    let echo: serde_json::Value = serde_json::from_str(&res.text().unwrap()).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http", "{echo}");

    // A client that trusts another CA does not get through the handshake.
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(tests::process::gateway_bin().unwrap())
        .args(["dev-certs", "--out"])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stranger = tls_client(&other.path().join("ca.pem"), Protocol::Http2).unwrap();
    let err = stranger.get(&url).send().unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0_without_waiting_out_the_deadline() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Slow(Duration::from_millis(1500)))
        .start()
        .unwrap();
    // A deadline far beyond the test's patience: only an early exit passes.
    let mut gw = GatewayProcess::builder(&catch_all_policy(&[up.addr], "10s", 1))
        .drain_timeout("120s")
        .start()
        .unwrap();
    let client = request_in_flight(&gw, &up, "/slow");
    let addr = gw.addr;
    assert!(tests::process::signal(gw.pid(), libc::SIGTERM));
    eventually("the listener to close", |_| {
        Ok(
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_err()
                .then_some(()),
        )
    })
    .expect("no new connection once stopping");
    let status = client.join().unwrap();
    assert_eq!(status.ok(), Some(200), "the request in flight finished");
    let exit = gw.wait_exit().expect("exited once drained");
    assert_eq!(exit.code(), Some(0), "{}", gw.log());
}

#[test]
fn a_request_still_running_at_the_drain_deadline_is_cut_and_the_exit_is_still_0() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Hang)
        .start()
        .unwrap();
    let mut gw = GatewayProcess::builder(&catch_all_policy(&[up.addr], "60s", 1))
        .drain_timeout("1s")
        .start()
        .unwrap();
    let client = request_in_flight(&gw, &up, "/hang");
    assert!(tests::process::signal(gw.pid(), libc::SIGTERM));
    let exit = gw.wait_exit().expect("exited at the deadline");
    assert_eq!(exit.code(), Some(0), "{}", gw.log());
    assert!(gw.log().contains("drain deadline passed"), "{}", gw.log());
    let cut = client.join().unwrap();
    assert!(cut.as_ref().map_or(true, |s| *s >= 500), "{cut:?}");
}

#[test]
fn an_upgrade_hands_the_listeners_to_a_new_process_without_a_refused_connection() {
    let up = FakeUpstream::new().start().unwrap();
    let mut gw = GatewayProcess::start(&catch_all_policy(&[up.addr], "5s", 1)).unwrap();
    let addr = gw.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
        std::thread::spawn(move || {
            for i in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match get_on_new_connection(addr, "/x") {
                    Ok(200) => {}
                    other => failures.lock().unwrap().push(format!("{i}: {other:?}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    eventually("some requests before the upgrade", |_| {
        Ok((done.load(Ordering::Relaxed) >= 50).then_some(()))
    })
    .unwrap();
    let mut old = gw.upgrade().expect("the new process takes over");
    let old_exit = eventually("the old process to exit", |_| Ok(old.try_wait()?)).unwrap();
    assert_eq!(old_exit.code(), Some(0));
    let after = done.load(Ordering::Relaxed);
    eventually("requests served by the new process", |_| {
        Ok((done.load(Ordering::Relaxed) >= after + 50).then_some(()))
    })
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{failures:?}\n{}", gw.log());
    assert!(!gw.exited(), "the new process serves on");
    eventually("the new process's admin port", |_| {
        Ok(
            request("GET", &format!("{}/healthz", gw.admin_url()), &[], None)
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ()),
        )
    })
    .unwrap();
}

#[test]
fn metrics_count_answers_by_route_and_status_and_status_shows_the_policy() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[up.addr], "5s", 1)).unwrap();
    for _ in 0..3 {
        assert_eq!(
            request("GET", &format!("{}/m", gw.url()), &[], None)
                .unwrap()
                .status,
            200
        );
    }
    // A request is counted once its answer has ended, which the client may see first:
    // poll until the third is.
    let counted = "gateway_requests_total{route=\"all\",status=\"200\"} 3";
    let text = eventually("the third request to be counted", |last| {
        let r = request("GET", &format!("{}/metrics", gw.admin_url()), &[], None)?;
        *last = r.body.clone();
        Ok((r.status == 200 && r.body.contains(counted)).then_some(r))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    for want in [
        counted,
        "gateway_request_duration_seconds_count{route=\"all\"} 3",
        &format!(
            "gateway_backend_healthy{{backend=\"{}\",pool=\"up\"}} 1",
            up.addr
        ),
        "gateway_policy_version 1",
        "process_resident_memory_bytes",
    ] {
        assert!(
            text.body.contains(want),
            "missing {want:?} in\n{}",
            text.body
        );
    }
    let status = request(
        "GET",
        &format!("{}/admin/status", gw.admin_url()),
        &[],
        None,
    )
    .unwrap()
    .json();
    assert_eq!(status["policy"]["version"], 1);
    assert_eq!(status["policy"]["digest"].as_str().map(str::len), Some(64));
    assert!(status["policy"]["loaded_at"].is_string());
    assert_eq!(status["pools"]["up"]["backends"][0]["in_flight"], 0);
}

#[test]
fn a_request_in_flight_during_a_reload_finishes_on_the_policy_it_started_with() {
    let old = FakeUpstream::new()
        .behaviour(Behaviour::Slow(Duration::from_millis(1500)))
        .name("old")
        .start()
        .unwrap();
    let new = FakeUpstream::new().name("new").start().unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[old.addr], "10s", 1)).unwrap();
    let client = request_in_flight(&gw, &old, "/slow");
    std::fs::write(gw.policy_path(), catch_all_policy(&[new.addr], "10s", 1)).unwrap();
    eventually("new requests to go to the new pool", |last| {
        let res = request("GET", &format!("{}/x", gw.url()), &[], None)?;
        *last = format!("{} {:?}", res.status, res.header("x-upstream"));
        Ok((res.header("x-upstream") == Some("new")).then_some(()))
    })
    .expect("the reload took effect");
    let status = client.join().unwrap();
    assert_eq!(
        status.ok(),
        Some(200),
        "the old request finished on the old pool"
    );
}

#[test]
fn a_pool_whose_backends_all_fail_their_checks_answers_a_json_503() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Status(500))
        .start()
        .unwrap();
    let policy = format!(
        "pools:\n  up:\n    backends:\n      - {{ address: {} }}\n    health_check: {{ path: /ping, interval: 100ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 1 }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    pool: up\n",
        up.addr
    );
    let gw = GatewayProcess::start(&policy).unwrap();
    eventually("the backend marked down", |_| {
        let doc = request(
            "GET",
            &format!("{}/admin/status", gw.admin_url()),
            &[],
            None,
        )?
        .json();
        Ok((doc["pools"]["up"]["healthy"] == 0).then_some(()))
    })
    .unwrap();
    let ready = request("GET", &format!("{}/readyz", gw.admin_url()), &[], None).unwrap();
    assert_eq!(ready.status, 503);
    // Forwarded, the request would have had the backend's 500.
    let res = request("GET", &format!("{}/x", gw.url()), &[], None).unwrap();
    assert_eq!(res.status, 503, "{}", res.body);
    assert_eq!(res.json()["error"], "no healthy backend available");
    assert!(res.json()["request_id"].is_string());
}
