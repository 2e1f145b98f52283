//! A real `gateway` process in front of backends, on free ports, killed on drop.

use crate::ports::free_port;
use crate::process::gateway_bin;
use crate::wait;
use anyhow::Context;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `gateway run --config <dir>/gateway.yaml` with its policies in `<dir>/policies/`.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Starts a gateway whose only policy file is `policy` (YAML text), and waits (bounded)
    /// until its listener accepts connections.
    pub fn start(policy: &str) -> anyhow::Result<GatewayProcess> {
        let dir = tempfile::tempdir()?;
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        std::fs::create_dir_all(dir.path().join("policies"))?;
        std::fs::write(dir.path().join("policies/policy.yaml"), policy)?;
        std::fs::write(
            dir.path().join("gateway.yaml"),
            format!(
                "listeners:\n  - {{ name: public, address: {addr} }}\nadmin: {{ address: {admin} }}\npolicies: policies/\nthreads: 1\n"
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("gateway.log"))?;
        let child = Command::new(gateway_bin()?)
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("gateway.yaml"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("spawning gateway")?;
        let mut g = GatewayProcess {
            child,
            addr,
            admin,
            dir,
        };
        let ready = wait::eventually("the gateway to accept connections", |last| {
            if let Ok(Some(status)) = g.child.try_wait() {
                anyhow::bail!("gateway exited ({status}): {}", g.log());
            }
            match TcpStream::connect_timeout(&g.addr, Duration::from_millis(200)) {
                Ok(_) => Ok(Some(())),
                Err(e) => {
                    *last = e.to_string();
                    Ok(None)
                }
            }
        });
        ready.map(|_| g)
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policies/policy.yaml")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
