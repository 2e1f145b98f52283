//! Compaction: small blocks of one partition merged into one.
//!
//! Each flush writes a block per partition it touches, so a node that flushes often (a
//! quiet period every few seconds) gathers many small blocks; every query would open them
//! all. After a flush, the flush thread merges the small blocks of one partition (at least
//! `MIN_INPUTS`, smallest first, up to the target size) into one:
//!
//! 1. reserve the new block's id, so a `DROP MEASUREMENT` logged meanwhile hides the new
//!    block too (its values all predate the drop);
//! 2. merge series by series, field by field (the greater version wins; equal versions, the
//!    later block), leaving out measurements tombstones hide and values deletes hide
//!    (`deletes.rs`): memory is the target's worth
//!    of columns, not the inputs';
//! 3. write the block (tmp, fsync, rename, fsync dir), swap it for the inputs in one step,
//!    write the manifest, and only then delete the inputs' files.
//!
//! A crash before the manifest leaves the new file unnamed (deleted at the next start) and
//! the inputs in place; after it, the inputs unnamed (deleted the same way). Nothing is lost
//! and nothing counted twice.

use super::block::{BlockBuilder, BlockError, Column, Values};
use super::blocks::{block_file_name, blocks_dir, Block};
use super::catalog::{read, Catalog, Database};
use super::manifest::{self, Manifest};
use super::series::FieldDef;
use super::version::Version;
use crate::model::FieldValue;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// A partition is compacted once it has this many blocks below the target size.
pub const MIN_INPUTS: usize = 4;

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub db: String,
    pub inputs: Vec<u64>,
    pub output: u64,
    pub values: u64,
}

/// The blocks of one partition to merge, if any: those below `target` values, smallest
/// first, as many as fit in `target` (at least `MIN_INPUTS` of them), in id order.
pub fn plan(blocks: &[Arc<Block>], target: u64) -> Option<Vec<Arc<Block>>> {
    let mut small: Vec<&Arc<Block>> = blocks
        .iter()
        .filter(|b| b.file.index().value_count < target)
        .collect();
    if small.len() < MIN_INPUTS {
        return None;
    }
    small.sort_by_key(|b| (b.file.index().value_count, b.id));
    let mut total = 0;
    let mut chosen: Vec<Arc<Block>> = Vec::new();
    for b in small {
        let n = b.file.index().value_count;
        if total + n > target && chosen.len() >= 2 {
            break;
        }
        total += n;
        chosen.push(b.clone());
    }
    if chosen.len() < 2 {
        return None;
    }
    chosen.sort_by_key(|b| b.id);
    Some(chosen)
}

/// Runs at most one compaction: the first partition, of any database, that `plan` picks.
/// Call only from the thread that flushes (one writer of blocks and manifests at a time).
pub fn compact_once(
    data_dir: &Path,
    catalog: &Catalog,
    target: u64,
) -> Result<Option<Compacted>, String> {
    for db in catalog.databases() {
        let mut by_partition: BTreeMap<(i64, i64), Vec<Arc<Block>>> = BTreeMap::new();
        for b in db.blocks.all() {
            by_partition.entry(b.partition()).or_default().push(b);
        }
        for ((start, end), blocks) in by_partition {
            let Some(inputs) = plan(&blocks, target) else {
                continue;
            };
            return compact(data_dir, catalog, &db, (start, end), &inputs).map(Some);
        }
    }
    Ok(None)
}

fn compact(
    data_dir: &Path,
    catalog: &Catalog,
    db: &Database,
    (start, end): (i64, i64),
    inputs: &[Arc<Block>],
) -> Result<Compacted, String> {
    let id = catalog.reserve_block_ids(1);
    let builder = merge_blocks(db, inputs, (start, end))
        .map_err(|e| format!("compacting into block {id}: {e}"))?;
    let values = builder.value_count();
    let dir = blocks_dir(data_dir);
    let file = builder
        .write(&dir, &block_file_name(id))
        .map_err(|e| e.to_string())?;
    let input_ids: Vec<u64> = inputs.iter().map(|b| b.id).collect();
    db.blocks.replace(&input_ids, Arc::new(Block { id, file }));
    {
        let flushed = catalog.lock_flushed();
        let mut m = Manifest::capture(
            catalog,
            flushed.seq,
            catalog.next_block_id(),
            flushed.max_hlc,
            flushed.applied.clone(),
        );
        manifest::write(data_dir, &mut m).map_err(|e| e.to_string())?;
    }
    for b in inputs {
        catalog.columns.forget(b.id);
        if let Err(e) = std::fs::remove_file(b.file.path()) {
            tracing::warn!(file = %b.file.path().display(), error = %e, "cannot remove a compacted block");
        }
    }
    Ok(Compacted {
        db: db.name.clone(),
        inputs: input_ids,
        output: id,
        values,
    })
}

/// The values of `inputs` (blocks of the partition `[start, end)` of `db`) merged into one
/// block's columns: one value per (series, field, time), the greatest version's; what
/// tombstones and deletes hide, and fields whose type differs from the schema's, are left
/// out.
pub fn merge_blocks(
    db: &Database,
    inputs: &[Arc<Block>],
    (start, end): (i64, i64),
) -> Result<BlockBuilder, String> {
    let mut builder = BlockBuilder::new(&db.name, start, end);
    // Every (measurement, tags) any input holds, in order; measurements a tombstone hides
    // in an input are left out of that input.
    let mut keys: BTreeSet<(String, Vec<(String, String)>)> = BTreeSet::new();
    for b in inputs {
        for m in &b.file.index().measurements {
            if b.id < db.blocks.hidden_below(&m.name) {
                continue;
            }
            for s in &m.series {
                keys.insert((m.name.clone(), s.tags.clone()));
            }
        }
    }
    for (measurement, tags) in &keys {
        let schema = db
            .measurement(measurement)
            .map(|m| read(&m).fields().to_vec());
        let columns = merge_series(db, inputs, measurement, tags, schema.as_deref())
            .map_err(|e| e.to_string())?;
        for (field, column) in columns {
            builder
                .add(measurement, tags, &field, column)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(builder)
}

/// One series' columns across the inputs, merged per field: one value per time, the
/// greatest version's (equal versions: the later block's). A field whose type differs from
/// the schema's (only after a dropped and re-created measurement) keeps the schema's type.
fn merge_series(
    db: &Database,
    inputs: &[Arc<Block>],
    measurement: &str,
    tags: &[(String, String)],
    schema: Option<&[FieldDef]>,
) -> Result<Vec<(FieldDef, Column)>, BlockError> {
    // Field name → (type, values as (time, version, input order, value)).
    type Gathered = (FieldDef, Vec<(i64, Version, usize, FieldValue)>);
    let mut fields: BTreeMap<String, Gathered> = BTreeMap::new();
    let deleted = db.deletes.filter(measurement);
    for (order, b) in inputs.iter().enumerate() {
        if b.id < db.blocks.hidden_below(measurement) {
            continue;
        }
        let Some((_, mi)) = b.measurement(measurement) else {
            continue;
        };
        let Some((_, si)) = Block::series(mi, tags) else {
            continue;
        };
        for col in &si.columns {
            let Some(def) = mi.fields.get(col.field as usize) else {
                continue;
            };
            let wanted = schema
                .and_then(|s| s.iter().find(|f| f.name == def.name))
                .map_or(def.ty, |f| f.ty);
            if def.ty != wanted {
                continue;
            }
            let column = b.file.read_column(col)?;
            let entry = fields
                .entry(def.name.clone())
                .or_insert_with(|| (def.clone(), Vec::new()));
            for i in 0..column.times.len() {
                if deleted.hides(column.times[i], column.versions[i]) {
                    continue;
                }
                entry.1.push((
                    column.times[i],
                    column.versions[i],
                    order,
                    column.values.get(i),
                ));
            }
        }
    }
    let mut out = Vec::with_capacity(fields.len());
    for (_, (def, mut values)) in fields {
        // Per time, the winner last: the greatest (version, input order).
        values.sort_by_key(|v| (v.0, v.1, v.2));
        let mut column = Column {
            times: Vec::with_capacity(values.len()),
            versions: Vec::with_capacity(values.len()),
            values: Values::new(def.ty),
        };
        let mut iter = values.into_iter().peekable();
        while let Some(v) = iter.next() {
            if iter.peek().is_some_and(|next| next.0 == v.0) {
                continue;
            }
            column.times.push(v.0);
            column.versions.push(v.1);
            if column.values.push(v.3).is_err() {
                // Only values of `def.ty` were gathered; a mismatch would misalign the
                // column, so it is left out whole rather than written wrong.
                tracing::error!(measurement, field = %def.name, "a compacted column of mixed types was left out");
                column.times.clear();
                break;
            }
        }
        if !column.times.is_empty() {
            out.push((def, column));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block::BlockFile;

    fn block(dir: &Path, id: u64, values: &[(i64, f64, u64)]) -> Arc<Block> {
        let mut b = BlockBuilder::new("d", 0, 1_000);
        let field = FieldDef {
            name: "v".into(),
            ty: crate::model::FieldType::Float,
        };
        let column = Column {
            times: values.iter().map(|v| v.0).collect(),
            versions: values
                .iter()
                .map(|v| Version { hlc: v.2, node: 1 })
                .collect(),
            values: Values::Float(values.iter().map(|v| v.1).collect()),
        };
        b.add("cpu", &[("h".into(), "a".into())], &field, column)
            .unwrap();
        let file: BlockFile = b.write(dir, &block_file_name(id)).unwrap();
        Arc::new(Block { id, file })
    }

    #[test]
    fn a_partition_is_compacted_only_with_enough_small_blocks_smallest_first() {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<Arc<Block>> = (1..=5)
            .map(|id| {
                let values: Vec<(i64, f64, u64)> =
                    (0..id as i64 * 10).map(|t| (t, 1.0, 1)).collect();
                block(dir.path(), id, &values)
            })
            .collect();
        let ids =
            |p: Option<Vec<Arc<Block>>>| p.map(|v| v.iter().map(|b| b.id).collect::<Vec<_>>());
        assert_eq!(
            ids(plan(&blocks[..3], 1_000)),
            None,
            "three small blocks wait"
        );
        assert_eq!(ids(plan(&blocks, 1_000)), Some(vec![1, 2, 3, 4, 5]));
        // Sizes 10..50: the smallest that fit in 60 values (10 + 20 + 30), in id order.
        assert_eq!(ids(plan(&blocks, 60)), Some(vec![1, 2, 3]));
        // Blocks at or above the target are left alone.
        assert_eq!(ids(plan(&blocks, 15)), None);
    }

    #[test]
    fn merging_keeps_one_value_per_time_the_greatest_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::new("d", crate::storage::catalog::Policies::new(0));
        let a = block(dir.path(), 1, &[(1, 1.0, 5), (2, 2.0, 5), (3, 3.0, 9)]);
        let b = block(dir.path(), 2, &[(2, 20.0, 7), (3, 30.0, 8), (4, 40.0, 1)]);
        let merged = merge_series(&db, &[a, b], "cpu", &[("h".into(), "a".into())], None).unwrap();
        assert_eq!(merged.len(), 1);
        let col = &merged[0].1;
        assert_eq!(col.times, vec![1, 2, 3, 4]);
        assert_eq!(col.values, Values::Float(vec![1.0, 20.0, 3.0, 40.0]));
        assert_eq!(
            col.versions.iter().map(|v| v.hlc).collect::<Vec<_>>(),
            vec![5, 7, 9, 1]
        );
    }
}
