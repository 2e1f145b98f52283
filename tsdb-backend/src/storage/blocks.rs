//! The blocks of one database: which exist, which a query may skip, which were set aside.
//!
//! A block is an immutable file of columns (see `block.rs` for its format). The list here is
//! what the manifest names; a flush or a compaction adds blocks, retention and
//! `DROP DATABASE` remove them, and a block whose checksum fails is set aside (renamed
//! `*.damaged`, reported in `/health`) while the node serves the rest.

use super::block::{BlockFile, Column, ColumnRef, MeasurementIndex, SeriesIndex};
use super::catalog::{read, write};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// The directory of block files under the data directory.
pub fn blocks_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("blocks")
}

/// The file name of block `id`: ids are unique per data directory and grow with time, so
/// the name order is the order in which blocks were made.
pub fn block_file_name(id: u64) -> String {
    format!("{id:016x}.blk")
}

/// One opened block and its id.
#[derive(Debug)]
pub struct Block {
    pub id: u64,
    pub file: BlockFile,
}

/// Where one series' column sits in a block: enough to read it and to cache it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ColumnKey {
    pub block: u64,
    pub measurement: u32,
    pub series: u32,
    pub column: u32,
}

impl Block {
    /// The partition's `[start, end)` in nanoseconds.
    pub fn partition(&self) -> (i64, i64) {
        let ix = self.file.index();
        (ix.partition_start_ns, ix.partition_end_ns)
    }

    /// Whether any value of the block lies in `[lo, hi]`.
    pub fn overlaps(&self, lo: i64, hi: i64) -> bool {
        let ix = self.file.index();
        ix.value_count > 0 && ix.min_time <= hi && ix.max_time >= lo
    }

    /// The measurement's entry in this block, with its position.
    pub fn measurement(&self, name: &str) -> Option<(u32, &MeasurementIndex)> {
        let ms = &self.file.index().measurements;
        let pos = ms.binary_search_by(|m| m.name.as_str().cmp(name)).ok()?;
        Some((pos as u32, &ms[pos]))
    }

    /// A series' entry in a measurement of this block, with its position.
    pub fn series<'a>(
        m: &'a MeasurementIndex,
        tags: &[(String, String)],
    ) -> Option<(u32, &'a SeriesIndex)> {
        let pos = m
            .series
            .binary_search_by(|s| s.tags.as_slice().cmp(tags))
            .ok()?;
        Some((pos as u32, &m.series[pos]))
    }

    pub fn column_ref(&self, key: ColumnKey) -> Option<&ColumnRef> {
        self.file
            .index()
            .measurements
            .get(key.measurement as usize)?
            .series
            .get(key.series as usize)?
            .columns
            .get(key.column as usize)
    }
}

/// `DROP MEASUREMENT` over blocks: every block made before `before_block` no longer holds
/// the measurement (its data there is skipped on read and left out by compaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub measurement: String,
    pub before_block: u64,
}

/// The blocks and tombstones of one database.
#[derive(Debug, Default)]
pub struct BlockList {
    /// Sorted by id.
    blocks: RwLock<Vec<Arc<Block>>>,
    tombstones: RwLock<Vec<Tombstone>>,
}

impl BlockList {
    pub fn all(&self) -> Vec<Arc<Block>> {
        read(&self.blocks).clone()
    }

    pub fn is_empty(&self) -> bool {
        read(&self.blocks).is_empty()
    }

    /// Blocks holding values in `[lo, hi]`, oldest first (the order in which their values
    /// were written, which the last-writer-wins merge relies on for equal versions).
    pub fn overlapping(&self, lo: i64, hi: i64) -> Vec<Arc<Block>> {
        read(&self.blocks)
            .iter()
            .filter(|b| b.overlaps(lo, hi))
            .cloned()
            .collect()
    }

    pub fn add(&self, block: Arc<Block>) {
        let mut blocks = write(&self.blocks);
        let pos = blocks.partition_point(|b| b.id < block.id);
        blocks.insert(pos, block);
    }

    /// Removes the blocks whose ids are in `ids`; returns them.
    pub fn remove(&self, ids: &[u64]) -> Vec<Arc<Block>> {
        let mut blocks = write(&self.blocks);
        let (gone, kept) = blocks.drain(..).partition(|b| ids.contains(&b.id));
        *blocks = kept;
        gone
    }

    /// Replaces `old` (by id) with `new` in one step, so a reader sees either the old
    /// blocks or the new one, never both or neither.
    pub fn replace(&self, old: &[u64], new: Arc<Block>) {
        let mut blocks = write(&self.blocks);
        blocks.retain(|b| !old.contains(&b.id));
        let pos = blocks.partition_point(|b| b.id < new.id);
        blocks.insert(pos, new);
    }

    /// Blocks below this id do not hold `measurement` any more.
    pub fn hidden_below(&self, measurement: &str) -> u64 {
        read(&self.tombstones)
            .iter()
            .filter(|t| t.measurement == measurement)
            .map(|t| t.before_block)
            .max()
            .unwrap_or(0)
    }

    pub fn add_tombstone(&self, t: Tombstone) {
        write(&self.tombstones).push(t);
    }

    /// The tombstones that still hide something: those above the oldest block. (Blocks a
    /// running flush is writing have ids above every registered block's.)
    pub fn tombstones(&self) -> Vec<Tombstone> {
        let oldest = read(&self.blocks).first().map(|b| b.id);
        let mut t = write(&self.tombstones);
        if let Some(oldest) = oldest {
            t.retain(|t| t.before_block > oldest);
        }
        t.clone()
    }
}

/// A block set aside: its file was renamed and it is no longer read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damaged {
    pub file: String,
    pub reason: String,
}

/// Decoded columns, bounded in bytes, and the record of damaged blocks.
#[derive(Debug)]
pub struct ColumnCache {
    cache: moka::sync::Cache<ColumnKey, Arc<Column>>,
    damaged: Mutex<Vec<Damaged>>,
}

impl ColumnCache {
    pub fn new(max_bytes: u64) -> Self {
        ColumnCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, c: &Arc<Column>| column_bytes(c).try_into().unwrap_or(u32::MAX))
                .build(),
            damaged: Mutex::new(Vec::new()),
        }
    }

    /// A column of a block, decoded, from the cache or from the file.
    pub fn column(&self, block: &Block, key: ColumnKey) -> Result<Arc<Column>, String> {
        if let Some(c) = self.cache.get(&key) {
            return Ok(c);
        }
        let r = block
            .column_ref(key)
            .ok_or_else(|| format!("{}: no column {key:?}", block.file.path().display()))?;
        let column = Arc::new(block.file.read_column(r).map_err(|e| e.to_string())?);
        self.cache.insert(key, column.clone());
        Ok(column)
    }

    /// Forgets the columns of blocks that are gone.
    pub fn forget(&self, block: u64) {
        // Columns of a removed block are never asked for again; invalidating them frees
        // their bytes now rather than when they age out.
        let _ = self
            .cache
            .invalidate_entries_if(move |k, _| k.block == block);
    }

    /// The blocks some of whose columns are cached (what queries have read).
    pub fn cached_blocks(&self) -> std::collections::BTreeSet<u64> {
        self.cache.iter().map(|(k, _)| k.block).collect()
    }

    /// Bytes of decoded columns held.
    pub fn bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Renames a damaged block's file aside and records it for `/health`.
    pub fn set_aside(&self, path: &Path, reason: &str) -> Damaged {
        let aside = path.with_extension("damaged");
        if let Err(e) = std::fs::rename(path, &aside) {
            tracing::error!(file = %path.display(), error = %e, "cannot rename a damaged block aside");
        }
        tracing::error!(file = %path.display(), reason, "block set aside: it failed its checks");
        self.note_damaged(&path.display().to_string(), reason)
    }

    /// Records a damaged file (a block, a manifest) for `/health`.
    pub fn note_damaged(&self, file: &str, reason: &str) -> Damaged {
        let d = Damaged {
            file: file.to_string(),
            reason: reason.to_string(),
        };
        let mut list = self.damaged.lock().unwrap_or_else(PoisonError::into_inner);
        if !list.contains(&d) {
            list.push(d.clone());
        }
        d
    }

    /// The blocks set aside since start (and those found set aside by an earlier run).
    pub fn damaged(&self) -> Vec<Damaged> {
        self.damaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The memory a decoded column holds, roughly.
fn column_bytes(c: &Column) -> usize {
    let values = match &c.values {
        super::block::Values::Float(v) => v.len() * 8,
        super::block::Values::Integer(v) => v.len() * 8,
        super::block::Values::Unsigned(v) => v.len() * 8,
        super::block::Values::Boolean(v) => v.len(),
        super::block::Values::String(v) => v.iter().map(|s| s.len() + 16).sum(),
    };
    c.times.len() * 8 + c.versions.len() * 16 + values + 64
}
