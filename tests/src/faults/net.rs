//! A small network of hosts on one machine: a network namespace per host, each joined to a
//! bridge (in a namespace of its own, the "switch") by a veth pair, with an address of its
//! own on `10.77.0.0/24`. Faults are packet filters in the hosts' namespaces (`iptables`
//! drops, random drops, NFQUEUE to the link shaper) or `tc netem` where the kernel has it.
//!
//! Everything a [`Lab`] made is undone when it is dropped, even when a test fails: processes
//! are owned by their [`LabProcess`] (killed by PID), namespaces are deleted (which removes
//! their links), and file systems it mounted are unmounted. A lab that a killed test process
//! could not clean up is removed by the next one (its namespaces carry the owner's PID).
//!
//! Only root can do this, and only where namespaces can be made: [`Lab::new`] answers
//! [`LabError::Unavailable`] otherwise, and the tests skip with that reason.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::process::{log_tail, ChildGuard};
use crate::wait;

/// The prefix of every namespace a lab makes: `fl<owner pid>-<lab number>-<host>`.
const PREFIX: &str = "fl";

/// The network every lab uses (each lab has its own switch, so labs do not meet).
pub const SUBNET_PREFIX: &str = "10.77.0";

/// Why a lab could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// This machine cannot make namespaces (not root, no `ip`, a sandbox): skip, do not fail.
    #[error("network namespaces are not available here: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// One host of the lab: its namespace and its address.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// How a link is impaired by [`Lab::shape`].
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub delay: Duration,
    pub jitter: Duration,
    /// Probability that a packet is dropped, 0.0 to 1.0.
    pub loss: f64,
}

/// The namespaces, links and mounts of one test's network.
#[derive(Debug)]
pub struct Lab {
    id: String,
    switch: String,
    hosts: BTreeMap<String, Host>,
    /// Link shapers running, by host (killed on heal and on drop).
    shapers: BTreeMap<String, LabProcess>,
    mounts: Vec<PathBuf>,
    /// Whether the kernel has `netem`; else links are shaped through NFQUEUE.
    netem: bool,
    dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").args(args))
}

/// True if a process with this PID exists.
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes the namespaces of labs whose test process is gone (killed before it could).
fn remove_orphans() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let owner = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner {
            if !alive(pid) {
                // Its processes first: deleting a namespace does not stop them.
                if let Ok(pids) = ip(&["netns", "pids", name]) {
                    for p in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                        crate::process::signal(p, libc::SIGKILL);
                    }
                }
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    // Its small disks, mounted under a directory named for the owner.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let Some(path) = line.split_whitespace().nth(1) else {
            continue;
        };
        let owner = path
            .split('/')
            .find_map(|part| part.strip_prefix(LAB_DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if owner.is_some_and(|pid| !alive(pid)) {
            let _ = run(Command::new("umount").arg("-l").arg(path));
        }
    }
}

/// The prefix of a lab's directory: `fault-lab-<owner pid>-<random>`.
const LAB_DIR_PREFIX: &str = "fault-lab-";

impl Lab {
    /// Builds a switch and one host per `(name, last octet)`, addressed `10.77.0.<octet>`,
    /// all links up.
    pub fn new(hosts: &[(&str, u8)]) -> Result<Lab, LabError> {
        if !rustix::process::geteuid().is_root() {
            return Err(LabError::Unavailable("not running as root".into()));
        }
        if which("ip").is_none() || which("iptables").is_none() {
            return Err(LabError::Unavailable(
                "`ip` or `iptables` is missing (Debian iproute2, iptables; run \
                 scripts/install-test-deps.sh)"
                    .into(),
            ));
        }
        remove_orphans();
        static LABS: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            LABS.fetch_add(1, Ordering::SeqCst)
        );
        let switch = format!("{id}-sw");
        if let Err(e) = ip(&["netns", "add", &switch]) {
            return Err(LabError::Unavailable(format!("{e:#}")));
        }
        let mut lab = Lab {
            id: id.clone(),
            switch: switch.clone(),
            hosts: BTreeMap::new(),
            shapers: BTreeMap::new(),
            mounts: Vec::new(),
            netem: false,
            dir: tempfile::Builder::new()
                .prefix(&format!("{LAB_DIR_PREFIX}{}-", std::process::id()))
                .tempdir()
                .map_err(anyhow::Error::from)?,
        };
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        for (i, (name, last)) in hosts.iter().enumerate() {
            let ns = format!("{id}-{name}");
            ip(&["netns", "add", &ns])?;
            // Recorded at once, so that a failure below still deletes it.
            let host = Host {
                name: name.to_string(),
                ns: ns.clone(),
                ip: Ipv4Addr::new(10, 77, 0, *last),
            };
            lab.hosts.insert(name.to_string(), host.clone());
            let port = format!("v{i}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &switch,
            ])?;
            ip(&["-n", &switch, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", host.ip),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        lab.netem = lab.probe_netem();
        Ok(lab)
    }

    /// Whether `tc qdisc ... netem` works here (many CI kernels lack the module).
    fn probe_netem(&self) -> bool {
        let ns = &self.switch;
        let added = ip(&["-n", ns, "link", "add", "probe0", "type", "dummy"]).is_ok()
            && run(Command::new("ip").args([
                "netns", "exec", ns, "tc", "qdisc", "add", "dev", "probe0", "root", "netem",
                "delay", "1ms",
            ]))
            .is_ok();
        let _ = ip(&["-n", ns, "link", "del", "probe0"]);
        added
    }

    /// The host called `name` (panics on a name the lab was not built with, like indexing).
    pub fn host(&self, name: &str) -> &Host {
        match self.hosts.get(name) {
            Some(h) => h,
            None => panic!("the lab has no host {name:?}"),
        }
    }

    /// A directory of the lab's own (logs, data), removed with it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Moves the calling thread (and the threads it starts afterwards) into `host`'s network
    /// namespace: from then on its sockets are that host's. Other threads are not affected.
    pub fn enter(&self, host: &str) -> anyhow::Result<()> {
        let path = format!("/var/run/netns/{}", self.host(host).ns);
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .with_context(|| format!("entering {path}"))?;
        Ok(())
    }

    /// Runs `program args` in `host`'s namespace as a process the lab owns, its output
    /// appended to `<lab dir>/<name>.log`; waits until `ready` says so (bounded), failing
    /// early with the log's tail if the process exits.
    pub fn spawn(
        &self,
        host: &str,
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(&str, &Path)],
        ready: &dyn Fn() -> bool,
    ) -> anyhow::Result<LabProcess> {
        let spec = Spawn {
            ns: self.host(host).ns.clone(),
            name: name.to_string(),
            program: program.to_path_buf(),
            args: args.to_vec(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_path_buf()))
                .collect(),
            log: self.dir().join(format!("{name}.log")),
        };
        let mut p = LabProcess { spec, child: None };
        p.start(ready)?;
        Ok(p)
    }

    fn iptables(&self, host: &str, rule: &[&str]) -> anyhow::Result<()> {
        let ns = &self.host(host).ns;
        let mut args = vec!["netns", "exec", ns, "iptables", "-w"];
        args.extend_from_slice(rule);
        run(Command::new("ip").args(&args)).map(drop)
    }

    /// Drops every packet between `a` and `b`, both ways, at both ends (a partition: no
    /// answer, no reset; connections time out).
    pub fn block(&self, a: &str, b: &str) -> anyhow::Result<()> {
        for (here, there) in [(a, b), (b, a)] {
            let other = self.host(there).ip.to_string();
            self.iptables(here, &["-I", "OUTPUT", "-d", &other, "-j", "DROP"])?;
            self.iptables(here, &["-I", "INPUT", "-s", &other, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Drops packets from `from` to `to` with `probability` (0.0–1.0), that way only.
    pub fn lose_one_way(&self, from: &str, to: &str, probability: f64) -> anyhow::Result<()> {
        let other = self.host(to).ip.to_string();
        let p = format!("{probability:.4}");
        self.iptables(
            from,
            &[
                "-I",
                "OUTPUT",
                "-d",
                &other,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        )
    }

    /// Delays (with jitter) and drops what `host` sends: `tc netem` on its link where the
    /// kernel has it, else the link shaper (`link-shaper`, NFQUEUE) in its namespace.
    pub fn shape(&mut self, host: &str, how: Impairment, shaper: &Path) -> anyhow::Result<()> {
        let ns = self.host(host).ns.clone();
        if self.netem {
            let delay = format!("{}ms", how.delay.as_millis());
            let jitter = format!("{}ms", how.jitter.as_millis());
            let loss = format!("{}%", how.loss * 100.0);
            return run(Command::new("ip").args([
                "netns", "exec", &ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
                "delay", &delay, &jitter, "loss", &loss,
            ]))
            .map(drop);
        }
        let args = vec![
            "--queue".to_string(),
            SHAPER_QUEUE.to_string(),
            "--delay-ms".to_string(),
            how.delay.as_millis().to_string(),
            "--jitter-ms".to_string(),
            how.jitter.as_millis().to_string(),
            "--loss".to_string(),
            how.loss.to_string(),
        ];
        let log = self.dir().join(format!("shaper-{host}.log"));
        let ready_log = log.clone();
        let p = self.spawn(
            host,
            &format!("shaper-{host}"),
            shaper,
            &args,
            &[],
            &move || std::fs::read_to_string(&ready_log).is_ok_and(|t| t.contains("bound")),
        )?;
        self.shapers.insert(host.to_string(), p);
        let q = SHAPER_QUEUE.to_string();
        self.iptables(
            host,
            &[
                "-I",
                "OUTPUT",
                "-o",
                "eth0",
                "-j",
                "NFQUEUE",
                "--queue-num",
                &q,
                "--queue-bypass",
            ],
        )
    }

    /// Ends every network fault: filters flushed, netem removed, shapers stopped.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self.hosts.keys().cloned().collect();
        for name in &names {
            self.iptables(name, &["-F", "INPUT"])?;
            self.iptables(name, &["-F", "OUTPUT"])?;
            if self.netem {
                let ns = &self.host(name).ns;
                let _ = run(Command::new("ip").args([
                    "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root",
                ]));
            }
        }
        self.shapers.clear();
        Ok(())
    }

    /// Mounts a tmpfs of `bytes` on `dir` (created): a small disk of its own, unmounted
    /// when the lab goes.
    pub fn small_disk(&mut self, dir: &Path, bytes: u64) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes}"))
            .args(["tmpfs"])
            .arg(dir))?;
        self.mounts.push(dir.to_path_buf());
        Ok(())
    }

    /// The IPv4 addresses on `host`'s link, as `ip -4 addr` prints them.
    pub fn addresses(&self, host: &str) -> anyhow::Result<String> {
        ip(&[
            "-n",
            &self.host(host).ns,
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ])
    }

    /// The lab's id (the prefix of its namespaces), for messages.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The NFQUEUE number the link shaper reads (each namespace has its own queues).
const SHAPER_QUEUE: u16 = 7;

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shapers.clear();
        for m in self.mounts.drain(..).rev() {
            let _ = run(Command::new("umount").arg("-l").arg(&m));
        }
        for host in self.hosts.values() {
            let _ = ip(&["netns", "del", &host.ns]);
        }
        let _ = ip(&["netns", "del", &self.switch]);
    }
}

/// How a [`LabProcess`] is started, kept to start it again.
#[derive(Debug, Clone)]
struct Spawn {
    ns: String,
    name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, PathBuf)>,
    log: PathBuf,
}

/// A process in a lab host (`ip netns exec NS program args`, which execs in place: the PID
/// is the program's). Killed by PID (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct LabProcess {
    spec: Spawn,
    child: Option<ChildGuard>,
}

impl LabProcess {
    fn start(&mut self, ready: &dyn Fn() -> bool) -> anyhow::Result<()> {
        let s = &self.spec;
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&s.log)
            .with_context(|| format!("opening {}", s.log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &s.ns])
            .arg(&s.program)
            .args(&s.args)
            .envs(s.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let mut guard = ChildGuard::new(child);
        let patience = wait::patience().max(Duration::from_secs(30));
        let name = s.name.clone();
        let log = s.log.clone();
        let res = wait::eventually_within(&format!("{name} to be ready"), patience, &mut |_| {
            if let Some(status) = guard.exited() {
                anyhow::bail!("{name} exited ({status}); log:\n{}", log_tail(&log, 4000));
            }
            Ok(ready().then_some(()))
        });
        if let Err(e) = res {
            guard.kill9();
            return Err(e.context(format!("log tail of {name}:\n{}", log_tail(&log, 4000))));
        }
        self.child = Some(guard);
        Ok(())
    }

    /// The PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// `Some(status)` once the process has exited by itself (or was stopped here).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut() {
            Some(c) => c.exited(),
            None => Some("not running".into()),
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.terminate();
        }
    }

    /// SIGSTOP: the process stays, its sockets stay open, nothing answers.
    pub fn pause(&self) -> bool {
        self.pid()
            .is_some_and(|p| crate::process::signal(p, libc::SIGSTOP))
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) -> bool {
        self.pid()
            .is_some_and(|p| crate::process::signal(p, libc::SIGCONT))
    }

    /// Starts it again as before (SIGKILL first if it runs), waiting for `ready`.
    pub fn restart(&mut self, ready: &dyn Fn() -> bool) -> anyhow::Result<()> {
        self.kill9();
        self.start(ready)
    }

    /// The last `max` bytes of its log.
    pub fn log_tail(&self, max: u64) -> String {
        log_tail(&self.spec.log, max)
    }
}
