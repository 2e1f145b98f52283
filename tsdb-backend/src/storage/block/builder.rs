//! Building a block in memory from columns, then encoding and writing it.

use super::codec;
use super::file::{commit, BlockFile, SectionWriter};
use super::index::{BlockIndex, ColumnRef, MeasurementIndex, SectionRef, SeriesIndex};
use super::{BlockError, Column, ColumnProblem, Values, MAX_CHUNK_STRING_BYTES, MAX_CHUNK_VALUES};
use crate::model::FieldType;
use crate::storage::series::FieldDef;
use crate::storage::version::Version;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

/// Sections up to this size are stored once per block however many chunks they serve
/// (constant versions, regular times, one-value columns)...
const SHARED_SECTION_MAX_LEN: usize = 256;
/// ...up to this many distinct ones, which bounds the memory the lookup takes.
const SHARED_SECTIONS_MAX: usize = 1 << 16;

/// Builds one block in memory, then writes it durably.
///
/// ```
/// # use tsdb_backend::storage::block::{BlockBuilder, Column, Values};
/// # use tsdb_backend::storage::series::FieldDef;
/// # use tsdb_backend::storage::version::Version;
/// # use tsdb_backend::model::FieldType;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let mut b = BlockBuilder::new("telegraf", 0, 86_400_000_000_000);
/// let field = FieldDef { name: "usage_user".into(), ty: FieldType::Float };
/// let tags = [("host".to_string(), "a".to_string())];
/// let v = Version { hlc: 1 << 16, node: 7 };
/// let column = Column { times: vec![0, 10], versions: vec![v, v], values: Values::Float(vec![0.5, 0.25]) };
/// b.add("cpu", &tags, &field, column.clone())?;
/// let block = b.write(dir.path(), "0000.blk")?;
/// let (_, series, col) = block.index().columns().next().unwrap();
/// assert_eq!(series.tags, tags);
/// assert_eq!(block.read_column(col)?, column);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct BlockBuilder {
    db: String,
    partition_start_ns: i64,
    partition_end_ns: i64,
    measurements: BTreeMap<String, PendingMeasurement>,
    value_count: u64,
    /// `MAX_CHUNK_VALUES`, smaller in tests.
    max_chunk_values: usize,
}

#[derive(Debug, Default)]
struct PendingMeasurement {
    fields: BTreeMap<String, FieldType>,
    /// Tags, then field name.
    series: BTreeMap<Vec<(String, String)>, BTreeMap<String, Column>>,
}

impl BlockBuilder {
    /// A block of database `db` whose times are all in `[partition_start_ns, partition_end_ns)`.
    pub fn new(db: &str, partition_start_ns: i64, partition_end_ns: i64) -> Self {
        BlockBuilder {
            db: db.to_string(),
            partition_start_ns,
            partition_end_ns,
            measurements: BTreeMap::new(),
            value_count: 0,
            max_chunk_values: MAX_CHUNK_VALUES as usize,
        }
    }

    #[cfg(test)]
    pub(super) fn with_max_chunk_values(mut self, n: usize) -> Self {
        self.max_chunk_values = n;
        self
    }

    /// Adds one column. Columns may come in any order; the index is sorted by
    /// (measurement, tags, field name) when written. Errors if the column is empty, its
    /// times are unsorted, duplicated or outside the partition, its lengths differ, its
    /// values' type differs from `field.ty` (or from the field's type in another series of
    /// the block), the series already has this field, or its tag keys are not sorted and
    /// unique.
    pub fn add(
        &mut self,
        measurement: &str,
        tags: &[(String, String)],
        field: &FieldDef,
        column: Column,
    ) -> Result<(), BlockError> {
        let invalid = |problem| BlockError::InvalidColumn {
            measurement: measurement.to_string(),
            tags: tags.to_vec(),
            field: field.name.clone(),
            problem,
        };
        self.check(tags, field, &column).map_err(invalid)?;
        let m = self.measurements.get(measurement);
        let existing = m.and_then(|m| m.fields.get(&field.name)).copied();
        if let Some(existing) = existing.filter(|&t| t != field.ty) {
            return Err(invalid(ColumnProblem::FieldTypeConflict {
                existing,
                declared: field.ty,
            }));
        }
        let has = m
            .and_then(|m| m.series.get(tags))
            .is_some_and(|s| s.contains_key(&field.name));
        if has {
            return Err(invalid(ColumnProblem::DuplicateColumn));
        }
        let m = self
            .measurements
            .entry(measurement.to_string())
            .or_default();
        m.fields.insert(field.name.clone(), field.ty);
        self.value_count += column.len() as u64;
        m.series
            .entry(tags.to_vec())
            .or_default()
            .insert(field.name.clone(), column);
        Ok(())
    }

    fn check(
        &self,
        tags: &[(String, String)],
        field: &FieldDef,
        column: &Column,
    ) -> Result<(), ColumnProblem> {
        if tags.windows(2).any(|p| p[0].0 >= p[1].0) {
            return Err(ColumnProblem::UnsortedTags);
        }
        let (times, versions, values) = (
            column.times.len(),
            column.versions.len(),
            column.values.len(),
        );
        if times != versions || times != values {
            return Err(ColumnProblem::LengthMismatch {
                times,
                versions,
                values,
            });
        }
        if times == 0 {
            return Err(ColumnProblem::Empty);
        }
        let got = column.values.field_type();
        if got != field.ty {
            return Err(ColumnProblem::TypeMismatch {
                declared: field.ty,
                got,
            });
        }
        for (at, pair) in column.times.windows(2).enumerate() {
            let time = pair[1];
            if time < pair[0] {
                return Err(ColumnProblem::UnsortedTime { at: at + 1, time });
            }
            if time == pair[0] {
                return Err(ColumnProblem::DuplicateTime { at: at + 1, time });
            }
        }
        let (start, end) = (self.partition_start_ns, self.partition_end_ns);
        for time in [column.times[0], column.times[times - 1]] {
            if time < start || time >= end {
                return Err(ColumnProblem::OutsidePartition { time, start, end });
            }
        }
        if let Values::String(strings) = &column.values {
            // Room for the length prefix too.
            let limit = MAX_CHUNK_STRING_BYTES as usize - 10;
            if let Some(s) = strings.iter().find(|s| s.len() > limit) {
                return Err(ColumnProblem::StringTooLong { len: s.len() });
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.value_count == 0
    }

    pub fn value_count(&self) -> u64 {
        self.value_count
    }

    /// Encodes and writes `dir/<file_name>`: to `<file_name>.tmp` first, fsyncs the file,
    /// renames it, fsyncs the directory. Returns the opened block (its index read back
    /// from the file). A block needs at least one column.
    pub fn write(self, dir: &Path, file_name: &str) -> Result<BlockFile, BlockError> {
        let path = dir.join(file_name);
        let plain = Path::new(file_name)
            .file_name()
            .is_some_and(|n| n == file_name);
        if !plain {
            return Err(BlockError::BadFileName { path });
        }
        if self.is_empty() {
            return Err(BlockError::EmptyBlock { path });
        }
        let tmp = dir.join(format!("{file_name}.tmp"));
        let written = self.write_to(&tmp).and_then(|()| commit(&tmp, &path, dir));
        if let Err(e) = written {
            // Best effort: a leftover temporary is harmless, and replaced by the next try.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        BlockFile::open(&path)
    }

    fn write_to(self, tmp: &Path) -> Result<(), BlockError> {
        let mut out = Sections {
            writer: SectionWriter::create(tmp)?,
            shared: HashMap::new(),
            scratch: Vec::new(),
        };
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        let mut measurements = Vec::with_capacity(self.measurements.len());
        for (name, pending) in self.measurements {
            let fields: Vec<FieldDef> = pending
                .fields
                .into_iter()
                .map(|(name, ty)| FieldDef { name, ty })
                .collect();
            let mut series = Vec::with_capacity(pending.series.len());
            for (tags, columns) in pending.series {
                let mut refs = Vec::new();
                // Times and versions already written for this series: the fields of one
                // series usually share both.
                let mut series_times: Vec<(&[i64], SectionRef)> = Vec::new();
                let mut series_versions: Vec<(&[Version], SectionRef)> = Vec::new();
                for (field_name, column) in &columns {
                    // The field's position in the sorted list, where it is.
                    let field = fields.partition_point(|f| f.name < *field_name) as u32;
                    for range in chunks(&column.values, self.max_chunk_values) {
                        let times = &column.times[range.clone()];
                        let versions = &column.versions[range.clone()];
                        let times_ref = match series_times.iter().find(|(t, _)| *t == times) {
                            Some((_, s)) => *s,
                            None => {
                                let s = out.put(|b| codec::encode_numbers(times, b))?;
                                series_times.push((times, s));
                                s
                            }
                        };
                        let versions_ref =
                            match series_versions.iter().find(|(v, _)| *v == versions) {
                                Some((_, s)) => *s,
                                None => {
                                    let s = out.put(|b| codec::encode_versions(versions, b))?;
                                    series_versions.push((versions, s));
                                    s
                                }
                            };
                        let values_ref =
                            out.put(|b| encode_values(&column.values, range.clone(), b))?;
                        let (first, last) = (times[0], times[times.len() - 1]);
                        min_time = min_time.min(first);
                        max_time = max_time.max(last);
                        refs.push(ColumnRef {
                            field,
                            count: times.len() as u32,
                            min_time: first,
                            max_time: last,
                            ty: column.values.field_type(),
                            times: times_ref,
                            versions: versions_ref,
                            values: values_ref,
                        });
                    }
                }
                series.push(SeriesIndex {
                    tags,
                    columns: refs,
                });
            }
            measurements.push(MeasurementIndex {
                name,
                fields,
                series,
            });
        }
        let index = BlockIndex {
            db: self.db,
            partition_start_ns: self.partition_start_ns,
            partition_end_ns: self.partition_end_ns,
            min_time,
            max_time,
            value_count: self.value_count,
            measurements,
        };
        let bytes = postcard::to_allocvec(&index).map_err(|e| BlockError::Io {
            path: tmp.to_path_buf(),
            source: std::io::Error::other(format!("encoding the index: {e}")),
        })?;
        out.writer.finish(&bytes)
    }
}

/// The section writer and the sections small enough to share by their bytes.
struct Sections {
    writer: SectionWriter,
    shared: HashMap<Vec<u8>, SectionRef>,
    scratch: Vec<u8>,
}

impl Sections {
    /// Encodes one section and writes it, or returns an equal one already written.
    fn put(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<SectionRef, BlockError> {
        self.scratch.clear();
        encode(&mut self.scratch);
        let small = self.scratch.len() <= SHARED_SECTION_MAX_LEN;
        if small {
            if let Some(s) = self.shared.get(&self.scratch) {
                return Ok(*s);
            }
        }
        let s = self.writer.put(&self.scratch)?;
        if small && self.shared.len() < SHARED_SECTIONS_MAX {
            self.shared.insert(self.scratch.clone(), s);
        }
        Ok(s)
    }
}

/// The ranges a column is cut into: at most `max_values` values each, and for strings at
/// most `MAX_CHUNK_STRING_BYTES` of encoded strings.
fn chunks(values: &Values, max_values: usize) -> Vec<Range<usize>> {
    let n = values.len();
    let Values::String(strings) = values else {
        return (0..n)
            .step_by(max_values)
            .map(|start| start..(start + max_values).min(n))
            .collect();
    };
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, s) in strings.iter().enumerate() {
        let len = codec::plain_strings_len(std::slice::from_ref(s));
        if i > start && (i - start == max_values || bytes + len > MAX_CHUNK_STRING_BYTES) {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    ranges.push(start..n);
    ranges
}

fn encode_values(values: &Values, range: Range<usize>, out: &mut Vec<u8>) {
    match values {
        Values::Float(v) => codec::encode_numbers(&v[range], out),
        Values::Integer(v) => codec::encode_numbers(&v[range], out),
        Values::Unsigned(v) => codec::encode_numbers(&v[range], out),
        Values::Boolean(v) => codec::encode_booleans(&v[range], out),
        Values::String(v) => codec::encode_strings(&v[range], out),
    }
}
