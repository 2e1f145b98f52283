//! Reading a series: its values in blocks and in the head, merged into one row per time.
//!
//! Layers are applied oldest first (blocks by id, then the frozen head a flush is writing,
//! then the live head) with the last-writer-wins rule of `Row::set`, so a value written
//! twice (an overwrite, a late point, a replica's copy) shows once, with its newest version.

use super::blocks::{Block, ColumnKey};
use super::catalog::{Catalog, Database};
use super::deletes::Filter;
use super::series::{Measurement, Row, Series};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The fields a read needs (`None`: all of them), by the head's field ids.
pub type FieldFilter<'a> = Option<&'a BTreeSet<u32>>;

/// The series' rows within `[lo, hi]`: borrowed from the head when nothing else holds any,
/// else merged into a copy.
pub fn series_view<'s>(
    catalog: &Catalog,
    db: &Database,
    m: &Measurement,
    s: &'s Series,
    (lo, hi): (i64, i64),
    fields: FieldFilter<'_>,
) -> Cow<'s, Series> {
    let blocks = if s.in_blocks && lo <= hi {
        db.blocks.overlapping(lo, hi)
    } else {
        Vec::new()
    };
    // The head itself holds nothing a tombstone hides (deletes are applied to it).
    if blocks.is_empty() && s.frozen.is_none() {
        return Cow::Borrowed(s);
    }
    let deleted = db.deletes.filter(&m.name);
    let mut rows: BTreeMap<i64, Row> = BTreeMap::new();
    let hidden_below = db.blocks.hidden_below(&m.name);
    for b in blocks.iter().filter(|b| b.id >= hidden_below) {
        merge_block(catalog, db, m, s, b, (lo, hi), fields, &deleted, &mut rows);
    }
    if let Some(frozen) = &s.frozen {
        merge_rows(frozen.range(lo..=hi), fields, &deleted, &mut rows);
    }
    if lo <= hi {
        merge_rows(s.rows.range(lo..=hi), fields, &Filter::default(), &mut rows);
    }
    Cow::Owned(Series {
        tags: s.tags.clone(),
        rows,
        frozen: None,
        in_blocks: false,
    })
}

/// The series' values in the head alone (the frozen layer a flush is writing, then the
/// live rows), merged, without what tombstones hide; `None` when the head holds none. What
/// a peer is sent besides the blocks.
pub fn head_view(db: &Database, m: &Measurement, s: &Series) -> Option<Series> {
    if s.rows.is_empty() && s.frozen.is_none() {
        return None;
    }
    let mut rows: BTreeMap<i64, Row> = BTreeMap::new();
    if let Some(frozen) = &s.frozen {
        merge_rows(frozen.iter(), None, &db.deletes.filter(&m.name), &mut rows);
    }
    merge_rows(s.rows.iter(), None, &Filter::default(), &mut rows);
    Some(Series {
        tags: s.tags.clone(),
        rows,
        frozen: None,
        in_blocks: false,
    })
}

/// A time at or before the newest value of field `id` in the series within `[lo, hi]`, and
/// no later than it: from the head and the blocks' indexes, without reading block data.
/// `None` when no layer holds the field in the range. A `last()` reads `[bound, hi]` only,
/// instead of the series' whole history.
pub fn newest_time_bound(
    db: &Database,
    m: &Measurement,
    s: &Series,
    (lo, hi): (i64, i64),
    id: u32,
) -> Option<i64> {
    let in_rows = |rows: &BTreeMap<i64, Row>| {
        rows.range(lo..=hi)
            .rev()
            .find(|(_, r)| r.get(id).is_some())
            .map(|(t, _)| *t)
    };
    let mut bound = in_rows(&s.rows);
    if let Some(frozen) = &s.frozen {
        bound = bound.max(in_rows(frozen));
    }
    let name = &m.fields().get(id as usize)?.name;
    if s.in_blocks {
        let hidden_below = db.blocks.hidden_below(&m.name);
        for b in db.blocks.overlapping(lo, hi) {
            if b.id < hidden_below {
                continue;
            }
            let Some((_, mi)) = b.measurement(&m.name) else {
                continue;
            };
            let Some((_, si)) = Block::series(mi, &s.tags) else {
                continue;
            };
            for col in &si.columns {
                let same_field = mi
                    .fields
                    .get(col.field as usize)
                    .is_some_and(|f| f.name == *name);
                if !same_field || col.max_time < lo || col.min_time > hi {
                    continue;
                }
                // A chunk that ends past `hi` has its newest value in range somewhere at or
                // after its first time (which is in range); one that ends inside, at its end.
                let t = if col.max_time <= hi {
                    col.max_time
                } else {
                    col.min_time.max(lo)
                };
                bound = bound.max(Some(t));
            }
        }
    }
    bound
}

fn merge_rows<'a>(
    range: impl Iterator<Item = (&'a i64, &'a Row)>,
    fields: FieldFilter<'_>,
    deleted: &Filter,
    out: &mut BTreeMap<i64, Row>,
) {
    for (t, row) in range {
        let wanted = |c: &super::series::Cell| {
            fields.is_none_or(|f| f.contains(&c.id)) && !deleted.hides(*t, c.version)
        };
        if !row.0.iter().any(wanted) {
            continue;
        }
        let target = out.entry(*t).or_default();
        for cell in row.0.iter().filter(|c| wanted(c)) {
            target.set(cell.id, cell.value.clone(), cell.version);
        }
    }
}

/// Adds the series' columns of one block within `[lo, hi]`. A block that fails its checks
/// is set aside and the read goes on without it.
#[allow(clippy::too_many_arguments)]
fn merge_block(
    catalog: &Catalog,
    db: &Database,
    m: &Measurement,
    s: &Series,
    b: &Arc<Block>,
    (lo, hi): (i64, i64),
    fields: FieldFilter<'_>,
    deleted: &Filter,
    out: &mut BTreeMap<i64, Row>,
) {
    let Some((mi, mindex)) = b.measurement(&m.name) else {
        return;
    };
    let Some((si, sindex)) = Block::series(mindex, &s.tags) else {
        return;
    };
    for (ci, col) in sindex.columns.iter().enumerate() {
        if col.max_time < lo || col.min_time > hi {
            continue;
        }
        let Some(def) = mindex.fields.get(col.field as usize) else {
            continue;
        };
        // Blocks name fields; the head numbers them. A type that differs from the schema's
        // (possible only after a schema history this node did not see) is skipped.
        let Some(id) = m.field_id(&def.name) else {
            continue;
        };
        if m.field_type(&def.name) != Some(def.ty) || fields.is_some_and(|f| !f.contains(&id)) {
            continue;
        }
        let key = ColumnKey {
            block: b.id,
            measurement: mi,
            series: si,
            column: ci as u32,
        };
        let column = match catalog.columns.column(b, key) {
            Ok(c) => c,
            Err(reason) => {
                set_aside(catalog, db, b, &reason);
                return;
            }
        };
        let start = column.times.partition_point(|&t| t < lo);
        let end = column.times.partition_point(|&t| t <= hi);
        for i in start..end {
            if deleted.hides(column.times[i], column.versions[i]) {
                continue;
            }
            out.entry(column.times[i]).or_default().set(
                id,
                column.values.get(i),
                column.versions[i],
            );
        }
    }
}

/// Takes a damaged block out of its database and renames its file aside.
pub fn set_aside(catalog: &Catalog, db: &Database, b: &Block, reason: &str) {
    db.blocks.remove(&[b.id]);
    catalog.columns.forget(b.id);
    catalog.columns.set_aside(b.file.path(), reason);
}
