//! Ephemeral loopback ports.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

/// Ports that shared services on this machine may use; never handed out.
const RESERVED: &[u16] = &[8086, 8088];

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free TCP port on 127.0.0.1, chosen by the kernel, never 8086/8088 and never one this
/// process handed out before (so two servers started in parallel do not collide).
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        if RESERVED.contains(&port) {
            continue;
        }
        let mut set = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if set.insert(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port found after 200 attempts")
}
