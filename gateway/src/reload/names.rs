//! Resolving backends' names again: one thread that wakes every `TICK`, and resolves the
//! names of the pools whose `dns_refresh` has passed (`Reloader::refresh_names`), one after
//! the other, off the request path. It stops when told to.

use super::Reloader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the thread looks for pools due: the finest `dns_refresh` it honours.
pub const TICK: Duration = Duration::from_secs(1);

/// Starts the thread; it runs until `stop` is set.
pub fn spawn(
    reloader: Arc<Reloader>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("dns-refresh".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                reloader.refresh_names();
                let mut left = TICK;
                while !left.is_zero() && !stop.load(Ordering::Relaxed) {
                    let step = left.min(Duration::from_millis(50));
                    std::thread::sleep(step);
                    left -= step;
                }
            }
        })
}
