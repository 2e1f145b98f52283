//! The WAL writer thread: group commit, then apply, then acknowledge; and when to flush.
//!
//! Request handlers send encoded entries through a channel. The thread takes everything
//! that is waiting, appends it to the current segment with one write, makes it durable
//! with one fsync (so concurrent writers share it), applies the entries to memory in log
//! order, and only then answers each sender. Memory therefore never holds a change the log
//! does not, and replay reproduces the exact order of application.
//!
//! Between groups it decides whether the head is due for a flush (see `FlushPolicy`): it
//! then rotates the WAL, freezes the head at the current record and hands it to a flush
//! thread (`flush.rs`); one flush runs at a time.

use super::catalog::Catalog;
use super::compact;
use super::entry::Entry;
use super::flush;
use super::log_tail::{Backlog, Item};
use super::wal::{self, Segment};
use super::StorageError;
use crate::clock::{monotonic_now, TimeProvider};
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// When the head is written into blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Flush once the head holds this many values (the memory budget's share for it).
    pub max_head_values: u64,
    /// Flush once this many WAL bytes were logged since the last flush (bounds replay).
    pub max_wal_bytes: u64,
    /// Flush after this long without a write, when the head holds anything.
    pub quiet: Duration,
    /// Flush a head whose oldest value arrived this long ago, however busy the node is.
    pub max_age: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            max_head_values: 2_000_000,
            max_wal_bytes: 128 << 20,
            quiet: Duration::from_secs(5),
            max_age: Duration::from_secs(600),
        }
    }
}

/// Whether an acknowledgement waits for fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncMode {
    /// fsync before every acknowledgement (shared by concurrent writers): no acknowledged
    /// point is lost even if the machine loses power.
    Always,
    /// Leave flushing to the operating system: survives a process crash, not a power loss.
    Never,
}

/// What the writer thread is asked to do.
#[derive(Debug)]
pub enum Job {
    /// Log one entry; the reply carries its sequence number once it is durable and applied.
    Log {
        entry: Entry,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<u64, StorageError>>,
    },
    /// Flush the head into blocks now and trim the WAL; the reply comes when it is done.
    Flush {
        reply: std::sync::mpsc::Sender<Result<(), StorageError>>,
    },
}

/// A `Job::Log` taken into the current group.
#[derive(Debug)]
struct Pending {
    entry: Entry,
    payload: Vec<u8>,
    reply: oneshot::Sender<Result<u64, StorageError>>,
}

/// Compactions run after each flush, at most.
const COMPACTIONS_PER_FLUSH: usize = 2;

/// Bytes the idle probe writes to find out whether the disk has space again.
const SPACE_PROBE_BYTES: usize = 64 << 10;

/// Stop gathering more jobs into one group once this many bytes are waiting.
const MAX_GROUP_BYTES: usize = 16 << 20;

#[derive(Debug)]
pub struct Writer {
    pub dir: PathBuf,
    pub fsync: FsyncMode,
    pub flush: FlushPolicy,
    /// WAL bytes replayed at start (logged since the last flush, before this start).
    pub unflushed_wal_bytes: u64,
    /// Values in the head (set by the writer, read by `/health` and the memory budget).
    pub head_values: Arc<AtomicU64>,
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    /// Highest sequence number applied.
    pub last_seq: Arc<AtomicU64>,
    /// Set after a failed append: the log's tail is unknown, so no further write is accepted.
    pub failed: Arc<AtomicBool>,
    /// Set while the data directory's file system is full: the last append was refused for
    /// space and cut back off the log. Cleared by the next append that succeeds, or by the
    /// idle probe (`space_returned`) once a file can be written again.
    pub disk_full: Arc<AtomicBool>,
    /// This node's origin key (`node_id/incarnation`), recorded as applied up to each local
    /// entry's sequence number.
    pub origin: String,
    /// Where durable local entries go for the peers, when the node replicates.
    pub backlog: Option<Arc<Backlog>>,
    /// The lowest sequence number every peer has applied (see `Keep`).
    pub replication_floor: Arc<AtomicU64>,
    pub time: Arc<dyn TimeProvider>,
}

impl Writer {
    pub fn run(self, rx: Receiver<Job>) -> Result<(), StorageError> {
        let mut seq = self.last_seq.load(Ordering::SeqCst);
        let mut segment = Segment::open(&self.dir, seq + 1)?;
        let mut since_flush = segment.len + self.unflushed_wal_bytes;
        self.metrics.wal_bytes.set(wal_bytes(&self.dir) as i64);
        let mut running: Option<JoinHandle<Result<(), StorageError>>> = None;
        let mut buf = Vec::with_capacity(1 << 20);
        let mut group: Vec<Pending> = Vec::new();
        // Times from the injected clock, so tests decide when a quiet or old head is due.
        let mut head_since: Option<i64> = None;
        let mut last_write = self.time.now_ns();
        let mut ddl_dropped = false;

        let mut forced: Vec<std::sync::mpsc::Sender<Result<(), StorageError>>> = Vec::new();
        loop {
            // While a flush runs, look again soon: the next one may be due the moment it ends
            // (a full head refuses writes, so no write would wake the loop).
            let wait = if running.is_some() {
                Duration::from_millis(10)
            } else {
                self.flush.quiet.max(Duration::from_millis(50))
            };
            let first = match rx.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut bytes = 0;
            let mut next = first;
            while let Some(job) = next.take() {
                match job {
                    Job::Log {
                        entry,
                        payload,
                        reply,
                    } => {
                        bytes += payload.len();
                        ddl_dropped |= entry.drops_data();
                        group.push(Pending {
                            entry,
                            payload,
                            reply,
                        });
                    }
                    Job::Flush { reply } => forced.push(reply),
                }
                if bytes < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                let values = self.commit_group(
                    &mut group,
                    &mut segment,
                    &mut seq,
                    &mut buf,
                    &mut since_flush,
                );
                let now = self.time.now_ns();
                if values > 0 {
                    head_since.get_or_insert(now);
                }
                last_write = now;
            } else if self.disk_full.load(Ordering::SeqCst) && self.space_returned() {
                self.space_is_back();
            }
            if running.as_ref().is_some_and(|h| h.is_finished()) {
                if let Some(h) = running.take() {
                    let _ = h.join();
                }
            }

            if !forced.is_empty() {
                // A forced flush covers everything logged before it: a flush already running
                // froze the head earlier, so let it finish and start another.
                if let Some(h) = running.take() {
                    let _ = h.join();
                }
            }
            let head = self.head_values.load(Ordering::SeqCst);
            let now = self.time.now_ns();
            let elapsed =
                |since: i64| Duration::from_nanos(now.saturating_sub(since).max(0) as u64);
            let due = !forced.is_empty()
                || ddl_dropped
                || head >= self.flush.max_head_values
                || since_flush >= self.flush.max_wal_bytes
                || (head > 0 && elapsed(last_write) >= self.flush.quiet)
                || head_since.is_some_and(|t| elapsed(t) >= self.flush.max_age);
            if due && running.is_none() {
                // Start a new segment at seq + 1, so every older segment is covered by the
                // blocks of the head frozen at `seq` and can go once they are durable.
                if let Err(e) = segment.sync() {
                    tracing::warn!(error = %e, "syncing wal before a flush");
                }
                match Segment::open(&self.dir, seq + 1) {
                    Ok(next) => {
                        segment = next;
                        since_flush = 0;
                        head_since = None;
                        ddl_dropped = false;
                        let frozen = flush::freeze(&self.catalog, seq);
                        self.head_values.store(0, Ordering::SeqCst);
                        running = self.spawn_flush(frozen);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rotating wal segment; flush postponed")
                    }
                }
            }
            if !forced.is_empty() {
                // A forced flush answers once its blocks and manifest are durable.
                let res = match running.take() {
                    Some(h) => h.join().unwrap_or(Err(StorageError::WalFailed)),
                    None => Ok(()),
                };
                for reply in forced.drain(..) {
                    let _ = reply.send(match &res {
                        Ok(()) => Ok(()),
                        Err(e) => Err(StorageError::CheckpointFailed(e.to_string())),
                    });
                }
            }
        }

        // All senders are gone: the node is shutting down. Make the tail durable.
        let res = segment.sync();
        if let Some(h) = running.take() {
            let _ = h.join();
        }
        tracing::info!(last_seq = seq, "wal writer stopped");
        res.map_err(StorageError::from)
    }

    /// Clears `disk_full` (saying so once, if it was set).
    fn space_is_back(&self) {
        if self.disk_full.swap(false, Ordering::SeqCst) {
            tracing::info!("the data directory has space again: writes are accepted");
        }
    }

    /// Whether a small file can be written in the data directory again: the probe that
    /// clears `disk_full` while no write comes to do it.
    fn space_returned(&self) -> bool {
        let probe = self.dir.join(".space-probe");
        let ok = std::fs::write(&probe, [0u8; SPACE_PROBE_BYTES]).is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    }

    /// What the next flush keeps for peers.
    fn keep(&self) -> Keep {
        match &self.backlog {
            Some(b) => Keep {
                floor: self.replication_floor.load(Ordering::SeqCst),
                max_bytes: b.max_bytes(),
            },
            None => Keep::NOTHING,
        }
    }

    /// Appends a group of entries with one write and one fsync, applies them in log order
    /// and answers their senders. Returns the number of values applied.
    fn commit_group(
        &self,
        group: &mut Vec<Pending>,
        segment: &mut Segment,
        seq: &mut u64,
        buf: &mut Vec<u8>,
        since_flush: &mut u64,
    ) -> u64 {
        if self.failed.load(Ordering::SeqCst) {
            for job in group.drain(..) {
                let _ = job.reply.send(Err(StorageError::WalFailed));
            }
            return 0;
        }
        buf.clear();
        let len_before = segment.len;
        let first_seq = *seq + 1;
        for (i, job) in group.iter().enumerate() {
            wal::encode_record(buf, first_seq + i as u64, &job.payload);
        }
        let started = monotonic_now();
        let mut res = segment.append(buf);
        if res.is_ok() && self.fsync == FsyncMode::Always {
            res = segment.sync();
            self.metrics.wal_fsyncs.inc();
        }
        self.metrics
            .wal_fsync_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.wal_group_size.observe(group.len() as f64);
        if let Err(e) = res {
            if e.is_out_of_space() {
                // Nothing is wrong with the log but its file system is full: cut off what
                // part of the group reached the file, refuse the group, and keep serving.
                match segment.truncate_to(len_before) {
                    Ok(()) => {
                        if !self.disk_full.swap(true, Ordering::SeqCst) {
                            tracing::error!(error = %e, "data directory full: refusing writes until space is freed");
                        }
                        self.metrics.wal_out_of_space.inc();
                        let reason = e.to_string();
                        for job in group.drain(..) {
                            let _ = job.reply.send(Err(StorageError::DiskFull(reason.clone())));
                        }
                        return 0;
                    }
                    Err(cut) => {
                        tracing::error!(error = %cut, "cannot cut a refused group off the wal");
                    }
                }
            }
            // The tail of the log is now unknown: accepting more writes could acknowledge
            // points that recovery will cut off.
            tracing::error!(error = %e, "wal append failed: refusing further writes");
            self.failed.store(true, Ordering::SeqCst);
            for job in group.drain(..) {
                let _ = job.reply.send(Err(StorageError::WalFailed));
            }
            return 0;
        }
        self.space_is_back();
        *since_flush += buf.len() as u64;
        self.metrics.wal_bytes.add(buf.len() as i64);
        let now = self.time.now_ns();
        let mut last_local = None;
        let mut values = 0;
        for job in group.drain(..) {
            *seq += 1;
            let local = Entry::is_local(&job.payload);
            values += self.catalog.apply(job.entry) as u64;
            if local {
                last_local = Some(*seq);
                if let Some(backlog) = &self.backlog {
                    backlog.push(Item {
                        seq: *seq,
                        at_ns: now,
                        payload: Arc::new(job.payload),
                    });
                }
            }
            self.last_seq.store(*seq, Ordering::SeqCst);
            let _ = job.reply.send(Ok(*seq));
        }
        if let Some(s) = last_local {
            self.catalog.note_applied(&self.origin, s);
        }
        self.head_values.fetch_add(values, Ordering::SeqCst);
        values
    }

    fn spawn_flush(&self, frozen: flush::Frozen) -> Option<JoinHandle<Result<(), StorageError>>> {
        let dir = self.dir.clone();
        let catalog = self.catalog.clone();
        let metrics = self.metrics.clone();
        let keep = self.keep();
        let target = self.flush.max_head_values;
        let spawned = std::thread::Builder::new()
            .name("flush".into())
            .spawn(move || {
                let res = flush_and_trim(&dir, &catalog, frozen, keep, &metrics);
                if let Err(e) = &res {
                    tracing::error!(error = %e, "flush failed; the wal is kept");
                }
                // Small blocks merged, a bounded amount per flush (the next flush waits).
                for _ in 0..COMPACTIONS_PER_FLUSH {
                    match compact::compact_once(&dir, &catalog, target) {
                        Ok(Some(c)) => {
                            metrics.compactions.inc();
                            tracing::info!(db = %c.db, inputs = ?c.inputs, output = c.output, values = c.values, "blocks compacted");
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::error!(error = %e, "compaction failed; its inputs are kept");
                            break;
                        }
                    }
                }
                res
            });
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the flush thread; the wal is kept");
                None
            }
        }
    }
}

/// Writes a frozen head into blocks, commits the manifest, drops the frozen layers, then
/// deletes the WAL segments the blocks cover (keeping those a peer still needs) and any
/// block file no manifest names.
pub fn flush_and_trim(
    dir: &std::path::Path,
    catalog: &Catalog,
    frozen: flush::Frozen,
    keep: Keep,
    metrics: &Metrics,
) -> Result<(), StorageError> {
    let started = monotonic_now();
    let (seq, values) = (frozen.seq, frozen.values);
    let blocks =
        flush::write_blocks(dir, catalog, &frozen).map_err(StorageError::CheckpointFailed)?;
    {
        let mut flushed = catalog.lock_flushed();
        let max_hlc = flushed.max_hlc.max(frozen.max_hlc);
        flush::commit(dir, catalog, &frozen, max_hlc).map_err(StorageError::CheckpointFailed)?;
        flushed.seq = seq;
        flushed.applied = frozen.applied().clone();
        flushed.max_hlc = max_hlc;
    }
    flush::thaw(frozen);
    trim_wal(dir, seq, keep)?;
    super::snapshot::remove_older(dir, u64::MAX)?;
    flush::sweep(dir, catalog);
    metrics.checkpoints.inc();
    metrics.wal_bytes.set(wal_bytes(dir) as i64);
    tracing::info!(
        seq,
        values,
        blocks,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "head flushed into blocks, wal trimmed"
    );
    Ok(())
}

/// Which covered WAL segments a flush keeps for peers.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// Every peer has applied this node's entries up to here (`u64::MAX`: no peers).
    pub floor: u64,
    /// At most this many bytes of covered segments are kept for peers; a peer that needs
    /// older ones is resynchronised instead.
    pub max_bytes: u64,
}

impl Keep {
    pub const NOTHING: Keep = Keep {
        floor: u64::MAX,
        max_bytes: 0,
    };
}

/// Deletes the WAL segments whose records are all at or below `seq` (in blocks now),
/// keeping the newest of them that hold entries a peer still lacks (within `keep`).
pub fn trim_wal(dir: &std::path::Path, seq: u64, keep: Keep) -> Result<(), StorageError> {
    let segments = wal::list_segments(dir)?;
    // A segment starting at or below `seq` ends before `seq + 1`, where the current one
    // starts: all of its records are in blocks. Walk them newest first.
    let mut kept_bytes = 0u64;
    for i in (0..segments.len()).rev() {
        let (first, path) = &segments[i];
        if *first > seq {
            continue;
        }
        let last = segments.get(i + 1).map_or(seq, |(next, _)| next - 1);
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let needed = last > keep.floor;
        if needed && kept_bytes + len <= keep.max_bytes {
            kept_bytes += len;
            continue;
        }
        if needed {
            tracing::warn!(segment = %path.display(), floor = keep.floor, "dropping a wal segment a peer still lacks (backlog bound reached): that peer will be resynchronised");
        }
        std::fs::remove_file(path).map_err(|source| StorageError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Bytes in all WAL segments of `dir`.
pub fn wal_bytes(dir: &std::path::Path) -> u64 {
    wal::list_segments(dir)
        .map(|segs| {
            segs.iter()
                .filter_map(|(_, p)| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
