//! The WAL writer thread: group commit, then apply, then acknowledge.
//!
//! Request handlers send encoded entries through a channel. The thread takes everything
//! that is waiting, appends it to the current segment with one write, makes it durable
//! with one fsync (so concurrent writers share it), applies the entries to memory in log
//! order, and only then answers each sender. Memory therefore never holds a change the log
//! does not, and replay reproduces the exact order of application.

use super::catalog::Catalog;
use super::entry::Entry;
use super::snapshot;
use super::wal::{self, Segment};
use super::StorageError;
use crate::clock::{monotonic_now, TimeProvider};
use crate::metrics::Metrics;
use crate::replication::backlog::{Backlog, Item};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

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
    /// Write a snapshot now and trim the WAL; the reply comes when it is done.
    Checkpoint {
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

/// Stop gathering more jobs into one group once this many bytes are waiting.
const MAX_GROUP_BYTES: usize = 16 << 20;

#[derive(Debug)]
pub struct Writer {
    pub dir: PathBuf,
    pub fsync: FsyncMode,
    /// WAL bytes since the last snapshot that trigger the next one, at least; see `due`.
    pub checkpoint_bytes: u64,
    /// Size of the newest snapshot.
    pub snapshot_bytes: Arc<AtomicU64>,
    pub catalog: Arc<Catalog>,
    pub metrics: Arc<Metrics>,
    /// Highest sequence number applied.
    pub last_seq: Arc<AtomicU64>,
    /// Set after a failed append: the log's tail is unknown, so no further write is accepted.
    pub failed: Arc<AtomicBool>,
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
        let mut since_checkpoint = segment.len;
        self.metrics.wal_bytes.set(wal_bytes(&self.dir) as i64);
        let checkpoint_running = Arc::new(AtomicBool::new(false));
        let mut checkpoint: Option<JoinHandle<Result<(), StorageError>>> = None;
        let mut buf = Vec::with_capacity(1 << 20);
        let mut group: Vec<Pending> = Vec::new();

        let mut forced: Vec<std::sync::mpsc::Sender<Result<(), StorageError>>> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Log {
                        entry,
                        payload,
                        reply,
                    } => {
                        bytes += payload.len();
                        group.push(Pending {
                            entry,
                            payload,
                            reply,
                        });
                    }
                    Job::Checkpoint { reply } => forced.push(reply),
                }
                if bytes < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit_group(
                    &mut group,
                    &mut segment,
                    &mut seq,
                    &mut buf,
                    &mut since_checkpoint,
                );
            }

            let due = self.due(since_checkpoint) || !forced.is_empty();
            if due && !checkpoint_running.load(Ordering::SeqCst) {
                // Start a new segment at seq + 1, so every older segment is covered by the
                // snapshot of state `seq` and can be deleted once it is durable.
                if let Err(e) = segment.sync() {
                    tracing::warn!(error = %e, "syncing wal before checkpoint");
                }
                match Segment::open(&self.dir, seq + 1) {
                    Ok(next) => {
                        segment = next;
                        since_checkpoint = 0;
                        if let Some(h) = checkpoint.take() {
                            let _ = h.join();
                        }
                        checkpoint_running.store(true, Ordering::SeqCst);
                        checkpoint = self.spawn_checkpoint(seq, checkpoint_running.clone());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rotating wal segment; checkpoint postponed")
                    }
                }
            }
            if !forced.is_empty() {
                // A forced checkpoint answers once the snapshot is durable.
                let res = match checkpoint.take() {
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
        if let Some(h) = checkpoint.take() {
            let _ = h.join();
        }
        tracing::info!(last_seq = seq, "wal writer stopped");
        res.map_err(StorageError::from)
    }

    /// What the next checkpoint keeps for peers.
    fn keep(&self) -> Keep {
        match &self.backlog {
            Some(b) => Keep {
                floor: self.replication_floor.load(Ordering::SeqCst),
                max_bytes: b.max_bytes(),
            },
            None => Keep::NOTHING,
        }
    }

    /// Whether enough WAL accumulated for a checkpoint: `checkpoint_bytes`, or twice the
    /// size of the last snapshot if that is larger. Each snapshot writes the whole state, so
    /// tying the interval to the state's size keeps the total checkpoint work linear in the
    /// data written (about the state's size once over, not quadratic), while replay after a
    /// crash stays within two snapshots' worth of WAL.
    fn due(&self, since_checkpoint: u64) -> bool {
        let state = self.snapshot_bytes.load(Ordering::SeqCst).saturating_mul(2);
        since_checkpoint >= self.checkpoint_bytes.max(state)
    }

    /// Appends a group of entries with one write and one fsync, applies them in log order
    /// and answers their senders.
    fn commit_group(
        &self,
        group: &mut Vec<Pending>,
        segment: &mut Segment,
        seq: &mut u64,
        buf: &mut Vec<u8>,
        since_checkpoint: &mut u64,
    ) {
        if self.failed.load(Ordering::SeqCst) {
            for job in group.drain(..) {
                let _ = job.reply.send(Err(StorageError::WalFailed));
            }
            return;
        }
        buf.clear();
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
            // The tail of the log is now unknown: accepting more writes could acknowledge
            // points that recovery will cut off.
            tracing::error!(error = %e, "wal append failed: refusing further writes");
            self.failed.store(true, Ordering::SeqCst);
            for job in group.drain(..) {
                let _ = job.reply.send(Err(StorageError::WalFailed));
            }
            return;
        }
        *since_checkpoint += buf.len() as u64;
        self.metrics.wal_bytes.add(buf.len() as i64);
        let now = self.time.now_ns();
        let mut last_local = None;
        for job in group.drain(..) {
            *seq += 1;
            let local = Entry::is_local(&job.payload);
            self.catalog.apply(job.entry);
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
    }

    fn spawn_checkpoint(
        &self,
        seq: u64,
        running: Arc<AtomicBool>,
    ) -> Option<JoinHandle<Result<(), StorageError>>> {
        let dir = self.dir.clone();
        let catalog = self.catalog.clone();
        let metrics = self.metrics.clone();
        let snapshot_bytes = self.snapshot_bytes.clone();
        let flag = running.clone();
        let keep = self.keep();
        let spawned = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                let started = monotonic_now();
                let res = checkpoint(&dir, seq, &catalog, keep);
                match &res {
                    Ok(()) => {
                        if let Ok(meta) = std::fs::metadata(snapshot::snapshot_path(&dir, seq)) {
                            snapshot_bytes.store(meta.len(), Ordering::SeqCst);
                        }
                        metrics.checkpoints.inc();
                        metrics.wal_bytes.set(wal_bytes(&dir) as i64);
                        tracing::info!(
                            seq,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "checkpoint written, wal trimmed"
                        );
                    }
                    Err(e) => tracing::error!(error = %e, seq, "checkpoint failed; wal kept"),
                }
                running.store(false, Ordering::SeqCst);
                res
            });
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the checkpoint thread; wal kept");
                flag.store(false, Ordering::SeqCst);
                None
            }
        }
    }
}

/// Which covered WAL segments a checkpoint keeps for peers.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// Every peer has applied this node's entries up to here (`u64::MAX`: no peers).
    pub floor: u64,
    /// At most this many bytes of covered segments are kept for peers; a peer that needs
    /// older ones is resynchronised from a snapshot instead.
    pub max_bytes: u64,
}

impl Keep {
    pub const NOTHING: Keep = Keep {
        floor: u64::MAX,
        max_bytes: 0,
    };
}

/// Writes snapshot `seq`, then deletes the segments and snapshots it makes redundant,
/// keeping the newest segments that hold entries a peer still lacks (within `keep`).
pub fn checkpoint(
    dir: &std::path::Path,
    seq: u64,
    catalog: &Catalog,
    keep: Keep,
) -> Result<(), StorageError> {
    snapshot::write_snapshot(dir, seq, catalog)?;
    let segments = wal::list_segments(dir)?;
    // A segment starting at or below `seq` ends before `seq + 1`, where the current one
    // starts: all of its records are in the snapshot. Walk them newest first.
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
    snapshot::remove_older(dir, seq)?;
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
