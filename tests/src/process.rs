//! Server processes under test: spawned on free loopback ports, logged to a file, polled on
//! `/ping` until ready, and killed by PID (SIGKILL) on drop.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::Context;
use tempfile::TempDir;

use crate::{http, ports, wait};

/// Path of the reference InfluxDB binary.
pub const INFLUXD_BIN: &str = "/usr/bin/influxd";

/// Sends `sig` to `pid`. Returns false if the process does not exist (any more).
#[allow(unsafe_code)]
fn send_signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a child we spawned and
    // have not reaped yet (reaping happens only in `ChildGuard`, after the signal).
    unsafe { libc::kill(pid, sig) == 0 }
}

/// Sends signal `sig` (e.g. `libc::SIGSTOP`, `libc::SIGCONT`) to process `pid`. Returns
/// false if there is no such process (any more). Only for processes the test started.
pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    send_signal(pid, sig)
}

/// A spawned child, killed with SIGKILL and reaped when dropped.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    child: std::process::Child,
}

impl ChildGuard {
    /// Takes charge of a spawned child: it is killed (SIGKILL) and reaped when dropped.
    pub(crate) fn new(child: std::process::Child) -> ChildGuard {
        ChildGuard { child }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status text)` when the child has exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    pub(crate) fn kill9(&mut self) {
        if self.exited().is_none() {
            send_signal(self.pid(), libc::SIGKILL);
        }
        // SIGKILL cannot be caught: wait returns promptly.
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to the patience for a clean exit, then SIGKILL.
    pub(crate) fn terminate(&mut self) -> Option<String> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        send_signal(self.pid(), libc::SIGTERM);
        let status = wait::eventually("process to exit after SIGTERM", |_| Ok(self.exited())).ok();
        if status.is_none() {
            self.kill9();
        }
        status
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Last `max` bytes of a log file, for error messages.
pub fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return "(log not seekable)".into();
    }
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        format!("...{text}")
    } else {
        text
    }
}

/// Spawns `cmd` with stdout/stderr appended to `log`, then polls `GET http://addr/ping` until
/// it answers 204, within [`wait::patience`] (at least 30 s for cold starts). Fails early, with
/// the log tail, if the process exits.
fn spawn_and_wait_ready(
    name: &str,
    cmd: Command,
    log: &Path,
    addr: SocketAddr,
) -> anyhow::Result<ChildGuard> {
    spawn_and_wait(name, cmd, log, addr, &|| http::ping(addr))
}

/// [`spawn_and_wait_ready`] with the `/ping` done by `ping` (e.g. over TLS).
pub(crate) fn spawn_and_wait(
    name: &str,
    mut cmd: Command,
    log: &Path,
    addr: SocketAddr,
    ping: &dyn Fn() -> anyhow::Result<u16>,
) -> anyhow::Result<ChildGuard> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let child = cmd
        .spawn()
        .with_context(|| format!("spawning {name}: {cmd:?}"))?;
    let mut guard = ChildGuard { child };
    let mut died = false;
    let patience = wait::patience().max(std::time::Duration::from_secs(30));
    let ready = wait::eventually_within(
        &format!("{name} on {addr} to answer GET /ping with 204"),
        patience,
        &mut |last| {
            if let Some(status) = guard.exited() {
                died = true;
                anyhow::bail!(
                    "{name} exited during startup ({status}); log {}:\n{}",
                    log.display(),
                    log_tail(log, 4000)
                );
            }
            match ping() {
                Ok(204) => Ok(Some(())),
                Ok(code) => {
                    *last = format!("/ping answered {code}");
                    Ok(None)
                }
                Err(e) => {
                    *last = format!("{e}");
                    Ok(None)
                }
            }
        },
    );
    match ready {
        Ok(()) => Ok(guard),
        Err(e) if died => Err(e),
        Err(e) => {
            guard.kill9();
            Err(e.context(format!(
                "{name} not ready; log tail:\n{}",
                log_tail(log, 4000)
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tsdb-backend

/// Where the `tsdb-backend` binary is, building it once per test process if it is missing.
///
/// Order: `$TSDB_BACKEND_BIN`; then `<target>/<profile>/tsdb-backend` where `<target>` is the
/// directory this test executable was built into (so `CARGO_TARGET_DIR` is honoured), then
/// `$CARGO_TARGET_DIR` or `<workspace>/target`, trying the profile the tests were built with
/// first. If none exists, runs `cargo build -p tsdb-backend --bin tsdb-backend` (with
/// `--release` for release test builds) into the test executable's target dir.
pub fn tsdb_backend_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        locate_or_build("tsdb-backend", "TSDB_BACKEND_BIN").map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// Where the `gateway` binary is, like [`tsdb_backend_bin`] (override: `$GATEWAY_BIN`).
pub fn gateway_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate_or_build("gateway", "GATEWAY_BIN").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// `gateway hash-key [--argon2]` of `key`, fed as an operator would (`echo "$KEY" |
/// gateway hash-key`: the newline is dropped): the line of its key-file entry.
pub fn hash_api_key(key: &str, argon2: bool) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(gateway_bin()?);
    cmd.arg("hash-key");
    if argon2 {
        cmd.arg("--argon2");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting gateway hash-key")?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{key}").context("writing the key to gateway hash-key")?;
    }
    let out = child.wait_with_output().context("gateway hash-key")?;
    anyhow::ensure!(out.status.success(), "gateway hash-key: {out:?}");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The workspace's `loadtest` binary (built on demand; `LOADTEST_BIN` overrides).
pub fn loadtest_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate_or_build("loadtest", "LOADTEST_BIN").map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// (target dir, profile dir name) of the running test executable, if it looks like
/// `<target>/<profile>/deps/<exe>`.
fn current_target_and_profile() -> Option<(PathBuf, String)> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    if deps.file_name()? != "deps" {
        return None;
    }
    let profile_dir = deps.parent()?;
    let profile = profile_dir.file_name()?.to_string_lossy().into_owned();
    Some((profile_dir.parent()?.to_path_buf(), profile))
}

/// Finds (or builds, once) the binary `name` of the workspace crate of the same name; the
/// environment variable `env` overrides the path.
fn locate_or_build(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    locate_or_build_profile(name, env, None)
}

/// Where the release build of the workspace binary `name` is (`env` overrides), building it
/// (`cargo build --release`) once per test process when it is missing or older than its
/// sources: for tests that measure the binaries as they run in service, such as the fault
/// tests of [`crate::faults`].
pub fn release_bin(name: &str, env: &str) -> anyhow::Result<PathBuf> {
    static BINS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut bins = BINS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = bins.iter().find(|(n, _)| n == name) {
        return Ok(p.clone());
    }
    let p = locate_or_build_profile(name, env, Some("release"))?;
    bins.push((name.to_string(), p.clone()));
    Ok(p)
}

/// Where binary `bin` of workspace package `package` is, in the profile the tests were
/// built with (`env` overrides), building it once when it is missing (`cargo build -p
/// package --bin bin`): for helper binaries such as the fault tests' `link-shaper`.
pub fn locate_or_build_in(package: &str, bin: &str, env: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let (target, profile) = current_target_and_profile()
        .unwrap_or_else(|| (crate::workspace_root().join("target"), "debug".into()));
    let p = target.join(&profile).join(bin);
    if p.is_file() {
        return Ok(p);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(crate::workspace_root())
        .args(["build", "-p", package, "--bin", bin])
        .env("CARGO_TARGET_DIR", &target);
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    anyhow::ensure!(status.success() && p.is_file(), "{cmd:?} failed: {status}");
    Ok(p)
}

/// [`locate_or_build`], looking only for the profile `only` when given.
fn locate_or_build_profile(name: &str, env: &str, only: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        anyhow::ensure!(p.is_file(), "{env}={} is not a file", p.display());
        return Ok(p);
    }
    let root = crate::workspace_root();
    let current = current_target_and_profile();
    let profile = match only {
        Some(p) => p.to_string(),
        None => current
            .as_ref()
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| "debug".into()),
    };
    let mut target_dirs: Vec<PathBuf> = Vec::new();
    if let Some((t, _)) = &current {
        target_dirs.push(t.clone());
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => {
            let t = PathBuf::from(t);
            target_dirs.push(if t.is_absolute() { t } else { root.join(t) });
        }
        None => target_dirs.push(root.join("target")),
    }
    let other = if profile == "release" {
        "debug"
    } else {
        "release"
    };
    let newest_source = newest_mtime(&root.join(name));
    let profiles: &[&str] = if only.is_some() {
        &[profile.as_str()]
    } else {
        &[profile.as_str(), other]
    };
    for t in &target_dirs {
        for &prof in profiles {
            let p = t.join(prof).join(name);
            let built = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
            match (built, newest_source) {
                (Some(b), Some(src)) if b >= src => return Ok(p),
                (Some(_), None) => return Ok(p),
                (Some(_), Some(_)) => {
                    eprintln!("harness: {} is older than {name}/ sources", p.display());
                }
                (None, _) => {}
            }
        }
    }
    // Missing or stale: build it once, into the target dir the tests were built in.
    let target = target_dirs
        .first()
        .cloned()
        .unwrap_or_else(|| root.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", name, "--bin", name])
        .env("CARGO_TARGET_DIR", &target);
    if profile == "release" {
        cmd.arg("--release");
    }
    eprintln!("harness: {name} binary missing or stale; running {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed: {status}");
    let built_profile = if profile == "release" {
        "release"
    } else {
        "debug"
    };
    let p = target.join(built_profile).join(name);
    anyhow::ensure!(p.is_file(), "built {name} but {} is missing", p.display());
    Ok(p)
}

/// Newest modification time of `Cargo.toml` and any file under `src/` of a crate directory
/// (bounded walk: at most 10,000 entries).
fn newest_mtime(crate_dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = std::fs::metadata(crate_dir.join("Cargo.toml"))
        .and_then(|m| m.modified())
        .ok();
    let mut stack = vec![crate_dir.join("src")];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > 10_000 {
                return newest;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else if let Ok(m) = meta.modified() {
                newest = Some(newest.map_or(m, |n| n.max(m)));
            }
        }
    }
    newest
}

/// Builder for [`TsdbProcess`].
#[derive(Debug, Default)]
pub struct TsdbProcessBuilder {
    data_dir: Option<PathBuf>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    port: Option<u16>,
    tls_ca: Option<PathBuf>,
}

impl TsdbProcessBuilder {
    /// Use this data directory (default: `data/` inside the process's own temp dir).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// An extra command-line argument, after `--listen` and `--data-dir`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An environment variable for the child.
    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    /// Listen on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The node serves HTTPS (give it `--tls-cert`/`--tls-key` with [`arg`](Self::arg)) with
    /// a certificate for `localhost` issued by the CA in `ca_pem`: readiness is checked over
    /// TLS trusting that CA, and [`TsdbProcess::url`] says `https`.
    pub fn https(mut self, ca_pem: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca_pem.into());
        self
    }

    /// Spawns the binary and waits until `/ping` answers 204.
    pub fn start(self) -> anyhow::Result<TsdbProcess> {
        let bin = tsdb_backend_bin()?;
        let work = tempfile::Builder::new().prefix("tsdb-e2e-").tempdir()?;
        let data_dir = match self.data_dir {
            Some(d) => d,
            None => {
                let d = work.path().join("data");
                std::fs::create_dir_all(&d)?;
                d
            }
        };
        let port = match self.port {
            Some(p) => p,
            None => ports::free_port()?,
        };
        let mut p = TsdbProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            bin,
            data_dir,
            log_path: work.path().join("tsdb-backend.log"),
            args: self.args,
            envs: self.envs,
            tls_ca: self.tls_ca,
            child: None,
            work,
        };
        p.spawn()?;
        Ok(p)
    }
}

/// A running `tsdb-backend --listen 127.0.0.1:PORT --data-dir DIR`, killed on drop.
///
/// Its `HOME` is its own temp dir unless the builder sets one, so the node's default pool
/// secret (`$HOME/.tsdb-backend/peer-secret`) never touches the real home; a
/// [`Pool`](crate::Pool) gives all its nodes one `HOME`, so they share that secret.
#[derive(Debug)]
pub struct TsdbProcess {
    /// The HTTP address it listens on.
    pub addr: SocketAddr,
    bin: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    tls_ca: Option<PathBuf>,
    child: Option<ChildGuard>,
    // Declared last: removed after the child is killed.
    work: TempDir,
}

impl TsdbProcess {
    /// A builder with defaults (own temp data dir, free port).
    pub fn builder() -> TsdbProcessBuilder {
        TsdbProcessBuilder::default()
    }

    /// Starts one with all defaults.
    pub fn start() -> anyhow::Result<TsdbProcess> {
        Self::builder().start()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.args)
            .env("HOME", self.work.path())
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        let (addr, ca) = (self.addr, self.tls_ca.clone());
        let ping = move || match &ca {
            None => http::ping(addr),
            Some(ca) => Ok(crate::tls_client::TlsConn::connect(addr, ca, None)?
                .get("/ping")?
                .0),
        };
        let guard = spawn_and_wait("tsdb-backend", cmd, &self.log_path, self.addr, &ping)?;
        self.child = Some(guard);
        Ok(())
    }

    /// PID of the running process (None after [`kill9`](Self::kill9) / [`stop`](Self::stop)).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a node built with
    /// [`https`](TsdbProcessBuilder::https).
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA its HTTPS certificate is trusted by, for a node built with
    /// [`https`](TsdbProcessBuilder::https).
    pub fn tls_ca(&self) -> Option<&Path> {
        self.tls_ca.as_deref()
    }

    /// The data directory it was started with.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The harness's temp dir of this process (log, and `data/` unless a data dir was given).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The log file (stdout and stderr of every start, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `max` bytes of the log.
    pub fn log_tail(&self, max: u64) -> String {
        log_tail(&self.log_path, max)
    }

    /// SIGKILL via `kill(2)` on the PID, then reap it. A crash, as far as the data is concerned.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }

    /// SIGTERM and wait (bounded) for exit; SIGKILL if it does not. Returns the exit status
    /// text when it exited by itself.
    pub fn stop(&mut self) -> Option<String> {
        self.child.take().and_then(|mut c| c.terminate())
    }

    /// Starts it again on the same port and data dir; kills it first (SIGKILL) if running.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    /// `Some(status)` if the process has exited on its own.
    pub fn exited(&mut self) -> Option<String> {
        self.child.as_mut().and_then(ChildGuard::exited)
    }
}

// ---------------------------------------------------------------------------------------------
// peer servers: influxd, victoria-metrics

/// What every peer server the tests measure against shares: its HTTP address, its log and
/// its process (killed on drop). [`InfluxdProcess`] and [`VictoriaMetricsProcess`] deref to
/// it.
#[derive(Debug)]
pub struct PeerServer {
    /// The HTTP address.
    pub addr: SocketAddr,
    log_path: PathBuf,
    child: Option<ChildGuard>,
}

impl PeerServer {
    fn new(addr: SocketAddr, log_path: PathBuf) -> PeerServer {
        PeerServer {
            addr,
            log_path,
            child: None,
        }
    }

    /// Runs `cmd` as `name`, logging to the log file, and waits until `/ping` answers.
    fn spawn(&mut self, name: &str, cmd: Command) -> anyhow::Result<()> {
        self.child = Some(spawn_and_wait_ready(name, cmd, &self.log_path, self.addr)?);
        Ok(())
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The last `max` bytes of the log.
    pub fn log_tail(&self, max: u64) -> String {
        log_tail(&self.log_path, max)
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }
}

// influxd

/// A private real InfluxDB 1.x (`influxd run -config FILE`) on free loopback ports, with its
/// meta/data/wal in a temp dir. Killed on drop; the temp dir is removed.
#[derive(Debug)]
pub struct InfluxdProcess {
    server: PeerServer,
    /// The RPC bind address (`bind-address`), unused by tests but kept off 8088.
    pub rpc_addr: SocketAddr,
    config: PathBuf,
    // Declared last: removed after the child is killed.
    dir: TempDir,
}

impl std::ops::Deref for InfluxdProcess {
    type Target = PeerServer;
    fn deref(&self) -> &PeerServer {
        &self.server
    }
}

impl std::ops::DerefMut for InfluxdProcess {
    fn deref_mut(&mut self) -> &mut PeerServer {
        &mut self.server
    }
}

impl InfluxdProcess {
    /// Starts a fresh private influxd and waits until `/ping` answers 204.
    pub fn start() -> anyhow::Result<InfluxdProcess> {
        let bin = Path::new(INFLUXD_BIN);
        if !bin.is_file() {
            anyhow::bail!(
                "{INFLUXD_BIN} is missing: the differential tests need a real InfluxDB 1.x; \
                 run scripts/install-test-deps.sh (installs the Debian package `influxdb`)"
            );
        }
        let dir = tempfile::Builder::new().prefix("influxd-e2e-").tempdir()?;
        let rpc_addr = SocketAddr::from(([127, 0, 0, 1], ports::free_port()?));
        let addr = SocketAddr::from(([127, 0, 0, 1], ports::free_port()?));
        let d = dir.path();
        let config = format!(
            "reporting-disabled = true\n\
             bind-address = \"{rpc_addr}\"\n\
             [meta]\n  dir = \"{meta}\"\n\
             [data]\n  dir = \"{data}\"\n  wal-dir = \"{wal}\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [http]\n  bind-address = \"{addr}\"\n  log-enabled = false\n",
            meta = d.join("meta").display(),
            data = d.join("data").display(),
            wal = d.join("wal").display(),
        );
        let config_path = d.join("influxdb.conf");
        std::fs::write(&config_path, config)?;
        let mut p = InfluxdProcess {
            server: PeerServer::new(addr, d.join("influxd.log")),
            rpc_addr,
            config: config_path,
            dir,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(INFLUXD_BIN);
        cmd.arg("run").arg("-config").arg(&self.config);
        // influxd reads INFLUXDB_* env overrides; make sure none leak in from the environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("INFLUXDB_") {
                cmd.env_remove(k);
            }
        }
        self.server.spawn("influxd", cmd)
    }

    /// The temp dir holding config, meta, data, wal and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts it again on the same ports and directories (SIGKILL first if running).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }
}

// ---------------------------------------------------------------------------------------------
// victoria-metrics

/// Where Debian's `victoria-metrics` is (upstream builds name it `victoria-metrics-prod`).
pub fn victoria_metrics_bin() -> Option<PathBuf> {
    [
        "/usr/bin/victoria-metrics",
        "/usr/bin/victoria-metrics-prod",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// A private single-node VictoriaMetrics on a free loopback port, its storage in a temp dir:
/// another engine that takes InfluxDB line protocol on `/write` (and answers `/ping` 204) but
/// is queried with PromQL (`/api/v1/query`). Killed on drop; the temp dir is removed.
#[derive(Debug)]
pub struct VictoriaMetricsProcess {
    server: PeerServer,
    bin: PathBuf,
    // Declared last: removed after the child is killed.
    dir: TempDir,
}

impl std::ops::Deref for VictoriaMetricsProcess {
    type Target = PeerServer;
    fn deref(&self) -> &PeerServer {
        &self.server
    }
}

impl std::ops::DerefMut for VictoriaMetricsProcess {
    fn deref_mut(&mut self) -> &mut PeerServer {
        &mut self.server
    }
}

impl VictoriaMetricsProcess {
    /// Starts a fresh instance and waits until `/ping` answers 204.
    pub fn start() -> anyhow::Result<VictoriaMetricsProcess> {
        let bin = victoria_metrics_bin().context(
            "victoria-metrics is missing: run scripts/install-test-deps.sh \
             (installs the Debian package `victoria-metrics`)",
        )?;
        let dir = tempfile::Builder::new().prefix("victoria-e2e-").tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], ports::free_port()?));
        let mut p = VictoriaMetricsProcess {
            server: PeerServer::new(addr, dir.path().join("victoria-metrics.log")),
            bin,
            dir,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(format!("-httpListenAddr={}", self.addr))
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            // Answer queries about points written a moment ago (the default hides the last
            // 30 s); a write still shows only once its in-memory buffer is flushed (about a
            // second), so tests poll.
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache");
        self.server.spawn("victoria-metrics", cmd)
    }
}
