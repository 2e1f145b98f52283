//! The workload: writers that send points with unique ids through the gateways and record
//! how every request ended, and readers that query through them. Threads started from a
//! thread inside the client's namespace, so their sockets are the client's.
//!
//! Every loop is bounded in count as well as by the stop flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::checker::{time_of, value_of, Attempt, Outcome};
use crate::clock;

/// The database and measurement the workload writes.
pub const DATABASE: &str = "faults";
pub const MEASUREMENT: &str = "points";

/// Ids of writer `k` start at `k * IDS_PER_WRITER`.
const IDS_PER_WRITER: u64 = 1_000_000;

/// A request never waits longer than this (a timed-out write is "unknown", not acknowledged).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Most requests one thread sends (a bound far above what a test runs).
const MAX_REQUESTS: u64 = 100_000;

/// How the workload runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Base URLs of the gateways (`http://10.77.0.21:8080`); writers and readers are spread
    /// over them.
    pub targets: Vec<String>,
    pub writers: usize,
    pub readers: usize,
    /// Points per write request.
    pub batch: usize,
    /// Pause between two requests of one thread.
    pub interval: Duration,
    /// The time of id 0 (see [`time_of`]).
    pub base_ns: i64,
}

/// One query of a reader and how it ended.
#[derive(Debug, Clone)]
pub struct Read {
    pub outcome: Outcome,
    pub at_ms: u64,
}

/// What the workload did.
#[derive(Debug, Default)]
pub struct Log {
    pub writes: Vec<Attempt>,
    pub reads: Vec<Read>,
}

impl Log {
    /// Points whose write was acknowledged.
    pub fn acknowledged_points(&self) -> usize {
        self.writes
            .iter()
            .filter(|a| a.outcome.acknowledged())
            .map(|a| a.ids.len())
            .sum()
    }
}

/// A running workload; [`stop`](Self::stop) ends it and returns its log.
#[derive(Debug)]
pub struct Workload {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<Vec<Attempt>>>,
    readers: Vec<JoinHandle<Vec<Read>>>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0)
        .build()
        .new_agent()
}

fn outcome(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Outcome {
    match res {
        Ok(mut r) => {
            // Read the body so the connection can be used again.
            let _ = r.body_mut().with_config().limit(1 << 20).read_to_vec();
            Outcome::Status(r.status().as_u16())
        }
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// The line protocol of points `ids` of writer `k`.
pub fn lines(base_ns: i64, writer: usize, ids: &[u64]) -> String {
    ids.iter()
        .map(|id| {
            format!(
                "{MEASUREMENT},writer=w{writer} id={id}i,v={}i {}\n",
                value_of(*id),
                time_of(base_ns, *id)
            )
        })
        .collect()
}

impl Workload {
    /// Starts the writers and readers; they run until [`stop`](Self::stop).
    pub fn start(plan: &Plan) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let started = clock::now();
        let writers = (0..plan.writers)
            .map(|k| {
                let url = format!(
                    "{}/write?db={DATABASE}&precision=ns",
                    plan.targets[k % plan.targets.len()]
                );
                let (stop, plan) = (stop.clone(), plan.clone());
                std::thread::spawn(move || write_loop(k, &url, &plan, &stop, started))
            })
            .collect();
        let readers = (0..plan.readers)
            .map(|k| {
                let q = crate::http::urlencode(&format!("SELECT count(v) FROM {MEASUREMENT}"));
                let url = format!(
                    "{}/query?db={DATABASE}&q={q}",
                    plan.targets[k % plan.targets.len()]
                );
                let (stop, interval) = (stop.clone(), plan.interval);
                std::thread::spawn(move || read_loop(&url, interval, &stop, started))
            })
            .collect();
        Workload {
            stop,
            writers,
            readers,
        }
    }

    /// Stops every thread and gathers what they did.
    pub fn stop(self) -> Log {
        self.stop.store(true, Ordering::SeqCst);
        let mut log = Log::default();
        for w in self.writers {
            log.writes.extend(w.join().unwrap_or_default());
        }
        for r in self.readers {
            log.reads.extend(r.join().unwrap_or_default());
        }
        log
    }
}

fn since(started: Instant) -> u64 {
    clock::now().duration_since(started).as_millis() as u64
}

fn write_loop(
    k: usize,
    url: &str,
    plan: &Plan,
    stop: &AtomicBool,
    started: Instant,
) -> Vec<Attempt> {
    let agent = agent();
    let mut out = Vec::new();
    let mut next = k as u64 * IDS_PER_WRITER;
    for _ in 0..MAX_REQUESTS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let ids: Vec<u64> = (next..next + plan.batch as u64).collect();
        next += plan.batch as u64;
        let body = lines(plan.base_ns, k, &ids);
        let at_ms = since(started);
        let res = agent
            .post(url)
            .header("content-type", "text/plain")
            .send(body.as_bytes());
        out.push(Attempt {
            ids,
            outcome: outcome(res),
            at_ms,
        });
        std::thread::sleep(plan.interval);
    }
    out
}

fn read_loop(url: &str, interval: Duration, stop: &AtomicBool, started: Instant) -> Vec<Read> {
    let agent = agent();
    let mut out = Vec::new();
    for _ in 0..MAX_REQUESTS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let at_ms = since(started);
        out.push(Read {
            outcome: outcome(agent.get(url).call()),
            at_ms,
        });
        std::thread::sleep(interval);
    }
    out
}
