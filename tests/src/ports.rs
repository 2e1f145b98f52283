//! Ephemeral loopback ports.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Ports that shared services on this machine may use; never handed out.
const RESERVED: &[u16] = &[8086, 8088];

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// How long a port handed out to one test process stays claimed against the others.
const CLAIM_FOR: Duration = Duration::from_secs(600);

/// A free TCP port on 127.0.0.1, chosen by the kernel, never 8086/8088 and never one handed
/// out before: by this process, or (for the last ten minutes) by another test process. The
/// test runner starts every test in a process of its own, and the servers they start bind
/// with `SO_REUSEPORT` (Pingora does): two of them given one port would share its
/// connections. A claim is a file created exclusively in a shared folder.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        if RESERVED.contains(&port) {
            continue;
        }
        let mut set = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if set.contains(&port) || !claim(port) {
            continue;
        }
        set.insert(port);
        return Ok(port);
    }
    anyhow::bail!("no free loopback port found after 200 attempts")
}

/// Claims `port` against the other test processes; false if one claimed it recently. A
/// folder that cannot be written claims nothing and refuses nothing.
fn claim(port: u16) -> bool {
    let dir = std::env::temp_dir().join("gateway-tests-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return true;
    }
    let path = dir.join(port.to_string());
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
    };
    match create() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let stale = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > CLAIM_FOR);
            // An old claim is taken over; two processes racing for it: one creates it.
            stale && std::fs::remove_file(&path).is_ok() && create().is_ok()
        }
        Err(_) => true,
    }
}
