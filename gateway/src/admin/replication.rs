//! `GET /admin/replication`: the replication state of the TSDB nodes behind the gateway's
//! pools, as each node reports it on its own `/health` (`peers`: every link's state and
//! lag). The dashboard shows it per pool; a backend whose `/health` says nothing of peers
//! (not a TSDB node, or one alone) is left out, and so is a pool with none.
//!
//! The nodes are asked in parallel with a short timeout, at most once a second however many
//! dashboards are open (the answer is kept for a second), so ten viewers cost the nodes what
//! one does. Plaintext pools only: a TLS pool's nodes are not asked (the pool's CA and
//! client certificate live in the proxy's connector, not on the admin port).

use crate::clock::Clock;
use crate::runtime::Snapshot;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one answer is served before the nodes are asked again.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// The longest one node's `/health` is waited for.
const TIMEOUT: Duration = Duration::from_millis(800);
/// The most of a node's `/health` read.
const MAX_HEALTH: u64 = 256 * 1024;

/// The last answer, shared by every viewer.
#[derive(Debug)]
pub struct ReplicationView {
    clock: Arc<dyn Clock>,
    agent: ureq::Agent,
    last: Mutex<Option<(Instant, Arc<Value>)>>,
}

impl ReplicationView {
    pub fn new(clock: Arc<dyn Clock>) -> ReplicationView {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        ReplicationView {
            clock,
            agent,
            last: Mutex::new(None),
        }
    }

    /// The pools' replication state: the kept answer if it is fresh, else asked anew.
    pub async fn current(&self, snapshot: &Snapshot) -> Arc<Value> {
        let now = self.clock.now();
        if let Some((at, v)) = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if now.saturating_duration_since(*at) < FRESH_FOR {
                return v.clone();
            }
        }
        let targets = targets(snapshot);
        let mut asked = Vec::with_capacity(targets.len());
        for (pool, addr) in targets {
            let agent = self.agent.clone();
            asked.push((
                pool,
                addr,
                tokio::task::spawn_blocking(move || fetch(&agent, addr)),
            ));
        }
        let mut pools = serde_json::Map::new();
        for (pool, addr, task) in asked {
            let health = task.await.ok().flatten();
            if let Some(row) = health.as_ref().and_then(|h| summary(addr, h)) {
                let list = pools
                    .entry(pool)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(rows) = list {
                    rows.push(row);
                }
            }
        }
        let answer = Arc::new(json!({ "pools": pools }));
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((self.clock.now(), answer.clone()));
        answer
    }
}

/// Every backend address of the plaintext pools, with its pool.
fn targets(snapshot: &Snapshot) -> Vec<(String, SocketAddr)> {
    snapshot
        .pools
        .iter()
        .filter(|(_, p)| p.pool.tls.is_none())
        .flat_map(|(name, p)| p.pool.backends.iter().map(|b| (name.clone(), b.address)))
        .collect()
}

/// A node's `/health` as JSON, if it answers one in time.
fn fetch(agent: &ureq::Agent, addr: SocketAddr) -> Option<Value> {
    let mut answer = agent.get(&format!("http://{addr}/health")).call().ok()?;
    let text = answer
        .body_mut()
        .with_config()
        .limit(MAX_HEALTH)
        .read_to_string()
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// One row of the view: the node, its status and its links' lag, if `health` is a TSDB
/// node's with peers.
fn summary(addr: SocketAddr, health: &Value) -> Option<Value> {
    let peers = health.get("peers")?.as_array()?;
    if peers.is_empty() {
        return None;
    }
    let number = |p: &Value, k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let max = |k: &str| peers.iter().map(|p| number(p, k)).fold(0.0, f64::max);
    let links: Vec<Value> = peers
        .iter()
        .map(|p| {
            json!({
                "url": p.get("url").cloned().unwrap_or(Value::Null),
                "state": p.get("state").cloned().unwrap_or(Value::Null),
                "lag_entries": number(p, "lag_entries"),
                "lag_seconds": number(p, "lag_seconds"),
            })
        })
        .collect();
    Some(json!({
        "backend": addr.to_string(),
        "node": health.pointer("/node/id").cloned().unwrap_or(Value::Null),
        "status": health.get("status").cloned().unwrap_or(Value::Null),
        "max_lag_entries": max("lag_entries"),
        "max_lag_seconds": max("lag_seconds"),
        "peers": links,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a free loopback port that takes one connection, reads its request head
    /// and answers `answer`, or, for `None`, says nothing and keeps the connection open until
    /// the returned sender is dropped (at most a minute): only the client's own timeout can
    /// end that fetch.
    fn server(answer: Option<Vec<u8>>) -> (SocketAddr, std::sync::mpsc::Sender<()>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                match &answer {
                    Some(bytes) => {
                        let _ = s.write_all(bytes);
                    }
                    None => {
                        let _ = released.recv_timeout(Duration::from_secs(60));
                    }
                }
            }
        });
        (addr, release)
    }

    #[test]
    fn a_node_that_stalls_or_floods_or_talks_nonsense_gives_no_row_within_the_timeout() {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let (silent, release) = server(None);
        assert!(fetch(&agent, silent).is_none(), "a silent node");
        drop(release);
        let flood = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{{\"peers\": \"{}\"}}",
            MAX_HEALTH + 20,
            "x".repeat(MAX_HEALTH as usize)
        );
        assert!(
            fetch(&agent, server(Some(flood.into_bytes())).0).is_none(),
            "a flood"
        );
        let garbage = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n\x00\xff{]x".to_vec();
        assert!(fetch(&agent, server(Some(garbage)).0).is_none(), "not JSON");
        let tls = server(Some(b"\x16\x03\x01 not http".to_vec())).0;
        assert!(fetch(&agent, tls).is_none(), "not HTTP");
    }

    #[test]
    fn a_nodes_health_becomes_a_row_and_anything_else_none() {
        let addr: SocketAddr = "127.0.0.1:8086".parse().unwrap();
        let health = json!({
            "status": "pass",
            "node": { "id": "n1" },
            "peers": [
                { "url": "http://127.0.0.1:8087", "state": "streaming", "lag_entries": 0, "lag_seconds": 0.0 },
                { "url": "http://127.0.0.1:8088", "state": "retrying", "lag_entries": 12, "lag_seconds": 3.5 },
            ]
        });
        let row = summary(addr, &health).unwrap();
        assert_eq!(row["node"], "n1");
        assert_eq!(row["max_lag_entries"], 12.0);
        assert_eq!(row["max_lag_seconds"], 3.5);
        assert_eq!(row["peers"][1]["state"], "retrying");
        assert!(summary(addr, &json!({ "status": "pass", "peers": [] })).is_none());
        assert!(summary(addr, &json!({ "ok": true })).is_none());
        assert!(summary(addr, &json!("not an object")).is_none());
    }
}
