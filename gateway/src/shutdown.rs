//! Graceful stop: on SIGTERM the listeners close, requests in flight finish, and the
//! process exits 0 as soon as none is left, or when the drain deadline passes.
//!
//! Pingora does the first part (it stops accepting and closes idle keep-alive connections
//! once SIGTERM arrives) and then sleeps its whole grace period, however few requests
//! are left. The gateway counts the requests it is serving ([`ActiveRequests`]) and ends
//! that sleep early once the count is zero: a stop takes as long as the slowest request,
//! not a fixed time.

use crate::clock::{Clock, SystemClock};
use pingora::server::ExecutionPhase;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Requests the data plane is serving now, from their head to their last byte.
#[derive(Debug, Default)]
pub struct ActiveRequests(AtomicU64);

impl ActiveRequests {
    /// Counts one request until the returned guard is dropped.
    pub fn start(self: &Arc<Self>) -> ActiveRequest {
        self.0.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(self.clone())
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One request being served; it stops counting when dropped, however the request ended.
#[derive(Debug)]
pub struct ActiveRequest(Arc<ActiveRequests>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often the drain checks the count: short enough that the exit follows the last
/// request closely, long enough to cost nothing.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// How long the count must stay at zero before the exit. A connection accepted just before
/// the listeners closed is not a request yet (its head is still on the way), and exiting
/// under it would reset it: this is the time its request has to show up.
const QUIET: Duration = Duration::from_millis(250);

/// Watches Pingora's execution phase; once the grace period of a graceful stop begins,
/// exits the process with status 0 once no request has been active for [`QUIET`], or at
/// `deadline`, cutting what is left (Pingora's own grace period is a second longer, as a
/// backstop). `before_exit` runs just before either exit (the last spans are sent).
pub fn spawn_drain(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    active: Arc<ActiveRequests>,
    deadline: Duration,
    before_exit: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
            let clock = SystemClock;
            let start = clock.now();
            tracing::info!(active = active.count(), deadline = ?deadline, "draining");
            let polls = deadline.as_millis() / DRAIN_POLL.as_millis() + 1;
            let mut idle_since = None;
            for _ in 0..polls {
                if active.count() == 0 {
                    let since = *idle_since.get_or_insert(clock.now());
                    if clock.now() - since >= QUIET {
                        tracing::info!(took = ?(clock.now() - start), "drained; exiting");
                        before_exit();
                        std::process::exit(0);
                    }
                } else {
                    idle_since = None;
                }
                if clock.now() - start >= deadline {
                    break;
                }
                std::thread::sleep(DRAIN_POLL);
            }
            tracing::warn!(
                active = active.count(),
                "drain deadline passed; the requests left are cut"
            );
            before_exit();
            std::process::exit(0);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_active_until_its_guard_is_dropped() {
        let a = Arc::new(ActiveRequests::default());
        let r1 = a.start();
        let r2 = a.start();
        assert_eq!(a.count(), 2);
        drop(r1);
        drop(r2);
        assert_eq!(a.count(), 0);
    }
}
