//! Backends addressed by name end to end: a pool whose backend is `localhost:<port>`
//! proxies to the upstream the name resolves to, and `/admin/status` shows the name's
//! addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tests::gateway::{GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::request;
use tests::upstream::FakeUpstream;

#[test]
fn a_pool_addressed_by_name_proxies_to_the_address_it_resolves_to() {
    let up = FakeUpstream::new().name("named").start().unwrap();
    let port = up.addr.port();
    // `localhost` may resolve to ::1 as well, where nothing listens: a connect failure is
    // retried on the other address.
    let policy = format!(
        "pools:\n  up:\n    dns_refresh: 1s\n    backends:\n      - {{ address: localhost:{port} }}\n    {QUIET_HEALTH_CHECK}\n    retries: {{ attempts: 2, on: [connect], backoff: {{ base: 1ms, max: 5ms }} }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    pool: up\n    timeouts: {{ connect: 1s, request: 10s }}\n"
    );
    let gw = GatewayProcess::start(&policy).expect("starting the gateway");
    for _ in 0..5 {
        let r = request("GET", &format!("{}/hello", gw.url()), &[], None).expect("request");
        assert_eq!(r.status, 200, "{}", gw.log());
    }
    assert_eq!(up.requests_for("/hello"), 5);
    let status = request(
        "GET",
        &format!("{}/admin/status", gw.admin_url()),
        &[],
        None,
    )
    .expect("status")
    .json();
    let names = status["backend_names"].as_array().expect("backend_names");
    assert_eq!(names.len(), 1, "{status}");
    assert_eq!(names[0]["pool"], "up");
    assert_eq!(names[0]["name"], format!("localhost:{port}"));
    assert_eq!(names[0]["stale"], false);
    let addresses: Vec<&str> = names[0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        addresses.contains(&up.addr.to_string().as_str()),
        "{addresses:?}"
    );
}

#[test]
fn a_name_that_does_not_resolve_stops_the_start_with_its_position() {
    let policy = "pools:\n  up:\n    backends:\n      - { address: nowhere.invalid:8086 }\nroutes:\n  - name: all\n    match: { path_prefix: / }\n    pool: up\n";
    let Err(err) = GatewayProcess::start(policy) else {
        panic!("the gateway started with a name that does not resolve");
    };
    let text = format!("{err:#}");
    assert!(
        text.contains("backends[0].address: nowhere.invalid:8086 does not resolve"),
        "{text}"
    );
}
