//! The storage engine: what a node holds, how a write becomes durable, how it comes back.
//!
//! ```text
//! Engine
//!  ├─ Catalog (catalog.rs)       databases → retention policies, measurements → series;
//!  │    ├─ series.rs             the head: recent rows per series, in memory, WAL-backed
//!  │    └─ blocks.rs             each database's blocks on disk, decoded-column cache
//!  ├─ WAL writer (writer.rs)     group commit: one fsync per group, apply, acknowledge;
//!  │    │                        decides when the head is flushed
//!  │    └─ wal.rs                segment files of checksummed records; recovery cuts a bad tail
//!  ├─ flush.rs                   head → immutable compressed blocks (block.rs: the format)
//!  ├─ compact.rs                 small blocks of a partition merged into one
//!  ├─ manifest.rs                which blocks exist and where the WAL takes over
//!  ├─ read.rs                    a series' values: blocks + head, last writer wins
//!  ├─ open.rs                    restart: manifest + block indexes, or an old snapshot
//!  ├─ entry.rs                   what a record means (write, DDL); idempotent on replay
//!  ├─ transfer.rs                resync and rebuild: catalog, missing blocks, head
//!  └─ snapshot.rs                the encoding of state sent to peers (and the old on-disk form)
//! ```
//!
//! A write is validated against the schema (field types are reserved as they are first
//! seen), logged, fsynced, applied to the head, and only then acknowledged. The head is
//! flushed into blocks by size, by age and after a quiet period; the WAL is then cut back.
//! On open the newest manifest and its blocks' indexes are loaded and the WAL records after
//! the last flush are replayed.

pub mod block;
pub mod blocks;
pub mod catalog;
pub mod compact;
pub mod deletes;
pub mod entry;
pub mod flush;
pub mod log_tail;
pub mod manifest;
mod open;
pub mod read;
pub mod series;
pub mod snapshot;
pub mod transfer;
pub mod version;
pub mod wal;
pub mod writer;

use crate::clock::TimeProvider;
use crate::metrics::Metrics;
use crate::model::Point;
use catalog::{read, write, Catalog, Database};
use entry::Entry;
use log_tail::{Backlog, Item};
pub use series::FieldTypeConflict;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
pub use writer::{FlushPolicy, FsyncMode};

/// Why entries from a peer were not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error("this node has applied the origin only up to {applied}")]
    Behind { applied: u64 },
    #[error("entry {seq} from {origin}: cannot decode: {source}")]
    Decode {
        origin: String,
        seq: u64,
        #[source]
        source: postcard::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database not found: \"{0}\"")]
    DatabaseNotFound(String),
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("wal record {seq}: cannot decode: {source}")]
    Decode {
        seq: u64,
        #[source]
        source: postcard::Error,
    },
    #[error("encoding wal entry: {0}")]
    Encode(#[source] postcard::Error),
    #[error("the write-ahead log failed earlier; the node accepts no writes until restarted")]
    WalFailed,
    #[error("insufficient storage: {0}; the write was not stored: retry once space is freed")]
    DiskFull(String),
    #[error("checkpoint failed: {0}")]
    CheckpointFailed(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error(
        "the head holds {values} values, over its budget, and flushes are behind: retry shortly"
    )]
    Overloaded { values: u64 },
}

/// What a value in the head costs in memory, about (row, cell, map node, frozen copy while
/// it is flushed): the memory budget's share for the head is divided by this.
pub const HEAD_BYTES_PER_VALUE: u64 = 100;

/// Memory in use by the storage, for `/health` and the metrics.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MemoryUse {
    pub head_values: u64,
    pub head_bytes_estimate: u64,
    pub head_limit_values: u64,
    pub column_cache_bytes: u64,
    pub blocks: u64,
    pub block_bytes: u64,
}

/// How the engine is set up; see `main.rs` for the flags that fill it.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub fsync: FsyncMode,
    /// When the head is flushed into blocks.
    pub flush: FlushPolicy,
    /// Bytes of decoded block columns kept for queries.
    pub column_cache_bytes: u64,
    /// Duration of the default policy of new databases (0: keep forever).
    pub default_retention_ns: i64,
    /// Its shard group duration: the time partition of blocks (0: InfluxDB's default for
    /// the duration).
    pub default_shard_duration_ns: i64,
    /// This node's id: the origin of the writes it accepts from clients.
    pub node_id: String,
    /// Keep local entries in memory for peers, up to this many bytes (`None`: no peers).
    pub replication_backlog_bytes: Option<u64>,
}

/// Why points of a write were not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    TypeConflict(FieldTypeConflict),
    /// The point's only field was named `time`, which InfluxDB reserves.
    TimeFieldOnly {
        measurement: String,
    },
    /// A tag was named `time`, which would shadow the time column.
    TimeTag {
        measurement: String,
    },
    /// Older than the database's retention allows.
    BeyondRetention,
}

/// A write body as the client sent it, with what its parse depended on.
#[derive(Debug, Clone, Copy)]
pub struct RawLines<'a> {
    pub body: &'a [u8],
    pub precision: crate::model::Precision,
    pub default_time_ns: i64,
}

/// The outcome of a write whose accepted points are durable.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteReport {
    pub written: usize,
    pub rejected: Vec<Rejection>,
}

/// The node's storage: owns the catalog and the WAL writer thread.
#[derive(Debug)]
pub struct Engine {
    catalog: Arc<Catalog>,
    jobs: RwLock<Option<Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<Result<(), StorageError>>>>,
    time: Arc<dyn TimeProvider>,
    metrics: Arc<Metrics>,
    last_seq: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    disk_full: Arc<AtomicBool>,
    config: EngineConfig,
    hlc: version::Hlc,
    origin: String,
    backlog: Option<Arc<Backlog>>,
    was_empty: bool,
    replication_floor: Arc<AtomicU64>,
    head_values: Arc<AtomicU64>,
}

use writer::Job;

impl Engine {
    /// Opens the data directory: loads the newest valid snapshot, replays the WAL after it
    /// (cutting off a torn or corrupt tail) and starts the writer thread.
    pub fn open(
        config: EngineConfig,
        time: Arc<dyn TimeProvider>,
        metrics: Arc<Metrics>,
    ) -> Result<Engine, StorageError> {
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| StorageError::Io {
            path: dir.clone(),
            source,
        })?;
        snapshot::remove_temporaries(&dir);
        transfer::clear_incoming(&dir);

        let open::Opened {
            catalog,
            start_seq: snap_seq,
            upgrade,
        } = open::open_state(
            &dir,
            config.default_retention_ns,
            config.default_shard_duration_ns,
            config.column_cache_bytes,
        )?;
        let incarnation = incarnation(&dir)?;
        let origin = format!("{}/{}", config.node_id, incarnation.id);
        let recovered = wal::recover(&dir, snap_seq)?;
        let replayed = recovered.records.len();
        // The WAL not yet in blocks counts towards the next flush, so a node that keeps
        // crashing before it flushes does not grow its WAL without bound.
        let unflushed_wal_bytes: u64 = recovered
            .records
            .iter()
            .map(|r| (r.payload.len() + wal::HEADER_LEN) as u64)
            .sum();
        // Local entries after the snapshot are still in the WAL: they go back into the
        // backlog; older ones were trimmed, and a peer that lacks them needs a resync.
        // Entries before the oldest segment are gone; segments the snapshot covers were kept
        // only because a peer lacked them: their local entries go back into the backlog.
        let backlog = config.replication_backlog_bytes.map(|max| {
            let gone = match recovered.first_seq {
                Some(first) => first - 1,
                None => catalog.applied_from(&origin).min(snap_seq),
            };
            Arc::new(Backlog::new(max, gone))
        });
        let now = time.now_ns();
        if let Some(b) = &backlog {
            for record in recovered.retained {
                if Entry::is_local(&record.payload) {
                    b.push(Item {
                        seq: record.seq,
                        at_ns: now,
                        payload: Arc::new(record.payload),
                    });
                }
            }
        }
        // The clock starts past every version on disk, so that this node's new writes win
        // over what it wrote before it stopped, however its wall clock moved meanwhile.
        let hlc = version::Hlc::default();
        hlc.observe(catalog.lock_flushed().max_hlc);
        let mut head_values = 0u64;
        for record in recovered.records {
            let entry = Entry::decode(&record.payload).map_err(|source| StorageError::Decode {
                seq: record.seq,
                source,
            })?;
            if let Some(v) = entry.version() {
                hlc.observe(v.hlc);
            }
            let local = Entry::is_local(&record.payload);
            head_values += catalog.apply(entry) as u64;
            if local {
                catalog.note_applied(&origin, record.seq);
                if let Some(b) = &backlog {
                    b.push(Item {
                        seq: record.seq,
                        at_ns: now,
                        payload: Arc::new(record.payload),
                    });
                }
            }
        }
        tracing::info!(
            flushed_seq = snap_seq,
            replayed,
            head_values,
            last_seq = recovered.last_seq,
            cut_bytes = recovered.cut_bytes,
            "storage recovered"
        );

        let catalog = Arc::new(catalog);
        let last_seq = Arc::new(AtomicU64::new(recovered.last_seq));
        // Until the shippers report their peers' cursors, keep everything a peer may lack.
        let replication_floor =
            Arc::new(AtomicU64::new(if backlog.is_some() { 0 } else { u64::MAX }));
        let failed = Arc::new(AtomicBool::new(false));
        let disk_full = Arc::new(AtomicBool::new(false));
        let head_values = Arc::new(AtomicU64::new(head_values));
        let (tx, rx) = mpsc::channel();
        let writer = writer::Writer {
            dir: dir.clone(),
            fsync: config.fsync,
            flush: config.flush,
            unflushed_wal_bytes,
            head_values: head_values.clone(),
            catalog: catalog.clone(),
            metrics: metrics.clone(),
            last_seq: last_seq.clone(),
            failed: failed.clone(),
            disk_full: disk_full.clone(),
            origin: origin.clone(),
            backlog: backlog.clone(),
            replication_floor: replication_floor.clone(),
            time: time.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StorageError::Io {
                path: dir.clone(),
                source,
            })?;
        let engine = Engine {
            catalog: catalog.clone(),
            jobs: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            time,
            metrics,
            last_seq,
            failed,
            disk_full,
            config,
            hlc,
            origin,
            backlog,
            was_empty: incarnation.created,
            replication_floor,
            head_values,
        };
        if upgrade {
            // A directory of an older release: its snapshot is in the head now; writing it
            // into blocks converts the directory (and removes the snapshot).
            engine.flush_now()?;
            engine.hlc.observe(engine.catalog.lock_flushed().max_hlc);
            tracing::info!("data directory converted to blocks");
        }
        let scrubbed = catalog.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("block-scrub".into())
            .spawn(move || open::scrub(&scrubbed))
        {
            tracing::warn!(error = %e, "cannot start the block check; blocks are checked as read");
        }
        Ok(engine)
    }

    /// Values in the head (not yet in blocks).
    pub fn head_values(&self) -> u64 {
        self.head_values.load(Ordering::SeqCst)
    }

    /// Memory and disk the storage uses now.
    pub fn memory(&self) -> MemoryUse {
        let head_values = self.head_values();
        let (mut blocks, mut block_bytes) = (0, 0);
        for db in self.catalog.databases() {
            for b in db.blocks.all() {
                blocks += 1;
                block_bytes += b.file.file_len();
            }
        }
        MemoryUse {
            head_values,
            head_bytes_estimate: head_values * HEAD_BYTES_PER_VALUE,
            head_limit_values: self.config.flush.max_head_values,
            column_cache_bytes: self.catalog.columns.bytes(),
            blocks,
            block_bytes,
        }
    }

    /// Blocks set aside because they failed their checks (and unreadable manifests).
    pub fn damaged(&self) -> Vec<blocks::Damaged> {
        self.catalog.columns.damaged()
    }

    /// Records the lowest sequence number every peer has applied, so checkpoints keep the
    /// WAL segments the slower peers still need.
    pub fn set_replication_floor(&self, seq: u64) {
        self.replication_floor.store(seq, Ordering::SeqCst);
    }

    /// This node's origin key, `node_id/incarnation`: what peers count applied entries by.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The local entries kept for peers, when the node replicates.
    pub fn backlog(&self) -> Option<&Arc<Backlog>> {
        self.backlog.as_ref()
    }

    /// True when this start found no data directory state (a new node, or a lost disk).
    pub fn was_empty(&self) -> bool {
        self.was_empty
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// The version of a write this node accepts from a client now.
    pub fn next_version(&self) -> version::Version {
        version::Version {
            hlc: self.hlc.now(&*self.time),
            node: version::node_rank(&self.config.node_id),
        }
    }

    /// Moves the clock past a peer's version (so this node's later writes win over it).
    pub fn observe_version(&self, v: version::Version) {
        self.hlc.observe(v.hlc);
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn now_ns(&self) -> i64 {
        self.time.now_ns()
    }

    pub fn time(&self) -> Arc<dyn TimeProvider> {
        self.time.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Highest WAL sequence number applied.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::SeqCst)
    }

    /// False after the WAL failed; the node then refuses writes.
    pub fn is_writable(&self) -> bool {
        !self.failed.load(Ordering::SeqCst)
    }

    /// True while the data directory's file system is full: writes are refused (and
    /// nothing of them logged) until space is freed; the node recovers by itself.
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::SeqCst)
    }

    /// Validates `points` for database `db`, logs the accepted ones durably and applies them.
    /// Returns only after they are on disk (per the fsync mode) and visible to queries.
    ///
    /// `raw` is the body the points were parsed from, if every line of it parsed: when every
    /// point is then accepted unchanged, the body itself is logged (cheaper than encoding
    /// the points; replay parses it again).
    pub async fn write(
        &self,
        db: &str,
        points: Vec<Point>,
        raw: Option<RawLines<'_>>,
    ) -> Result<WriteReport, StorageError> {
        let database = self
            .catalog
            .database(db)
            .ok_or_else(|| StorageError::DatabaseNotFound(db.to_string()))?;
        // Past twice the head's budget (one flush writing, one head filling) the flushes
        // are not keeping up: refuse rather than grow until the kernel kills the node.
        let values = self.head_values();
        if values >= self.config.flush.max_head_values.saturating_mul(2) {
            self.metrics.writes_refused_overload.inc();
            return Err(StorageError::Overloaded { values });
        }
        let cutoff = read(&database.policies).cutoff(self.now_ns());
        let Validated {
            accepted,
            rejected,
            modified,
        } = validate(&database, points, cutoff);
        let written = accepted.len();
        if written > 0 {
            let whole = rejected.is_empty() && !modified;
            let version = self.next_version();
            let entry = Entry::Write {
                db: db.to_string(),
                points: accepted,
                version,
            };
            let payload = match raw {
                Some(r) if whole => {
                    Entry::encode_lines(db, r.precision, r.default_time_ns, version, r.body)
                }
                _ => entry.encode(),
            }
            .map_err(StorageError::Encode)?;
            self.submit(entry, payload).await?;
        }
        self.metrics.points_written.inc_by(written as u64);
        self.metrics.points_rejected.inc_by(rejected.len() as u64);
        Ok(WriteReport { written, rejected })
    }

    /// Logs one entry durably and applies it; returns its sequence number.
    pub async fn log(&self, entry: Entry) -> Result<u64, StorageError> {
        let payload = entry.encode().map_err(StorageError::Encode)?;
        self.submit(entry, payload).await
    }

    /// Hands an entry and its log encoding to the writer; returns once it is durable and
    /// applied.
    async fn submit(&self, entry: Entry, payload: Vec<u8>) -> Result<u64, StorageError> {
        let wait = self.send(entry, payload)?;
        wait.await.map_err(|_| StorageError::ShuttingDown)?
    }

    /// Queues an entry for the writer without waiting; the receiver yields its result.
    fn send(
        &self,
        entry: Entry,
        payload: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<u64, StorageError>>, StorageError> {
        let (reply, wait) = oneshot::channel();
        let jobs = read(&self.jobs);
        let tx = jobs.as_ref().ok_or(StorageError::ShuttingDown)?;
        tx.send(Job::Log {
            entry,
            payload,
            reply,
        })
        .map_err(|_| StorageError::ShuttingDown)?;
        Ok(wait)
    }

    /// Applies entries a peer (`origin`) accepted from its clients, each once: entries at or
    /// below what is already applied from that origin are skipped. `after` is the sender's
    /// belief of what this node has; if this node has less, nothing is applied and
    /// `Behind` says where to resume. Returns the origin's applied sequence number.
    pub async fn apply_replicated(
        &self,
        origin: &str,
        after: u64,
        frames: Vec<(u64, Vec<u8>)>,
    ) -> Result<u64, ReplicateError> {
        let applied = self.catalog.applied_from(origin);
        if applied < after {
            return Err(ReplicateError::Behind { applied });
        }
        let mut waits = Vec::new();
        for (seq, payload) in frames {
            if seq <= applied {
                continue;
            }
            let entry = Entry::decode(&payload).map_err(|source| ReplicateError::Decode {
                origin: origin.to_string(),
                seq,
                source,
            })?;
            if let Some(v) = entry.version() {
                self.observe_version(v);
            }
            let wal_payload = Entry::encode_replicated(origin, seq, &payload)
                .map_err(|e| ReplicateError::Storage(StorageError::Encode(e)))?;
            let wrapped = Entry::Replicated {
                origin: origin.to_string(),
                seq,
                entry: Box::new(entry),
            };
            waits.push(self.send(wrapped, wal_payload)?);
        }
        for w in waits {
            w.await.map_err(|_| StorageError::ShuttingDown)??;
        }
        Ok(self.catalog.applied_from(origin))
    }

    /// Drops what each database's retention no longer keeps: whole partitions of blocks
    /// (the manifest is rewritten before their files go) and older rows of the head.
    /// Returns how many rows and block values went.
    pub fn enforce_retention(&self) -> Result<usize, StorageError> {
        let now = self.now_ns();
        let mut dropped = 0;
        let mut gone = Vec::new();
        for db in self.catalog.databases() {
            let Some(cutoff) = read(&db.policies).cutoff(now) else {
                continue;
            };
            for (_, m) in db.measurements() {
                dropped += write(&m).drop_before(cutoff);
            }
            let expired: Vec<u64> = db
                .blocks
                .all()
                .iter()
                .filter(|b| b.partition().1 <= cutoff)
                .map(|b| b.id)
                .collect();
            for b in db.blocks.remove(&expired) {
                dropped += b.file.index().value_count as usize;
                gone.push(b);
            }
        }
        if !gone.is_empty() {
            {
                let flushed = self.catalog.lock_flushed();
                let mut m = manifest::Manifest::capture(
                    &self.catalog,
                    flushed.seq,
                    self.catalog.next_block_id(),
                    flushed.max_hlc,
                    flushed.applied.clone(),
                );
                manifest::write(&self.config.data_dir, &mut m)
                    .map_err(|e| StorageError::CheckpointFailed(e.to_string()))?;
            }
            for b in gone {
                self.catalog.columns.forget(b.id);
                if let Err(e) = std::fs::remove_file(b.file.path()) {
                    tracing::warn!(file = %b.file.path().display(), error = %e, "cannot remove an expired block");
                }
            }
        }
        self.metrics.retention_dropped_rows.inc_by(dropped as u64);
        Ok(dropped)
    }

    /// Stops the writer after it has logged and synced everything already sent. Blocking.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        write(&self.jobs).take();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match handle {
            Some(h) => h.join().unwrap_or(Err(StorageError::WalFailed)),
            None => Ok(()),
        }
    }

    /// Flushes the head into blocks and trims the WAL; returns when that is durable
    /// (`POST /debug/flush`, tests, benchmarks; the writer also flushes by itself).
    /// Blocking.
    pub fn flush_now(&self) -> Result<(), StorageError> {
        let (reply, wait) = mpsc::channel();
        read(&self.jobs)
            .as_ref()
            .ok_or(StorageError::ShuttingDown)?
            .send(Job::Flush { reply })
            .map_err(|_| StorageError::ShuttingDown)?;
        wait.recv().map_err(|_| StorageError::ShuttingDown)?
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "stopping the wal writer");
        }
    }
}

/// The data directory's incarnation: a random id made when the directory is first used,
/// so that a node whose disk was wiped is a new origin to its peers.
#[derive(Debug)]
struct Incarnation {
    id: String,
    /// True when it was made by this start (the directory held no incarnation).
    created: bool,
}

fn incarnation(dir: &Path) -> Result<Incarnation, StorageError> {
    let path = dir.join("incarnation");
    let io = |source| StorageError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            return Ok(Incarnation {
                id: text.trim().to_string(),
                created: false,
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &id)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(io)?;
    wal::sync_dir(dir)?;
    Ok(Incarnation { id, created: true })
}

/// Whether two points have the same field names and types, in the same order.
fn same_shape(a: &Point, b: &Point) -> bool {
    a.fields.len() == b.fields.len()
        && a.fields
            .iter()
            .zip(&b.fields)
            .all(|((ka, va), (kb, vb))| ka == kb && va.field_type() == vb.field_type())
}

/// The outcome of validating a batch.
#[derive(Debug)]
struct Validated {
    accepted: Vec<Point>,
    rejected: Vec<Rejection>,
    /// Some accepted point was changed (a `time` field removed).
    modified: bool,
}

/// Splits a batch into points the schema and retention accept and the reasons for the
/// rest. New field types are reserved in the schema as they are first seen, so two
/// concurrent batches cannot both introduce one field with different types.
fn validate(db: &Database, points: Vec<Point>, cutoff: Option<i64>) -> Validated {
    let mut accepted = Vec::with_capacity(points.len());
    let mut rejected = Vec::new();
    let mut modified = false;
    // A field named `time` would shadow the time column: InfluxDB drops it silently, or
    // refuses the point when it was the only field.
    let points: Vec<Point> = points
        .into_iter()
        .filter_map(|mut p| {
            if p.tags.iter().any(|(k, _)| k == "time") {
                rejected.push(Rejection::TimeTag {
                    measurement: p.measurement.to_string(),
                });
                return None;
            }
            if p.fields.iter().any(|(k, _)| &**k == "time") {
                p.fields.retain(|(k, _)| &**k != "time");
                modified = true;
                if p.fields.is_empty() {
                    rejected.push(Rejection::TimeFieldOnly {
                        measurement: p.measurement.to_string(),
                    });
                    return None;
                }
            }
            Some(p)
        })
        .collect();
    let mut points = points.into_iter().peekable();
    while let Some(first) = points.next() {
        // One lock per run of points of the same measurement.
        let m = db.measurement_or_create(&first.measurement);
        let mut run = vec![first];
        while let Some(p) = points.next_if(|p| p.measurement == run[0].measurement) {
            run.push(p);
        }
        // Under the read lock, check every point; a point with the same field names and
        // types as the one before it (the common case: one shape per batch) reuses its result.
        let checked: Option<Vec<Result<(), FieldTypeConflict>>> = {
            let guard = read(&m);
            let mut out = Vec::with_capacity(run.len());
            let mut all_known = true;
            for (i, p) in run.iter().enumerate() {
                if i > 0 && same_shape(&run[i - 1], p) {
                    let prev = out.last().cloned().unwrap_or(Ok(()));
                    out.push(prev);
                    continue;
                }
                match guard.check(p) {
                    Ok(unknown) if !unknown.is_empty() => {
                        all_known = false;
                        break;
                    }
                    Ok(_) => out.push(Ok(())),
                    Err(conflict) => out.push(Err(conflict)),
                }
            }
            all_known.then_some(out)
        };
        let mut keep = |p: Point, res: Result<(), FieldTypeConflict>| match res {
            _ if cutoff.is_some_and(|c| p.timestamp < c) => {
                rejected.push(Rejection::BeyondRetention)
            }
            Ok(()) => accepted.push(p),
            Err(conflict) => rejected.push(Rejection::TypeConflict(conflict)),
        };
        if let Some(results) = checked {
            for (p, res) in run.into_iter().zip(results) {
                keep(p, res);
            }
        } else {
            let mut guard = write(&m);
            for p in run {
                let res = if cutoff.is_some_and(|c| p.timestamp < c) {
                    Ok(())
                } else {
                    guard.reserve(&p)
                };
                keep(p, res);
            }
        }
    }
    Validated {
        accepted,
        rejected,
        modified,
    }
}

#[cfg(test)]
mod tests;
