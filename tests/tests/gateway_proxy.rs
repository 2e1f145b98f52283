//! The gateway in front of a real replicated 3-node TSDB pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
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

/// Queries sent by `threads` threads until `total` are done, while the test does something
/// else; every answer that is not a 200 is kept.
struct Load {
    done: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(gw: &GatewayProcess, threads: usize, total: u64) -> Load {
        let done = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let addr = gw.addr;
        let threads = (0..threads)
            .map(|_| {
                let (done, failures) = (done.clone(), failures.clone());
                std::thread::spawn(move || loop {
                    let i = done.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    match query(addr, Some("d"), "SHOW MEASUREMENTS", None, Method::Get) {
                        Ok((200, _)) => {}
                        other => failures
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(format!("request {i}: {other:?}")),
                    }
                })
            })
            .collect();
        Load {
            done,
            failures,
            threads,
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits for every request; returns the failures.
    fn finish(self) -> Vec<String> {
        for t in self.threads {
            t.join().expect("load thread");
        }
        let f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        f.clone()
    }
}

#[test]
fn a_node_killed_under_steady_load_costs_no_failed_request_and_is_marked_down_in_time() {
    let (mut pool, gw) = pool_and_gateway();
    let (st, _) = query(gw.addr, None, "CREATE DATABASE d", None, Method::Post).expect("create");
    assert_eq!(st, 200);
    converged(&pool, "d", &["SHOW DATABASES"]).expect("the database on every node");
    let addr = pool.node(1).addr.to_string();
    let load = Load::start(&gw, 4, 2_000);
    tests::wait::eventually("a fifth of the load", |_| {
        Ok((load.done() >= 400).then_some(()))
    })
    .expect("load running");
    pool.node_mut(1).kill9();
    let killed = tests::clock::now();
    tests::wait::eventually("the killed node marked down", |last| {
        let doc = status(&gw);
        *last = doc.to_string();
        Ok((backend_healthy(&doc, &addr) == Some(false)).then_some(()))
    })
    .expect("marked down");
    // The policy checks every 200ms and takes a node out after 2 failures.
    let took = tests::clock::now() - killed;
    assert!(
        took <= Duration::from_millis(2 * 200) + Duration::from_secs(2),
        "marked down after {took:?}"
    );
    let failures = load.finish();
    assert!(
        failures.is_empty(),
        "{} of 2000 failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
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

fn status(gw: &GatewayProcess) -> serde_json::Value {
    let res = request(
        "GET",
        &format!("{}/admin/status", gw.admin_url()),
        &[],
        None,
    )
    .expect("status");
    assert_eq!(res.status, 200);
    res.json()
}

fn backend_healthy(doc: &serde_json::Value, addr: &str) -> Option<bool> {
    doc["pools"]["tsdb"]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == addr)?["healthy"]
        .as_bool()
}

#[test]
fn a_killed_backend_is_marked_down_and_back_up_after_it_returns() {
    let (mut pool, gw) = pool_and_gateway();
    let ready = request("GET", &format!("{}/readyz", gw.admin_url()), &[], None).expect("readyz");
    assert_eq!(ready.status, 200);
    let addr = pool.node(2).addr.to_string();
    pool.node_mut(2).kill9();
    tests::wait::eventually("the killed backend marked down", |last| {
        let doc = status(&gw);
        *last = doc.to_string();
        Ok((backend_healthy(&doc, &addr) == Some(false)).then_some(()))
    })
    .expect("marked down within the checks' interval x threshold");
    pool.node_mut(2).restart().expect("restart");
    tests::wait::eventually("the backend back up", |last| {
        let doc = status(&gw);
        *last = doc.to_string();
        Ok((backend_healthy(&doc, &addr) == Some(true)).then_some(()))
    })
    .expect("back after its first good check");
}

fn reloads_ok(gw: &GatewayProcess) -> u64 {
    status(gw)["reloads"]["ok"].as_u64().unwrap_or(0)
}

fn nodes_answering(gw: &GatewayProcess, n: usize) -> std::collections::BTreeSet<String> {
    (0..n)
        .filter_map(|_| {
            request("GET", &format!("{}/ping", gw.url()), &[], None)
                .ok()
                .and_then(|r| r.header("x-tsdb-node").map(str::to_string))
        })
        .collect()
}

#[test]
fn an_edited_policy_file_moves_traffic_by_itself_and_a_bad_one_is_refused_while_the_old_serves() {
    let (pool, gw) = pool_and_gateway();
    let (st, _) = query(gw.addr, None, "CREATE DATABASE d", None, Method::Post).expect("create");
    assert_eq!(st, 200);
    converged(&pool, "d", &["SHOW DATABASES"]).expect("the database on every node");
    let load = Load::start(&gw, 2, 3_000);
    // Only node 0 in the pool now: the watcher reloads, and every answer comes from it.
    std::fs::write(gw.policy_path(), tsdb_policy(&[pool.node(0).addr])).expect("policy");
    tests::wait::eventually("traffic to move to node 0 alone", |last| {
        let nodes = nodes_answering(&gw, 10);
        *last = format!("{nodes:?}");
        Ok((nodes.len() == 1 && nodes.contains("n0")).then_some(()))
    })
    .expect("the edited file took effect");
    let failures = load.finish();
    assert!(
        failures.is_empty(),
        "failed across the reload: {failures:?}"
    );
    // A typo: refused with its position, and traffic goes on as before.
    std::fs::write(
        gw.policy_path(),
        "routes:\n  - name: typo\n    match: { path_prefix: /x }\n    pooll: tsdb\n",
    )
    .expect("bad policy");
    let res = request(
        "POST",
        &format!("{}/admin/reload", gw.admin_url()),
        &[],
        None,
    )
    .expect("reload");
    assert_eq!(res.status, 400);
    assert!(res.body.contains("policy.yaml:4:"), "{}", res.body);
    assert!(status(&gw)["reloads"]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("pooll")));
    for _ in 0..20 {
        let res = request("GET", &format!("{}/ping", gw.url()), &[], None).expect("ping");
        assert_eq!(res.status, 204);
        assert_eq!(res.header("x-tsdb-node"), Some("n0"));
    }
    // Back to the whole pool; then SIGHUP and POST each reload once more.
    let all: Vec<_> = pool.nodes().iter().map(|n| n.addr).collect();
    std::fs::write(gw.policy_path(), tsdb_policy(&all)).expect("policy");
    tests::wait::eventually("traffic over the whole pool again", |last| {
        let nodes = nodes_answering(&gw, 30);
        *last = format!("{nodes:?}");
        Ok((nodes.len() == 3).then_some(()))
    })
    .expect("the fixed file took effect");
    tests::wait::eventually("the watcher to settle", |_| {
        Ok(status(&gw)["reloads"]["last_error"].is_null().then_some(()))
    })
    .expect("no error left");
    let before = reloads_ok(&gw);
    tests::process::signal(gw.pid(), libc::SIGHUP);
    tests::wait::eventually("the SIGHUP reload", |_| {
        Ok((reloads_ok(&gw) > before).then_some(()))
    })
    .expect("reloaded by SIGHUP");
    let before = reloads_ok(&gw);
    let res = request(
        "POST",
        &format!("{}/admin/reload", gw.admin_url()),
        &[],
        None,
    )
    .expect("reload");
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(reloads_ok(&gw) > before);
}
