//! The data model shared by the parser, the storage engine and the query engine.
//!
//! A point is one row of one series: a measurement, a sorted tag set, one or more typed
//! field values and a timestamp in nanoseconds since the Unix epoch (UTC).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The type of a field column. A field keeps the type of its first value per measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    Boolean,
    String,
}

impl FieldType {
    /// The name InfluxDB uses in messages and in `SHOW FIELD KEYS`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One typed field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    /// Boxed rather than a `String`: a value is 24 bytes instead of 32, and there is one
    /// per stored field value.
    String(Box<str>),
}

impl FieldValue {
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::Float(_) => FieldType::Float,
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Unsigned(_) => FieldType::Unsigned,
            FieldValue::Boolean(_) => FieldType::Boolean,
            FieldValue::String(_) => FieldType::String,
        }
    }
}

/// One parsed line of line protocol, with its timestamp resolved to nanoseconds.
///
/// `tags` are sorted by key and keys are unique; `fields` are non-empty with unique keys
/// (for a key given twice in one line the last value wins, as in InfluxDB).
/// The measurement, the tags and the field keys are shared (`Arc`): the lines of a batch
/// mostly repeat a few series keys and field names, and the parser hands every line the
/// allocation it made for the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub measurement: Arc<str>,
    pub tags: Arc<[(String, String)]>,
    pub fields: Vec<(Arc<str>, FieldValue)>,
    pub timestamp: i64,
}

/// The unit of timestamps in a write (`precision=`) or of times in a query answer (`epoch=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Precision {
    /// Parses the spellings InfluxDB 1.x accepts: `n`/`ns`, `u`/`us`/`µ`, `ms`, `s`, `m`, `h`.
    /// An empty string means nanoseconds.
    pub fn parse(text: &str) -> Option<Precision> {
        Some(match text {
            "" | "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// Nanoseconds in one unit of this precision.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }
}

/// The smallest and largest timestamps InfluxDB 1.x accepts (`models.MinNanoTime`,
/// `models.MaxNanoTime`): the extremes of i64 are reserved as sentinels.
pub const MIN_NANO_TIME: i64 = i64::MIN + 2;
pub const MAX_NANO_TIME: i64 = i64::MAX - 1;
