//! What a WAL record means: one durable change to the node's state.
//!
//! Every entry is idempotent when replayed in log order (writes set values, DDL creates or
//! drops by name), which is what lets a snapshot be taken while writes go on: replaying
//! records the snapshot already contains lands on the same state.

use super::version::Version;
use crate::model::{Point, Precision};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// Points accepted for a database, already validated against its schema.
    Write {
        db: String,
        points: Vec<Point>,
        version: Version,
    },
    /// A write body every line of which was accepted unchanged, logged as the client sent
    /// it: cheaper to log than the parsed points, and parsing it again (the parser is
    /// deterministic given the precision and the time for untimed lines) gives them back.
    WriteLines {
        db: String,
        precision: Precision,
        default_time_ns: i64,
        version: Version,
        body: Vec<u8>,
    },
    /// An entry another node accepted from a client (`origin`, its sequence number there),
    /// applied here. Replaying it also restores how far this node has applied that origin.
    Replicated {
        origin: String,
        seq: u64,
        entry: Box<Entry>,
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
    /// Written by earlier releases for `DROP MEASUREMENT` (unversioned); replayed as before.
    DropMeasurement {
        db: String,
        name: String,
    },
    /// `DELETE` and `DROP MEASUREMENT`: a versioned tombstone (see `deletes.rs`). With
    /// `drop_schema` the measurement itself goes too (its fields, its series).
    Delete {
        db: String,
        measurement: Option<String>,
        min_time: i64,
        max_time: i64,
        version: Version,
        drop_schema: bool,
    },
    /// `DROP DATABASE`, versioned: the catalog remembers the drop, so that a resync from a
    /// node that missed it does not bring the database back (see `catalog.rs`).
    DropDatabaseAt {
        name: String,
        version: Version,
    },
}

/// First byte of a `WriteLines` payload. Postcard starts every other entry with its variant
/// index as a one-byte varint (below 0x80), so this byte cannot begin one of them.
const LINES_MARKER: u8 = 0xFF;
/// First byte of a `Replicated` payload: the marker, a postcard `(origin, seq)` header, then
/// the origin's own encoding of the entry, verbatim.
const REPLICATED_MARKER: u8 = 0xFE;
/// Postcard's variant index of `Replicated` (the third variant), which `encode` never uses.
const SERDE_REPLICATED: u8 = 2;

impl Entry {
    /// Whether applying it removes stored data (then the manifest is rewritten soon, so the
    /// blocks it empties can be deleted).
    pub fn drops_data(&self) -> bool {
        match self {
            Entry::DropDatabase { .. }
            | Entry::DropDatabaseAt { .. }
            | Entry::DropMeasurement { .. }
            | Entry::Delete { .. } => true,
            Entry::Replicated { entry, .. } => entry.drops_data(),
            _ => false,
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        match self {
            Entry::WriteLines {
                db,
                precision,
                default_time_ns,
                version,
                body,
            } => Entry::encode_lines(db, *precision, *default_time_ns, *version, body),
            Entry::Replicated { origin, seq, entry } => {
                Entry::encode_replicated(origin, *seq, &entry.encode()?)
            }
            other => postcard::to_stdvec(other),
        }
    }

    /// Encodes a `WriteLines` entry from a borrowed body: the marker, a postcard header, then
    /// the body bytes verbatim (one copy, no per-byte serialisation).
    pub fn encode_lines(
        db: &str,
        precision: Precision,
        default_time_ns: i64,
        version: Version,
        body: &[u8],
    ) -> Result<Vec<u8>, postcard::Error> {
        let mut out = Vec::with_capacity(body.len() + db.len() + 40);
        out.push(LINES_MARKER);
        let mut out = postcard::to_extend(&(db, precision, default_time_ns, version), out)?;
        out.extend_from_slice(body);
        Ok(out)
    }

    /// Wraps an origin's encoded entry for this node's log.
    pub fn encode_replicated(
        origin: &str,
        seq: u64,
        inner: &[u8],
    ) -> Result<Vec<u8>, postcard::Error> {
        let mut out = Vec::with_capacity(inner.len() + origin.len() + 16);
        out.push(REPLICATED_MARKER);
        let mut out = postcard::to_extend(&(origin, seq), out)?;
        out.extend_from_slice(inner);
        Ok(out)
    }

    /// Whether an encoded entry was accepted from a client here (not replicated from a peer).
    pub fn is_local(payload: &[u8]) -> bool {
        payload.first() != Some(&REPLICATED_MARKER)
    }

    /// The version of a write entry (for moving this node's clock past a peer's).
    pub fn version(&self) -> Option<Version> {
        match self {
            Entry::Write { version, .. }
            | Entry::WriteLines { version, .. }
            | Entry::Delete { version, .. }
            | Entry::DropDatabaseAt { version, .. } => Some(*version),
            Entry::Replicated { entry, .. } => entry.version(),
            _ => None,
        }
    }

    /// Decodes a payload written by [`Entry::encode`]. A `Replicated` entry wraps exactly
    /// one local entry (only those are shipped to peers), so one wrapping inside another is
    /// refused as a bad encoding: decoding them recursively let a payload of a few hundred
    /// KiB of nested markers overflow the stack.
    pub fn decode(bytes: &[u8]) -> Result<Entry, postcard::Error> {
        match bytes.split_first() {
            Some((&REPLICATED_MARKER, rest)) => {
                let ((origin, seq), inner): ((String, u64), &[u8]) =
                    postcard::take_from_bytes(rest)?;
                Ok(Entry::Replicated {
                    origin,
                    seq,
                    entry: Box::new(Entry::decode_local(inner)?),
                })
            }
            _ => Entry::decode_local(bytes),
        }
    }

    /// Decodes an entry that is not a `Replicated` one, in either encoding.
    fn decode_local(bytes: &[u8]) -> Result<Entry, postcard::Error> {
        match bytes.split_first() {
            // `encode` never writes `Replicated` through serde, whose derive would recurse
            // through every nested wrapping too.
            Some((&REPLICATED_MARKER | &SERDE_REPLICATED, _)) => {
                Err(postcard::Error::DeserializeBadEncoding)
            }
            Some((&LINES_MARKER, rest)) => {
                type Header = (String, Precision, i64, Version);
                let ((db, precision, default_time_ns, version), body): (Header, &[u8]) =
                    postcard::take_from_bytes(rest)?;
                Ok(Entry::WriteLines {
                    db,
                    precision,
                    default_time_ns,
                    version,
                    body: body.to_vec(),
                })
            }
            _ => postcard::from_bytes(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldValue;

    #[test]
    fn a_raw_lines_entry_round_trips_and_is_told_apart_from_the_others() {
        let e = Entry::WriteLines {
            db: "d".into(),
            precision: Precision::Seconds,
            default_time_ns: -7,
            version: Version { hlc: 9, node: 4 },
            body: b"cpu v=1 1\ncpu v=2 2".to_vec(),
        };
        let bytes = e.encode().unwrap();
        assert_eq!(bytes[0], LINES_MARKER);
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        let other = Entry::CreateDatabase { name: "d".into() };
        assert_eq!(Entry::decode(&other.encode().unwrap()).unwrap(), other);
        let wrapped = Entry::Replicated {
            origin: "b".into(),
            seq: 42,
            entry: Box::new(e),
        };
        let bytes = wrapped.encode().unwrap();
        assert!(!Entry::is_local(&bytes));
        assert_eq!(Entry::decode(&bytes).unwrap(), wrapped);
    }

    /// Issue 16: found by the `replication_frames` fuzz target's review; a peer's frame is
    /// decoded on the request's thread, so deep nesting overflowed its stack.
    #[test]
    fn a_replicated_entry_inside_another_is_a_decode_error_not_a_stack_overflow() {
        for nested_one_level in [
            [REPLICATED_MARKER, 0, 0].repeat(2),
            [vec![REPLICATED_MARKER, 0, 0], vec![SERDE_REPLICATED, 0, 0]].concat(),
        ] {
            assert!(Entry::decode(&nested_one_level).is_err());
        }
        let deep = [REPLICATED_MARKER, 0, 0].repeat(1 << 20);
        assert!(Entry::decode(&deep).is_err());
        let deep_serde = [SERDE_REPLICATED, 0, 0].repeat(1 << 20);
        assert!(Entry::decode(&deep_serde).is_err());
    }

    #[test]
    fn every_field_type_survives_an_encode_decode_round_trip() {
        let e = Entry::Write {
            db: "d".into(),
            points: vec![Point {
                measurement: "m".into(),
                tags: vec![("host".into(), "a b".into())].into(),
                fields: vec![
                    ("f".into(), FieldValue::Float(-1.5)),
                    ("i".into(), FieldValue::Integer(i64::MIN)),
                    ("u".into(), FieldValue::Unsigned(u64::MAX)),
                    ("b".into(), FieldValue::Boolean(true)),
                    ("s".into(), FieldValue::String("x \"y\"\n".into())),
                ],
                timestamp: -5,
            }],
            version: Version { hlc: 1, node: 2 },
        };
        assert_eq!(Entry::decode(&e.encode().unwrap()).unwrap(), e);
    }
}
