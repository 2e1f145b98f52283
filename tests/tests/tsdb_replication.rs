//! Replication between `tsdb-backend` nodes of a pool: every batch a node acknowledges reaches
//! every other node, whatever happens to the nodes (SIGKILL, SIGSTOP, a wiped data dir), and
//! the nodes end with byte-identical answers to the same queries.
//!
//! Each test starts its own pool of real processes on free loopback ports (see
//! `tests::pool`), and waits for convergence with `tests::converged`: no node lags towards
//! any peer in `/health`, and every node answers the queries with the same bytes.
//!
//! Batches are identifiable: measurement `m`, tag `b=<batch id>`, `LINES` points with
//! timestamps unique to (batch, line), so `SELECT count(v) FROM m GROUP BY b` tells per batch
//! whether a node has it whole, not at all, or (a bug) in part.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use serde_json::Value;
use tests::http::{self, Method};
use tests::pool::{health, node_id, peer_report};
use tests::process::signal;
use tests::{clock, converged, eventually, Pool, TsdbProcess};

const DB: &str = "r";
/// Timestamps of batch `id` are `BASE_NS + id * 1000 + line`, `line < 1000`.
const BASE_NS: u64 = 1_600_000_000_000_000_000;
/// Points per identifiable batch.
const LINES: u64 = 100;
const COUNT_BY_BATCH: &str = "SELECT count(v) FROM m GROUP BY b";

// ---------------------------------------------------------------------------------------------
// helpers

/// `POST /write` of `body` to `node`: the status, or the transport error as text.
fn write(addr: SocketAddr, body: &str) -> Result<u16, String> {
    http::write(addr, DB, body, None)
        .map(|(status, _)| status)
        .map_err(|e| format!("{e:#}"))
}

/// Runs `q` (a statement without result rows, like DDL) on `node` and insists it succeeded.
fn exec(node: &TsdbProcess, q: &str) {
    let (status, json) =
        http::query(node.addr, None, q, None, Method::Post).expect("the node answers /query");
    assert_eq!(status, 200, "{q} on {}: {json}", node.addr);
    assert!(
        json["results"][0].get("error").is_none(),
        "{q} on {} failed: {json}",
        node.addr
    );
}

/// Database names `SHOW DATABASES` lists on `node` (empty on any failure).
/// Forces a node's head into blocks (`POST /debug/flush`, answered once durable).
fn flush(node: &TsdbProcess) {
    let r = http::request("POST", &format!("{}/debug/flush", node.url()), &[], None)
        .expect("POST /debug/flush");
    assert_eq!(r.status, 204, "flush of {}: {}", node.url(), r.body);
}

fn databases(node: &TsdbProcess) -> BTreeSet<String> {
    let Ok((200, json)) = http::query(node.addr, None, "SHOW DATABASES", None, Method::Get) else {
        return BTreeSet::new();
    };
    json["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r[0].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `CREATE DATABASE` on node `on`, then waits until every node lists it (DDL replicates).
fn create_db_everywhere(pool: &Pool, on: usize) {
    exec(pool.node(on), &format!("CREATE DATABASE {DB}"));
    for (i, node) in pool.nodes().iter().enumerate() {
        eventually(
            &format!("database {DB} to appear on {}", node_id(i)),
            |last| {
                let dbs = databases(node);
                *last = format!("{dbs:?}");
                Ok(dbs.contains(DB).then_some(()))
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)));
    }
}

/// Line protocol of identifiable batch `id`.
fn batch_body(id: u64) -> String {
    (0..LINES)
        .map(|i| format!("m,b={id} v={i}i {}\n", BASE_NS + id * 1000 + i))
        .collect()
}

/// Writes batch `id` to `node` and insists on a 204.
fn write_acked(node: &TsdbProcess, id: u64) {
    let got = write(node.addr, &batch_body(id));
    assert_eq!(
        got,
        Ok(204),
        "batch {id} to {}\nlog:\n{}",
        node.addr,
        node.log_tail(3000)
    );
}

/// Parses the body of [`COUNT_BY_BATCH`]: batch id → points stored.
fn counts_by_batch(body: &str) -> BTreeMap<u64, u64> {
    let json: Value = serde_json::from_str(body).expect("count answer is JSON");
    let mut out = BTreeMap::new();
    let Some(series) = json["results"][0]["series"].as_array() else {
        return out;
    };
    for s in series {
        let id: u64 = s["tags"]["b"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("series without a numeric b tag: {s}"));
        let n = s["values"][0][1]
            .as_u64()
            .unwrap_or_else(|| panic!("no count in {s}"));
        out.insert(id, n);
    }
    out
}

/// Asserts that every batch in `acked` is stored whole in the agreed answer, and that no
/// other batch is stored in part (a batch that got no answer may be there whole or not).
fn assert_batches(counts: &BTreeMap<u64, u64>, acked: &BTreeSet<u64>, pool: &Pool) {
    let missing: Vec<(u64, Option<u64>)> = acked
        .iter()
        .filter(|id| counts.get(id) != Some(&LINES))
        .map(|id| (*id, counts.get(id).copied()))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged batches missing or partial on every node (id, count): {missing:?}\n{}",
        pool.logs(4000)
    );
    let partial: Vec<(&u64, &u64)> = counts.iter().filter(|(_, n)| **n != LINES).collect();
    assert!(partial.is_empty(), "partial batches: {partial:?}");
}

/// `/health` of node `i`, or a panic with the logs.
fn health_of(pool: &Pool, i: usize) -> Value {
    health(pool.node(i)).unwrap_or_else(|e| panic!("{e:#}\n{}", pool.logs(3000)))
}

/// Resumes a SIGSTOPped process when dropped, so that a failed assertion never leaves a
/// stopped node behind (the pool's drop then kills it).
struct ContinueOnDrop(u32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

// ---------------------------------------------------------------------------------------------
// tests

#[test]
fn concurrent_writers_on_every_node_converge_to_byte_identical_answers() {
    const BATCHES: u64 = 20;
    const PER_BATCH: u64 = 200;
    let started = clock::now();
    let pool = Pool::start(3).expect("a pool of 3 starts");
    create_db_everywhere(&pool, 0);

    let acked: [AtomicU64; 3] = Default::default();
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (i, node) in pool.nodes().iter().enumerate() {
            let (acked, failures) = (&acked[i], &failures);
            s.spawn(move || {
                for b in 0..BATCHES {
                    let mut body = String::new();
                    for l in 0..PER_BATCH {
                        let k = b * PER_BATCH + l;
                        // The same timestamps on every node: ties between series must be
                        // ordered the same way everywhere.
                        body.push_str(&format!(
                            "m,src={},h=h{} v={k}i,f={} {}\n",
                            node_id(i),
                            k % 7,
                            k as f64 / 7.0,
                            BASE_NS + k
                        ));
                    }
                    match write(node.addr, &body) {
                        Ok(204) => {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        other => failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{} batch {b}: {other:?}", node_id(i))),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        failures.is_empty(),
        "writes to a healthy pool failed: {failures:?}\n{}",
        pool.logs(3000)
    );

    let queries = [
        "SELECT count(v), sum(v), mean(f) FROM m GROUP BY src",
        "SELECT * FROM m WHERE h = 'h3' ORDER BY time DESC LIMIT 50",
        "SHOW SERIES",
        "SHOW FIELD KEYS",
    ];
    let agreed = converged(&pool, DB, &queries).unwrap_or_else(|e| panic!("{e:#}"));
    // The same answers once every node's values are in blocks, not in its head.
    for node in pool.nodes() {
        flush(node);
    }
    let from_blocks = converged(&pool, DB, &queries).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        from_blocks, agreed,
        "answers change once the values are in blocks"
    );

    // Counts and sums are what was acknowledged, per origin node.
    let json: Value = serde_json::from_str(&agreed[0]).expect("JSON");
    let series = json["results"][0]["series"]
        .as_array()
        .unwrap_or_else(|| panic!("no series in {json}"));
    assert_eq!(series.len(), 3, "one group per source node: {json}");
    for (i, a) in acked.iter().enumerate() {
        let n = a.load(Ordering::SeqCst) * PER_BATCH;
        let s = series
            .iter()
            .find(|s| s["tags"]["src"].as_str() == Some(node_id(i).as_str()))
            .unwrap_or_else(|| panic!("no group for {}: {json}", node_id(i)));
        assert_eq!(
            s["values"][0][1].as_u64(),
            Some(n),
            "count of {}: {s}",
            node_id(i)
        );
        assert_eq!(
            s["values"][0][2].as_u64(),
            Some(n * n.saturating_sub(1) / 2),
            "sum of {}: {s}",
            node_id(i)
        );
    }
    let rows: Value = serde_json::from_str(&agreed[1]).expect("JSON");
    assert_eq!(
        rows["results"][0]["series"][0]["values"]
            .as_array()
            .map(Vec::len),
        Some(50),
        "{rows}"
    );
    let show: Value = serde_json::from_str(&agreed[2]).expect("JSON");
    assert_eq!(
        show["results"][0]["series"][0]["values"]
            .as_array()
            .map(Vec::len),
        Some(21),
        "3 sources x 7 h values: {show}"
    );
    assert!(
        agreed[3].contains("\"f\",\"float\"") && agreed[3].contains("\"v\",\"integer\""),
        "{}",
        agreed[3]
    );

    // Every answer names the node that gave it.
    let mut ids = BTreeSet::new();
    for (i, node) in pool.nodes().iter().enumerate() {
        let r = http::request("GET", &format!("{}/ping", node.url()), &[], None).expect("ping");
        assert_eq!(r.header("x-tsdb-node"), Some(node_id(i).as_str()));
        ids.insert(r.header("x-tsdb-node").map(str::to_string));
    }
    assert_eq!(ids.len(), 3, "X-Tsdb-Node differs per node: {ids:?}");

    // Every node reports two peers, both ok and caught up, in /health and /metrics.
    for (i, node) in pool.nodes().iter().enumerate() {
        let others: BTreeSet<String> = pool
            .nodes()
            .iter()
            .filter(|n| n.addr != node.addr)
            .map(TsdbProcess::url)
            .collect();
        eventually(
            &format!("{} to report its 2 peers ok", node_id(i)),
            |last| {
                let h = health(node)?;
                *last = h.to_string();
                assert_eq!(h["node"]["id"].as_str(), Some(node_id(i).as_str()), "{h}");
                let peers = h["peers"].as_array().cloned().unwrap_or_default();
                let urls: BTreeSet<String> = peers
                    .iter()
                    .filter_map(|p| p["url"].as_str().map(str::to_string))
                    .collect();
                assert_eq!(urls, others, "peers of {}: {h}", node_id(i));
                Ok(peers
                    .iter()
                    .all(|p| p["state"] == "ok" && p["lag_entries"] == 0)
                    .then_some(()))
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        let metrics = http::request("GET", &format!("{}/metrics", node.url()), &[], None)
            .expect("metrics")
            .body;
        for url in &others {
            let line = format!("tsdb_replication_lag_entries{{peer=\"{url}\"}} 0");
            assert!(
                metrics.lines().any(|l| l == line),
                "{} /metrics lacks {line:?}",
                node_id(i)
            );
        }
    }
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn a_sigkilled_node_catches_up_and_nothing_acknowledged_is_lost() {
    const MAX_BATCHES_PER_WRITER: u64 = 400;
    let started = clock::now();
    let mut pool = Pool::start(3).expect("a pool of 3 starts");
    create_db_everywhere(&pool, 0);

    let next_id = AtomicU64::new(0);
    let acked = Mutex::new(BTreeSet::new());
    let unanswered = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let node2_acked = AtomicU64::new(0);
    // Writes batch `id` to `addr` and records the outcome; true on a 204.
    let send = |id: u64, who: usize, addr: SocketAddr| -> bool {
        match write(addr, &batch_body(id)) {
            Ok(204) => {
                acked.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
                true
            }
            other => {
                unanswered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((id, who, other));
                false
            }
        }
    };
    let addrs: Vec<SocketAddr> = pool.nodes().iter().map(|n| n.addr).collect();

    std::thread::scope(|s| {
        // Writers on nodes 0 and 1 keep going through the kill and the restart of node 2.
        // (The threads hold addresses only, so the pool can be changed meanwhile.)
        for who in [0usize, 1] {
            let (addr, next_id, stop, send) = (addrs[who], &next_id, &stop, &send);
            let deadline = clock::now() + Duration::from_secs(20);
            s.spawn(move || {
                for _ in 0..MAX_BATCHES_PER_WRITER {
                    if stop.load(Ordering::SeqCst) || clock::now() > deadline {
                        break;
                    }
                    send(next_id.fetch_add(1, Ordering::SeqCst), who, addr);
                }
            });
        }
        // The writer on node 2 runs until its node dies under it.
        let (addr2, next_id, send, node2_acked) = (addrs[2], &next_id, &send, &node2_acked);
        let w2 = s.spawn(move || {
            for _ in 0..MAX_BATCHES_PER_WRITER {
                if !send(next_id.fetch_add(1, Ordering::SeqCst), 2, addr2) {
                    break;
                }
                node2_acked.fetch_add(1, Ordering::SeqCst);
            }
        });
        eventually("node 2's writer to have 5 batches acknowledged", |last| {
            let n = node2_acked.load(Ordering::SeqCst);
            *last = format!("{n} acknowledged");
            Ok((n >= 5).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
        pool.node_mut(2).kill9();
        w2.join().expect("node 2's writer does not panic");
        // A window on purpose: nodes 0 and 1 take writes while node 2 is down.
        std::thread::sleep(Duration::from_secs(1));
        // Node 2 comes back on the same port and data dir, and takes writes too.
        pool.node_mut(2).restart().expect("node 2 restarts");
        for _ in 0..10 {
            let id = next_id.fetch_add(1, Ordering::SeqCst);
            assert!(
                send(id, 2, addrs[2]),
                "batch {id} to the restarted node 2\n{}",
                pool.logs(3000)
            );
        }
        stop.store(true, Ordering::SeqCst);
    });

    let agreed = converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));
    let counts = counts_by_batch(&agreed[0]);
    let acked = acked.into_inner().unwrap_or_else(|e| e.into_inner());
    let unanswered = unanswered.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "{} batches acknowledged, {} stored, unanswered (id, node, outcome): {unanswered:?}; \
         took {:?}",
        acked.len(),
        counts.len(),
        started.elapsed()
    );
    assert!(
        unanswered.iter().all(|(_, who, _)| *who == 2),
        "only writes to the killed node may go unanswered: {unanswered:?}"
    );
    assert_batches(&counts, &acked, &pool);
}

#[test]
fn a_stopped_node_drains_its_backlog_after_sigcont() {
    let started = clock::now();
    let pool = Pool::start(3).expect("a pool of 3 starts");
    create_db_everywhere(&pool, 0);
    let mut acked = BTreeSet::new();
    for (id, who) in [(0, 0), (1, 1), (2, 2)] {
        write_acked(pool.node(who), id);
        acked.insert(id);
    }
    converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));

    let stopped_url = pool.node(1).url();
    let pid = pool.node(1).pid().expect("node 1 runs");
    assert!(signal(pid, libc::SIGSTOP), "SIGSTOP node 1 (pid {pid})");
    let stopped = ContinueOnDrop(pid);

    // A window on purpose: ~2 s of writes to nodes 0 and 2 while node 1 is stopped.
    let window = clock::now();
    let mut id = 3;
    while clock::now().duration_since(window) < Duration::from_secs(2) && id < 400 {
        write_acked(pool.node(if id % 2 == 0 { 0 } else { 2 }), id);
        acked.insert(id);
        id += 1;
    }

    for from in [0, 2] {
        let h = health_of(&pool, from);
        let p = peer_report(&h, &stopped_url)
            .unwrap_or_else(|| panic!("{} lists no peer {stopped_url}: {h}", node_id(from)));
        assert!(
            p["lag_entries"].as_u64().is_some_and(|n| n > 0),
            "{} must show lag towards the stopped node: {p}",
            node_id(from)
        );
        // The window may end early (400 batches): the age of the oldest unacknowledged
        // entry keeps growing while node 1 stays stopped.
        eventually(
            &format!("{} to show lag older than 1 s", node_id(from)),
            |last| {
                let h = health(pool.node(from))?;
                let p = peer_report(&h, &stopped_url)
                    .cloned()
                    .unwrap_or(Value::Null);
                *last = p.to_string();
                Ok(p["lag_seconds"]
                    .as_f64()
                    .is_some_and(|s| s >= 1.0)
                    .then_some(()))
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let metrics = http::request("GET", &format!("{}/metrics", pool.node(0).url()), &[], None)
        .expect("metrics")
        .body;
    let prefix = format!("tsdb_replication_lag_entries{{peer=\"{stopped_url}\"}} ");
    let lag: Option<u64> = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok());
    assert!(lag.is_some_and(|n| n > 0), "node 0 /metrics lag {lag:?}");

    // Checked now, asserted after convergence (so a failure here still shows whether the
    // backlog drains).
    let retrying = eventually("node 0 to report the stopped node as retrying", |last| {
        let h = health(pool.node(0))?;
        let p = peer_report(&h, &stopped_url)
            .cloned()
            .unwrap_or(Value::Null);
        *last = p.to_string();
        Ok((p["state"] == "retrying").then_some(()))
    });

    drop(stopped); // SIGCONT
    let agreed = converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_batches(&counts_by_batch(&agreed[0]), &acked, &pool);
    for from in [0, 2] {
        eventually(
            &format!("{} to report node 1 ok again", node_id(from)),
            |last| {
                let h = health(pool.node(from))?;
                let p = peer_report(&h, &stopped_url)
                    .cloned()
                    .unwrap_or(Value::Null);
                *last = p.to_string();
                Ok((p["state"] == "ok" && p["lag_entries"] == 0).then_some(()))
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    }
    eprintln!("{} batches; took {:?}", acked.len(), started.elapsed());
    // A SIGSTOPped peer's listener still accepts connections: only the shipper's bounded
    // wait for an answer turns the link to `retrying` (checked after the rest, so a
    // failure here still shows whether the backlog drained).
    if let Err(e) = retrying {
        panic!("{e:#}\n{}", pool.logs(2500));
    }
}

#[test]
fn a_node_past_the_backlog_is_resynchronised_with_the_blocks_it_lacks() {
    let started = clock::now();
    // A backlog of 16 KiB: a few batches missed and the entries are gone from it.
    let pool = Pool::builder(3)
        .arg("--replication-backlog-bytes")
        .arg("16384")
        .start()
        .expect("a pool of 3 starts");
    create_db_everywhere(&pool, 0);
    let mut acked = BTreeSet::new();
    for id in 0..3 {
        write_acked(pool.node(id as usize), id);
        acked.insert(id);
    }
    converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));
    for i in 0..3 {
        flush(pool.node(i));
    }

    let stopped_url = pool.node(1).url();
    let pid = pool.node(1).pid().expect("node 1 runs");
    assert!(signal(pid, libc::SIGSTOP), "SIGSTOP node 1 (pid {pid})");
    let stopped = ContinueOnDrop(pid);
    for id in 3..40 {
        write_acked(pool.node(if id % 2 == 0 { 0 } else { 2 }), id);
        acked.insert(id);
    }
    // Most of what node 1 missed is in blocks by now, the rest in the heads.
    flush(pool.node(0));
    flush(pool.node(2));
    for id in 40..44 {
        write_acked(pool.node(0), id);
        acked.insert(id);
    }
    drop(stopped); // SIGCONT

    let agreed = converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));
    let counts = counts_by_batch(&agreed[0]);
    assert_batches(&counts, &acked, &pool);
    assert_eq!(
        counts.keys().copied().collect::<BTreeSet<u64>>(),
        acked,
        "exactly the acknowledged batches"
    );
    let resyncs: u64 = [0, 2]
        .iter()
        .map(|&from| {
            let h = health_of(&pool, from);
            peer_report(&h, &stopped_url)
                .and_then(|p| p["resyncs"].as_u64())
                .unwrap_or(0)
        })
        .sum();
    assert!(
        resyncs >= 1,
        "node 1 missed more than the backlog holds: it was resynchronised\n{}",
        pool.logs(3000)
    );
    let logs = pool.logs(20_000);
    assert!(
        logs.lines()
            .any(|l| l.contains("peer resynchronised") && !l.contains("blocks_sent=0")),
        "a resync sent blocks:\n{logs}"
    );
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn a_wiped_node_rebuilds_from_its_peers() {
    let started = clock::now();
    let mut pool = Pool::start(3).expect("a pool of 3 starts");
    create_db_everywhere(&pool, 0);
    let mut acked = BTreeSet::new();
    for id in 0..6 {
        write_acked(pool.node((id % 3) as usize), id);
        acked.insert(id);
    }
    let before = converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_batches(&counts_by_batch(&before[0]), &acked, &pool);
    // The peers' values are in blocks: the rebuild reads them from there.
    flush(pool.node(0));
    flush(pool.node(2));
    let old_origin = health_of(&pool, 1)["node"]["origin"]
        .as_str()
        .expect("node.origin")
        .to_string();

    // Node 1 loses its disk.
    pool.node_mut(1).kill9();
    let dir = pool.node(1).data_dir().to_path_buf();
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("node 1's data dir")
        .take(10_000)
        .collect();
    assert!(!entries.is_empty(), "node 1 had stored something");
    for e in entries {
        let path = e.expect("dir entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove");
        } else {
            std::fs::remove_file(&path).expect("remove");
        }
    }

    for id in 6..10 {
        write_acked(pool.node(0), id);
        acked.insert(id);
    }
    pool.node_mut(1)
        .restart()
        .expect("node 1 restarts on an empty dir");

    // It pulled a snapshot before serving: what the pool agreed on before is there at once.
    let (status, first) = http::query(
        pool.node(1).addr,
        Some(DB),
        COUNT_BY_BATCH,
        None,
        Method::Get,
    )
    .expect("node 1 answers");
    assert_eq!(status, 200, "{first}");
    let first = counts_by_batch(&first.to_string());
    for id in 0..6 {
        assert_eq!(
            first.get(&id),
            Some(&LINES),
            "batch {id} on the rebuilt node at its first answer: {first:?}\n{}",
            pool.logs(3000)
        );
    }
    let h = health_of(&pool, 1);
    let new_origin = h["node"]["origin"]
        .as_str()
        .expect("node.origin")
        .to_string();
    assert_eq!(h["node"]["id"], "n1", "{h}");
    assert!(new_origin.starts_with("n1/"), "{h}");
    assert_ne!(new_origin, old_origin, "a wiped node is a new incarnation");

    // Writes the rebuilt node accepts reach the others.
    for id in 10..13 {
        write_acked(pool.node(1), id);
        acked.insert(id);
    }
    let after = converged(&pool, DB, &[COUNT_BY_BATCH]).unwrap_or_else(|e| panic!("{e:#}"));
    let counts = counts_by_batch(&after[0]);
    assert_batches(&counts, &acked, &pool);
    assert_eq!(
        counts.keys().copied().collect::<BTreeSet<u64>>(),
        acked,
        "exactly the acknowledged batches"
    );
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn the_same_point_written_on_two_nodes_ends_with_one_value_everywhere() {
    const POINTS: u64 = 20;
    let started = clock::now();
    let pool = Pool::start(3).expect("a pool of 3 starts");
    create_db_everywhere(&pool, 0);
    let ts = |k: u64| 1_000_000_000 + k * 1_000_000_000;

    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        for (who, value) in [(0usize, 1), (1, 2)] {
            let (node, barrier) = (pool.node(who), &barrier);
            s.spawn(move || {
                for k in 0..POINTS {
                    barrier.wait();
                    let got = write(node.addr, &format!("c,k=x v={value}i {}", ts(k)));
                    assert_eq!(got, Ok(204), "point {k} to {}", node_id(who));
                }
            });
        }
    });

    let q = "SELECT v FROM c";
    let agreed = converged(&pool, DB, &[q]).unwrap_or_else(|e| panic!("{e:#}"));
    let values = |body: &str| -> Vec<i64> {
        let json: Value = serde_json::from_str(body).expect("JSON");
        json["results"][0]["series"][0]["values"]
            .as_array()
            .unwrap_or_else(|| panic!("no rows: {json}"))
            .iter()
            .map(|r| r[1].as_i64().unwrap_or_else(|| panic!("v in {r}")))
            .collect()
    };
    let first = values(&agreed[0]);
    assert_eq!(
        first.len(),
        POINTS as usize,
        "one row per timestamp: {}",
        agreed[0]
    );
    assert!(
        first.iter().all(|v| *v == 1 || *v == 2),
        "every value is one of the two written: {}",
        agreed[0]
    );
    eprintln!("concurrent winners: {first:?}");

    // A write after convergence is later than both: it wins everywhere.
    let body: String = (0..POINTS)
        .map(|k| format!("c,k=x v=5i {}\n", ts(k)))
        .collect();
    assert_eq!(write(pool.node(2).addr, &body), Ok(204));
    let agreed = converged(&pool, DB, &[q]).unwrap_or_else(|e| panic!("{e:#}"));
    let last = values(&agreed[0]);
    assert_eq!(last.len(), POINTS as usize, "{}", agreed[0]);
    assert!(
        last.iter().all(|v| *v == 5),
        "the later write wins on every node: {}",
        agreed[0]
    );
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn internal_endpoints_are_hidden_from_clients() {
    let pool = Pool::start(2).expect("a pool of 2 starts");
    let node = pool.node(0);
    let unknown =
        http::request("GET", &format!("{}/no/such/path", node.url()), &[], None).expect("request");
    assert_eq!(unknown.status, 404);
    for (method, path) in [
        ("POST", "/internal/replicate?origin=x%2F1&after=0"),
        ("POST", "/internal/resync?origin=x%2F1"),
        ("GET", "/internal/state?part=head"),
        ("GET", "/internal/blocks"),
        ("GET", "/internal/block?db=r&hash=0000000000000000"),
    ] {
        let body: Option<&[u8]> = (method == "POST").then_some(b"");
        let r =
            http::request(method, &format!("{}{path}", node.url()), &[], body).expect("request");
        assert_eq!(
            r.status, 404,
            "{method} {path} without X-Tsdb-Peer: {}",
            r.body
        );
        assert_eq!(
            r.body, unknown.body,
            "{method} {path}: the same 404 as an unknown path"
        );
        assert_eq!(r.header("x-tsdb-node"), Some("n0"));
    }
    // The route exists: the header alone is refused, a peer with the pool's secret answered.
    let url = format!("{}/internal/replicate?origin=x%2F1&after=0", node.url());
    let r = http::request("POST", &url, &[("X-Tsdb-Peer", "n1")], Some(b"")).expect("request");
    assert_eq!(r.status, 401, "the peer header alone: {}", r.body);
    let secret = std::fs::read_to_string(pool.home().join(".tsdb-backend/peer-secret"))
        .expect("the pool's nodes created their shared secret in their HOME");
    let bearer = format!("Bearer {}", secret.trim());
    let r = http::request(
        "POST",
        &url,
        &[("X-Tsdb-Peer", "n1"), ("Authorization", &bearer)],
        Some(b""),
    )
    .expect("request");
    assert_eq!(r.status, 200, "an empty batch from a peer: {}", r.body);
    // And the node still serves its clients.
    assert_eq!(http::ping(node.addr).expect("ping"), 204);
}
