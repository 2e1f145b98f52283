//! Checkpoints: the whole in-memory state written to one file, so the WAL can be trimmed.
//!
//! A snapshot named `snapshot-<seq>.snap` holds every change up to WAL record `seq` (and
//! possibly some later ones, which replay re-applies harmlessly: entries are idempotent).
//! Layout: the magic `TSDBSNAP1`, `seq: u64 LE`, then frames `len: u32 | crc32: u32 |
//! postcard(Item)`, the last of which is `Item::End`. It is written to a `.tmp` file,
//! fsynced and renamed, so a crash leaves either the old snapshot or the new one; a file
//! without its `End` frame or with a bad checksum is ignored in favour of an older one.

use super::catalog::{read, Catalog, Database, Policies};
use super::deletes::RangeTombstone;
use super::series::{FieldDef, Measurement, Series};
use super::version::Version;
use super::wal::sync_dir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 9] = b"TSDBSNAP1";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot {path}: encoding: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: postcard::Error,
    },
    #[error("snapshot {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Serialize)]
enum ItemRef<'a> {
    Applied(&'a BTreeMap<String, u64>),
    Database {
        name: &'a str,
        policies: &'a Policies,
    },
    Measurement {
        db: &'a str,
        name: &'a str,
        fields: &'a [FieldDef],
    },
    Series {
        db: &'a str,
        measurement: &'a str,
        series: &'a Series,
    },
    End,
    /// A database's tombstones, right after its `Database` item (added after `End` so that
    /// the variants before it keep their numbers).
    Deletes {
        db: &'a str,
        list: &'a [RangeTombstone],
    },
    /// A dropped database and the version of its newest drop, after `Applied`.
    Dropped {
        name: &'a str,
        version: Version,
    },
}

#[derive(Debug, Deserialize)]
enum Item {
    Applied(BTreeMap<String, u64>),
    Database {
        name: String,
        policies: Policies,
    },
    Measurement {
        db: String,
        name: String,
        fields: Vec<FieldDef>,
    },
    Series {
        db: String,
        measurement: String,
        series: Series,
    },
    End,
    Deletes {
        db: String,
        list: Vec<RangeTombstone>,
    },
    Dropped {
        name: String,
        version: Version,
    },
}

pub fn snapshot_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snapshot-{seq:020}.snap"))
}

/// Snapshots in `dir`, newest first.
pub fn list_snapshots(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(num) = name
            .to_str()
            .and_then(|n| n.strip_prefix("snapshot-"))
            .and_then(|n| n.strip_suffix(".snap"))
        else {
            continue;
        };
        if let Ok(seq) = num.parse::<u64>() {
            out.push((seq, entry.path()));
        }
    }
    out.sort_by(|a, b| b.cmp(a));
    Ok(out)
}

struct FrameWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    fn item(&mut self, item: &ItemRef<'_>) -> Result<(), postcard::Error> {
        self.buf.clear();
        let bytes = postcard::to_extend(item, std::mem::take(&mut self.buf))?;
        let len = u32::try_from(bytes.len()).map_err(|_| postcard::Error::SerializeBufferFull)?;
        let crc = crc32fast::hash(&bytes);
        let res = self
            .out
            .write_all(&len.to_le_bytes())
            .and_then(|_| self.out.write_all(&crc.to_le_bytes()))
            .and_then(|_| self.out.write_all(&bytes));
        self.buf = bytes;
        res.map_err(|_| postcard::Error::SerdeSerCustom)
    }
}

/// Writes the catalog as snapshot `seq` into `dir`, durably. Takes each series' read lock
/// while that series is written, so the WAL writer waits for one series at most.
pub fn write_snapshot(dir: &Path, seq: u64, catalog: &Catalog) -> Result<PathBuf, SnapshotError> {
    let final_path = snapshot_path(dir, seq);
    let tmp = final_path.with_extension("snap.tmp");
    let io_err = |source| SnapshotError::Io {
        path: tmp.clone(),
        source,
    };
    let file = File::create(&tmp).map_err(io_err)?;
    let out =
        encode(BufWriter::with_capacity(1 << 20, file), seq, catalog).map_err(|e| e.at(&tmp))?;
    let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    fs::rename(&tmp, &final_path).map_err(io_err)?;
    sync_dir(dir).map_err(|e| SnapshotError::Invalid {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(final_path)
}

/// The catalog as snapshot bytes in memory, for sending to a peer that resynchronises.
pub fn snapshot_bytes(seq: u64, catalog: &Catalog) -> Result<Vec<u8>, SnapshotError> {
    encode(Vec::new(), seq, catalog).map_err(|e| e.at(Path::new("(in memory)")))
}

/// An encoding failure, before it knows which file it concerns.
#[derive(Debug)]
enum EncodeError {
    Io(io::Error),
    Encode(postcard::Error),
}

impl EncodeError {
    fn at(self, path: &Path) -> SnapshotError {
        match self {
            EncodeError::Io(source) => SnapshotError::Io {
                path: path.to_path_buf(),
                source,
            },
            EncodeError::Encode(source) => SnapshotError::Encode {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

fn encode<W: Write>(out: W, seq: u64, catalog: &Catalog) -> Result<W, EncodeError> {
    let mut w = FrameWriter {
        out,
        buf: Vec::new(),
    };
    w.out.write_all(MAGIC).map_err(EncodeError::Io)?;
    w.out
        .write_all(&seq.to_le_bytes())
        .map_err(EncodeError::Io)?;
    let applied = catalog.applied();
    w.item(&ItemRef::Applied(&applied))
        .map_err(EncodeError::Encode)?;
    for (name, version) in catalog.dropped() {
        w.item(&ItemRef::Dropped {
            name: &name,
            version,
        })
        .map_err(EncodeError::Encode)?;
    }
    for db in catalog.databases() {
        let policies = read(&db.policies).clone();
        w.item(&ItemRef::Database {
            name: &db.name,
            policies: &policies,
        })
        .map_err(EncodeError::Encode)?;
        let deletes = db.deletes.all();
        if !deletes.is_empty() {
            w.item(&ItemRef::Deletes {
                db: &db.name,
                list: &deletes,
            })
            .map_err(EncodeError::Encode)?;
        }
        for (name, m) in db.measurements() {
            // One series per read lock, so the WAL writer waits at most for one series to
            // be written out, not for the whole measurement.
            let mut i = 0;
            loop {
                let guard = read(&m);
                let Some(series) = guard.series().get(i) else {
                    break;
                };
                w.item(&ItemRef::Series {
                    db: &db.name,
                    measurement: &name,
                    series,
                })
                .map_err(EncodeError::Encode)?;
                i += 1;
            }
            // The schema goes last: field ids only grow, so every id the series above use
            // is defined in it.
            let guard = read(&m);
            w.item(&ItemRef::Measurement {
                db: &db.name,
                name: &name,
                fields: guard.fields(),
            })
            .map_err(EncodeError::Encode)?;
        }
    }
    w.item(&ItemRef::End).map_err(EncodeError::Encode)?;
    Ok(w.out)
}

/// Reads a snapshot into a fresh catalog; returns the sequence number it covers.
pub fn read_snapshot(
    path: &Path,
    default_retention_ns: i64,
) -> Result<(u64, Catalog), SnapshotError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    decode(&bytes, path, default_retention_ns)
}

/// Decodes snapshot bytes (a file's, or a peer's sent over HTTP); `path` names the source
/// in errors.
pub fn decode(
    bytes: &[u8],
    path: &Path,
    default_retention_ns: i64,
) -> Result<(u64, Catalog), SnapshotError> {
    let invalid = |reason: &str| SnapshotError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(invalid("not a snapshot file"));
    }
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&bytes[MAGIC.len()..MAGIC.len() + 8]);
    let seq = u64::from_le_bytes(seq_bytes);
    let mut rest = &bytes[MAGIC.len() + 8..];

    let catalog = Catalog::new(default_retention_ns);
    // A measurement's series come first, then its schema, which completes it.
    let mut current: Option<Database> = None;
    let mut pending: Option<(String, Vec<Series>)> = None;
    loop {
        if rest.len() < 8 {
            return Err(invalid("ends before its end marker"));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if rest.len() < 8 + len {
            return Err(invalid("ends inside a frame"));
        }
        let frame = &rest[8..8 + len];
        if crc32fast::hash(frame) != crc {
            return Err(invalid("a frame fails its checksum"));
        }
        rest = &rest[8 + len..];
        let item: Item = postcard::from_bytes(frame).map_err(|e| invalid(&e.to_string()))?;
        match item {
            Item::Applied(applied) => catalog.raise_applied(&applied),
            Item::Dropped { name, version } => catalog.note_dropped(&name, version),
            Item::Database { name, policies } => {
                if pending.is_some() {
                    return Err(invalid("series without their measurement"));
                }
                if let Some(db) = current.take() {
                    catalog.insert_database(db);
                }
                current = Some(Database::new(&name, policies));
            }
            Item::Deletes { db, list } => {
                let Some(cur) = current.as_ref().filter(|c| c.name == db) else {
                    return Err(invalid("deletes outside their database"));
                };
                for t in list {
                    cur.deletes.add(t);
                }
            }
            Item::Series {
                db,
                measurement,
                series,
            } => {
                if current.as_ref().is_none_or(|c| c.name != db) {
                    return Err(invalid("series outside its database"));
                }
                match &mut pending {
                    Some((name, list)) if *name == measurement => list.push(series),
                    Some(_) => return Err(invalid("series of two measurements interleaved")),
                    None => pending = Some((measurement, vec![series])),
                }
            }
            Item::Measurement { db, name, fields } => {
                let Some(cur) = current.as_ref().filter(|c| c.name == db) else {
                    return Err(invalid("measurement outside its database"));
                };
                let series = match pending.take() {
                    Some((n, list)) if n == name => list,
                    Some(_) => return Err(invalid("measurement does not match its series")),
                    None => Vec::new(),
                };
                if let Some(max) = series
                    .iter()
                    .flat_map(|s| s.rows.values().flat_map(|r| r.0.iter().map(|c| c.id)))
                    .max()
                {
                    if max as usize >= fields.len() {
                        return Err(invalid("a row uses a field the schema does not define"));
                    }
                }
                cur.insert_measurement(Measurement::from_parts(name, fields, series));
            }
            Item::End => {
                if pending.is_some() {
                    return Err(invalid("series without their measurement"));
                }
                if let Some(db) = current.take() {
                    catalog.insert_database(db);
                }
                return Ok((seq, catalog));
            }
        }
    }
}

/// Removes snapshots older than `keep_seq` and stray temporary files.
pub fn remove_older(dir: &Path, keep_seq: u64) -> Result<(), SnapshotError> {
    for (seq, path) in list_snapshots(dir)? {
        if seq < keep_seq {
            fs::remove_file(&path).map_err(|source| SnapshotError::Io { path, source })?;
        }
    }
    Ok(())
}

/// Removes `.tmp` files a crash left behind mid-snapshot.
pub fn remove_temporaries(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".snap.tmp"))
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
