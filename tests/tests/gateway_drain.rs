//! Draining a backend from the admin port end to end: after `POST
//! /admin/pools/{pool}/backends/{address}/drain` no new request reaches it and the status
//! page shows it draining; `.../undrain` puts it back; unknown pools and backends are 404s
//! that name what exists. Each try's response time shows per backend in the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tests::gateway::{catch_all_policy, GatewayProcess};
use tests::http::request;
use tests::upstream::FakeUpstream;

fn post(gw: &GatewayProcess, path: &str) -> tests::http::Response {
    request("POST", &format!("{}{path}", gw.admin_url()), &[], Some(b"")).unwrap()
}

fn backend_status(gw: &GatewayProcess, address: &str) -> serde_json::Value {
    let status = gw.status().unwrap();
    let backends = status["pools"]["up"]["backends"]
        .as_array()
        .unwrap()
        .clone();
    backends
        .into_iter()
        .find(|b| b["address"] == address)
        .unwrap_or_else(|| panic!("{address} not on the status page: {status}"))
}

#[test]
fn a_drained_backend_gets_no_new_requests_until_it_is_undrained() {
    let a = FakeUpstream::new().name("a").start().unwrap();
    let b = FakeUpstream::new().name("b").start().unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[a.addr, b.addr], "5s", 1)).unwrap();
    let get = |path: &str| request("GET", &format!("{}{path}", gw.url()), &[], None).unwrap();
    assert_eq!(backend_status(&gw, &a.addr.to_string())["draining"], false);

    let r = post(&gw, &format!("/admin/pools/up/backends/{}/drain", a.addr));
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["backends"][0]["address"], a.addr.to_string());
    assert_eq!(answer["backends"][0]["draining"], true);
    assert_eq!(backend_status(&gw, &a.addr.to_string())["draining"], true);
    for _ in 0..20 {
        assert_eq!(get("/while-drained").status, 200);
    }
    assert_eq!(a.requests_for("/while-drained"), 0);
    assert_eq!(b.requests_for("/while-drained"), 20);

    let r = post(&gw, &format!("/admin/pools/up/backends/{}/undrain", a.addr));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(backend_status(&gw, &a.addr.to_string())["draining"], false);
    for _ in 0..20 {
        assert_eq!(get("/after").status, 200);
    }
    assert!(a.requests_for("/after") > 0, "back in service");
    // Each try's time to its answer, per backend: a's are exactly its requests.
    let metrics = request("GET", &format!("{}/metrics", gw.admin_url()), &[], None)
        .unwrap()
        .body;
    let count = format!(
        "gateway_backend_response_seconds_count{{backend=\"{}\",pool=\"up\"}} {}",
        a.addr,
        a.requests_for("/after")
    );
    assert!(metrics.contains(&count), "{count} not in\n{metrics}");

    let r = post(&gw, "/admin/pools/nope/backends/127.0.0.1:1/drain");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("pools: up"), "{}", r.body);
    let r = post(&gw, "/admin/pools/up/backends/127.0.0.1:1/drain");
    assert_eq!(r.status, 404);
    assert!(r.body.contains(&a.addr.to_string()), "{}", r.body);
}
