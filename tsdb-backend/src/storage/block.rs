//! The on-disk block format: an immutable file of compressed columns and the index to them.
//!
//! A block holds the values of one database for one time partition, one column chunk per
//! (measurement, tag set, field), each chunk three sections: its times, its versions and
//! its values. The engine writes a block from its in-memory head ([`BlockBuilder`]) and
//! later opens it ([`BlockFile::open`]), which reads only the index: enough to rebuild the
//! series index (measurements, tag sets, field names and types) and to skip chunks by
//! series and time range before reading any of them.
//!
//! ```text
//! offset 0        header      magic "TSDBBLOK" | FORMAT_VERSION u32 LE               12 bytes
//! 12              sections    one after another, no gaps; each is referenced from
//!                             the index by (offset, len, crc32) and starts with a
//!                             one-byte codec tag (codec.rs):
//!                               times     i64: plain | constant | pco
//!                               versions  hlc u64 and node u32, each plain | constant | pco
//!                               values    float, integer, unsigned: plain | constant | pco
//!                                         boolean: bitmap | constant
//!                                         string: length-prefixed | zstd of those
//!                             Identical sections are stored once: the ten field
//!                             columns of a series usually share one times section,
//!                             and a batch's constant version one versions section.
//! index_offset    index       postcard of BlockIndex (index.rs): db, partition, time
//!                             range, measurements -> fields + series -> column refs
//! len - 28        footer      index_offset u64 | index_len u64 | index crc32 u32 |
//!                             magic "TSDBBLOK"                                       28 bytes
//! ```
//!
//! Integers are little-endian. Every byte of the file is covered by a check: the header by
//! its magic and version, each section by the crc32 in the index, the index by the crc32
//! in the footer, and the footer by its magic and by pointing exactly at the index. The
//! sections must tile the bytes between header and index, so no byte goes unchecked. A
//! corrupt or truncated file gives a [`BlockError`] naming the file and the section, never
//! a panic; every length read from the file is checked against the file's size, or against
//! [`MAX_CHUNK_VALUES`] for counts, before anything is allocated for it.
//!
//! A block is written whole to `<name>.tmp`, fsynced, renamed and its directory fsynced
//! ([`BlockBuilder::write`]), so a crash leaves either no block or a complete one.
//!
//! This module knows nothing of the head, of partitions or of compaction: it is the byte
//! format and its files.

mod builder;
mod codec;
mod file;
mod index;

pub use builder::BlockBuilder;
pub use file::BlockFile;
pub(crate) use index::with_checksums_fixed;
pub use index::{BlockIndex, ColumnRef, MeasurementIndex, SeriesIndex};

use crate::model::{FieldType, FieldValue};
use crate::storage::version::Version;
use std::fmt;
use std::path::PathBuf;

/// The version of the block format this code writes and reads. A file of another version
/// is refused with [`BlockError::UnsupportedVersion`].
pub const FORMAT_VERSION: u32 = 1;

/// The most values one column chunk holds. The builder splits longer columns into several
/// chunks of the same field; the reader refuses a chunk claiming more, so a decoded chunk
/// takes at most about 32 MiB (times, versions and 8-byte values).
pub const MAX_CHUNK_VALUES: u32 = 1 << 20;

/// The most bytes the strings of one chunk take (each plus a length prefix of 1 to 10
/// bytes); the builder splits string columns by this too. A single string must fit.
pub const MAX_CHUNK_STRING_BYTES: u64 = 64 << 20;

/// One column chunk: the values of one field of one series, sorted by time, unique times.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub times: Vec<i64>,
    pub versions: Vec<Version>,
    pub values: Values,
}

impl Column {
    /// The number of values (of times, if the lengths differ).
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
}

/// The values of one column, all of one type.
#[derive(Debug, Clone)]
pub enum Values {
    Float(Vec<f64>),
    Integer(Vec<i64>),
    Unsigned(Vec<u64>),
    Boolean(Vec<bool>),
    String(Vec<Box<str>>),
}

impl Values {
    /// An empty column of type `ty`.
    pub fn new(ty: FieldType) -> Values {
        match ty {
            FieldType::Float => Values::Float(Vec::new()),
            FieldType::Integer => Values::Integer(Vec::new()),
            FieldType::Unsigned => Values::Unsigned(Vec::new()),
            FieldType::Boolean => Values::Boolean(Vec::new()),
            FieldType::String => Values::String(Vec::new()),
        }
    }

    pub fn field_type(&self) -> FieldType {
        match self {
            Values::Float(_) => FieldType::Float,
            Values::Integer(_) => FieldType::Integer,
            Values::Unsigned(_) => FieldType::Unsigned,
            Values::Boolean(_) => FieldType::Boolean,
            Values::String(_) => FieldType::String,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Integer(v) => v.len(),
            Values::Unsigned(v) => v.len(),
            Values::Boolean(v) => v.len(),
            Values::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the values of `other` to the end of this column, if it is of the same type;
    /// otherwise hands it back.
    pub fn append(&mut self, other: Values) -> Result<(), Values> {
        match (self, other) {
            (Values::Float(a), Values::Float(b)) => a.extend(b),
            (Values::Integer(a), Values::Integer(b)) => a.extend(b),
            (Values::Unsigned(a), Values::Unsigned(b)) => a.extend(b),
            (Values::Boolean(a), Values::Boolean(b)) => a.extend(b),
            (Values::String(a), Values::String(b)) => a.extend(b),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// The `i`th value. Panics if `i >= self.len()`, as slice indexing does.
    pub fn get(&self, i: usize) -> FieldValue {
        match self {
            Values::Float(v) => FieldValue::Float(v[i]),
            Values::Integer(v) => FieldValue::Integer(v[i]),
            Values::Unsigned(v) => FieldValue::Unsigned(v[i]),
            Values::Boolean(v) => FieldValue::Boolean(v[i]),
            Values::String(v) => FieldValue::String(v[i].clone()),
        }
    }

    /// Appends a value of this column's type; a value of another type is handed back.
    pub fn push(&mut self, value: FieldValue) -> Result<(), FieldValue> {
        match (self, value) {
            (Values::Float(v), FieldValue::Float(x)) => v.push(x),
            (Values::Integer(v), FieldValue::Integer(x)) => v.push(x),
            (Values::Unsigned(v), FieldValue::Unsigned(x)) => v.push(x),
            (Values::Boolean(v), FieldValue::Boolean(x)) => v.push(x),
            (Values::String(v), FieldValue::String(x)) => v.push(x),
            (_, other) => return Err(other),
        }
        Ok(())
    }
}

/// Floats compare by their bits, so a column holding NaN equals itself and `-0.0 != 0.0`:
/// what a round trip through a block must preserve.
impl PartialEq for Values {
    fn eq(&self, other: &Values) -> bool {
        match (self, other) {
            (Values::Float(a), Values::Float(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
            }
            (Values::Integer(a), Values::Integer(b)) => a == b,
            (Values::Unsigned(a), Values::Unsigned(b)) => a == b,
            (Values::Boolean(a), Values::Boolean(b)) => a == b,
            (Values::String(a), Values::String(b)) => a == b,
            _ => false,
        }
    }
}

/// Which part of a block file an error concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Header,
    Footer,
    Index,
    Times { offset: u64 },
    Versions { offset: u64 },
    Values { offset: u64 },
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::Header => f.write_str("header"),
            Section::Footer => f.write_str("footer"),
            Section::Index => f.write_str("index"),
            Section::Times { offset } => write!(f, "times section at offset {offset}"),
            Section::Versions { offset } => write!(f, "versions section at offset {offset}"),
            Section::Values { offset } => write!(f, "values section at offset {offset}"),
        }
    }
}

/// What is wrong with a column handed to [`BlockBuilder::add`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnProblem {
    #[error("no values")]
    Empty,
    #[error("{times} times, {versions} versions and {values} values")]
    LengthMismatch {
        times: usize,
        versions: usize,
        values: usize,
    },
    #[error("time {time} at position {at} is before the time before it")]
    UnsortedTime { at: usize, time: i64 },
    #[error("time {time} at position {at} repeats the time before it")]
    DuplicateTime { at: usize, time: i64 },
    #[error("time {time} is outside the block's partition [{start}, {end})")]
    OutsidePartition { time: i64, start: i64, end: i64 },
    #[error("values of type {got} for a field of type {declared}")]
    TypeMismatch { declared: FieldType, got: FieldType },
    #[error("the field is {existing} in another series of this block, here {declared}")]
    FieldTypeConflict {
        existing: FieldType,
        declared: FieldType,
    },
    #[error("tag keys are not sorted and unique")]
    UnsortedTags,
    #[error("the series already has this field in the block")]
    DuplicateColumn,
    #[error("a string of {len} bytes is longer than a block allows ({MAX_CHUNK_STRING_BYTES})")]
    StringTooLong { len: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("block {path}: {len} bytes is too short for a block")]
    TooShort { path: PathBuf, len: u64 },
    #[error("block {path}: no block magic in the {section} (truncated, or not a block)")]
    BadMagic { path: PathBuf, section: Section },
    #[error(
        "block {path}: format version {found}, this build reads only version {FORMAT_VERSION}"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("block {path}: checksum mismatch in the {section}")]
    Checksum { path: PathBuf, section: Section },
    #[error("block {path}: {section}: {reason}")]
    Corrupt {
        path: PathBuf,
        section: Section,
        reason: String,
    },
    #[error("column {measurement} {tags:?} {field}: {problem}")]
    InvalidColumn {
        measurement: String,
        tags: Vec<(String, String)>,
        field: String,
        problem: ColumnProblem,
    },
    #[error("block {path}: a block needs at least one column")]
    EmptyBlock { path: PathBuf },
    #[error("block {path}: the file name must be a plain name")]
    BadFileName { path: PathBuf },
}

#[cfg(test)]
mod tests;
