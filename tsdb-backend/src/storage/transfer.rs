//! What a peer is sent when it resynchronises or rebuilds itself, and what this node does
//! with what a peer sends: the catalog, the blocks the receiver lacks (by content hash) and
//! the head. Nothing is ever materialised whole: blocks go as the files they are, and the
//! head is bounded by the memory budget.
//!
//! ```text
//! sender                                        receiver
//!  head   := state_bytes(Head)     T1: the marks first, then the head's values
//!  blocks := block_list()          T2: whatever was flushed after T1 is in one of these
//!  state_bytes(Catalog)  ─────────────────▶  merge_snapshot: databases, policies, deletes
//!                        ◀─────────────────  block_list(): the hashes it holds
//!  each block it lacks   ─────────────────▶  receive_block: checked, filtered by its
//!                                            deletes, named in its manifest
//!  head                  ─────────────────▶  merge_snapshot: values, then the marks
//! ```
//!
//! The order matters twice. The marks (per origin, how far its entries are applied) travel
//! last, so a receiver never claims entries whose values it does not hold yet. The deletes
//! travel first, so a block carrying values a delete hid on the sender is filtered as it
//! arrives, rather than bringing those values (or a dropped measurement's name) back.
//!
//! The transport (HTTP, who pushes and who pulls) is `replication/transfer.rs`; this module
//! knows nothing of it.

use super::block::{BlockError, BlockFile};
use super::blocks::{block_file_name, blocks_dir, Block};
use super::catalog::{read, write, Catalog, Database};
use super::entry::Entry;
use super::manifest::{self, Manifest};
use super::series::Measurement;
use super::{compact, open, snapshot, wal, Engine, StorageError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Which part of this node's state [`Engine::state_bytes`] encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePart {
    /// Databases, retention policies and delete tombstones: no values, no marks.
    Catalog,
    /// The marks, then the catalog with every measurement's schema and the head's values
    /// (not the blocks').
    Head,
}

/// One block as a peer sees it in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSummary {
    pub db: String,
    /// [`BlockFile::content_hash`], 16 hex digits.
    pub hash: String,
    pub bytes: u64,
    pub values: u64,
}

/// The text form of a content hash.
pub fn hash_text(hash: u64) -> String {
    format!("{hash:016x}")
}

/// A content hash from its text form.
pub fn parse_hash(text: &str) -> Option<u64> {
    (text.len() == 16)
        .then(|| u64::from_str_radix(text, 16).ok())
        .flatten()
}

/// What became of a block a peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Stored under this id.
    Stored { id: u64 },
    /// A block with the same content was already here.
    AlreadyHeld,
    /// Everything in it is hidden by this node's deletes: nothing to keep.
    AllDeleted,
    /// Its database was dropped here (and not created again): nothing to keep.
    DatabaseDropped,
}

/// Why a block a peer sent was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The bytes are not the block they claim to be: the sender may try again.
    #[error("the block received is not valid: {0}")]
    Invalid(String),
    #[error("database not found: \"{0}\"")]
    DatabaseNotFound(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<BlockError> for ReceiveError {
    fn from(e: BlockError) -> Self {
        ReceiveError::Invalid(e.to_string())
    }
}

/// The directory where blocks being received are written until they are checked.
fn incoming_dir(data_dir: &Path) -> PathBuf {
    blocks_dir(data_dir).join("incoming")
}

/// Removes what an interrupted transfer left in the incoming directory. At open only.
pub(super) fn clear_incoming(data_dir: &Path) {
    let dir = incoming_dir(data_dir);
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot clear the incoming blocks");
        }
    }
}

/// Names files being received apart from each other.
static INCOMING: AtomicU64 = AtomicU64::new(0);

/// Reads a block's bytes from the file handle it was opened with, so a block that a
/// compaction or retention removes meanwhile can still be sent whole.
#[derive(Debug)]
pub struct BlockReader {
    block: Arc<Block>,
    pos: u64,
}

impl BlockReader {
    pub fn len(&self) -> u64 {
        self.block.file.file_len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::io::Read for BlockReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.block.file.read_exact_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A peer this node's state is sent to (over HTTP in `replication/transfer.rs`; another
/// engine in tests).
pub trait Sink {
    type Error: From<StorageError>;
    /// Merges a state part there; returns how far the peer has applied this node's
    /// entries.
    fn merge_state(&mut self, bytes: &[u8]) -> Result<u64, Self::Error>;
    /// The blocks the peer holds.
    fn blocks(&mut self) -> Result<Vec<BlockSummary>, Self::Error>;
    /// Stores one block there.
    fn send_block(&mut self, block: &BlockSummary, bytes: BlockReader) -> Result<(), Self::Error>;
}

/// What [`send_state`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// How far the peer has applied this node's entries, by its last answer.
    pub applied: u64,
    pub blocks_sent: usize,
    pub blocks_skipped: usize,
    pub bytes: u64,
}

/// Brings a peer up to this node's state, in the order the module docs give: the catalog,
/// the blocks it lacks, the head with the marks.
pub fn send_state<S: Sink>(engine: &Engine, sink: &mut S) -> Result<Sent, S::Error> {
    // The head first, then the blocks: what a flush moves between the two is in a block.
    let head = engine.state_bytes(StatePart::Head)?;
    let blocks = engine.block_readers();
    let catalog = engine.state_bytes(StatePart::Catalog)?;
    sink.merge_state(&catalog)?;
    let theirs: std::collections::BTreeSet<(String, String)> =
        sink.blocks()?.into_iter().map(|b| (b.db, b.hash)).collect();
    let mut sent = Sent::default();
    for (summary, reader) in blocks {
        if theirs.contains(&(summary.db.clone(), summary.hash.clone())) {
            sent.blocks_skipped += 1;
            continue;
        }
        sink.send_block(&summary, reader)?;
        sent.blocks_sent += 1;
        sent.bytes += summary.bytes;
    }
    sent.applied = sink.merge_state(&head)?;
    sent.bytes += (head.len() + catalog.len()) as u64;
    Ok(sent)
}

impl Engine {
    /// Part of this node's state as snapshot bytes, for a peer (see the module docs).
    pub fn state_bytes(&self, part: StatePart) -> Result<Vec<u8>, StorageError> {
        let seq = self.last_seq();
        let copy = Catalog::new(self.config.default_retention_ns);
        if part == StatePart::Head {
            // The marks before the values: a mark sent always comes with its data.
            copy.raise_applied(&self.catalog.applied());
        }
        for (name, version) in self.catalog.dropped() {
            copy.note_dropped(&name, version);
        }
        for db in self.catalog.databases() {
            let out = Database::new(&db.name, read(&db.policies).clone());
            for t in db.deletes.all() {
                out.deletes.add(t);
            }
            if part == StatePart::Head {
                for (name, m) in db.measurements() {
                    let guard = read(&m);
                    let head: Vec<_> = guard
                        .series()
                        .iter()
                        .filter_map(|s| super::read::head_view(&db, &guard, s))
                        .collect();
                    let mut measurement = Measurement::new(&name);
                    measurement.merge(guard.fields(), head);
                    out.insert_measurement(measurement);
                }
            }
            copy.insert_database(out);
        }
        Ok(snapshot::snapshot_bytes(seq, &copy)?)
    }

    /// Every block this node serves, by database and content hash.
    pub fn block_list(&self) -> Vec<BlockSummary> {
        self.block_readers().into_iter().map(|(s, _)| s).collect()
    }

    /// Every block this node serves, each with a reader of its bytes that stays valid
    /// after a compaction or retention removes the block.
    pub fn block_readers(&self) -> Vec<(BlockSummary, BlockReader)> {
        self.catalog
            .databases()
            .iter()
            .flat_map(|db| {
                db.blocks.all().into_iter().map(|block| {
                    let summary = BlockSummary {
                        db: db.name.clone(),
                        hash: hash_text(block.file.content_hash()),
                        bytes: block.file.file_len(),
                        values: block.file.index().value_count,
                    };
                    (summary, BlockReader { block, pos: 0 })
                })
            })
            .collect()
    }

    /// A reader of the bytes of the block of `db` with content hash `hash`, if it is here.
    pub fn block_reader(&self, db: &str, hash: u64) -> Option<BlockReader> {
        let block = self
            .catalog
            .database(db)?
            .blocks
            .all()
            .into_iter()
            .find(|b| b.file.content_hash() == hash)?;
        Some(BlockReader { block, pos: 0 })
    }

    /// A new file to write a block being received into (then [`Engine::receive_block`]).
    pub fn incoming_block_path(&self) -> Result<PathBuf, StorageError> {
        let dir = incoming_dir(&self.config.data_dir);
        std::fs::create_dir_all(&dir).map_err(|source| StorageError::Io {
            path: dir.clone(),
            source,
        })?;
        let n = INCOMING.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(format!("{}-{n}.part", std::process::id())))
    }

    /// Takes a block a peer sent, written whole to `path` (from
    /// [`Engine::incoming_block_path`]) and fsynced: checks every checksum, that it belongs
    /// to `db` and has content hash `hash`; leaves out what this node's deletes hide (and
    /// fields of another type than this node's schema); then names it in the manifest.
    /// `path` is gone afterwards in every case. Blocking.
    pub fn receive_block(
        &self,
        db: &str,
        hash: u64,
        path: &Path,
    ) -> Result<Received, ReceiveError> {
        let res = self.take_block(db, hash, path);
        // Renamed away when stored; removed here otherwise.
        let _ = std::fs::remove_file(path);
        res
    }

    fn take_block(&self, db_name: &str, hash: u64, path: &Path) -> Result<Received, ReceiveError> {
        let file = BlockFile::open(path)?;
        file.verify()?;
        if file.index().db != db_name {
            return Err(ReceiveError::Invalid(format!(
                "it holds database \"{}\", not \"{db_name}\"",
                file.index().db
            )));
        }
        if file.content_hash() != hash {
            return Err(ReceiveError::Invalid(format!(
                "its content hash is {}, not {}",
                hash_text(file.content_hash()),
                hash_text(hash)
            )));
        }
        let Some(db) = self.catalog.database(db_name) else {
            if self.catalog.dropped_at(db_name).is_some() {
                return Ok(Received::DatabaseDropped);
            }
            return Err(ReceiveError::DatabaseNotFound(db_name.to_string()));
        };
        let held = |h: u64| db.blocks.all().iter().any(|b| b.file.content_hash() == h);
        if held(hash) {
            return Ok(Received::AlreadyHeld);
        }
        // This node's clock moves past every version in the block, so that its later
        // writes win over the block's values.
        let mut max_hlc = 0;
        for (_, _, col) in file.index().columns() {
            for v in file.read_versions(col)? {
                max_hlc = max_hlc.max(v.hlc);
            }
        }
        self.hlc.observe(max_hlc);
        // An id no tombstone of `DROP MEASUREMENT` hides: the drop's versioned delete
        // filters the values instead.
        let arrived = Arc::new(Block { id: u64::MAX, file });
        let file = if needs_filtering(&db, &arrived) {
            let builder =
                compact::merge_blocks(&db, std::slice::from_ref(&arrived), arrived.partition())
                    .map_err(ReceiveError::Invalid)?;
            if builder.is_empty() {
                return Ok(Received::AllDeleted);
            }
            let name = format!(
                "{}.filtered",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("block")
            );
            let dir = incoming_dir(&self.config.data_dir);
            let filtered = builder.write(&dir, &name)?;
            let _ = std::fs::remove_file(path);
            if held(filtered.content_hash()) {
                let _ = std::fs::remove_file(filtered.path());
                return Ok(Received::AlreadyHeld);
            }
            filtered
        } else {
            match Arc::try_unwrap(arrived) {
                Ok(block) => block.file,
                Err(_) => return Err(ReceiveError::Invalid("block still in use".into())),
            }
        };
        self.register_received(&db, file, max_hlc)
    }

    /// Moves a checked block among this node's blocks and writes the manifest naming it.
    fn register_received(
        &self,
        db: &Arc<Database>,
        file: BlockFile,
        max_hlc: u64,
    ) -> Result<Received, ReceiveError> {
        let data_dir = &self.config.data_dir;
        let dir = blocks_dir(data_dir);
        let io = |path: &Path, source| {
            ReceiveError::Storage(StorageError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        // Under the lock every manifest writer takes, and which the sweep of unnamed block
        // files takes too: the block is never on disk unnamed while a sweep runs.
        let mut flushed = self.catalog.lock_flushed();
        let alive = self
            .catalog
            .database(&db.name)
            .is_some_and(|d| Arc::ptr_eq(&d, db));
        if !alive {
            let _ = std::fs::remove_file(file.path());
            return Err(ReceiveError::DatabaseNotFound(db.name.clone()));
        }
        let id = self.catalog.reserve_block_ids(1);
        let dest = dir.join(block_file_name(id));
        std::fs::rename(file.path(), &dest).map_err(|e| io(file.path(), e))?;
        drop(file);
        wal::sync_dir(&dir).map_err(|e| ReceiveError::Storage(e.into()))?;
        let file = BlockFile::open(&dest)?;
        open::adopt(db, Block { id, file });
        flushed.max_hlc = flushed.max_hlc.max(max_hlc);
        let mut m = Manifest::capture(
            &self.catalog,
            flushed.seq,
            self.catalog.next_block_id(),
            flushed.max_hlc,
            flushed.applied.clone(),
        );
        manifest::write(data_dir, &mut m)
            .map_err(|e| ReceiveError::Storage(StorageError::CheckpointFailed(e.to_string())))?;
        Ok(Received::Stored { id })
    }

    /// Merges a peer's state (see [`StatePart`]; a whole snapshot of an older release
    /// too) into this node, value by value (last writer wins), then makes the result
    /// durable with a flush. Idempotent; safe while writes go on.
    pub async fn merge_snapshot(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let (_, theirs) = snapshot::decode(
            bytes,
            Path::new("(peer snapshot)"),
            self.config.default_retention_ns,
        )?;
        // Their drops first: a database they saw dropped, later than any drop of it seen
        // here, goes here too.
        for (name, version) in theirs.dropped() {
            if self
                .catalog
                .dropped_at(&name)
                .is_none_or(|mine| mine < version)
            {
                self.observe_version(version);
                self.log(Entry::DropDatabaseAt { name, version }).await?;
            }
        }
        for db in theirs.databases() {
            if self.catalog.database(&db.name).is_none() {
                // Dropped here, and they had not seen that drop: their copy is stale.
                let stale = self
                    .catalog
                    .dropped_at(&db.name)
                    .is_some_and(|mine| theirs.dropped_at(&db.name).is_none_or(|t| t < mine));
                if stale {
                    continue;
                }
                self.log(Entry::CreateDatabase {
                    name: db.name.clone(),
                })
                .await?;
            }
            let policies = read(&db.policies).clone();
            for rp in &policies.list {
                let known = self
                    .catalog
                    .database(&db.name)
                    .is_some_and(|d| read(&d.policies).list.iter().any(|p| p.name == rp.name));
                if !known {
                    self.log(Entry::SetRetentionPolicy {
                        db: db.name.clone(),
                        name: rp.name.clone(),
                        duration_ns: rp.duration_ns,
                        shard_duration_ns: rp.shard_duration_ns,
                        default: rp.name == policies.default,
                    })
                    .await?;
                }
            }
        }
        // Their deletes, logged here (so they are durable and reach this node's peers too)
        // before their values are merged: what they deleted stays deleted here.
        for db in theirs.databases() {
            let Some(mine) = self.catalog.database(&db.name).map(|d| d.deletes.all()) else {
                continue;
            };
            for t in db.deletes.all() {
                if !mine.contains(&t) {
                    self.observe_version(t.version);
                    self.log(Entry::Delete {
                        db: db.name.clone(),
                        measurement: t.measurement,
                        min_time: t.min_time,
                        max_time: t.max_time,
                        version: t.version,
                        drop_schema: false,
                    })
                    .await?;
                }
            }
        }
        let marks = theirs.applied();
        let values = theirs
            .databases()
            .iter()
            .any(|db| !db.measurements().is_empty());
        if !values && marks.is_empty() {
            // A catalog part: what it carried is logged, hence durable.
            return Ok(());
        }
        tokio::task::block_in_place(|| {
            for db in theirs.databases() {
                let Some(mine) = self.catalog.database(&db.name) else {
                    continue;
                };
                for (name, m) in db.measurements() {
                    let mut theirs_m = write(&m);
                    let series = theirs_m.take_series();
                    let target = mine.measurement_or_create(&name);
                    let mut target = write(&target);
                    target.merge(theirs_m.fields(), series);
                    // Merged values bypass the write path's filter: what a tombstone hides
                    // goes here, so the head holds nothing deleted.
                    for t in mine.deletes.all().iter().filter(|t| t.covers(&name)) {
                        target.delete(t);
                    }
                }
            }
            self.catalog.raise_applied(&marks);
            // The merged values are in the head only, not in the WAL: a flush makes them
            // durable (and the marks with them, in the manifest).
            self.flush_now()
        })
    }
}

/// Whether a received block holds values this node's deletes hide, or fields of another
/// type than this node's schema: it is then rewritten without them.
fn needs_filtering(db: &Database, block: &Block) -> bool {
    let ix = block.file.index();
    ix.measurements.iter().any(|mi| {
        let deleted = db.deletes.filter(&mi.name);
        if deleted.overlaps(ix.min_time, ix.max_time) {
            return true;
        }
        let Some(m) = db.measurement(&mi.name) else {
            return false;
        };
        let schema = read(&m);
        mi.fields
            .iter()
            .any(|f| schema.field_type(&f.name).is_some_and(|ty| ty != f.ty))
    })
}
