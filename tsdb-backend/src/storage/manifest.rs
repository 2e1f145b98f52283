//! The manifest: what the blocks on disk mean and where the WAL takes over.
//!
//! Written after every flush, compaction and retention drop, as `manifest-<generation>`:
//! the databases with their retention policies and field schemas, the block ids of each,
//! the tombstones of dropped measurements, per origin how far its entries are applied,
//! and `flushed_seq`, the last WAL record whose values are all in blocks. Restart reads the
//! newest manifest that passes its checksum, opens the indexes of its blocks and replays
//! the WAL after `flushed_seq`. Blocks on disk that no manifest names are leftovers of a
//! flush or compaction that did not finish; they are deleted (their values are still in
//! the WAL or in the blocks they were to replace).
//!
//! Layout: `TSDBMAN1`, `format: u32 LE`, `len: u64 LE`, `crc32: u32 LE`, then
//! `postcard(Manifest)`. Written to a `.tmp` file, fsynced, renamed, directory fsynced.

use super::blocks::Tombstone;
use super::catalog::{read, Catalog, Policies};
use super::deletes::RangeTombstone;
use super::series::FieldDef;
use super::version::Version;
use super::wal::sync_dir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"TSDBMAN1";
/// 2 added the dropped databases; format 1 is still read.
pub const FORMAT: u32 = 2;
/// Manifests kept: the newest and the one before, in case the newest is damaged.
const KEEP: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("manifest {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: u64,
    pub flushed_seq: u64,
    pub next_block_id: u64,
    /// The greatest version clock of any value in blocks.
    pub max_hlc: u64,
    pub applied: BTreeMap<String, u64>,
    pub databases: Vec<DatabaseManifest>,
    /// Databases dropped, with the version of the newest drop of each.
    pub dropped: Vec<(String, Version)>,
}

/// A manifest of format 1: the same without `dropped`.
#[derive(Debug, Deserialize)]
struct ManifestV1 {
    generation: u64,
    flushed_seq: u64,
    next_block_id: u64,
    max_hlc: u64,
    applied: BTreeMap<String, u64>,
    databases: Vec<DatabaseManifest>,
}

impl From<ManifestV1> for Manifest {
    fn from(m: ManifestV1) -> Manifest {
        Manifest {
            generation: m.generation,
            flushed_seq: m.flushed_seq,
            next_block_id: m.next_block_id,
            max_hlc: m.max_hlc,
            applied: m.applied,
            databases: m.databases,
            dropped: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseManifest {
    pub name: String,
    pub policies: Policies,
    pub measurements: Vec<(String, Vec<FieldDef>)>,
    pub blocks: Vec<u64>,
    pub tombstones: Vec<Tombstone>,
    /// `DELETE` and `DROP MEASUREMENT` tombstones, versioned.
    pub deletes: Vec<RangeTombstone>,
}

impl Manifest {
    /// The catalog's durable description, with the values up to `flushed_seq` in blocks
    /// and `applied` as it was at that record.
    pub fn capture(
        catalog: &Catalog,
        flushed_seq: u64,
        next_block_id: u64,
        max_hlc: u64,
        applied: BTreeMap<String, u64>,
    ) -> Manifest {
        let databases = catalog
            .databases()
            .iter()
            .map(|db| DatabaseManifest {
                name: db.name.clone(),
                policies: read(&db.policies).clone(),
                measurements: db
                    .measurements()
                    .into_iter()
                    .map(|(name, m)| (name, read(&m).fields().to_vec()))
                    .collect(),
                blocks: db.blocks.all().iter().map(|b| b.id).collect(),
                tombstones: db.blocks.tombstones(),
                deletes: db.deletes.all(),
            })
            .collect();
        Manifest {
            generation: 0,
            flushed_seq,
            next_block_id,
            max_hlc,
            applied,
            databases,
            dropped: catalog.dropped().into_iter().collect(),
        }
    }

    /// Every block id the manifest names.
    pub fn block_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.databases.iter().flat_map(|d| d.blocks.iter().copied())
    }
}

fn manifest_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("manifest-{generation:016x}"))
}

/// Manifests in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ManifestError> {
    let io_err = |source| ManifestError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(hex) = name.to_str().and_then(|n| n.strip_prefix("manifest-")) else {
            continue;
        };
        if let Ok(generation) = u64::from_str_radix(hex, 16) {
            out.push((generation, entry.path()));
        }
    }
    out.sort_by(|a, b| b.cmp(a));
    Ok(out)
}

/// Encodes a manifest with its header and checksum.
pub fn encode(m: &Manifest) -> Vec<u8> {
    // postcard cannot fail on these types (no maps with non-string keys, no unsized seqs).
    let body = postcard::to_stdvec(m).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes and checks a manifest file's bytes.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest, ManifestError> {
    let invalid = |reason: String| ManifestError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(invalid("not a manifest (bad magic or too short)".into()));
    }
    let word = |at: usize, n: usize| -> u64 {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&bytes[at..at + n]);
        u64::from_le_bytes(b)
    };
    let format = word(8, 4) as u32;
    if format != FORMAT && format != 1 {
        return Err(invalid(format!(
            "format {format}, this build reads formats 1 to {FORMAT}"
        )));
    }
    let len = word(12, 8);
    let crc = word(20, 4) as u32;
    let body = &bytes[24..];
    if body.len() as u64 != len {
        return Err(invalid(format!(
            "{} bytes after the header, the header says {len}",
            body.len()
        )));
    }
    if crc32fast::hash(body) != crc {
        return Err(invalid("checksum mismatch".into()));
    }
    let decoded = if format == 1 {
        postcard::from_bytes::<ManifestV1>(body).map(Manifest::from)
    } else {
        postcard::from_bytes(body)
    };
    decoded.map_err(|e| invalid(format!("cannot decode: {e}")))
}

/// The newest manifest that passes its checks, and the reasons the newer ones did not.
pub fn load_newest(dir: &Path) -> Result<(Option<Manifest>, Vec<String>), ManifestError> {
    let mut skipped = Vec::new();
    for (_, path) in list(dir)? {
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                skipped.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        match decode(&bytes, &path) {
            Ok(m) => return Ok((Some(m), skipped)),
            Err(e) => {
                tracing::error!(error = %e, "ignoring a manifest that fails its checks");
                skipped.push(e.to_string());
            }
        }
    }
    Ok((None, skipped))
}

/// Writes `m` as the next generation (after the newest on disk), durably, and deletes all
/// but the newest `KEEP`. Returns the generation written.
pub fn write(dir: &Path, m: &mut Manifest) -> Result<u64, ManifestError> {
    let newest = list(dir)?.first().map_or(0, |(g, _)| *g);
    m.generation = newest + 1;
    let path = manifest_path(dir, m.generation);
    let tmp = path.with_extension("tmp");
    let io = |source| ManifestError::Io {
        path: path.clone(),
        source,
    };
    let bytes = encode(m);
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io)?;
    sync_dir(dir).map_err(|e| ManifestError::Io {
        path: dir.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    for (_, old) in list(dir)?.into_iter().skip(KEEP) {
        if let Err(e) = fs::remove_file(&old) {
            tracing::warn!(file = %old.display(), error = %e, "cannot remove an old manifest");
        }
    }
    Ok(m.generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            generation: 3,
            flushed_seq: 42,
            next_block_id: 7,
            max_hlc: 99,
            applied: [("a/1".to_string(), 9)].into_iter().collect(),
            databases: vec![DatabaseManifest {
                name: "db".into(),
                policies: Policies::new(0),
                measurements: vec![(
                    "cpu".into(),
                    vec![FieldDef {
                        name: "v".into(),
                        ty: crate::model::FieldType::Float,
                    }],
                )],
                blocks: vec![1, 5],
                tombstones: vec![Tombstone {
                    measurement: "mem".into(),
                    before_block: 4,
                }],
                deletes: vec![RangeTombstone {
                    measurement: None,
                    min_time: 0,
                    max_time: 10,
                    version: crate::storage::version::Version { hlc: 3, node: 1 },
                }],
            }],
            dropped: vec![(
                "old".into(),
                crate::storage::version::Version { hlc: 5, node: 2 },
            )],
        }
    }

    #[test]
    fn a_format_1_manifest_is_still_read() {
        let m = Manifest {
            dropped: Vec::new(),
            ..sample()
        };
        // Format 1 is format 2 without the trailing list (an empty one is one zero byte).
        let body = postcard::to_stdvec(&m).unwrap();
        let body = &body[..body.len() - 1];
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        bytes.extend_from_slice(body);
        assert_eq!(decode(&bytes, Path::new("manifest-v1")).unwrap(), m);
    }

    #[test]
    fn a_manifest_round_trips_and_any_flipped_byte_is_refused() {
        let m = sample();
        let bytes = encode(&m);
        let p = Path::new("manifest-test");
        assert_eq!(decode(&bytes, p).unwrap(), m);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, p).is_err(), "byte {i} flipped was accepted");
        }
        assert!(decode(&bytes[..bytes.len() - 1], p).is_err());
        assert!(decode(&[], p).is_err());
    }

    #[test]
    fn the_newest_good_manifest_is_loaded_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = sample();
        for seq in [10, 20, 30] {
            m.flushed_seq = seq;
            write(dir.path(), &mut m).unwrap();
        }
        assert_eq!(list(dir.path()).unwrap().len(), KEEP);
        let (loaded, skipped) = load_newest(dir.path()).unwrap();
        assert_eq!(loaded.unwrap().flushed_seq, 30);
        assert!(skipped.is_empty());
        // Damage the newest: the one before is used, and the damage is named.
        let (_, newest) = list(dir.path()).unwrap()[0].clone();
        let mut bytes = fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&newest, bytes).unwrap();
        let (loaded, skipped) = load_newest(dir.path()).unwrap();
        assert_eq!(loaded.unwrap().flushed_seq, 20);
        assert_eq!(skipped.len(), 1);
    }
}
