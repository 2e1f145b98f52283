//! Durability of `tsdb-backend`: what a 204 promised must survive SIGKILL, SIGTERM, a torn
//! WAL tail and flushes into blocks, and a batch is stored whole or not at all.
//!
//! Every batch written here is identifiable: measurement `crash` (or `m`), tag `batch=<n>`,
//! field `v=<i>i`, a timestamp unique to (batch, line). `SELECT count(v) ... GROUP BY batch`
//! then tells, per batch, whether it is complete, absent or (a bug) partial.
//!
//! The crash test is seeded: it prints `seed=<n>`; rerun with `CRASH_TEST_SEED=<n>` to get
//! the same batch sizes and kill delays (thread timing still varies).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tests::http::{self, Method};
use tests::{clock, eventually, free_port, TempDir, TsdbProcess};

const DB: &str = "d";
/// Timestamps of batch `n` are `BASE_NS + n * 1000 + i`, `i < 1000`.
const BASE_NS: u64 = 1_600_000_000_000_000_000;

/// Line protocol of batch `id` with `lines` points of measurement `m`.
fn batch_body(m: &str, id: u64, lines: usize) -> String {
    assert!(
        lines < 1000,
        "timestamps of a batch must not overlap the next one"
    );
    let mut body = String::with_capacity(lines * 48);
    for i in 0..lines {
        let ts = BASE_NS + id * 1000 + i as u64;
        body.push_str(&format!("{m},batch={id} v={i}i {ts}\n"));
    }
    body
}

/// Points per batch `id`, 50..=500, a pure function of the seed and the id (so it does not
/// depend on which writer thread sent the batch).
fn lines_of(seed: u64, id: u64) -> usize {
    StdRng::seed_from_u64(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15)).random_range(50..=500)
}

/// `SELECT count(v) FROM <m> GROUP BY batch`: batch id → number of points stored.
fn counts_by_batch(node: &TsdbProcess, m: &str) -> BTreeMap<u64, u64> {
    let q = format!("SELECT count(v) FROM {m} GROUP BY batch");
    let (status, json) = http::query(node.addr, Some(DB), &q, Some("ns"), Method::Get)
        .expect("count query reaches the node");
    assert_eq!(
        status,
        200,
        "{q} answered {status}: {json}\nlog:\n{}",
        node.log_tail(3000)
    );
    let result = &json["results"][0];
    assert!(result.get("error").is_none(), "{q} failed: {json}");
    let mut out = BTreeMap::new();
    let Some(series) = result["series"].as_array() else {
        return out; // no points at all
    };
    for s in series {
        let id: u64 = s["tags"]["batch"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("series without a numeric batch tag: {s}"));
        let count = s["values"][0][1]
            .as_u64()
            .unwrap_or_else(|| panic!("count is not a number: {s}"));
        assert!(out.insert(id, count).is_none(), "batch {id} listed twice");
    }
    out
}

/// Asserts that every batch in `expected` is stored whole and nothing else is stored.
fn assert_exactly(node: &TsdbProcess, m: &str, expected: &BTreeMap<u64, usize>, context: &str) {
    let got = counts_by_batch(node, m);
    let want: BTreeMap<u64, u64> = expected.iter().map(|(k, v)| (*k, *v as u64)).collect();
    assert_eq!(
        got,
        want,
        "{context}: stored batches (id → count) differ from the acknowledged ones\nlog:\n{}",
        node.log_tail(3000)
    );
}

/// The `wal-*.log` segments of a data dir, oldest first, with their first sequence number.
fn wal_segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    numbered_files(dir, "wal-", ".log")
}

/// The `manifest-*` files of a data dir (one per flush, the newest two kept), oldest first.
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("reading the data dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("manifest-") && !n.ends_with(".tmp"))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn numbered_files(dir: &Path, prefix: &str, suffix: &str) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("reading the data dir")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let n = name
                .strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .len()
}

/// Writes `ids` one after the other (each its own request, so its own WAL record) and
/// asserts each is acknowledged. Returns id → line count.
fn write_batches(
    node: &TsdbProcess,
    m: &str,
    ids: std::ops::Range<u64>,
    lines: usize,
) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for id in ids {
        let (status, body) = http::write(node.addr, DB, &batch_body(m, id, lines), None)
            .expect("write reaches the node");
        assert_eq!(status, 204, "batch {id}: {body}");
        out.insert(id, lines);
    }
    out
}

/// The schema (field `v` of `m` is an integer) came back too: a float `v` is refused.
fn assert_schema_restored(node: &TsdbProcess, context: &str) {
    let (status, body) =
        http::write(node.addr, DB, "m,batch=999999 v=1.5 1", None).expect("write reaches node");
    assert_eq!(
        status, 400,
        "{context}: a float for the integer field v must be refused: {body}"
    );
    assert!(body.contains("field type conflict"), "{context}: {body}");
}

// ---------------------------------------------------------------------------------------------
// SIGKILL under load

/// What one writer thread saw in one round.
#[derive(Debug, Default)]
struct WriterLog {
    /// 204: must be stored whole.
    acked: Vec<u64>,
    /// Sent, but the connection broke before an answer: stored whole or absent.
    unanswered: Vec<u64>,
    /// Any other answer (a failure of the test: nothing but 204 is expected before the kill).
    unexpected: Vec<(u64, u16, String)>,
}

/// Sends batches back to back until `stop` is set or a request fails at the transport level
/// (the node was killed). Bounded by the ids below `last_id` and by `deadline`.
fn writer_loop(
    addr: std::net::SocketAddr,
    seed: u64,
    next_id: &AtomicU64,
    last_id: u64,
    stop: &AtomicBool,
    deadline: Duration,
) -> WriterLog {
    let started = clock::now();
    let mut log = WriterLog::default();
    while !stop.load(Ordering::SeqCst) && started.elapsed() < deadline {
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        if id >= last_id {
            break;
        }
        let body = batch_body("crash", id, lines_of(seed, id));
        match http::write(addr, DB, &body, None) {
            Ok((204, _)) => log.acked.push(id),
            Ok((status, text)) => log.unexpected.push((id, status, text)),
            Err(_) => {
                log.unanswered.push(id);
                break;
            }
        }
    }
    log
}

#[test]
fn every_acknowledged_batch_survives_repeated_sigkill() {
    const ROUNDS: u64 = 40;
    const WRITERS: usize = 2;
    /// Ids reserved per round: far more than a round can send; bounds each round's loop.
    const IDS_PER_ROUND: u64 = 100_000;

    let seed: u64 = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("every_acknowledged_batch_survives_repeated_sigkill: seed={seed} (CRASH_TEST_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = clock::now();

    let data = TempDir::new().expect("temp data dir");
    let port = free_port().expect("free port");
    // Round-specific flags: most rounds flush every 16 KiB (so kills also land in
    // flushes and WAL rotation), some use the default, some `--fsync never` (a process
    // crash must not lose page-cache data either).
    let start_node = |round: u64| -> TsdbProcess {
        let mut b = TsdbProcess::builder()
            .data_dir(data.path())
            .port(port)
            .arg("--create-database")
            .arg(DB);
        if round % 5 != 4 {
            b = b.arg("--flush-wal-bytes").arg("16384");
        }
        if round % 3 == 2 {
            b = b.arg("--fsync").arg("never");
        }
        b.start()
            .unwrap_or_else(|e| panic!("seed={seed} round {round}: starting the node: {e:#}"))
    };

    // Every batch ever acknowledged (must be whole) and every one sent without an answer
    // (whole or absent), across all rounds.
    let mut acked: BTreeMap<u64, usize> = BTreeMap::new();
    let mut unanswered: BTreeMap<u64, usize> = BTreeMap::new();
    let mut kills_mid_request = 0;
    let mut stored_unanswered = 0;
    let mut node = start_node(0);
    for round in 0..ROUNDS {
        let first_id = round * IDS_PER_ROUND;
        let next_id = Arc::new(AtomicU64::new(first_id));
        let stop = Arc::new(AtomicBool::new(false));
        let addr = node.addr;
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (next_id, stop) = (next_id.clone(), stop.clone());
                std::thread::spawn(move || {
                    writer_loop(
                        addr,
                        seed,
                        &next_id,
                        first_id + IDS_PER_ROUND,
                        &stop,
                        Duration::from_secs(5),
                    )
                })
            })
            .collect();
        // Not a wait for a condition: the random moment of the crash.
        let delay = Duration::from_millis(rng.random_range(5..=150));
        std::thread::sleep(delay);
        node.kill9();
        stop.store(true, Ordering::SeqCst);
        let mut round_acked = 0;
        for w in writers {
            let log = w.join().expect("writer thread panicked");
            assert!(
                log.unexpected.is_empty(),
                "seed={seed} round {round}: answers other than 204 before the kill: {:?}",
                log.unexpected
            );
            round_acked += log.acked.len();
            for id in log.acked {
                acked.insert(id, lines_of(seed, id));
            }
            kills_mid_request += log.unanswered.len();
            for id in log.unanswered {
                unanswered.insert(id, lines_of(seed, id));
            }
        }
        eprintln!(
            "round {round}: killed after {delay:?}, {round_acked} batches acknowledged, {} total",
            acked.len()
        );

        // Restart on the same dir and port (with the next round's flags) and check all
        // rounds so far: a later crash must not lose what an earlier one kept.
        node = start_node(round + 1);
        let stored = counts_by_batch(&node, "crash");
        stored_unanswered = unanswered
            .keys()
            .filter(|id| stored.contains_key(id))
            .count();
        let context = format!("seed={seed} after the kill of round {round}");
        for (id, lines) in &acked {
            assert_eq!(
                stored.get(id).copied(),
                Some(*lines as u64),
                "{context}: acknowledged batch {id} of {lines} points is not fully stored\nlog:\n{}",
                node.log_tail(3000)
            );
        }
        for (id, count) in &stored {
            let expected = acked.get(id).or_else(|| unanswered.get(id));
            let Some(lines) = expected else {
                panic!("{context}: batch {id} ({count} points) is stored but was never sent");
            };
            assert_eq!(
                *count, *lines as u64,
                "{context}: batch {id} is partially stored ({count} of {lines} points); a batch must be all or nothing"
            );
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "seed={seed}: {ROUNDS} kills, {} batches acknowledged, {kills_mid_request} requests \
         failed at a kill ({stored_unanswered} of them stored whole anyway), {elapsed:?}",
        acked.len()
    );
    assert!(
        acked.len() >= ROUNDS as usize,
        "seed={seed}: only {} batches acknowledged in {ROUNDS} rounds: the test did not exercise much",
        acked.len()
    );
    assert!(
        !manifests(data.path()).is_empty(),
        "seed={seed}: no flush happened, so no kill could hit one"
    );
}

/// Batches stamped with the current second (all points of a batch in one partition, so
/// retention drops a batch whole), until `stop` or a transport error (the kill). Returns
/// (id, lines, second) of the acknowledged and of the unanswered ones.
#[allow(clippy::type_complexity)]
fn timed_writer(
    addr: std::net::SocketAddr,
    seed: u64,
    next_id: &AtomicU64,
    last_id: u64,
    stop: &AtomicBool,
) -> (Vec<(u64, usize, u64)>, Vec<(u64, usize, u64)>) {
    let started = clock::now();
    let (mut acked, mut unanswered) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(5) {
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        if id >= last_id {
            break;
        }
        let lines = lines_of(seed, id);
        let second = clock::wall_ns() / 1_000_000_000 * 1_000_000_000;
        let body: String = (0..lines)
            .map(|i| format!("timed,batch={id} v={i}i {}\n", second + i as u64))
            .collect();
        match http::write(addr, DB, &body, None) {
            Ok((204, _)) => acked.push((id, lines, second)),
            Ok((status, text)) => panic!("batch {id}: {status} before the kill: {text}"),
            Err(_) => {
                unanswered.push((id, lines, second));
                break;
            }
        }
    }
    (acked, unanswered)
}

#[test]
fn sigkill_while_retention_drops_partitions_and_compactions_run_loses_nothing_kept() {
    const ROUNDS: u64 = 24;
    const IDS_PER_ROUND: u64 = 100_000;
    /// Data older than this is dropped; partitions are a second, checked every second.
    const RETENTION_S: u64 = 3;
    let seed: u64 = std::env::var("CRASH_TEST_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed={seed} (CRASH_TEST_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let data = TempDir::new().expect("temp data dir");
    let port = free_port().expect("free port");
    let start_node = || -> TsdbProcess {
        TsdbProcess::builder()
            .data_dir(data.path())
            .port(port)
            .arg("--create-database")
            .arg(DB)
            .arg("--retention")
            .arg(format!("{RETENTION_S}s"))
            .arg("--shard-duration")
            .arg("1s")
            .arg("--retention-check-interval")
            .arg("1s")
            // Small flushes: many one-second blocks, compacted in fours.
            .arg("--flush-wal-bytes")
            .arg("8192")
            .start()
            .unwrap_or_else(|e| panic!("seed={seed}: starting the node: {e:#}"))
    };
    // id → (lines, second) of every batch acknowledged / sent without an answer.
    let mut acked: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    let mut unanswered: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    let (mut compactions, mut retention_drops) = (0, 0);
    let mut node = start_node();
    for round in 0..ROUNDS {
        let first_id = round * IDS_PER_ROUND;
        let next_id = Arc::new(AtomicU64::new(first_id));
        let stop = Arc::new(AtomicBool::new(false));
        let addr = node.addr;
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (next_id, stop) = (next_id.clone(), stop.clone());
                std::thread::spawn(move || {
                    timed_writer(addr, seed, &next_id, first_id + IDS_PER_ROUND, &stop)
                })
            })
            .collect();
        // Not a wait for a condition: the random moment of the crash, long enough at times
        // for a retention sweep (every second) to run.
        std::thread::sleep(Duration::from_millis(rng.random_range(20..=1500)));
        node.kill9();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            let (a, u) = w.join().expect("writer thread panicked");
            acked.extend(a.into_iter().map(|(id, l, s)| (id, (l, s))));
            unanswered.extend(u.into_iter().map(|(id, l, s)| (id, (l, s))));
        }
        let log = node.log_tail(1 << 20);
        compactions += log.matches("blocks compacted").count();
        retention_drops += log.matches("retention removed expired data").count();

        node = start_node();
        // What retention may have dropped by now: a batch whose second ends before the
        // cutoff (with a second of slack for the sweep's own clock reading).
        let stored = counts_by_batch(&node, "timed");
        let keep_from = clock::wall_ns().saturating_sub((RETENTION_S - 1) * 1_000_000_000);
        let context = format!("seed={seed} after the kill of round {round}");
        for (id, (lines, second)) in &acked {
            let must_be_kept = *second >= keep_from;
            match stored.get(id) {
                Some(n) => assert_eq!(
                    *n,
                    *lines as u64,
                    "{context}: acknowledged batch {id} is partially stored\n{}",
                    node.log_tail(3000)
                ),
                None => assert!(
                    !must_be_kept,
                    "{context}: acknowledged batch {id} of second {second} is gone, \
                     within the retention\n{}",
                    node.log_tail(3000)
                ),
            }
        }
        for (id, n) in &stored {
            let Some((lines, _)) = acked.get(id).or_else(|| unanswered.get(id)) else {
                panic!("{context}: batch {id} ({n} points) is stored but was never sent");
            };
            assert_eq!(
                *n, *lines as u64,
                "{context}: batch {id} is partially stored"
            );
        }
    }
    eprintln!(
        "seed={seed}: {ROUNDS} kills, {} batches acknowledged, {compactions} compactions and \
         {retention_drops} retention drops in the killed processes' logs",
        acked.len()
    );
    assert!(
        compactions > 0 && retention_drops > 0,
        "seed={seed}: the kills must land among compactions ({compactions}) and retention \
         drops ({retention_drops})"
    );
}

// ---------------------------------------------------------------------------------------------
// SIGTERM

#[test]
fn sigterm_stops_cleanly_and_keeps_everything() {
    let mut node = TsdbProcess::builder()
        .arg("--fsync")
        .arg("never")
        .arg("--create-database")
        .arg(DB)
        .start()
        .expect("starting tsdb-backend");
    let mut expected = write_batches(&node, "m", 0..20, 200);

    // Keep a writer busy while SIGTERM arrives: whatever it got a 204 for must be kept, and
    // no batch may be half stored.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (node.addr, stop.clone());
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut other = Vec::new();
            let started = clock::now();
            for id in 1000..6000u64 {
                if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(10) {
                    break;
                }
                match http::write(addr, DB, &batch_body("m", id, 100), None) {
                    Ok((204, _)) => acked.push(id),
                    // 503 "shutting down" or a closed connection: not acknowledged.
                    Ok(_) | Err(_) => {
                        other.push(id);
                        break;
                    }
                }
            }
            (acked, other)
        })
    };
    // Let the writer get going: wait (bounded) until its first batch is visible.
    eventually(
        "the concurrent writer's first batch to be visible",
        |last| {
            let n = counts_by_batch(&node, "m").len();
            *last = format!("{n} batches visible");
            Ok((n > 20).then_some(()))
        },
    )
    .expect("concurrent writer makes progress");

    let pid = node.pid().expect("node is running");
    let t = clock::now();
    let status = node.stop();
    let took = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (acked, maybe) = writer.join().expect("writer thread panicked");
    assert_eq!(
        status.as_deref(),
        Some("exit status: 0"),
        "pid {pid}: SIGTERM must stop the node with status 0 within the patience ({:?}); took {took:?}\nlog:\n{}",
        tests::patience(),
        node.log_tail(3000)
    );
    eprintln!(
        "SIGTERM: exited 0 after {took:?}; {} concurrent batches acknowledged",
        acked.len()
    );

    node.restart().expect("restarting after SIGTERM");
    for id in &acked {
        expected.insert(*id, 100);
    }
    let stored = counts_by_batch(&node, "m");
    for (id, lines) in &expected {
        assert_eq!(
            stored.get(id).copied(),
            Some(*lines as u64),
            "acknowledged batch {id} lost or partial after SIGTERM"
        );
    }
    assert_schema_restored(&node, "after SIGTERM and restart (wal replay)");
    for (id, count) in &stored {
        if !expected.contains_key(id) {
            assert!(
                maybe.contains(id),
                "batch {id} stored ({count} points) but never sent"
            );
            assert_eq!(*count, 100, "unacknowledged batch {id} is partially stored");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Damaged WAL tail

/// What is done to the newest WAL segment while the node is down.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The last record loses its last bytes (a write torn by a crash).
    TruncateLastRecord,
    /// Bytes after the last record that are not a record (a length field far too large).
    AppendGarbage,
}

fn damaged_tail_is_cut_off(damage: Damage) {
    let mut node = TsdbProcess::builder()
        .arg("--create-database")
        .arg(DB)
        .start()
        .expect("starting tsdb-backend");
    let dir = node.data_dir().to_path_buf();
    let mut expected = write_batches(&node, "m", 0..9, 120);
    let segs = wal_segments(&dir);
    let (_, newest) = segs.last().cloned().expect("a wal segment exists");
    let before_last = file_len(&newest);
    expected.extend(write_batches(&node, "m", 9..10, 120));
    let segs_after = wal_segments(&dir);
    assert_eq!(
        segs_after.last().map(|(_, p)| p),
        Some(&newest),
        "the last batch went to a new segment; the test expects one segment"
    );
    let whole = file_len(&newest);
    assert!(
        whole > before_last + 10,
        "the last record is too short to tear"
    );

    node.kill9();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .expect("opening the newest wal segment");
    match damage {
        Damage::TruncateLastRecord => {
            file.set_len(whole - 3).expect("truncating the wal");
            // The torn record is the last batch: it must not come back.
            expected.remove(&9);
        }
        Damage::AppendGarbage => {
            use std::io::Write;
            (&file)
                .write_all(&[0xAB; 40])
                .expect("appending garbage to the wal");
        }
    }
    file.sync_all().expect("syncing the damaged wal");
    drop(file);

    node.restart()
        .expect("the node starts on a damaged wal tail");
    assert_exactly(&node, "m", &expected, &format!("{damage:?}: after restart"));
    let cut_to = match damage {
        Damage::TruncateLastRecord => before_last,
        Damage::AppendGarbage => whole,
    };
    assert_eq!(
        file_len(&newest),
        cut_to,
        "{damage:?}: recovery must cut the segment back to the end of its last whole record"
    );

    // New writes go on cleanly after the cut and survive another crash.
    expected.extend(write_batches(&node, "m", 100..103, 120));
    assert_exactly(
        &node,
        "m",
        &expected,
        &format!("{damage:?}: after new writes"),
    );
    node.restart().expect("second restart");
    assert_exactly(
        &node,
        "m",
        &expected,
        &format!("{damage:?}: after the second restart"),
    );
    // And the damaged batch did not come back from the old segment.
    if let Damage::TruncateLastRecord = damage {
        assert!(!counts_by_batch(&node, "m").contains_key(&9));
    }
}

#[test]
fn a_torn_wal_tail_is_cut_off_not_replayed() {
    damaged_tail_is_cut_off(Damage::TruncateLastRecord);
}

#[test]
fn garbage_after_the_last_wal_record_is_cut_off_not_replayed() {
    damaged_tail_is_cut_off(Damage::AppendGarbage);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// The value of an unlabelled metric in Prometheus text.
fn metric(node: &TsdbProcess, name: &str) -> Option<f64> {
    let r = http::request("GET", &format!("{}/metrics", node.url()), &[], None)
        .expect("GET /metrics reaches the node");
    r.body.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

#[test]
fn restart_after_flushes_restores_data() {
    let mut node = TsdbProcess::builder()
        .arg("--flush-wal-bytes")
        .arg("4096")
        .arg("--create-database")
        .arg(DB)
        .start()
        .expect("starting tsdb-backend");
    let dir = node.data_dir().to_path_buf();
    let expected = write_batches(&node, "m", 0..40, 150);

    // Flushes run in the background: wait (bounded) until several are done and the WAL
    // they cover is gone.
    eventually("flushes to finish and trim the wal", |last| {
        let segs = wal_segments(&dir);
        let flushes = metric(&node, "tsdb_checkpoints_total").unwrap_or(0.0);
        // A segment may go between the listing and the stat (a flush trims it): count 0.
        let wal_total: u64 = segs
            .iter()
            .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        *last = format!(
            "flushes={flushes} manifests={:?} segments={segs:?}",
            manifests(&dir)
        );
        // A flush starts once 4 KiB were logged since the last: what is left is that, plus
        // the batch that crossed it, plus at most one more that landed meanwhile.
        Ok((flushes >= 3.0 && wal_total < 4096 + 16 * 1024).then_some(()))
    })
    .expect("several flushes happen and old wal segments are removed");
    assert!(
        !dir.join(format!("wal-{:020}.log", 1)).exists(),
        "the first wal segment must have been removed by a flush"
    );
    assert!(
        (1..=2).contains(&manifests(&dir).len()),
        "old manifests are pruned: {:?}",
        manifests(&dir)
    );
    let blocks = std::fs::read_dir(dir.join("blocks"))
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    assert!(blocks >= 1, "the flushed values are in blocks");

    node.restart().expect("restart after flushes");
    assert_exactly(&node, "m", &expected, "after restart from blocks");
    assert_schema_restored(&node, "after restart from blocks");
    // Once more, after a SIGTERM, which may race no flush now.
    assert_eq!(node.stop().as_deref(), Some("exit status: 0"));
    node.restart().expect("second restart");
    assert_exactly(&node, "m", &expected, "after the second restart");
}
