//! A real `gateway` process in front of backends, on free ports, killed on drop.
//!
//! ```no_run
//! use tests::gateway::GatewayProcess;
//! let gw = GatewayProcess::builder("routes: []\n").tls().h2c().start()?;
//! println!("{} {:?} {:?}", gw.url(), gw.tls_addr, gw.h2c_addr);
//! # Ok::<(), anyhow::Error>(())
//! ```

use crate::ports::free_port;
use crate::process::gateway_bin;
use crate::wait;
use anyhow::Context;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A running `gateway run --config <dir>/gateway.yaml` with its policies in `<dir>/policies/`.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// The plaintext HTTP/1.1 listener.
    pub addr: SocketAddr,
    /// The TLS listener (HTTP/2 by ALPN and HTTP/1.1), when asked for.
    pub tls_addr: Option<SocketAddr>,
    /// A plaintext listener that takes HTTP/2 by prior knowledge (h2c), when asked for.
    pub h2c_addr: Option<SocketAddr>,
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

/// How to start a [`GatewayProcess`].
#[derive(Debug, Clone)]
#[must_use]
pub struct GatewayBuilder {
    policy: String,
    tls: bool,
    tls_spec: Option<TlsSpec>,
    h2c: bool,
    drain_timeout: Option<String>,
    redis: Option<String>,
    redis_timeout: Option<String>,
    /// Extra settings of the plaintext listener, as `key: value` YAML.
    listener_options: Vec<String>,
    /// Extra settings of the TLS listener, as `key: value` YAML.
    tls_listener_options: Vec<String>,
    /// Extra top-level lines of the bootstrap file (`access_log: { ... }`); paths in them
    /// are relative to the gateway's directory ([`GatewayProcess::dir`]).
    bootstrap_lines: Vec<String>,
    /// Extra settings of the admin port, as `key: value` YAML.
    admin_options: Vec<String>,
}

/// A TLS listener's files, for tests that bring their own PKI (mTLS, revocation, rotation).
#[derive(Debug, Clone)]
pub struct TlsSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// `required` or `optional` (the listener's default: required).
    pub client_auth: Option<String>,
    pub crl: Option<PathBuf>,
}

impl GatewayBuilder {
    /// Adds a TLS listener with certificates from `gateway dev-certs` (CA at
    /// [`GatewayProcess::ca_path`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Adds a TLS listener with these files instead of development certificates.
    pub fn tls_files(mut self, spec: TlsSpec) -> Self {
        self.tls = true;
        self.tls_spec = Some(spec);
        self
    }

    /// Adds a plaintext listener with `http2: true` (h2c).
    pub fn h2c(mut self) -> Self {
        self.h2c = true;
        self
    }

    /// `shutdown.drain_timeout` of the bootstrap file, e.g. `"2s"`.
    pub fn drain_timeout(mut self, d: &str) -> Self {
        self.drain_timeout = Some(d.to_string());
        self
    }

    /// `redis: { url: "<url>" }` in the bootstrap file: where global rate limits keep
    /// their buckets.
    pub fn redis(mut self, url: &str) -> Self {
        self.redis = Some(url.to_string());
        self
    }

    /// `redis.timeout` of the bootstrap file, e.g. `"50ms"` (only written with [`Self::redis`]).
    pub fn redis_timeout(mut self, d: &str) -> Self {
        self.redis_timeout = Some(d.to_string());
        self
    }

    /// A setting of the plaintext listener `public` (e.g. `("request_head_timeout", "2s")`),
    /// written as `key: value` into its entry of the bootstrap file.
    pub fn listener_option(mut self, key: &str, value: &str) -> Self {
        self.listener_options.push(format!("{key}: {value}"));
        self
    }

    /// A setting of the TLS listener `secure` (with [`Self::tls`]), as
    /// [`Self::listener_option`] is of the plaintext one.
    pub fn tls_listener_option(mut self, key: &str, value: &str) -> Self {
        self.tls_listener_options.push(format!("{key}: {value}"));
        self
    }

    /// Writes the files, starts the gateway and waits (bounded) until every listener
    /// accepts connections.
    /// A top-level line of the bootstrap file, as YAML (`access_log: { to: access.log }`).
    pub fn bootstrap_line(mut self, line: &str) -> Self {
        self.bootstrap_lines.push(line.to_string());
        self
    }

    /// A setting of the admin port (`token_file: admin-token`), beside its address.
    pub fn admin_option(mut self, key: &str, value: &str) -> Self {
        self.admin_options.push(format!("{key}: {value}"));
        self
    }

    pub fn start(self) -> anyhow::Result<GatewayProcess> {
        let dir = tempfile::tempdir()?;
        let port =
            || -> anyhow::Result<SocketAddr> { Ok(format!("127.0.0.1:{}", free_port()?).parse()?) };
        let addr = port()?;
        let admin = port()?;
        let tls_addr = if self.tls { Some(port()?) } else { None };
        let h2c_addr = if self.h2c { Some(port()?) } else { None };
        std::fs::create_dir_all(dir.path().join("policies"))?;
        std::fs::write(dir.path().join("policies/policy.yaml"), &self.policy)?;
        let options: String = self
            .listener_options
            .iter()
            .map(|o| format!(", {o}"))
            .collect();
        let mut listeners =
            format!("listeners:\n  - {{ name: public, address: {addr}{options} }}\n");
        if let Some(a) = tls_addr {
            let tls = match &self.tls_spec {
                Some(spec) => {
                    let mut t =
                        format!("cert: {}, key: {}", spec.cert.display(), spec.key.display());
                    if let Some(ca) = &spec.client_ca {
                        t += &format!(", client_ca: {}", ca.display());
                    }
                    if let Some(mode) = &spec.client_auth {
                        t += &format!(", client_auth: {mode}");
                    }
                    if let Some(crl) = &spec.crl {
                        t += &format!(", crl: {}", crl.display());
                    }
                    t
                }
                None => {
                    let out = Command::new(gateway_bin()?)
                        .args(["dev-certs", "--out"])
                        .arg(dir.path().join("certs"))
                        .output()
                        .context("running gateway dev-certs")?;
                    anyhow::ensure!(out.status.success(), "gateway dev-certs: {out:?}");
                    "cert: certs/server.pem, key: certs/server.key".to_string()
                }
            };
            let options: String = self
                .tls_listener_options
                .iter()
                .map(|o| format!(", {o}"))
                .collect();
            listeners +=
                &format!("  - {{ name: secure, address: {a}, tls: {{ {tls} }}{options} }}\n");
        }
        if let Some(a) = h2c_addr {
            listeners += &format!("  - {{ name: h2c, address: {a}, http2: true }}\n");
        }
        let drain = self
            .drain_timeout
            .map(|d| format!(", drain_timeout: {d}"))
            .unwrap_or_default();
        let shutdown = format!("shutdown: {{ upgrade_socket: upgrade.sock{drain} }}\n");
        let redis = match &self.redis {
            Some(url) => {
                let timeout = self
                    .redis_timeout
                    .as_ref()
                    .map(|t| format!(", timeout: {t}"))
                    .unwrap_or_default();
                format!("redis: {{ url: \"{url}\"{timeout} }}\n")
            }
            None => String::new(),
        };
        std::fs::write(
            dir.path().join("gateway.yaml"),
            format!(
                "{listeners}admin: {{ address: {admin}{} }}\npolicies: policies/\nthreads: 1\n{shutdown}{redis}{}",
                self.admin_options.iter().map(|o| format!(", {o}")).collect::<String>(),
                self.bootstrap_lines.iter().map(|l| format!("{l}\n")).collect::<String>()
            ),
        )?;
        let child = spawn(dir.path(), false)?;
        let mut g = GatewayProcess {
            child,
            addr,
            tls_addr,
            h2c_addr,
            admin,
            dir,
        };
        let all: Vec<SocketAddr> = [Some(addr), tls_addr, h2c_addr]
            .into_iter()
            .flatten()
            .collect();
        wait::eventually("the gateway to accept connections", |last| {
            if let Ok(Some(status)) = g.child.try_wait() {
                anyhow::bail!("gateway exited ({status}): {}", g.log());
            }
            for a in &all {
                if let Err(e) = TcpStream::connect_timeout(a, Duration::from_millis(200)) {
                    *last = format!("{a}: {e}");
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })?;
        Ok(g)
    }
}

/// `gateway run [--upgrade] --config <dir>/gateway.yaml`, its output appended to
/// `<dir>/gateway.log`.
fn spawn(dir: &Path, upgrade: bool) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("gateway.log"))?;
    let mut cmd = Command::new(gateway_bin()?);
    cmd.arg("run");
    if upgrade {
        cmd.arg("--upgrade");
    }
    cmd.arg("--config")
        .arg(dir.join("gateway.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("spawning gateway")
}

impl GatewayProcess {
    /// A gateway whose only policy file is `policy` (YAML text), one plaintext listener.
    pub fn start(policy: &str) -> anyhow::Result<GatewayProcess> {
        GatewayProcess::builder(policy).start()
    }

    pub fn builder(policy: &str) -> GatewayBuilder {
        GatewayBuilder {
            policy: policy.to_string(),
            tls: false,
            tls_spec: None,
            h2c: false,
            drain_timeout: None,
            redis: None,
            redis_timeout: None,
            listener_options: Vec::new(),
            tls_listener_options: Vec::new(),
            bootstrap_lines: Vec::new(),
            admin_options: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// `GET /admin/status` as JSON.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let r = crate::http::request(
            "GET",
            &format!("{}/admin/status", self.admin_url()),
            &[],
            None,
        )?;
        anyhow::ensure!(
            r.status == 200,
            "/admin/status answered {}: {}",
            r.status,
            r.body
        );
        Ok(r.json())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policies/policy.yaml")
    }

    /// The development CA that signed the TLS listener's certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    /// The exit status, once the process has ended (polled, bounded by the patience).
    pub fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        let child = &mut self.child;
        wait::eventually("the gateway to exit", |_| Ok(child.try_wait()?))
    }

    /// Whether the process has ended (without waiting).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Zero-downtime upgrade: starts a second gateway on the same files with `--upgrade`,
    /// waits until it listens on the upgrade socket, then sends SIGQUIT to this one, which
    /// hands over its listening sockets and drains. From then on this handle stands for the
    /// new process; the old one is returned for the caller to watch exit.
    pub fn upgrade(&mut self) -> anyhow::Result<Child> {
        let socket = self.dir.path().join("upgrade.sock");
        let _ = std::fs::remove_file(&socket);
        let mut new = spawn(self.dir.path(), true)?;
        let waited = wait::eventually("the new gateway to open the upgrade socket", |_| {
            if let Some(status) = new.try_wait()? {
                anyhow::bail!("the new gateway exited ({status})");
            }
            Ok(socket.exists().then_some(()))
        });
        if let Err(e) = waited {
            let _ = new.kill();
            let _ = new.wait();
            return Err(e.context(self.log()));
        }
        let old = std::mem::replace(&mut self.child, new);
        crate::process::signal(old.id(), libc::SIGQUIT);
        Ok(old)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pool's health checks rare enough (hourly, and never down) not to count among the
/// requests a test makes or to mark a backend down that a test scripts to fail; the policies
/// of the tests write `{QUIET_HEALTH_CHECK}` in their pools.
pub const QUIET_HEALTH_CHECK: &str =
    "health_check: { path: /ping, interval: 1h, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1000 }";

/// A policy with one pool of `backends` and the InfluxDB routes, as tests need it.
pub fn tsdb_policy(backends: &[SocketAddr]) -> String {
    let list: String = backends
        .iter()
        .map(|b| format!("      - {{ address: {b} }}\n"))
        .collect();
    format!(
        "pools:\n  tsdb:\n    backends:\n{list}    health_check: {{ path: /ping, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2 }}\nroutes:\n  - name: write\n    match: {{ path_prefix: /write, methods: [POST] }}\n    pool: tsdb\n    retries: {{ attempts: 3 }}\n  - name: query\n    match: {{ path_prefix: /query }}\n    pool: tsdb\n    retries: {{ attempts: 3 }}\n  - name: ping\n    match: {{ path: /ping }}\n    pool: tsdb\n"
    )
}

/// A policy with one pool `up` of `backends` and one catch-all route `all` to it, with a
/// request timeout and a number of attempts; health checks rare enough not to interfere
/// with what a scripted backend is told to do.
pub fn catch_all_policy(backends: &[SocketAddr], request_timeout: &str, attempts: u32) -> String {
    let list: String = backends
        .iter()
        .map(|b| format!("      - {{ address: {b} }}\n"))
        .collect();
    format!(
        "pools:\n  up:\n    backends:\n{list}    {QUIET_HEALTH_CHECK}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    pool: up\n    timeouts: {{ connect: 1s, request: {request_timeout} }}\n    retries: {{ attempts: {attempts} }}\n"
    )
}
