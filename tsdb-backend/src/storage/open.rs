//! Bringing a data directory back: the manifest and the blocks' indexes (not their data),
//! or, for a directory an older release wrote, its newest snapshot.
//!
//! What the WAL holds after that point is replayed by `Engine::open`. Restart time thus
//! depends on the head's size, not on the data stored.

use super::block::BlockFile;
use super::blocks::{block_file_name, blocks_dir, Block};
use super::catalog::{write, Catalog, Database};
use super::manifest::{self, Manifest};
use super::read;
use super::series::Measurement;
use super::snapshot;
use super::StorageError;
use std::path::Path;
use std::sync::Arc;

/// The state found on disk, before the WAL is replayed.
pub(super) struct Opened {
    pub catalog: Catalog,
    /// The WAL record the state covers: replay starts after it.
    pub start_seq: u64,
    /// The state came from an older release's snapshot: flush it into blocks now.
    pub upgrade: bool,
}

pub(super) fn open_state(
    dir: &Path,
    default_retention_ns: i64,
    default_shard_duration_ns: i64,
    cache_bytes: u64,
) -> Result<Opened, StorageError> {
    let new_catalog = || {
        Catalog::with_cache(default_retention_ns, cache_bytes)
            .with_default_shard_duration(default_shard_duration_ns)
    };
    let (found, skipped) =
        manifest::load_newest(dir).map_err(|e| StorageError::CheckpointFailed(e.to_string()))?;
    if let Some(m) = found {
        let catalog = new_catalog();
        restore(&catalog, &m, dir);
        // Blocks no manifest names: a flush or compaction that did not finish.
        super::flush::sweep(dir, &catalog);
        for reason in skipped {
            catalog.columns.note_damaged("manifest", &reason);
        }
        return Ok(Opened {
            catalog,
            start_seq: m.flushed_seq,
            upgrade: false,
        });
    }
    if !skipped.is_empty() {
        // Every manifest is unreadable: take the blocks on disk as they are and replay
        // what the WAL still holds. Nothing is invented; what only trimmed WAL held and no
        // block has is gone, and /health says so.
        let catalog = new_catalog();
        adopt_block_files(&catalog, dir);
        for reason in skipped {
            catalog.columns.note_damaged("manifest", &reason);
        }
        return Ok(Opened {
            catalog,
            start_seq: 0,
            upgrade: false,
        });
    }
    let snapshots = snapshot::list_snapshots(dir)?;
    for (seq, path) in &snapshots {
        match snapshot::read_snapshot(path, default_retention_ns) {
            Ok((s, catalog)) => {
                tracing::info!(seq = s, path = %path.display(), "snapshot of an older release loaded: converting it into blocks");
                return Ok(Opened {
                    catalog,
                    start_seq: s,
                    upgrade: true,
                });
            }
            Err(e) => tracing::error!(error = %e, seq, "ignoring unreadable snapshot"),
        }
    }
    Ok(Opened {
        catalog: new_catalog(),
        start_seq: 0,
        upgrade: !snapshots.is_empty(),
    })
}

/// Rebuilds the catalog a manifest describes: databases, policies, schemas, tombstones,
/// and the series index from the blocks' indexes.
fn restore(catalog: &Catalog, m: &Manifest, dir: &Path) {
    for dm in &m.databases {
        let db = Database::new(&dm.name, dm.policies.clone());
        for (name, fields) in &dm.measurements {
            let mut meas = Measurement::new(name);
            for f in fields {
                meas.define_field(&f.name, f.ty);
            }
            db.insert_measurement(meas);
        }
        for t in &dm.tombstones {
            db.blocks.add_tombstone(t.clone());
        }
        for t in &dm.deletes {
            db.deletes.add(t.clone());
        }
        for &id in &dm.blocks {
            let path = blocks_dir(dir).join(block_file_name(id));
            match BlockFile::open(&path) {
                Ok(file) => adopt(&db, Block { id, file }),
                Err(e) => {
                    catalog.columns.set_aside(&path, &e.to_string());
                }
            }
        }
        catalog.insert_database(db);
    }
    for (name, version) in &m.dropped {
        catalog.note_dropped(name, *version);
    }
    catalog.raise_applied(&m.applied);
    catalog.raise_next_block_id(m.next_block_id);
    let mut flushed = catalog.lock_flushed();
    flushed.seq = m.flushed_seq;
    flushed.applied = m.applied.clone();
    flushed.max_hlc = m.max_hlc;
}

/// Adds a block to its database and its series to the series index.
pub(super) fn adopt(db: &Database, block: Block) {
    for mi in &block.file.index().measurements {
        if block.id < db.blocks.hidden_below(&mi.name) {
            continue;
        }
        let meas = db.measurement_or_create(&mi.name);
        let mut guard = write(&meas);
        for f in &mi.fields {
            guard.define_field(&f.name, f.ty);
        }
        for s in &mi.series {
            guard.adopt_series(&s.tags);
        }
    }
    db.blocks.add(Arc::new(block));
}

/// Without a manifest: every block file that opens, in its database (created with the
/// default policy if unknown).
fn adopt_block_files(catalog: &Catalog, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(blocks_dir(dir)) else {
        return;
    };
    let mut files: Vec<(u64, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let id = u64::from_str_radix(name.to_str()?.strip_suffix(".blk")?, 16).ok()?;
            Some((id, e.path()))
        })
        .collect();
    files.sort();
    for (id, path) in files {
        match BlockFile::open(&path) {
            Ok(file) => {
                let name = file.index().db.clone();
                let db = match catalog.database(&name) {
                    Some(db) => db,
                    None => {
                        let policies = catalog.default_policies();
                        catalog.insert_database(Database::new(&name, policies));
                        match catalog.database(&name) {
                            Some(db) => db,
                            None => continue,
                        }
                    }
                };
                catalog.raise_next_block_id(id + 1);
                adopt(&db, Block { id, file });
            }
            Err(e) => {
                catalog.columns.set_aside(&path, &e.to_string());
            }
        }
    }
}

/// Reads every block through, checking every section's checksum, and sets aside the ones
/// that fail. Runs in the background after start.
pub(super) fn scrub(catalog: &Catalog) {
    let mut checked = 0;
    for db in catalog.databases() {
        for b in db.blocks.all() {
            if let Err(e) = b.file.verify() {
                read::set_aside(catalog, &db, &b, &e.to_string());
            }
            checked += 1;
        }
    }
    tracing::info!(
        blocks = checked,
        damaged = catalog.columns.damaged().len(),
        "blocks checked"
    );
}
