//! A replicated pool of `tsdb-backend` nodes on free loopback ports, and the checks that the
//! nodes agree.
//!
//! [`Pool::start`] picks every node's port first, then starts node `i` as
//! `--node-id n<i> --peers <the other nodes' URLs>`, one after the other (a node with an
//! empty data dir asks its peers for a snapshot before it serves). Every node is killed by
//! PID when the pool is dropped.
//!
//! The nodes share one `HOME`, a temp dir of the pool ([`Pool::home`]), so they share the
//! pool secret a node creates there on first start (`.tsdb-backend/peer-secret`) as nodes
//! of one user on one machine do, and the real home is never touched.
//!
//! [`converged`] polls, within a bounded deadline, until every node's `/health` shows
//! `lag_entries == 0` towards every peer and the given queries return byte-identical bodies
//! (status 200, no error in the result) on every node.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::http::{self, Method};
use crate::{ports, wait, TsdbProcess};

/// Builder for [`Pool`].
#[derive(Debug, Default)]
pub struct PoolBuilder {
    size: usize,
    args: Vec<OsString>,
    node_args: Vec<(usize, OsString)>,
    tls_ca: Option<PathBuf>,
}

impl PoolBuilder {
    /// An extra command-line argument for every node.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An extra command-line argument for node `i` only (after those for every node).
    pub fn node_arg(mut self, i: usize, arg: impl Into<OsString>) -> Self {
        self.node_args.push((i, arg.into()));
        self
    }

    /// The nodes serve HTTPS and reach each other at `https://127.0.0.1:PORT`; their
    /// certificates (given with [`arg`](Self::arg) as `--tls-cert`/`--tls-key`) are issued by
    /// the CA in `ca_pem`, which the harness trusts to check readiness.
    pub fn https(mut self, ca_pem: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca_pem.into());
        self
    }

    /// Chooses the ports, then starts the nodes in order, each waited for on `/ping`.
    pub fn start(self) -> anyhow::Result<Pool> {
        anyhow::ensure!(self.size > 0, "a pool needs at least one node");
        let ports = (0..self.size)
            .map(|_| ports::free_port())
            .collect::<anyhow::Result<Vec<u16>>>()?;
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect();
        let home = tempfile::Builder::new()
            .prefix("tsdb-pool-home-")
            .tempdir()?;
        let mut nodes = Vec::with_capacity(self.size);
        for (i, port) in ports.iter().enumerate() {
            let peers = peers_of(&urls, i);
            let mut b = TsdbProcess::builder()
                .port(*port)
                .env("HOME", home.path())
                .arg("--node-id")
                .arg(node_id(i));
            if let Some(ca) = &self.tls_ca {
                b = b.https(ca);
            }
            if !peers.is_empty() {
                b = b.arg("--peers").arg(peers);
            }
            for a in &self.args {
                b = b.arg(a.clone());
            }
            for (_, a) in self.node_args.iter().filter(|(j, _)| *j == i) {
                b = b.arg(a.clone());
            }
            let node = b
                .start()
                .with_context(|| format!("starting pool node {} on port {port}", node_id(i)))?;
            nodes.push(node);
        }
        Ok(Pool { nodes, home })
    }
}

/// Node `i`'s `--peers`: the URLs of every other node, comma-separated.
pub fn peers_of(urls: &[String], i: usize) -> String {
    urls.iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, u)| u.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The id the pool gives node `i`: `n<i>`.
pub fn node_id(i: usize) -> String {
    format!("n{i}")
}

/// Nodes that replicate to each other; killed (SIGKILL, by PID) on drop.
#[derive(Debug)]
pub struct Pool {
    nodes: Vec<TsdbProcess>,
    // Declared after the nodes: removed once they are killed.
    home: tempfile::TempDir,
}

impl Pool {
    /// A builder for a pool of `size` nodes.
    pub fn builder(size: usize) -> PoolBuilder {
        PoolBuilder {
            size,
            args: Vec::new(),
            node_args: Vec::new(),
            tls_ca: None,
        }
    }

    /// Starts `size` nodes with default flags.
    pub fn start(size: usize) -> anyhow::Result<Pool> {
        Self::builder(size).start()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the pool has no node (never, for a started pool).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i` (panics if out of range, like indexing).
    pub fn node(&self, i: usize) -> &TsdbProcess {
        &self.nodes[i]
    }

    /// Node `i`, to kill, stop or restart it.
    pub fn node_mut(&mut self, i: usize) -> &mut TsdbProcess {
        &mut self.nodes[i]
    }

    /// All nodes.
    pub fn nodes(&self) -> &[TsdbProcess] {
        &self.nodes
    }

    /// The `HOME` every node runs with.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The last `max` bytes of every node's log, labelled, for failure messages.
    pub fn logs(&self, max: u64) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "----- log of {} ({}) -----\n{}\n",
                    node_id(i),
                    n.addr,
                    n.log_tail(max)
                )
            })
            .collect()
    }
}

/// `GET /health` of a node, as JSON (an error unless it answers 200 with JSON).
pub fn health(node: &TsdbProcess) -> anyhow::Result<Value> {
    let r = http::request("GET", &format!("{}/health", node.url()), &[], None)?;
    anyhow::ensure!(
        r.status == 200,
        "GET /health of {} answered {}: {}",
        node.addr,
        r.status,
        r.body
    );
    serde_json::from_str(&r.body)
        .with_context(|| format!("GET /health of {} is not JSON: {}", node.addr, r.body))
}

/// The entry of `/health`'s `peers` whose `url` is `url`, if any.
pub fn peer_report<'a>(health: &'a Value, url: &str) -> Option<&'a Value> {
    health["peers"]
        .as_array()?
        .iter()
        .find(|p| p["url"].as_str() == Some(url))
}

/// Why a node is not caught up: `None` when every peer of its `/health` shows
/// `lag_entries == 0`.
fn lagging(node: &TsdbProcess) -> anyhow::Result<Option<String>> {
    let h = health(node)?;
    let Some(peers) = h["peers"].as_array() else {
        return Ok(Some(format!(
            "{}: /health has no peers array: {h}",
            node.addr
        )));
    };
    for p in peers {
        match p["lag_entries"].as_u64() {
            Some(0) => {}
            _ => {
                return Ok(Some(format!(
                    "{} still lags towards {}: {p}",
                    node.addr, p["url"]
                )))
            }
        }
    }
    Ok(None)
}

/// The body of `q` on `node` when it answered 200 with no error in any result.
fn answer(node: &TsdbProcess, db: &str, q: &str) -> anyhow::Result<Result<String, String>> {
    let r = http::query_response(node.addr, Some(db), q, None, Method::Get)?;
    if r.status != 200 {
        return Ok(Err(format!(
            "{q:?} on {} answered {}: {}",
            node.addr, r.status, r.body
        )));
    }
    let json = r.json();
    let failed = json["results"]
        .as_array()
        .map(|rs| rs.iter().any(|res| res.get("error").is_some()))
        .unwrap_or(true);
    if failed || json.get("error").is_some() {
        return Ok(Err(format!("{q:?} on {} failed: {}", node.addr, r.body)));
    }
    Ok(Ok(r.body))
}

/// Waits (bounded: `max(patience, 20 s)`) until the pool has converged: no node lags
/// towards any peer, and each of `queries` answers 200 with byte-identical bodies on every
/// node. Returns the agreed body of each query. Transport errors count as "not yet" (a node
/// may be restarting); the error on timeout carries the last difference and the node logs.
pub fn converged(pool: &Pool, db: &str, queries: &[&str]) -> anyhow::Result<Vec<String>> {
    converged_within(
        pool,
        db,
        queries,
        wait::patience().max(Duration::from_secs(20)),
    )
}

/// [`converged`] with an explicit deadline.
pub fn converged_within(
    pool: &Pool,
    db: &str,
    queries: &[&str],
    deadline: Duration,
) -> anyhow::Result<Vec<String>> {
    let res = wait::eventually_within(
        &format!("the pool to converge on {queries:?}"),
        deadline,
        &mut |last| {
            for node in pool.nodes() {
                match lagging(node) {
                    Ok(None) => {}
                    Ok(Some(why)) => {
                        *last = why;
                        return Ok(None);
                    }
                    Err(e) => {
                        *last = format!("{e:#}");
                        return Ok(None);
                    }
                }
            }
            let mut agreed = Vec::with_capacity(queries.len());
            for q in queries {
                let mut first: Option<String> = None;
                for node in pool.nodes() {
                    let body = match answer(node, db, q) {
                        Ok(Ok(b)) => b,
                        Ok(Err(why)) => {
                            *last = why;
                            return Ok(None);
                        }
                        Err(e) => {
                            *last = format!("{e:#}");
                            return Ok(None);
                        }
                    };
                    match &first {
                        None => first = Some(body),
                        Some(f) if *f == body => {}
                        Some(f) => {
                            *last = format!(
                                "{q:?} differs: {} answered {}\n{} answered {}",
                                pool.node(0).addr,
                                excerpt(f),
                                node.addr,
                                excerpt(&body)
                            );
                            return Ok(None);
                        }
                    }
                }
                agreed.push(first.unwrap_or_default());
            }
            Ok(Some(agreed))
        },
    );
    res.map_err(|e| e.context(pool.logs(3000)))
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 1500;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}
