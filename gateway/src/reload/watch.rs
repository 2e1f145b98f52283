//! Reload on file change: a watcher on the policy path; bursts of events (an editor's
//! save is several) are folded into one reload after a short quiet period.

use super::Reloader;
use notify::{RecursiveMode, Watcher};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// How long events must stop before the reload runs.
const QUIET: Duration = Duration::from_millis(200);

/// Watches the policies for the life of the process. The watcher lives in its thread.
pub fn spawn(reloader: Arc<Reloader>) -> notify::Result<()> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&reloader.policies, RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("policy-watch".into())
        .spawn(move || {
            let _watcher = watcher;
            while rx.recv().is_ok() {
                while rx.recv_timeout(QUIET).is_ok() {}
                // Errors are logged and kept for /admin/status by the reloader.
                let _ = reloader.reload();
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(())
}
