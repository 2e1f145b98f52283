//! In-memory data of one measurement: its field schema and its series of rows.
//!
//! A series is one tag set; its rows are kept sorted by timestamp, and a row holds the
//! values of the fields written at that timestamp (a later write of the same field at the
//! same time replaces the value, other fields of the row are kept, as in InfluxDB).

use super::version::Version;
use crate::model::{FieldType, FieldValue, Point};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Series and field lookups hash client-chosen strings on every point: a fast hasher with a
/// per-process random seed (foldhash), not SipHash, which showed as 9% of ingest CPU.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A field column: its name and the type fixed by its first value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    pub name: String,
    pub ty: FieldType,
}

/// One stored value: its field, its version and the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub id: u32,
    pub version: Version,
    pub value: FieldValue,
}

/// The values written at one timestamp, sorted by field id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row(pub Vec<Cell>);

impl Row {
    /// Sets a field's value unless the stored one has a greater version (last writer wins;
    /// an equal version, i.e. the same batch, replaces: the later line wins).
    pub fn set(&mut self, id: u32, value: FieldValue, version: Version) {
        match self.0.binary_search_by_key(&id, |c| c.id) {
            Ok(pos) => {
                let cell = &mut self.0[pos];
                if version >= cell.version {
                    cell.value = value;
                    cell.version = version;
                }
            }
            Err(pos) => self.0.insert(pos, Cell { id, version, value }),
        }
    }

    pub fn get(&self, id: u32) -> Option<&FieldValue> {
        self.0
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|pos| &self.0[pos].value)
    }
}

/// Rows of a series taken out of the head by a flush that is writing them into a block:
/// still read by queries until the block is in place.
pub type FrozenRows = std::sync::Arc<BTreeMap<i64, Row>>;

/// One tag set of a measurement and its rows in the head.
///
/// A series whose values all live in blocks is still here, with no rows: the series index
/// (tags → series) is the head's, filled from the blocks' indexes at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Sorted by key.
    pub tags: Vec<(String, String)>,
    pub rows: BTreeMap<i64, Row>,
    /// What a running flush took from `rows`, until its block is registered.
    #[serde(skip)]
    pub frozen: Option<FrozenRows>,
    /// Some block holds values of this series (set at start and by flushes; not cleared
    /// when retention drops them, so a series may be listed after its last block went).
    #[serde(skip)]
    pub in_blocks: bool,
}

impl Series {
    /// Whether the series holds any value, in the head or in blocks.
    pub fn has_data(&self) -> bool {
        !self.rows.is_empty() || self.frozen.is_some() || self.in_blocks
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a point was refused by the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field type conflict: input field \"{field}\" on measurement \"{measurement}\" is type {got}, already exists as type {existing}")]
pub struct FieldTypeConflict {
    pub measurement: String,
    pub field: String,
    pub got: FieldType,
    pub existing: FieldType,
}

/// The schema and data of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    pub name: String,
    fields: Vec<FieldDef>,
    field_ids: FastMap<String, u32>,
    series: Vec<Series>,
    series_ids: FastMap<Vec<(String, String)>, u32>,
    /// Reused by `apply` for a point's field ids, to save an allocation per point.
    scratch: Vec<(u32, bool)>,
}

impl Measurement {
    pub fn new(name: &str) -> Self {
        Measurement {
            name: name.to_string(),
            ..Measurement::default()
        }
    }

    /// Rebuilds a measurement from a snapshot.
    pub fn from_parts(name: String, fields: Vec<FieldDef>, series: Vec<Series>) -> Self {
        let field_ids = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i as u32))
            .collect();
        let series_ids = series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.tags.clone(), i as u32))
            .collect();
        Measurement {
            name,
            fields,
            field_ids,
            series,
            series_ids,
            scratch: Vec::new(),
        }
    }

    pub fn fields(&self) -> &[FieldDef] {
        &self.fields
    }

    pub fn field_id(&self, name: &str) -> Option<u32> {
        self.field_ids.get(name).copied()
    }

    pub fn field_type(&self, name: &str) -> Option<FieldType> {
        self.field_id(name).map(|id| self.fields[id as usize].ty)
    }

    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// True when the measurement holds no point (it may still have a schema).
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| !s.has_data())
    }

    /// Checks a point's field types against the schema without changing it. Returns the
    /// names of fields the schema does not know yet.
    pub fn check<'p>(
        &self,
        point: &'p Point,
    ) -> Result<Vec<(&'p str, FieldType)>, FieldTypeConflict> {
        let mut unknown = Vec::new();
        for (name, value) in &point.fields {
            let got = value.field_type();
            match self.field_type(name) {
                Some(existing) if existing != got => {
                    return Err(FieldTypeConflict {
                        measurement: self.name.clone(),
                        field: name.to_string(),
                        got,
                        existing,
                    })
                }
                Some(_) => {}
                None => unknown.push((&**name, got)),
            }
        }
        Ok(unknown)
    }

    /// Checks a point and adds its new fields to the schema.
    pub fn reserve(&mut self, point: &Point) -> Result<(), FieldTypeConflict> {
        for (name, ty) in self.check(point)? {
            self.define_field(name, ty);
        }
        Ok(())
    }

    /// Adds a field to the schema (from a block's index or the manifest at start); a name
    /// already known keeps its first type.
    pub fn define_field(&mut self, name: &str, ty: FieldType) -> u32 {
        if let Some(id) = self.field_id(name) {
            return id;
        }
        let id = self.fields.len() as u32;
        self.fields.push(FieldDef {
            name: name.to_string(),
            ty,
        });
        self.field_ids.insert(name.to_string(), id);
        id
    }

    /// Stores a point that was validated before it was logged, moving its values in. A value
    /// whose type differs from the schema (possible only if the log was written by a
    /// different schema history) is skipped rather than corrupting the column.
    pub fn apply(&mut self, point: Point, version: Version) {
        let sid = match self.series_ids.get(&point.tags[..]) {
            Some(&id) => id,
            None => {
                let id = self.series.len() as u32;
                self.series_ids.insert(point.tags.to_vec(), id);
                self.series.push(Series {
                    tags: point.tags.to_vec(),
                    rows: BTreeMap::new(),
                    frozen: None,
                    in_blocks: false,
                });
                id
            }
        };
        // Resolve ids first (that may extend the schema), then fill the row. Points of a
        // batch usually share their field names: reuse the previous point's ids then.
        let mut ids = std::mem::take(&mut self.scratch);
        let reuse = ids.len() == point.fields.len()
            && ids
                .iter()
                .zip(&point.fields)
                .all(|(&(id, ok), (name, value))| {
                    let def = &self.fields[id as usize];
                    *def.name == **name && (def.ty == value.field_type()) == ok
                });
        if !reuse {
            ids.clear();
            for (name, value) in &point.fields {
                let id = self.define_field(name, value.field_type());
                ids.push((id, self.fields[id as usize].ty == value.field_type()));
            }
        }
        let row = self.series[sid as usize]
            .rows
            .entry(point.timestamp)
            .or_default();
        row.0.reserve(point.fields.len());
        for ((_, value), &(id, type_ok)) in point.fields.into_iter().zip(ids.iter()) {
            if type_ok {
                row.set(id, value, version);
            }
        }
        self.scratch = ids;
    }

    /// Merges another replica's series into this measurement, value by value, keeping the
    /// greater version of each (a full resync is this merge: it converges, and it is
    /// idempotent).
    pub fn merge(&mut self, fields: &[FieldDef], series: Vec<Series>) {
        let ids: Vec<u32> = fields
            .iter()
            .map(|f| self.define_field(&f.name, f.ty))
            .collect();
        for s in series {
            let sid = match self.series_ids.get(s.tags.as_slice()) {
                Some(&id) => id,
                None => {
                    let id = self.series.len() as u32;
                    self.series_ids.insert(s.tags.clone(), id);
                    self.series.push(Series {
                        tags: s.tags,
                        rows: BTreeMap::new(),
                        frozen: None,
                        in_blocks: false,
                    });
                    id
                }
            };
            let rows = &mut self.series[sid as usize].rows;
            for (t, row) in s.rows {
                let mine = rows.entry(t).or_default();
                for cell in row.0 {
                    let Some(&id) = ids.get(cell.id as usize) else {
                        continue;
                    };
                    if self.fields[id as usize].ty == cell.value.field_type() {
                        mine.set(id, cell.value, cell.version);
                    }
                }
            }
        }
    }

    /// The id of the series with these tags, added without rows if it is new (the series
    /// index is rebuilt from the blocks' indexes this way at start).
    pub fn series_id_or_insert(&mut self, tags: &[(String, String)]) -> u32 {
        if let Some(&id) = self.series_ids.get(tags) {
            return id;
        }
        let id = self.series.len() as u32;
        self.series_ids.insert(tags.to_vec(), id);
        self.series.push(Series {
            tags: tags.to_vec(),
            rows: BTreeMap::new(),
            frozen: None,
            in_blocks: false,
        });
        id
    }

    /// Records that a block holds values of the series with these tags.
    pub fn adopt_series(&mut self, tags: &[(String, String)]) {
        let id = self.series_id_or_insert(tags);
        self.series[id as usize].in_blocks = true;
    }

    /// Moves every series' head rows into its frozen layer, for a flush; returns them with
    /// their tags. The frozen layers stay readable until `thaw`.
    pub fn freeze(&mut self) -> Vec<(Vec<(String, String)>, FrozenRows)> {
        let mut out = Vec::new();
        for s in &mut self.series {
            if s.rows.is_empty() {
                continue;
            }
            let rows = std::sync::Arc::new(std::mem::take(&mut s.rows));
            // One flush runs at a time, so a series has no frozen layer here; if it had,
            // its rows would be merged in rather than dropped.
            let rows = match s.frozen.take() {
                Some(older) => {
                    let mut merged = (*older).clone();
                    merged.extend(rows.iter().map(|(t, r)| (*t, r.clone())));
                    std::sync::Arc::new(merged)
                }
                None => rows,
            };
            s.frozen = Some(rows.clone());
            s.in_blocks = true;
            out.push((s.tags.clone(), rows));
        }
        out
    }

    /// Drops the frozen layers once the blocks holding them are registered.
    pub fn thaw(&mut self) {
        for s in &mut self.series {
            s.frozen = None;
        }
    }

    /// Takes the series out (leaving the schema), to merge them elsewhere.
    pub fn take_series(&mut self) -> Vec<Series> {
        self.series_ids.clear();
        std::mem::take(&mut self.series)
    }

    /// Removes the head values a tombstone hides (older versions in its time range).
    pub fn delete(&mut self, t: &super::deletes::RangeTombstone) {
        for s in &mut self.series {
            let times: Vec<i64> = s
                .rows
                .range(t.min_time..=t.max_time)
                .map(|(time, _)| *time)
                .collect();
            for time in times {
                if let Some(row) = s.rows.get_mut(&time) {
                    row.0.retain(|c| !t.hides(time, c.version));
                    if row.0.is_empty() {
                        s.rows.remove(&time);
                    }
                }
            }
        }
    }

    /// Drops every row older than `cutoff` (exclusive); returns how many rows went.
    pub fn drop_before(&mut self, cutoff: i64) -> usize {
        let mut dropped = 0;
        for s in &mut self.series {
            let keep = s.rows.split_off(&cutoff);
            dropped += s.rows.len();
            s.rows = keep;
        }
        dropped
    }

    /// Number of field values in the head (frozen layers included), for the flush policy.
    pub fn head_value_count(&self) -> usize {
        self.series
            .iter()
            .map(|s| {
                let frozen = s
                    .frozen
                    .as_ref()
                    .map_or(0, |f| f.values().map(|r| r.0.len()).sum());
                frozen + s.rows.values().map(|r| r.0.len()).sum::<usize>()
            })
            .sum()
    }

    /// Number of stored field values, for metrics.
    pub fn value_count(&self) -> usize {
        self.series
            .iter()
            .map(|s| s.rows.values().map(|r| r.0.len()).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Measurement {
        fn apply_v0(&mut self, p: Point) {
            self.apply(p, Version::default());
        }
    }

    fn point(tags: &[(&str, &str)], fields: Vec<(&str, FieldValue)>, ts: i64) -> Point {
        Point {
            measurement: "cpu".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            timestamp: ts,
        }
    }

    #[test]
    fn a_field_keeps_the_type_of_its_first_value() {
        let mut m = Measurement::new("cpu");
        m.reserve(&point(&[], vec![("v", FieldValue::Float(1.0))], 1))
            .unwrap();
        let err = m
            .reserve(&point(&[], vec![("v", FieldValue::Integer(1))], 2))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field type conflict: input field \"v\" on measurement \"cpu\" is type integer, already exists as type float"
        );
    }

    #[test]
    fn writes_at_the_same_time_merge_fields_and_the_last_value_wins() {
        let mut m = Measurement::new("cpu");
        m.apply_v0(point(
            &[("h", "a")],
            vec![("x", FieldValue::Float(1.0)), ("y", FieldValue::Float(2.0))],
            5,
        ));
        m.apply_v0(point(&[("h", "a")], vec![("x", FieldValue::Float(3.0))], 5));
        let s = &m.series()[0];
        let row = &s.rows[&5];
        assert_eq!(
            row.get(m.field_id("x").unwrap()),
            Some(&FieldValue::Float(3.0))
        );
        assert_eq!(
            row.get(m.field_id("y").unwrap()),
            Some(&FieldValue::Float(2.0))
        );
    }

    #[test]
    fn drop_before_keeps_the_row_at_the_cutoff() {
        let mut m = Measurement::new("cpu");
        for ts in [9, 10, 11] {
            m.apply_v0(point(&[], vec![("x", FieldValue::Integer(ts))], ts));
        }
        assert_eq!(m.drop_before(10), 1);
        assert_eq!(
            m.series()[0].rows.keys().copied().collect::<Vec<_>>(),
            vec![10, 11]
        );
    }

    #[test]
    fn the_greater_version_wins_whatever_the_order_of_arrival() {
        let old = Version { hlc: 10, node: 1 };
        let new = Version { hlc: 10, node: 2 };
        let mut ab = Measurement::new("cpu");
        ab.apply(point(&[], vec![("v", FieldValue::Integer(1))], 5), old);
        ab.apply(point(&[], vec![("v", FieldValue::Integer(2))], 5), new);
        let mut ba = Measurement::new("cpu");
        ba.apply(point(&[], vec![("v", FieldValue::Integer(2))], 5), new);
        ba.apply(point(&[], vec![("v", FieldValue::Integer(1))], 5), old);
        for m in [&ab, &ba] {
            let v = m.series()[0].rows[&5].get(0).cloned();
            assert_eq!(v, Some(FieldValue::Integer(2)));
        }
    }

    #[test]
    fn merging_a_replicas_series_keeps_the_newer_values_and_adds_the_missing_ones() {
        let mut mine = Measurement::new("cpu");
        mine.apply(
            point(&[("h", "a")], vec![("v", FieldValue::Integer(1))], 1),
            Version { hlc: 5, node: 0 },
        );
        mine.apply(
            point(&[("h", "a")], vec![("v", FieldValue::Integer(7))], 2),
            Version { hlc: 9, node: 0 },
        );
        let mut theirs = Measurement::new("cpu");
        // Their schema numbers the fields differently: merge maps by name.
        theirs.apply(
            point(&[("h", "a")], vec![("w", FieldValue::Float(0.5))], 1),
            Version { hlc: 1, node: 1 },
        );
        theirs.apply(
            point(&[("h", "a")], vec![("v", FieldValue::Integer(2))], 1),
            Version { hlc: 6, node: 1 },
        );
        theirs.apply(
            point(&[("h", "a")], vec![("v", FieldValue::Integer(3))], 2),
            Version { hlc: 8, node: 1 },
        );
        theirs.apply(
            point(&[("h", "b")], vec![("v", FieldValue::Integer(4))], 1),
            Version { hlc: 1, node: 1 },
        );
        mine.merge(theirs.fields(), theirs.series().to_vec());
        let v = mine.field_id("v").unwrap();
        let w = mine.field_id("w").unwrap();
        let a = &mine.series()[0];
        assert_eq!(
            a.rows[&1].get(v),
            Some(&FieldValue::Integer(2)),
            "theirs is newer"
        );
        assert_eq!(
            a.rows[&1].get(w),
            Some(&FieldValue::Float(0.5)),
            "a field only they had"
        );
        assert_eq!(
            a.rows[&2].get(v),
            Some(&FieldValue::Integer(7)),
            "mine is newer"
        );
        assert_eq!(mine.series().len(), 2, "a series only they had");
    }
}
