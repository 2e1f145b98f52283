//! The gateway in front of a real replicated 3-node TSDB pool.

use tests::gateway::{tsdb_policy, GatewayProcess};
use tests::http::{query, request, write, Method};
use tests::{converged, Pool};

fn pool_and_gateway() -> (Pool, GatewayProcess) {
    let pool = Pool::start(3).expect("starting the pool");
    let addrs: Vec<_> = pool.nodes().iter().map(|n| n.addr).collect();
    let gw = GatewayProcess::start(&tsdb_policy(&addrs)).expect("starting the gateway");
    (pool, gw)
}

#[test]
fn writes_and_queries_through_the_gateway_reach_the_whole_pool() {
    let (pool, gw) = pool_and_gateway();
    let (st, _) = query(gw.addr, None, "CREATE DATABASE d", None, Method::Post).expect("create");
    assert_eq!(st, 200);
    // The pool is AP: the database reaches the other nodes after the replication lag.
    converged(&pool, "d", &["SHOW DATABASES"]).expect("the database on every node");
    for b in 0..10 {
        let body: String = (0..100)
            .map(|i| format!("m,b=b{b} v={i}i {}\n", 1_000_000_000 + b * 1000 + i))
            .collect();
        let (st, text) = write(gw.addr, "d", &body, Some("ns")).expect("write");
        assert_eq!(st, 204, "{text}");
    }
    let bodies = converged(&pool, "d", &["SELECT count(v) FROM m"]).expect("convergence");
    assert!(bodies[0].contains("1000"), "{}", bodies[0]);
    let (st, through) = query(
        gw.addr,
        Some("d"),
        "SELECT count(v) FROM m",
        None,
        Method::Get,
    )
    .expect("query");
    assert_eq!(st, 200);
    assert_eq!(
        through.to_string(),
        serde_json::from_str::<serde_json::Value>(&bodies[0])
            .expect("json")
            .to_string()
    );
}

#[test]
fn a_dead_backend_costs_no_failed_request() {
    let (mut pool, gw) = pool_and_gateway();
    let (st, _) = query(gw.addr, None, "CREATE DATABASE d", None, Method::Post).expect("create");
    assert_eq!(st, 200);
    pool.node_mut(1).kill9();
    let mut failed = Vec::new();
    for i in 0..300 {
        match query(gw.addr, Some("d"), "SHOW MEASUREMENTS", None, Method::Get) {
            Ok((200, _)) => {}
            other => failed.push(format!("request {i}: {other:?}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}\n{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        gw.log()
    );
}

#[test]
fn an_unknown_route_is_a_json_404_and_request_ids_travel_both_ways() {
    let (_pool, gw) = pool_and_gateway();
    let res = request("GET", &format!("{}/nowhere", gw.url()), &[], None).expect("request");
    assert_eq!(res.status, 404);
    assert_eq!(res.json()["error"], "no route for GET /nowhere");
    assert!(res.header("x-request-id").is_some_and(|id| id.len() == 32));
    let res = request(
        "GET",
        &format!("{}/ping", gw.url()),
        &[("x-request-id", "abc-123")],
        None,
    )
    .expect("ping");
    assert_eq!(res.status, 204);
    assert_eq!(res.header("x-request-id"), Some("abc-123"));
    assert!(
        res.header("x-tsdb-node").is_some(),
        "answered by a pool node"
    );
}

#[test]
fn a_pool_with_every_backend_down_is_an_error_answer_not_a_hang() {
    let (mut pool, gw) = pool_and_gateway();
    for i in 0..3 {
        pool.node_mut(i).kill9();
    }
    let res = request("GET", &format!("{}/ping", gw.url()), &[], None).expect("request");
    assert!(res.status == 502 || res.status == 503, "{}", res.status);
    assert!(res.json()["error"].is_string(), "{:?}", res.body);
}
