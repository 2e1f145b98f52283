//! Balancing and passive health end to end: a real gateway in front of scripted upstreams
//! that fail, hang, answer 503 or reset, checked by what the client and each upstream saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;
use tests::gateway::{GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::request;
use tests::upstream::{Behaviour, FakeUpstream};
use tests::wait::eventually;

/// A pool `up` of `backends` with `extra` pool settings, health checks too rare to matter,
/// and one catch-all route with `route_extra`.
fn policy(backends: &[SocketAddr], extra: &str, route_extra: &str) -> String {
    let list: String = backends
        .iter()
        .map(|a| format!("      - {{ address: {a} }}\n"))
        .collect();
    format!(
        "pools:\n  up:\n    backends:\n{list}    {QUIET_HEALTH_CHECK}\n{extra}routes:\n  - name: all\n    match: {{ path_prefix: / }}\n    pool: up\n    timeouts: {{ connect: 1s, request: 10s }}\n{route_extra}"
    )
}

/// Three upstreams `b0`, `b1`, `b2` answering 200, and their addresses.
fn three_upstreams() -> (Vec<FakeUpstream>, Vec<SocketAddr>) {
    let ups: Vec<FakeUpstream> = (0..3)
        .map(|i| FakeUpstream::new().name(format!("b{i}")).start().unwrap())
        .collect();
    let addrs = ups.iter().map(|u| u.addr).collect();
    (ups, addrs)
}

fn get(gw: &GatewayProcess, path: &str, headers: &[(&str, &str)]) -> tests::http::Response {
    request("GET", &format!("{}{path}", gw.url()), headers, None).expect("request")
}

fn status(gw: &GatewayProcess) -> serde_json::Value {
    request(
        "GET",
        &format!("{}/admin/status", gw.admin_url()),
        &[],
        None,
    )
    .expect("status")
    .json()
}

#[test]
fn a_backend_answering_503_is_retried_elsewhere_then_ejected_without_a_client_error() {
    let good = FakeUpstream::new().name("good").start().unwrap();
    let bad = FakeUpstream::new()
        .name("bad")
        .behaviour(Behaviour::Status(503))
        .start()
        .unwrap();
    let gw = GatewayProcess::start(&policy(
        &[good.addr, bad.addr],
        "    outlier_detection: { consecutive_failures: 3, base_ejection: 30s, max_ejected: 50% }\n    retries: { attempts: 2, on: [connect, reset, 503], backoff: { base: 1ms, max: 5ms } }\n",
        "",
    ))
    .unwrap();
    for i in 0..30 {
        let r = get(&gw, "/x", &[]);
        assert_eq!(
            (r.status, r.header("x-upstream")),
            (200, Some("good")),
            "request {i}"
        );
    }
    assert_eq!(
        bad.requests_for("/x"),
        3,
        "ejected on its third 503 in a row"
    );
    let s = status(&gw);
    let backends = &s["pools"]["up"]["backends"];
    assert_eq!(backends[1]["ejected"], true, "{s}");
    assert_eq!(backends[1]["times_ejected"], 1, "{s}");
    assert_eq!(backends[1]["recent"]["failures"], 3, "{s}");
    assert_eq!(s["pools"]["up"]["outlier_detection"]["ejected"], 1, "{s}");
}

#[test]
fn a_hanging_or_resetting_backend_costs_the_client_nothing_within_its_attempts() {
    let good = FakeUpstream::new().name("good").start().unwrap();
    let hangs = FakeUpstream::new()
        .name("hangs")
        .behaviour(Behaviour::Hang)
        .start()
        .unwrap();
    let resets = FakeUpstream::new()
        .name("resets")
        .behaviour(Behaviour::Reset)
        .start()
        .unwrap();
    let gw = GatewayProcess::start(&policy(
        &[hangs.addr, resets.addr, good.addr],
        "    retries: { attempts: 3, on: [connect, reset, timeout], per_try_timeout: 300ms, backoff: { base: 1ms, max: 5ms } }\n",
        "",
    ))
    .unwrap();
    for i in 0..9 {
        let r = get(&gw, "/x", &[]);
        assert_eq!(
            (r.status, r.header("x-upstream")),
            (200, Some("good")),
            "request {i}"
        );
    }
    assert!(hangs.requests_for("/x") >= 1 && resets.requests_for("/x") >= 1);
}

#[test]
fn the_retry_budget_caps_amplification_when_every_backend_fails() {
    let ups: Vec<FakeUpstream> = (0..3)
        .map(|i| {
            FakeUpstream::new()
                .name(format!("b{i}"))
                .behaviour(Behaviour::Status(503))
                .start()
                .unwrap()
        })
        .collect();
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let gw = GatewayProcess::start(&policy(
        &addrs,
        "    retries: { attempts: 3, on: [503], backoff: { base: 1ms, max: 2ms }, budget: { ratio: 20%, min_per_second: 0 } }\n",
        "",
    ))
    .unwrap();
    let clients = 100;
    for i in 0..clients {
        let r = get(&gw, "/x", &[]);
        assert_eq!(r.status, 503, "request {i}: the backend's own answer");
        assert!(
            r.header("x-upstream").is_some(),
            "passed through, not made up"
        );
    }
    let sent: u64 = ups.iter().map(|u| u.requests_for("/x")).sum();
    // Without a budget every request would be tried 3 times (300).
    assert!(
        (clients..=clients + clients / 5).contains(&sent),
        "{sent} upstream requests for {clients} client requests"
    );
    let s = status(&gw);
    assert!(
        s["pools"]["up"]["retries"]["budget_exhausted"]
            .as_u64()
            .unwrap()
            > 0,
        "{s}"
    );
}

#[test]
fn a_sticky_cookie_keeps_a_client_on_its_backend_until_that_backend_is_gone() {
    let (ups, addrs) = three_upstreams();
    let gw = GatewayProcess::start(&policy(
        &addrs,
        "    sticky: { cookie: gw_b, ttl: 10m }\n    retries: { attempts: 2 }\n",
        "",
    ))
    .unwrap();
    let first = get(&gw, "/x", &[]);
    let set = first.header("set-cookie").expect("a cookie").to_string();
    assert!(
        set.contains("Max-Age=600") && set.contains("HttpOnly"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let home = first.header("x-upstream").unwrap().to_string();
    for _ in 0..10 {
        let r = get(&gw, "/x", &[("cookie", &cookie)]);
        assert_eq!(r.header("x-upstream"), Some(home.as_str()));
        assert_eq!(r.header("set-cookie"), None, "nothing to change");
    }
    let i = ups.iter().position(|u| u.name() == home).unwrap();
    ups[i].set_behaviour(Behaviour::Reset);
    let moved = get(&gw, "/x", &[("cookie", &cookie)]);
    assert_eq!(moved.status, 200);
    assert_ne!(moved.header("x-upstream"), Some(home.as_str()));
    assert!(
        moved.header("set-cookie").is_some(),
        "re-pinned to the new backend"
    );
}

#[test]
fn ring_hash_sends_one_header_value_to_one_backend() {
    let (_ups, addrs) = three_upstreams();
    let gw = GatewayProcess::start(&policy(
        &addrs,
        "    algorithm: ring_hash\n    hash_key: header:x-user\n",
        "",
    ))
    .unwrap();
    let mut homes = std::collections::BTreeSet::new();
    for user in 0..30 {
        let u = format!("user-{user}");
        let home = get(&gw, "/x", &[("x-user", &u)])
            .header("x-upstream")
            .unwrap()
            .to_string();
        for _ in 0..3 {
            let r = get(&gw, "/x", &[("x-user", &u)]);
            assert_eq!(r.header("x-upstream"), Some(home.as_str()), "{u}");
        }
        homes.insert(home);
    }
    assert_eq!(homes.len(), 3, "30 users spread over the pool");
}

#[test]
fn the_circuit_breaker_answers_503_at_once_when_every_backend_is_full() {
    let slow = FakeUpstream::new()
        .name("slow")
        .behaviour(Behaviour::Slow(Duration::from_secs(3)))
        .start()
        .unwrap();
    let gw = GatewayProcess::start(&policy(
        &[slow.addr],
        "    circuit_breaker: { max_in_flight_per_backend: 1 }\n",
        "",
    ))
    .unwrap();
    let url = format!("{}/x", gw.url());
    let held = std::thread::spawn(move || request("GET", &url, &[], None).map(|r| r.status));
    eventually("the first request in flight", |last| {
        let s = status(&gw);
        *last = s["pools"]["up"]["backends"][0]["in_flight"].to_string();
        Ok((s["pools"]["up"]["backends"][0]["in_flight"] == 1).then_some(()))
    })
    .unwrap();
    let r = get(&gw, "/x", &[]);
    assert_eq!(r.status, 503);
    assert!(r.body.contains("limit of requests in flight"), "{}", r.body);
    assert_eq!(
        slow.requests_for("/x"),
        1,
        "the second never reached the backend"
    );
    assert_eq!(held.join().unwrap().unwrap(), 200);
}
