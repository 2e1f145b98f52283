//! The system under fault: three TSDB nodes replicating to each other, two gateways in
//! front of them sharing global rate limits through one Redis, and a client, each a host of
//! a [`Lab`] with its own address, started from the release binaries.
//!
//! ```text
//!   client 10.77.0.100 ── gw0 .21, gw1 .22 ── n0 .11, n1 .12, n2 .13
//!                              └──── redis .30
//! ```
//!
//! The calling thread moves into the client's namespace ([`Lab::enter`]): from then on every
//! request the test makes, and every thread it starts, is the client's. Faults are named as
//! an operator would name them ([`Cluster::isolate_node`], [`Cluster::cut_from_redis`], ...);
//! [`Cluster::heal`] ends the network ones.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::checker::Row;
use super::net::{Impairment, Lab, LabError, LabProcess};
use super::workload::{DATABASE, MEASUREMENT};
use crate::process::release_bin;
use crate::{http, wait};

/// TSDB nodes in the pool.
pub const NODES: usize = 3;
/// Gateways in front of them.
pub const GATEWAYS: usize = 2;

// Fixed ports, not free ones: each host is a network namespace of its own, where nothing
// else listens.
const TSDB_PORT: u16 = 8086;
const GATEWAY_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9090;
const REDIS_PORT: u16 = 6379;

/// The address keepalived moves between the gateways ([`Cluster::vrrp`]).
pub const VIRTUAL_IP: &str = "10.77.0.50";

fn node_host(i: usize) -> String {
    format!("n{i}")
}

fn gateway_host(i: usize) -> String {
    format!("gw{i}")
}

/// How the gateways are set up: the health checks and outlier settings the failover
/// assertions are made against.
pub const HEALTH_INTERVAL_MS: u64 = 500;
pub const HEALTH_TIMEOUT_MS: u64 = 300;
pub const UNHEALTHY_THRESHOLD: u64 = 2;
pub const REQUEST_TIMEOUT_MS: u64 = 2_000;

/// What to change from the default cluster.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Node `i`'s data directory is a file system of this many bytes of its own.
    pub small_disk: Option<(usize, u64)>,
    /// Extra arguments for every node.
    pub node_args: Vec<String>,
}

/// The running system; everything in it is stopped and removed when it is dropped.
#[derive(Debug)]
pub struct Cluster {
    // Processes first: they are killed before the lab deletes their namespaces.
    pub nodes: Vec<LabProcess>,
    pub gateways: Vec<LabProcess>,
    pub redis: LabProcess,
    keepalived: Vec<LabProcess>,
    data_dirs: Vec<PathBuf>,
    pub lab: Lab,
}

fn tcp_open(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn node_ready(addr: SocketAddr) -> impl Fn() -> bool {
    move || http::ping(addr).is_ok_and(|s| s == 204)
}

impl Cluster {
    /// Builds the lab, enters the client's namespace and starts Redis, the nodes and the
    /// gateways. [`LabError::Unavailable`] when this machine cannot make namespaces.
    pub fn start(options: Options) -> Result<Cluster, LabError> {
        let mut hosts: Vec<(String, u8)> =
            (0..NODES).map(|i| (node_host(i), 11 + i as u8)).collect();
        hosts.extend((0..GATEWAYS).map(|i| (gateway_host(i), 21 + i as u8)));
        hosts.push(("redis".into(), 30));
        hosts.push(("client".into(), 100));
        let names: Vec<(&str, u8)> = hosts.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        let mut lab = Lab::new(&names)?;
        lab.enter("client")?;
        let started = Self::start_in(&mut lab, &options);
        match started {
            Ok((nodes, gateways, redis, data_dirs)) => Ok(Cluster {
                nodes,
                gateways,
                redis,
                keepalived: Vec::new(),
                data_dirs,
                lab,
            }),
            Err(e) => Err(LabError::Failed(e)),
        }
    }

    #[allow(clippy::type_complexity)]
    fn start_in(
        lab: &mut Lab,
        options: &Options,
    ) -> anyhow::Result<(Vec<LabProcess>, Vec<LabProcess>, LabProcess, Vec<PathBuf>)> {
        let tsdb = release_bin("tsdb-backend", "TSDB_BACKEND_BIN")?;
        let gateway = release_bin("gateway", "GATEWAY_BIN")?;
        let redis_addr = SocketAddr::new(lab.host("redis").ip.into(), REDIS_PORT);
        let redis_dir = lab.dir().join("redis");
        std::fs::create_dir_all(&redis_dir)?;
        let redis = lab.spawn(
            "redis",
            "redis",
            Path::new(crate::redis::REDIS_SERVER_BIN),
            &[
                "--bind".into(),
                redis_addr.ip().to_string(),
                "--port".into(),
                REDIS_PORT.to_string(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
                "--protected-mode".into(),
                "no".into(),
                "--dir".into(),
                redis_dir.display().to_string(),
            ],
            &[],
            &move || tcp_open(redis_addr),
        )?;

        let home = lab.dir().join("home");
        std::fs::create_dir_all(&home)?;
        let urls: Vec<String> = (0..NODES)
            .map(|i| format!("http://{}:{TSDB_PORT}", lab.host(&node_host(i)).ip))
            .collect();
        let mut nodes = Vec::new();
        let mut data_dirs = Vec::new();
        for i in 0..NODES {
            let data = lab.dir().join(format!("data-n{i}"));
            match options.small_disk {
                Some((j, bytes)) if j == i => lab.small_disk(&data, bytes)?,
                _ => std::fs::create_dir_all(&data)?,
            }
            let addr = SocketAddr::new(lab.host(&node_host(i)).ip.into(), TSDB_PORT);
            let mut args = vec![
                "--listen".to_string(),
                addr.to_string(),
                "--data-dir".into(),
                data.display().to_string(),
                "--node-id".into(),
                format!("n{i}"),
                "--peers".into(),
                crate::pool::peers_of(&urls, i),
                "--create-database".into(),
                DATABASE.into(),
            ];
            args.extend(options.node_args.iter().cloned());
            let node = lab
                .spawn(
                    &node_host(i),
                    &format!("n{i}"),
                    &tsdb,
                    &args,
                    &[("HOME", &home)],
                    &node_ready(addr),
                )
                .with_context(|| format!("starting node n{i}"))?;
            nodes.push(node);
            data_dirs.push(data);
        }

        let backends: Vec<SocketAddr> = (0..NODES)
            .map(|i| SocketAddr::new(lab.host(&node_host(i)).ip.into(), TSDB_PORT))
            .collect();
        let mut gateways = Vec::new();
        for i in 0..GATEWAYS {
            let dir = lab.dir().join(gateway_host(i));
            std::fs::create_dir_all(dir.join("policies"))?;
            std::fs::write(dir.join("policies/policy.yaml"), policy(&backends))?;
            std::fs::write(
                dir.join("gateway.yaml"),
                format!(
                    "listeners:\n  - {{ name: public, address: 0.0.0.0:{GATEWAY_PORT} }}\n\
                     admin: {{ address: 0.0.0.0:{ADMIN_PORT} }}\n\
                     policies: policies/\nthreads: 1\n\
                     redis: {{ url: \"redis://{redis_addr}\", timeout: 50ms }}\n"
                ),
            )?;
            let addr = SocketAddr::new(lab.host(&gateway_host(i)).ip.into(), GATEWAY_PORT);
            let admin = SocketAddr::new(addr.ip(), ADMIN_PORT);
            let gw = lab
                .spawn(
                    &gateway_host(i),
                    &gateway_host(i),
                    &gateway,
                    &[
                        "run".into(),
                        "--config".into(),
                        dir.join("gateway.yaml").display().to_string(),
                    ],
                    &[],
                    &move || {
                        tcp_open(addr)
                            && http::request("GET", &format!("http://{admin}/readyz"), &[], None)
                                .is_ok_and(|r| r.status == 200)
                    },
                )
                .with_context(|| format!("starting gateway gw{i}"))?;
            gateways.push(gw);
        }
        Ok((nodes, gateways, redis, data_dirs))
    }

    /// `http://10.77.0.1x:8086` of node `i`.
    pub fn node_url(&self, i: usize) -> String {
        format!("http://{}:{TSDB_PORT}", self.lab.host(&node_host(i)).ip)
    }

    /// `10.77.0.1x:8086`: node `i`'s address, as [`http::write`] takes it.
    pub fn node_addr(&self, i: usize) -> String {
        format!("{}:{TSDB_PORT}", self.lab.host(&node_host(i)).ip)
    }

    /// `http://10.77.0.2x:8080` of gateway `i`.
    pub fn gateway_url(&self, i: usize) -> String {
        format!(
            "http://{}:{GATEWAY_PORT}",
            self.lab.host(&gateway_host(i)).ip
        )
    }

    /// `http://10.77.0.2x:9090` of gateway `i`'s admin port.
    pub fn admin_url(&self, i: usize) -> String {
        format!("http://{}:{ADMIN_PORT}", self.lab.host(&gateway_host(i)).ip)
    }

    /// Every gateway's base URL, for the workload.
    pub fn gateway_urls(&self) -> Vec<String> {
        (0..GATEWAYS).map(|i| self.gateway_url(i)).collect()
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.data_dirs[i]
    }

    // ---- faults ------------------------------------------------------------------------

    /// Node `i` can no longer reach its peers, nor they it; the gateways and the client
    /// still reach every node.
    pub fn isolate_node(&self, i: usize) -> anyhow::Result<()> {
        for j in (0..NODES).filter(|j| *j != i) {
            self.lab.block(&node_host(i), &node_host(j))?;
        }
        Ok(())
    }

    /// Splits the pool 2/1: nodes n0, n1 and gateway gw0 on one side, n2 and gw1 on the
    /// other. The client and Redis still reach both sides.
    pub fn split_pool(&self) -> anyhow::Result<()> {
        for (a, b) in [
            ("n0", "n2"),
            ("n1", "n2"),
            ("gw0", "n2"),
            ("gw1", "n0"),
            ("gw1", "n1"),
        ] {
            self.lab.block(a, b)?;
        }
        Ok(())
    }

    /// Gateway `i` can no longer reach Redis.
    pub fn cut_from_redis(&self, i: usize) -> anyhow::Result<()> {
        self.lab.block(&gateway_host(i), "redis")
    }

    /// What node `from` sends to node `to` is lost with `probability` (that way only).
    pub fn lose_one_way(&self, from: usize, to: usize, probability: f64) -> anyhow::Result<()> {
        self.lab
            .lose_one_way(&node_host(from), &node_host(to), probability)
    }

    /// Everything node `i` sends is delayed and partly lost (its link is slow and lossy).
    pub fn slow_link(&mut self, i: usize, how: Impairment) -> anyhow::Result<()> {
        let shaper = crate::process::locate_or_build_in("tests", "link-shaper", "LINK_SHAPER_BIN")?;
        self.lab.shape(&node_host(i), how, &shaper)
    }

    /// Ends every network fault.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        self.lab.heal()
    }

    /// Fills node `i`'s (small) disk with a file until the file system refuses more.
    pub fn fill_disk(&self, i: usize) -> anyhow::Result<u64> {
        use std::io::Write;
        let path = self.data_dirs[i].join("filler");
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![0xAAu8; 1 << 20];
        let mut written = 0u64;
        // Bounded: a disk of 4 GiB at most is filled.
        for _ in 0..4096 {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e).context("filling the disk"),
            }
        }
        let _ = f.sync_all();
        Ok(written)
    }

    /// Gives node `i`'s disk its space back.
    pub fn free_disk(&self, i: usize) -> anyhow::Result<()> {
        std::fs::remove_file(self.data_dirs[i].join("filler")).context("removing the filler")
    }

    /// Restarts node `i` (SIGKILL first if it runs), waiting until it answers `/ping`.
    pub fn restart_node(&mut self, i: usize) -> anyhow::Result<()> {
        let addr = SocketAddr::new(self.lab.host(&node_host(i)).ip.into(), TSDB_PORT);
        self.nodes[i].restart(&node_ready(addr))
    }

    // ---- what the operator sees ----------------------------------------------------------

    /// `GET /health` of node `i`: its status, message and replication lag per peer.
    pub fn node_health(&self, i: usize) -> String {
        match http::request("GET", &format!("{}/health", self.node_url(i)), &[], None) {
            Ok(r) => match serde_json::from_str::<Value>(&r.body) {
                Ok(h) => {
                    let lags: Vec<String> = h["peers"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .map(|p| {
                                    format!(
                                        "{} lag {}",
                                        p["url"]
                                            .as_str()
                                            .unwrap_or("?")
                                            .trim_start_matches("http://"),
                                        p["lag_entries"]
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "{} {} ({}; {})",
                        r.status,
                        h["status"].as_str().unwrap_or("?"),
                        h["message"].as_str().unwrap_or(""),
                        lags.join(", ")
                    )
                }
                Err(_) => format!("{} {}", r.status, r.body.trim()),
            },
            Err(e) => format!("no answer: {e:#}"),
        }
    }

    /// Entries node `i` has not yet shipped to node `j`, from `i`'s `/health`.
    pub fn lag(&self, i: usize, j: usize) -> Option<u64> {
        let r = http::request("GET", &format!("{}/health", self.node_url(i)), &[], None).ok()?;
        let h: Value = serde_json::from_str(&r.body).ok()?;
        let peer = self.node_url(j);
        h["peers"]
            .as_array()?
            .iter()
            .find(|p| p["url"].as_str() == Some(peer.as_str()))?["lag_entries"]
            .as_u64()
    }

    /// `GET /admin/status` of gateway `i`, as JSON.
    pub fn gateway_status(&self, i: usize) -> anyhow::Result<Value> {
        let r = http::request(
            "GET",
            &format!("{}/admin/status", self.admin_url(i)),
            &[],
            None,
        )?;
        serde_json::from_str(&r.body).with_context(|| format!("status of gw{i}: {}", r.body))
    }

    /// How gateway `i` sees the pool: `address: healthy|unhealthy[, ejected]` per node.
    pub fn gateway_view(&self, i: usize) -> String {
        let Ok(s) = self.gateway_status(i) else {
            return "no answer".into();
        };
        let backends = s["pools"]["tsdb"]["backends"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        backends
            .iter()
            .map(|b| {
                format!(
                    "{} {}{}",
                    b["address"].as_str().unwrap_or("?"),
                    if b["healthy"].as_bool() == Some(true) {
                        "healthy"
                    } else {
                        "unhealthy"
                    },
                    if b["ejected"].as_bool() == Some(true) {
                        ", ejected"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The value of the first sample of metric `name` (with `labels` in its label set) on
    /// gateway `i`'s `/metrics`.
    pub fn gateway_metric(&self, i: usize, name: &str, labels: &str) -> Option<f64> {
        scraped(&self.admin_url(i), name, labels)
    }

    /// The value of the first sample of `name` on node `i`'s `/metrics`.
    pub fn node_metric(&self, i: usize, name: &str, labels: &str) -> Option<f64> {
        scraped(&self.node_url(i), name, labels)
    }

    // ---- convergence and the checker's input -------------------------------------------

    /// Waits (within `patience`) until every node reports no replication lag towards any
    /// peer and all hold the same number of points; returns how long that took.
    pub fn converge(&self, patience: Duration) -> anyhow::Result<Duration> {
        let start = crate::clock::now();
        wait::eventually_within("the pool to converge", patience, &mut |last| {
            let mut counts = Vec::new();
            for i in 0..NODES {
                let h = http::request("GET", &format!("{}/health", self.node_url(i)), &[], None);
                let lagging = match h {
                    Ok(r) if r.status == 200 => serde_json::from_str::<Value>(&r.body)
                        .ok()
                        .and_then(|h| h["peers"].as_array().cloned())
                        .is_none_or(|ps| ps.iter().any(|p| p["lag_entries"].as_u64() != Some(0))),
                    _ => true,
                };
                if lagging {
                    *last = format!("n{i}: {}", self.node_health(i));
                    return Ok(None);
                }
                counts.push(self.count(i).unwrap_or(-1));
            }
            if counts.windows(2).any(|w| w[0] != w[1]) {
                *last = format!("point counts differ: {counts:?}");
                return Ok(None);
            }
            Ok(Some(()))
        })?;
        Ok(crate::clock::now().duration_since(start))
    }

    /// How many of the workload's points node `i` holds (read from it directly).
    pub fn count(&self, i: usize) -> anyhow::Result<i64> {
        let q = http::urlencode(&format!("SELECT count(id) FROM {MEASUREMENT}"));
        let url = format!("{}/query?db={DATABASE}&q={q}", self.node_url(i));
        let v: Value = serde_json::from_str(&http::request("GET", &url, &[], None)?.body)?;
        Ok(v["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0))
    }

    /// Every point node `i` holds, read directly from it.
    pub fn rows(&self, i: usize) -> anyhow::Result<Vec<Row>> {
        let q = http::urlencode(&format!("SELECT id, v FROM {MEASUREMENT}"));
        let r = http::request(
            "GET",
            &format!("{}/query?db={DATABASE}&epoch=ns&q={q}", self.node_url(i)),
            &[],
            None,
        )?;
        anyhow::ensure!(r.status == 200, "query of n{i}: {} {}", r.status, r.body);
        let v: Value = serde_json::from_str(&r.body)?;
        let values = v["results"][0]["series"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        values
            .iter()
            .map(|row| {
                Ok(Row {
                    time_ns: row[0].as_i64().context("time")?,
                    id: row[1].as_u64().context("id")?,
                    value: row[2].as_i64().context("v")?,
                })
            })
            .collect()
    }

    /// `(node name, rows)` of every node, for [`super::checker::check`].
    pub fn all_rows(&self) -> anyhow::Result<Vec<(String, Vec<Row>)>> {
        (0..NODES)
            .map(|i| Ok((node_host(i), self.rows(i)?)))
            .collect()
    }

    /// The logs of every process, for a failure message.
    pub fn logs(&self, max: u64) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            out += &format!("----- n{i} -----\n{}\n", n.log_tail(max));
        }
        for (i, g) in self.gateways.iter().enumerate() {
            out += &format!("----- gw{i} -----\n{}\n", g.log_tail(max));
        }
        out
    }

    /// Adds keepalived to both gateway hosts: they share [`VIRTUAL_IP`] by VRRP, gw0 first,
    /// each checking its own gateway's `/readyz` every second.
    pub fn vrrp(&mut self) -> anyhow::Result<()> {
        let keepalived = Path::new("/usr/sbin/keepalived");
        anyhow::ensure!(
            keepalived.is_file(),
            "keepalived is not installed (Debian keepalived; scripts/install-test-deps.sh)"
        );
        for i in 0..GATEWAYS {
            let host = gateway_host(i);
            let dir = self.lab.dir().join(format!("keepalived-{host}"));
            std::fs::create_dir_all(&dir)?;
            let conf = dir.join("keepalived.conf");
            std::fs::write(
                &conf,
                keepalived_conf(&host, &self.admin_url(i), 200 - 50 * i as u32),
            )?;
            let args: Vec<String> = ["--dont-fork", "--log-console", "--vrrp", "--use-file"]
                .iter()
                .map(|s| s.to_string())
                .chain([
                    conf.display().to_string(),
                    "--pid".into(),
                    dir.join("keepalived.pid").display().to_string(),
                    "--vrrp_pid".into(),
                    dir.join("vrrp.pid").display().to_string(),
                ])
                .collect();
            let log = self.lab.dir().join(format!("keepalived-{host}.log"));
            let p = self.lab.spawn(
                &host,
                &format!("keepalived-{host}"),
                keepalived,
                &args,
                &[],
                &move || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("VRRP")),
            )?;
            self.keepalived.push(p);
        }
        Ok(())
    }
}

impl Cluster {
    /// The gateway whose host holds [`VIRTUAL_IP`] now, if one does.
    pub fn vip_holder(&self) -> Option<usize> {
        (0..GATEWAYS).find(|i| {
            self.lab
                .addresses(&gateway_host(*i))
                .is_ok_and(|a| a.contains(&format!("{VIRTUAL_IP}/")))
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // keepalived's VRRP child leaves with its parent on SIGTERM, not on SIGKILL.
        for k in &mut self.keepalived {
            k.terminate();
        }
    }
}

/// One keepalived instance of the gateway pair.
fn keepalived_conf(host: &str, admin: &str, priority: u32) -> String {
    format!(
        "global_defs {{\n  router_id {host}\n  enable_script_security\n  script_user root\n}}\n\
         vrrp_script gateway_ready {{\n  script \"/usr/bin/curl -sf -m 1 -o /dev/null {admin}/readyz\"\n  interval 1\n  timeout 1\n  fall 2\n  rise 1\n}}\n\
         vrrp_instance gateways {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int 1\n\
           virtual_ipaddress {{\n    {VIRTUAL_IP}/24 dev eth0\n  }}\n  track_script {{\n    gateway_ready\n  }}\n}}\n"
    )
}

/// The gateways' policy: the pool of nodes with active health checks and outlier
/// detection, writes and queries routed to it, queries under a global limit that fails open
/// when Redis is away.
fn policy(backends: &[SocketAddr]) -> String {
    let list: String = backends
        .iter()
        .map(|b| format!("      - {{ address: {b} }}\n"))
        .collect();
    format!(
        "on_limiter_error: fail_open\n\
         rate_limits:\n  queries: {{ key: [client_ip], rate: 10000/s, burst: 10000, scope: global }}\n\
         pools:\n  tsdb:\n    algorithm: p2c\n    backends:\n{list}\
         \x20   health_check: {{ path: /ping, interval: {HEALTH_INTERVAL_MS}ms, timeout: {HEALTH_TIMEOUT_MS}ms, healthy_threshold: 1, unhealthy_threshold: {UNHEALTHY_THRESHOLD} }}\n\
         \x20   outlier_detection: {{ consecutive_failures: 3, base_ejection: 5s, max_ejected: 50% }}\n\
         routes:\n\
         \x20 - name: write\n    match: {{ path_prefix: /write, methods: [POST] }}\n    pool: tsdb\n\
         \x20   timeouts: {{ connect: 500ms, request: {REQUEST_TIMEOUT_MS}ms }}\n    retries: {{ attempts: 2 }}\n\
         \x20 - name: query\n    match: {{ path_prefix: /query }}\n    pool: tsdb\n\
         \x20   timeouts: {{ connect: 500ms, request: {REQUEST_TIMEOUT_MS}ms }}\n    retries: {{ attempts: 3 }}\n    rate_limit: [queries]\n\
         \x20 - name: ping\n    match: {{ path: /ping }}\n    pool: tsdb\n"
    )
}

/// The first sample of `name` (with `labels`) on `base`'s `/metrics`.
fn scraped(base: &str, name: &str, labels: &str) -> Option<f64> {
    let r = http::request("GET", &format!("{base}/metrics"), &[], None).ok()?;
    metric(&r.body, name, labels)
}

/// The first sample of `name` whose labels contain `labels`, in Prometheus text.
fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                && l.contains(labels)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
