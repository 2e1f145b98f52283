//! What a WAL record means: one durable change to the node's state.
//!
//! Every entry is idempotent when replayed in log order (writes set values, DDL creates or
//! drops by name), which is what lets a snapshot be taken while writes go on: replaying
//! records the snapshot already contains lands on the same state.

use crate::model::Point;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// Points accepted for a database, already validated against its schema.
    Write {
        db: String,
        points: Vec<Point>,
    },
    CreateDatabase {
        name: String,
    },
    DropDatabase {
        name: String,
    },
    /// Creates or replaces a retention policy; `duration_ns == 0` means keep forever.
    SetRetentionPolicy {
        db: String,
        name: String,
        duration_ns: i64,
        /// Kept for `SHOW RETENTION POLICIES`; 0 means InfluxDB's default for the duration.
        shard_duration_ns: i64,
        default: bool,
    },
    DropRetentionPolicy {
        db: String,
        name: String,
    },
    DropMeasurement {
        db: String,
        name: String,
    },
}

impl Entry {
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Entry, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    #[test]
    fn every_field_type_survives_an_encode_decode_round_trip() {
        let e = Entry::Write {
            db: "d".into(),
            points: vec![Point {
                measurement: "m".into(),
                tags: vec![("host".into(), "a b".into())],
                fields: vec![
                    ("f".into(), FieldValue::Float(-1.5)),
                    ("i".into(), FieldValue::Integer(i64::MIN)),
                    ("u".into(), FieldValue::Unsigned(u64::MAX)),
                    ("b".into(), FieldValue::Boolean(true)),
                    ("s".into(), FieldValue::String("x \"y\"\n".into())),
                ],
                timestamp: -5,
            }],
        };
        assert_eq!(Entry::decode(&e.encode().unwrap()).unwrap(), e);
    }
}
