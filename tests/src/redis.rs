//! A private `redis-server` on a free loopback port, for the gateway's global rate limits.
//!
//! ```no_run
//! use tests::redis::RedisProcess;
//! let mut redis = RedisProcess::start()?;
//! println!("{} has {} keys", redis.url(), redis.dbsize()?);
//! redis.kill(); // SIGKILL: the gateways see a Redis that is gone
//! redis.restart()?; // the same port, empty
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! It runs `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no` in a temp dir
//! (nothing persists: a restart starts empty), its output appended to a log there, and is
//! killed by PID (SIGKILL) on drop. The test side talks to it with a tiny RESP client
//! ([`RedisProcess::command`]) that is enough for `PING`, `DBSIZE`, `SCAN` and the like.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::process::log_tail;
use crate::{ports, wait};

/// The binary, looked up on `PATH`.
pub const REDIS_SERVER_BIN: &str = "redis-server";

/// How long one command waits for its answer (connecting included).
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds of what the RESP reader accepts: nesting, elements of one array, one bulk string.
const MAX_DEPTH: usize = 8;
const MAX_ELEMENTS: usize = 1 << 20;
const MAX_BULK: usize = 64 * 1024 * 1024;

/// `SCAN` rounds [`RedisProcess::keys`] makes at most (each asks for 1000 keys).
const MAX_SCAN_ROUNDS: usize = 10_000;

/// One RESP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3 abc`, or `$-1` (`None`).
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or `*-1` (`None`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a simple or bulk string.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The value of an integer answer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

/// A running private `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisProcess {
    port: u16,
    log_path: PathBuf,
    child: Option<Child>,
    // Declared last: removed after the child is killed.
    dir: TempDir,
}

impl RedisProcess {
    /// Starts one on a free port and waits (bounded) until it answers `PING`.
    pub fn start() -> anyhow::Result<RedisProcess> {
        let dir = tempfile::Builder::new().prefix("redis-e2e-").tempdir()?;
        let mut p = RedisProcess {
            port: ports::free_port()?,
            log_path: dir.path().join("redis.log"),
            child: None,
            dir,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening log {}", self.log_path.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(REDIS_SERVER_BIN);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "{REDIS_SERVER_BIN} is not installed (not on PATH): the global rate-limit tests \
                 need a real Redis; run scripts/install-test-deps.sh (installs the Debian \
                 package `redis-server`)"
            ),
            Err(e) => return Err(e).with_context(|| format!("spawning {cmd:?}")),
        };
        self.child = Some(child);
        let patience = wait::patience().max(Duration::from_secs(30));
        let what = format!("redis-server on port {} to answer PING", self.port);
        let ready = wait::eventually_within(&what, patience, &mut |last| {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "redis-server exited during startup ({status}); log {}:\n{}",
                    self.log_path.display(),
                    log_tail(&self.log_path, 4000)
                );
            }
            match self.command(&["PING"]) {
                Ok(Reply::Simple(s)) if s == "PONG" => Ok(Some(())),
                Ok(other) => {
                    *last = format!("PING answered {other:?}");
                    Ok(None)
                }
                Err(e) => {
                    *last = format!("{e:#}");
                    Ok(None)
                }
            }
        });
        if let Err(e) = ready {
            self.kill();
            return Err(e.context(format!("log tail:\n{}", log_tail(&self.log_path, 4000))));
        }
        Ok(())
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// PID of the running server (None once killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file (every start's output, appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// SIGKILL by PID, then reap it: the clients see their connections drop and the port
    /// refuse. Nothing of its data survives (it never saves).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                crate::process::signal(child.id(), libc::SIGKILL);
            }
            // SIGKILL cannot be caught: wait returns promptly.
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (killing it first if it runs), empty, and waits
    /// until it answers `PING`.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Sends one command on a fresh connection and reads its answer. A Redis error answer
    /// is `Ok(Reply::Error(..))`; only I/O and protocol failures are `Err`.
    pub fn command(&self, args: &[&str]) -> anyhow::Result<Reply> {
        let addr = self.addr();
        let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("connecting to redis on {addr}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out)?;
        let mut reader = BufReader::new(stream);
        read_reply(&mut reader, 0).with_context(|| format!("redis {args:?}"))
    }

    /// Keys in the database (`DBSIZE`).
    pub fn dbsize(&self) -> anyhow::Result<i64> {
        let r = self.command(&["DBSIZE"])?;
        r.as_int()
            .ok_or_else(|| anyhow::anyhow!("DBSIZE answered {r:?}"))
    }

    /// Every key matching the glob `pattern`, by `SCAN` (bounded in rounds), sorted.
    pub fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let mut cursor = "0".to_string();
        let mut keys = Vec::new();
        for _ in 0..MAX_SCAN_ROUNDS {
            let r = self.command(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"])?;
            let Reply::Array(Some(parts)) = &r else {
                anyhow::bail!("SCAN answered {r:?}");
            };
            let (Some(next), Some(Reply::Array(Some(batch)))) = (parts.first(), parts.get(1))
            else {
                anyhow::bail!("SCAN answered {r:?}");
            };
            keys.extend(batch.iter().filter_map(Reply::as_text));
            cursor = next
                .as_text()
                .ok_or_else(|| anyhow::anyhow!("SCAN cursor {next:?}"))?;
            if cursor == "0" {
                keys.sort();
                keys.dedup();
                return Ok(keys);
            }
        }
        anyhow::bail!("SCAN did not finish within {MAX_SCAN_ROUNDS} rounds")
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_line(r: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = Vec::new();
    r.by_ref().take(64 * 1024).read_until(b'\n', &mut line)?;
    anyhow::ensure!(
        line.ends_with(b"\r\n"),
        "truncated RESP line {:?}",
        String::from_utf8_lossy(&line)
    );
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_reply(r: &mut impl BufRead, depth: usize) -> anyhow::Result<Reply> {
    anyhow::ensure!(depth <= MAX_DEPTH, "RESP nested deeper than {MAX_DEPTH}");
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || -> anyhow::Result<i64> {
        rest.parse()
            .with_context(|| format!("bad RESP length or integer in {line:?}"))
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Integer(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Bulk(None),
            Ok(n) => {
                anyhow::ensure!(n <= MAX_BULK, "bulk string of {n} bytes");
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                anyhow::ensure!(buf.ends_with(b"\r\n"), "bulk string not ended by CRLF");
                buf.truncate(n);
                Reply::Bulk(Some(buf))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Array(None),
            Ok(n) => {
                anyhow::ensure!(n <= MAX_ELEMENTS, "array of {n} elements");
                let items = (0..n)
                    .map(|_| read_reply(r, depth + 1))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Reply::Array(Some(items))
            }
        },
        _ => anyhow::bail!("unexpected RESP line {line:?}"),
    })
}
