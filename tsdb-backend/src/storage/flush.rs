//! Flushing the head into blocks.
//!
//! ```text
//! writer thread, at WAL record S     flush thread
//!   rotate the WAL (next segment S+1)
//!   freeze: every series' rows ──▶     group by database and partition, build columns,
//!   move to its frozen layer           write blocks (tmp, fsync, rename, fsync dir)
//!   (still read by queries)            register them in their databases
//!                                      write the manifest: flushed_seq = S
//!                                      thaw: drop the frozen layers
//!                                      delete WAL segments before S+1 (peers permitting)
//! ```
//!
//! A crash before the manifest is written leaves blocks no manifest names (deleted at the
//! next start) and the WAL from the previous flush on, which replays into the head: nothing
//! is lost and nothing is counted twice.

use super::block::{BlockBuilder, Column, Values};
use super::blocks::{block_file_name, blocks_dir, Block};
use super::catalog::{read, write, Catalog, Database};
use super::manifest::{self, Manifest};
use super::series::{FieldDef, FrozenRows, Measurement};
use super::version::Version;
use crate::model::FieldValue;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Block ids a flush may use, from the one reserved at freeze time: a `DROP MEASUREMENT`
/// logged while the flush runs hides every block below the next free id, which must
/// include the blocks of this flush (they hold values written before the drop).
pub const IDS_PER_FLUSH: u64 = 1 << 20;

/// What a freeze took from one measurement.
struct FrozenMeasurement {
    measurement: Arc<RwLock<Measurement>>,
    name: String,
    fields: Vec<FieldDef>,
    series: Vec<(Vec<(String, String)>, FrozenRows)>,
}

struct FrozenDatabase {
    db: Arc<Database>,
    partition_ns: i64,
    measurements: Vec<FrozenMeasurement>,
}

/// The head as it was at WAL record `seq`, on its way into blocks.
pub struct Frozen {
    pub seq: u64,
    applied: BTreeMap<String, u64>,
    first_id: u64,
    databases: Vec<FrozenDatabase>,
    /// Values frozen.
    pub values: usize,
    /// The greatest version clock among them.
    pub max_hlc: u64,
}

impl Frozen {
    /// Per origin, how far its entries were applied at the freeze.
    pub fn applied(&self) -> &BTreeMap<String, u64> {
        &self.applied
    }
}

/// Moves the head's rows into the frozen layers. Runs on the writer thread between two
/// groups, so the frozen state is exactly the log up to `seq`.
pub fn freeze(catalog: &Catalog, seq: u64) -> Frozen {
    let first_id = catalog.reserve_block_ids(IDS_PER_FLUSH);
    let mut values = 0;
    let mut max_hlc = 0;
    let databases = catalog
        .databases()
        .into_iter()
        .map(|db| {
            let partition_ns = read(&db.policies)
                .list
                .iter()
                .find(|p| p.name == read(&db.policies).default)
                .map_or(7 * 86_400_000_000_000, |p| p.shard_group_duration())
                .max(1);
            let measurements = db
                .measurements()
                .into_iter()
                .filter_map(|(name, m)| {
                    let mut guard = write(&m);
                    let series = guard.freeze();
                    if series.is_empty() {
                        return None;
                    }
                    for (_, rows) in &series {
                        for row in rows.values() {
                            values += row.0.len();
                            max_hlc = row.0.iter().fold(max_hlc, |m, c| m.max(c.version.hlc));
                        }
                    }
                    let fields = guard.fields().to_vec();
                    drop(guard);
                    Some(FrozenMeasurement {
                        measurement: m,
                        name,
                        fields,
                        series,
                    })
                })
                .collect();
            FrozenDatabase {
                db,
                partition_ns,
                measurements,
            }
        })
        .collect();
    Frozen {
        seq,
        applied: catalog.applied(),
        first_id,
        databases,
        values,
        max_hlc,
    }
}

/// One column being gathered: times, versions and values of one field of one series.
struct Gather {
    times: Vec<i64>,
    versions: Vec<Version>,
    values: Vec<FieldValue>,
}

impl Gather {
    fn into_column(self, field: &FieldDef) -> Option<Column> {
        let mut values = Values::new(field.ty);
        for v in self.values {
            // The head only holds values of the schema's type; a mismatch would be a bug,
            // and the column is then left out rather than written with its times misaligned.
            values.push(v).ok()?;
        }
        Some(Column {
            times: self.times,
            versions: self.versions,
            values,
        })
    }
}

/// Writes the frozen head into blocks, one per database and partition, and registers them.
/// Returns the number of blocks written.
pub fn write_blocks(data_dir: &Path, catalog: &Catalog, frozen: &Frozen) -> Result<usize, String> {
    let dir = blocks_dir(data_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut next_id = frozen.first_id;
    let mut written = 0;
    for fdb in &frozen.databases {
        let mut builders: BTreeMap<i64, BlockBuilder> = BTreeMap::new();
        for fm in &fdb.measurements {
            for (tags, rows) in &fm.series {
                let mut columns: BTreeMap<(i64, u32), Gather> = BTreeMap::new();
                for (&t, row) in rows.iter() {
                    let start = partition_start(t, fdb.partition_ns);
                    for cell in &row.0 {
                        let g = columns.entry((start, cell.id)).or_insert_with(|| Gather {
                            times: Vec::new(),
                            versions: Vec::new(),
                            values: Vec::new(),
                        });
                        g.times.push(t);
                        g.versions.push(cell.version);
                        g.values.push(cell.value.clone());
                    }
                }
                for ((start, id), g) in columns {
                    let Some(field) = fm.fields.get(id as usize) else {
                        continue;
                    };
                    let Some(column) = g.into_column(field) else {
                        tracing::error!(measurement = %fm.name, field = %field.name, "a head column of mixed types was left out of a block");
                        continue;
                    };
                    let builder = builders.entry(start).or_insert_with(|| {
                        BlockBuilder::new(
                            &fdb.db.name,
                            start,
                            start.saturating_add(fdb.partition_ns),
                        )
                    });
                    builder
                        .add(&fm.name, tags, field, column)
                        .map_err(|e| format!("building a block of {}: {e}", fdb.db.name))?;
                }
            }
        }
        for (_, builder) in builders {
            if builder.is_empty() {
                continue;
            }
            if next_id >= frozen.first_id + IDS_PER_FLUSH {
                return Err("a flush would write more blocks than it reserved ids for".into());
            }
            let id = next_id;
            next_id += 1;
            let file = builder
                .write(&dir, &block_file_name(id))
                .map_err(|e| e.to_string())?;
            let block = Arc::new(Block { id, file });
            // A database dropped while the flush ran keeps no blocks: its file goes at the
            // next sweep, as no manifest names it.
            let alive = catalog
                .database(&fdb.db.name)
                .is_some_and(|d| Arc::ptr_eq(&d, &fdb.db));
            if alive {
                fdb.db.blocks.add(block);
            }
            written += 1;
        }
    }
    Ok(written)
}

/// The start of the partition holding time `t`.
pub fn partition_start(t: i64, partition_ns: i64) -> i64 {
    t.div_euclid(partition_ns).saturating_mul(partition_ns)
}

/// Writes the manifest that makes the flush durable: `flushed_seq` is the freeze's.
pub fn commit(
    data_dir: &Path,
    catalog: &Catalog,
    frozen: &Frozen,
    max_hlc: u64,
) -> Result<(), String> {
    let mut m = Manifest::capture(
        catalog,
        frozen.seq,
        catalog.next_block_id(),
        max_hlc,
        frozen.applied.clone(),
    );
    manifest::write(data_dir, &mut m).map_err(|e| e.to_string())?;
    Ok(())
}

/// Drops the frozen layers: the blocks now answer for them.
pub fn thaw(frozen: Frozen) {
    for fdb in frozen.databases {
        for fm in fdb.measurements {
            write(&fm.measurement).thaw();
        }
    }
}

/// Deletes block files no manifest names (a flush or compaction that did not finish, a
/// dropped database's blocks). Only call when no flush or compaction is writing.
pub fn sweep(data_dir: &Path, catalog: &Catalog) {
    let dir = blocks_dir(data_dir);
    // A block received from a peer is renamed in and named under this lock.
    let _named = catalog.lock_flushed();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let live: std::collections::BTreeSet<std::path::PathBuf> = catalog
        .databases()
        .iter()
        .flat_map(|db| db.blocks.all())
        .map(|b| b.file.path().to_path_buf())
        .collect();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let leftover = name.ends_with(".blk") || name.ends_with(".tmp");
        if leftover && !live.contains(&path) {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "removed a block no manifest names")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a leftover block")
                }
            }
        }
    }
}
