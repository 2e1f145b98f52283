//! The index of a block, its header and its footer, and the checks an opened index passes.
//!
//! The index is the postcard encoding of [`BlockIndex`]: changing a field of these structs
//! (or their order) changes the format, and needs a new `FORMAT_VERSION`. The test
//! `a_version_1_block_written_before_still_reads` keeps a block of version 1 to catch that.

use super::MAX_CHUNK_VALUES;
use crate::model::FieldType;
use crate::storage::series::FieldDef;
use serde::{Deserialize, Serialize};

/// The first and last bytes of every block.
pub(super) const MAGIC: [u8; 8] = *b"TSDBBLOK";
/// Magic and format version.
pub(super) const HEADER_LEN: u64 = 12;
/// Index offset, index length, index crc32, magic.
pub(super) const FOOTER_LEN: u64 = 28;

/// What a block holds: enough to rebuild the series index and to choose which chunks to
/// read, without reading any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIndex {
    pub db: String,
    /// The partition the block belongs to: every time is in `[start, end)`.
    pub partition_start_ns: i64,
    pub partition_end_ns: i64,
    /// The smallest and largest time of any value.
    pub min_time: i64,
    pub max_time: i64,
    pub value_count: u64,
    /// Sorted by name, names unique.
    pub measurements: Vec<MeasurementIndex>,
}

/// One measurement of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasurementIndex {
    pub name: String,
    /// The fields with a column in this block, sorted by name, names unique.
    pub fields: Vec<FieldDef>,
    /// Sorted by tags, tag sets unique.
    pub series: Vec<SeriesIndex>,
}

/// One series (tag set) of a measurement and its column chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesIndex {
    /// Sorted by key, keys unique.
    pub tags: Vec<(String, String)>,
    /// Sorted by field, then by time; the chunks of one field do not overlap in time (a
    /// field has more than one chunk only past `MAX_CHUNK_VALUES` values or
    /// `MAX_CHUNK_STRING_BYTES` of strings).
    pub columns: Vec<ColumnRef>,
}

/// Where one column chunk is and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnRef {
    /// Index into [`MeasurementIndex::fields`].
    pub field: u32,
    /// The number of values, at least 1 and at most `MAX_CHUNK_VALUES`.
    pub count: u32,
    pub min_time: i64,
    pub max_time: i64,
    /// The field's type, as in `fields` (the reader needs it without the measurement).
    pub(super) ty: FieldType,
    pub(super) times: SectionRef,
    pub(super) versions: SectionRef,
    pub(super) values: SectionRef,
}

/// One section's place in the file and its crc32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(super) struct SectionRef {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) crc: u32,
}

// === impl BlockIndex ===

impl BlockIndex {
    pub fn measurement(&self, name: &str) -> Option<&MeasurementIndex> {
        self.measurements
            .binary_search_by(|m| m.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.measurements[i])
    }

    /// Whether any value of the block is in `[start, end]`.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.min_time <= end && start <= self.max_time
    }

    /// Every column chunk, with its measurement and series.
    pub fn columns(
        &self,
    ) -> impl Iterator<Item = (&MeasurementIndex, &SeriesIndex, &ColumnRef)> + '_ {
        self.measurements.iter().flat_map(|m| {
            m.series
                .iter()
                .flat_map(move |s| s.columns.iter().map(move |c| (m, s, c)))
        })
    }

    /// Checks what the format promises of an index read from a file whose sections end at
    /// `data_end` (where the index starts). Returns what is wrong.
    pub(super) fn check(&self, data_end: u64) -> Result<(), String> {
        if self.partition_start_ns >= self.partition_end_ns {
            return Err(format!(
                "empty partition [{}, {})",
                self.partition_start_ns, self.partition_end_ns
            ));
        }
        if self.measurements.is_empty() {
            return Err("no measurements".into());
        }
        let mut sections = Vec::new();
        let mut count = 0u64;
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for pair in self.measurements.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(format!("measurement {:?} out of order", pair[1].name));
            }
        }
        for m in &self.measurements {
            let at = |what: String| format!("measurement {:?}: {what}", m.name);
            if m.series.is_empty() {
                return Err(at("no series".into()));
            }
            for pair in m.fields.windows(2) {
                if pair[0].name >= pair[1].name {
                    return Err(at(format!("field {:?} out of order", pair[1].name)));
                }
            }
            for pair in m.series.windows(2) {
                if pair[0].tags >= pair[1].tags {
                    return Err(at(format!("series {:?} out of order", pair[1].tags)));
                }
            }
            for s in &m.series {
                let at = |what: String| at(format!("series {:?}: {what}", s.tags));
                if s.tags.windows(2).any(|p| p[0].0 >= p[1].0) {
                    return Err(at("tag keys out of order".into()));
                }
                if s.columns.is_empty() {
                    return Err(at("no columns".into()));
                }
                for c in &s.columns {
                    c.check(&m.fields, data_end).map_err(&at)?;
                    count += u64::from(c.count);
                    min = min.min(c.min_time);
                    max = max.max(c.max_time);
                    sections.extend([c.times, c.versions, c.values]);
                }
                for pair in s.columns.windows(2) {
                    let (a, b) = (&pair[0], &pair[1]);
                    if a.field > b.field || (a.field == b.field && a.max_time >= b.min_time) {
                        return Err(at(format!("column of field {} out of order", b.field)));
                    }
                }
            }
        }
        if count != self.value_count {
            return Err(format!(
                "{count} values in the columns, {} in the index",
                self.value_count
            ));
        }
        if (min, max) != (self.min_time, self.max_time) {
            return Err(format!(
                "columns span [{min}, {max}], the index says [{}, {}]",
                self.min_time, self.max_time
            ));
        }
        if min < self.partition_start_ns || max >= self.partition_end_ns {
            return Err(format!(
                "times [{min}, {max}] outside the partition [{}, {})",
                self.partition_start_ns, self.partition_end_ns
            ));
        }
        check_tiling(sections, data_end)
    }
}

/// The sections must cover the bytes between the header and the index exactly, each once
/// (several chunks may name the same section), so that every byte is under a checksum.
fn check_tiling(mut sections: Vec<SectionRef>, data_end: u64) -> Result<(), String> {
    sections.sort_unstable();
    sections.dedup();
    let mut at = HEADER_LEN;
    for s in &sections {
        if s.offset != at {
            return Err(format!(
                "section at offset {} where one should start at {at}",
                s.offset
            ));
        }
        at += u64::from(s.len);
    }
    if at != data_end {
        return Err(format!(
            "sections end at {at}, the index starts at {data_end}"
        ));
    }
    Ok(())
}

// === impl MeasurementIndex ===

impl MeasurementIndex {
    /// The index of a field in [`MeasurementIndex::fields`], as [`ColumnRef::field`] holds it.
    pub fn field(&self, name: &str) -> Option<u32> {
        let i = self
            .fields
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()?;
        u32::try_from(i).ok()
    }

    pub fn series(&self, tags: &[(String, String)]) -> Option<&SeriesIndex> {
        self.series
            .binary_search_by(|s| s.tags.as_slice().cmp(tags))
            .ok()
            .map(|i| &self.series[i])
    }
}

// === impl ColumnRef ===

impl ColumnRef {
    /// Whether any value of the chunk is in `[start, end]`.
    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        self.min_time <= end && start <= self.max_time
    }

    fn check(&self, fields: &[FieldDef], data_end: u64) -> Result<(), String> {
        let Some(field) = fields.get(self.field as usize) else {
            return Err(format!("field {} of {}", self.field, fields.len()));
        };
        if field.ty != self.ty {
            return Err(format!(
                "field {:?} is {}, its column {}",
                field.name, field.ty, self.ty
            ));
        }
        if self.count == 0 || self.count > MAX_CHUNK_VALUES {
            return Err(format!("a column of {} values", self.count));
        }
        // Times are unique, so n values span at least n - 1 nanoseconds.
        let span = i128::from(self.max_time) - i128::from(self.min_time);
        if span < i128::from(self.count) - 1 || (self.count == 1 && span != 0) {
            return Err(format!(
                "{} values in [{}, {}]",
                self.count, self.min_time, self.max_time
            ));
        }
        for s in [self.times, self.versions, self.values] {
            let end = s.offset.checked_add(u64::from(s.len));
            if s.len == 0 || s.offset < HEADER_LEN || end.is_none_or(|e| e > data_end) {
                return Err(format!(
                    "section of {} bytes at {} outside the data",
                    s.len, s.offset
                ));
            }
        }
        Ok(())
    }
}

// === header and footer ===

pub(super) fn header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..].copy_from_slice(&super::FORMAT_VERSION.to_le_bytes());
    h
}

/// The last bytes of a block: where the index is and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Footer {
    pub(super) index_offset: u64,
    pub(super) index_len: u64,
    pub(super) index_crc: u32,
}

impl Footer {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_LEN as usize);
        out.extend_from_slice(&self.index_offset.to_le_bytes());
        out.extend_from_slice(&self.index_len.to_le_bytes());
        out.extend_from_slice(&self.index_crc.to_le_bytes());
        out.extend_from_slice(&MAGIC);
        out
    }

    /// `None` if the magic is not there.
    pub(super) fn decode(bytes: &[u8; FOOTER_LEN as usize]) -> Option<Footer> {
        let (fields, magic) = bytes.split_at(20);
        if magic != MAGIC {
            return None;
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&fields[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&fields[16..20]);
        Some(Footer {
            index_offset: u64_at(0),
            index_len: u64_at(8),
            index_crc: u32::from_le_bytes(crc),
        })
    }
}

/// The same file with every checksum made to match its bytes, or `None` if it has no
/// footer pointing at an index. For fuzzing: mutations then reach the decoders behind the
/// checksums. The data keeps its place; an index that decodes gets its sections' crc32s
/// fixed and is encoded again.
pub(crate) fn with_checksums_fixed(bytes: &[u8]) -> Option<Vec<u8>> {
    let len = bytes.len() as u64;
    let foot_at = len.checked_sub(FOOTER_LEN)?;
    let footer = Footer::decode(bytes.get(foot_at as usize..)?.try_into().ok()?)?;
    if footer.index_offset < HEADER_LEN
        || footer.index_offset.checked_add(footer.index_len)? != foot_at
    {
        return None;
    }
    let data = &bytes[..footer.index_offset as usize];
    let raw_index = &bytes[footer.index_offset as usize..foot_at as usize];
    let index = match postcard::from_bytes::<BlockIndex>(raw_index) {
        Ok(mut index) => {
            let fix = |s: &mut SectionRef| {
                let end = s.offset.checked_add(u64::from(s.len));
                if let Some(section) = end.and_then(|e| data.get(s.offset as usize..e as usize)) {
                    s.crc = crc32fast::hash(section);
                }
            };
            for m in &mut index.measurements {
                for series in &mut m.series {
                    for c in &mut series.columns {
                        fix(&mut c.times);
                        fix(&mut c.versions);
                        fix(&mut c.values);
                    }
                }
            }
            postcard::to_allocvec(&index).ok()?
        }
        Err(_) => raw_index.to_vec(),
    };
    let footer = Footer {
        index_offset: footer.index_offset,
        index_len: index.len() as u64,
        index_crc: crc32fast::hash(&index),
    };
    let mut out = data.to_vec();
    out.extend_from_slice(&index);
    out.extend_from_slice(&footer.encode());
    Some(out)
}
