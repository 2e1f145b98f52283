//! The priority of the threads that write what a process reports.
//!
//! The access log's writer and the span export (the gateway's thread, and the SDK's batch
//! thread in the TSDB node, lowered at its first export) do work a request never waits for, behind
//! bounded queues that drop (and count) when they fall behind. On a machine whose cores are
//! all busy serving requests, each tick they run is a tick the request threads do not: with
//! every trace exported and every line written, the gateway kept 0.87× its throughput
//! (`docs/benchmarks.md`), and its listener lost about what the two threads and the
//! collector took. So they run at a lower priority (nice 10: about a tenth of a request
//! thread's share when both want the same core), which still leaves them far more than the
//! few percent of a core they need, and all of an idle core.
//!
//! Linux keeps the nice value per thread, so `setpriority(PRIO_PROCESS, <thread id>)` lowers
//! only the calling thread. Raising a nice value needs no privilege; where it fails, the
//! thread runs on at its priority and that is all.

/// The nice value of the reporting threads.
pub(crate) const NICE: i32 = 10;

/// Lowers the calling thread's priority to [`NICE`] (never raises it).
pub(crate) fn lower_this_thread() {
    let me = rustix::thread::gettid();
    let _ = rustix::process::setpriority_process(Some(me), NICE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let lowered = std::thread::spawn(|| {
            lower_this_thread();
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, NICE.max(before));
        assert_eq!(
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap(),
            before,
            "the test's own thread keeps its priority"
        );
    }
}
