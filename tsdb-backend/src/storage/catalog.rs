//! The node's state: databases, their retention policies and their measurements.
//!
//! Locks are taken from the outside in (catalog, then database, then measurement) and never
//! held across an await. Only the WAL writer thread mutates data; request handlers read,
//! and reserve new field types in a measurement's schema before their batch is logged.

use super::blocks::{BlockList, ColumnCache, Tombstone};
use super::deletes::{Deletes, RangeTombstone};
use super::entry::Entry;
use super::series::Measurement;
use super::version::Version;
use crate::model::Point;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The retention policy every database gets, as in InfluxDB.
pub const DEFAULT_POLICY: &str = "autogen";

/// A retention policy; `duration_ns == 0` keeps data forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    pub name: String,
    pub duration_ns: i64,
    /// 0: InfluxDB's default for the duration (see `shard_group_duration`).
    pub shard_duration_ns: i64,
}

impl RetentionPolicy {
    /// The shard group duration shown by `SHOW RETENTION POLICIES`: the one given, else
    /// InfluxDB's default (1h below 2 days, 1 day up to 6 months, 7 days beyond or forever).
    pub fn shard_group_duration(&self) -> i64 {
        const HOUR: i64 = 3_600_000_000_000;
        const DAY: i64 = 24 * HOUR;
        if self.shard_duration_ns > 0 {
            return self.shard_duration_ns;
        }
        match self.duration_ns {
            0 => 7 * DAY,
            d if d < 2 * DAY => HOUR,
            d if d <= 180 * DAY => DAY,
            _ => 7 * DAY,
        }
    }
}

/// A database's policies and which one is the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    pub list: Vec<RetentionPolicy>,
    pub default: String,
}

impl Policies {
    pub fn new(default_duration_ns: i64) -> Self {
        Policies {
            list: vec![RetentionPolicy {
                name: DEFAULT_POLICY.to_string(),
                duration_ns: default_duration_ns,
                shard_duration_ns: 0,
            }],
            default: DEFAULT_POLICY.to_string(),
        }
    }

    /// The duration of the default policy (0: forever). All data of a database lives under
    /// its default policy's duration; see docs/tsdb.md.
    pub fn default_duration_ns(&self) -> i64 {
        self.list
            .iter()
            .find(|p| p.name == self.default)
            .map_or(0, |p| p.duration_ns)
    }

    /// The oldest timestamp that is still kept at `now_ns`, if the policy expires data.
    pub fn cutoff(&self, now_ns: i64) -> Option<i64> {
        match self.default_duration_ns() {
            0 => None,
            d => Some(now_ns.saturating_sub(d)),
        }
    }
}

/// Reads through a lock even if a panicking thread poisoned it: our invariants are kept per
/// operation, and a wedged node is worse than a node that serves what it has.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// One database.
#[derive(Debug)]
pub struct Database {
    pub name: String,
    pub policies: RwLock<Policies>,
    /// The database's values on disk.
    pub blocks: BlockList,
    /// Its deletes (`DELETE`, `DROP MEASUREMENT`).
    pub deletes: Deletes,
    measurements: RwLock<BTreeMap<String, Arc<RwLock<Measurement>>>>,
}

impl Database {
    pub fn new(name: &str, policies: Policies) -> Self {
        Database {
            name: name.to_string(),
            policies: RwLock::new(policies),
            blocks: BlockList::default(),
            deletes: Deletes::default(),
            measurements: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn measurement(&self, name: &str) -> Option<Arc<RwLock<Measurement>>> {
        read(&self.measurements).get(name).cloned()
    }

    /// The measurement, created empty if it does not exist yet.
    pub fn measurement_or_create(&self, name: &str) -> Arc<RwLock<Measurement>> {
        if let Some(m) = self.measurement(name) {
            return m;
        }
        write(&self.measurements)
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(RwLock::new(Measurement::new(name))))
            .clone()
    }

    /// All measurements in name order (including ones that hold no point yet).
    pub fn measurements(&self) -> Vec<(String, Arc<RwLock<Measurement>>)> {
        read(&self.measurements)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn insert_measurement(&self, m: Measurement) {
        write(&self.measurements).insert(m.name.clone(), Arc::new(RwLock::new(m)));
    }

    pub fn drop_measurement(&self, name: &str) {
        write(&self.measurements).remove(name);
    }

    /// Stores validated points (called by the WAL writer and by replay); returns the number
    /// of values.
    pub fn apply_points(&self, mut points: Vec<Point>, version: Version) -> usize {
        if !self.deletes.is_empty() {
            // A write that crossed a delete (a peer's, older than it) stays deleted.
            for p in &mut points {
                let filter = self.deletes.filter(&p.measurement);
                if filter.hides(p.timestamp, version) {
                    p.fields.clear();
                }
            }
            points.retain(|p| !p.fields.is_empty());
        }
        let values = points.iter().map(|p| p.fields.len()).sum();
        let mut points = points.into_iter().peekable();
        // Points of one batch usually share a measurement: lock it once per run.
        while let Some(first) = points.next() {
            let m = self.measurement_or_create(&first.measurement);
            let mut guard = write(&m);
            let name = first.measurement.clone();
            guard.apply(first, version);
            while let Some(p) = points.next_if(|p| p.measurement == name) {
                guard.apply(p, version);
            }
        }
        values
    }
}

/// Every database of the node.
#[derive(Debug)]
pub struct Catalog {
    databases: RwLock<BTreeMap<String, Arc<Database>>>,
    /// Per origin node, the highest sequence number of its entries applied here.
    applied: RwLock<BTreeMap<String, u64>>,
    /// Databases dropped, with the version of the newest drop of each name. A database
    /// another node still holds without having seen that drop is a stale copy: a resync
    /// does not bring it back (`transfer.rs`).
    dropped: RwLock<BTreeMap<String, Version>>,
    /// Duration of the `autogen` policy of newly created databases (0: forever).
    default_retention_ns: i64,
    /// Its shard group (partition) duration (0: InfluxDB's default for the duration).
    default_shard_duration_ns: i64,
    /// Decoded block columns, and the blocks set aside.
    pub columns: ColumnCache,
    /// The next free block id (ids are never reused).
    next_block_id: AtomicU64,
    /// What the newest manifest says is in blocks; held while a manifest is written.
    pub flushed: Mutex<Flushed>,
}

/// The WAL position the blocks cover, as the newest manifest records it.
#[derive(Debug, Clone, Default)]
pub struct Flushed {
    pub seq: u64,
    /// Per origin, how far its entries were applied at `seq`.
    pub applied: BTreeMap<String, u64>,
    /// The greatest version clock of any value in blocks: a restarted node's clock starts
    /// past it, so its new writes win over what it wrote before (even if the wall clock
    /// went back).
    pub max_hlc: u64,
}

/// Bytes of decoded block columns kept for queries unless the engine says otherwise.
pub const DEFAULT_COLUMN_CACHE_BYTES: u64 = 64 << 20;

impl Catalog {
    pub fn new(default_retention_ns: i64) -> Self {
        Catalog {
            databases: RwLock::new(BTreeMap::new()),
            applied: RwLock::new(BTreeMap::new()),
            dropped: RwLock::new(BTreeMap::new()),
            default_retention_ns,
            default_shard_duration_ns: 0,
            columns: ColumnCache::new(DEFAULT_COLUMN_CACHE_BYTES),
            next_block_id: AtomicU64::new(1),
            flushed: Mutex::new(Flushed::default()),
        }
    }

    /// Reserves `n` block ids; returns the first.
    pub fn reserve_block_ids(&self, n: u64) -> u64 {
        self.next_block_id.fetch_add(n, Ordering::SeqCst)
    }

    pub fn next_block_id(&self) -> u64 {
        self.next_block_id.load(Ordering::SeqCst)
    }

    /// Raises the next free id past what a manifest or the files on disk have used.
    pub fn raise_next_block_id(&self, id: u64) {
        self.next_block_id.fetch_max(id, Ordering::SeqCst);
    }

    pub fn lock_flushed(&self) -> std::sync::MutexGuard<'_, Flushed> {
        self.flushed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The same, with a column cache of `cache_bytes`.
    pub fn with_cache(default_retention_ns: i64, cache_bytes: u64) -> Self {
        Catalog {
            columns: ColumnCache::new(cache_bytes),
            ..Catalog::new(default_retention_ns)
        }
    }

    pub fn default_retention_ns(&self) -> i64 {
        self.default_retention_ns
    }

    /// The same, giving new databases' default policy a shard group (partition) duration.
    pub fn with_default_shard_duration(self, shard_duration_ns: i64) -> Self {
        Catalog {
            default_shard_duration_ns: shard_duration_ns.max(0),
            ..self
        }
    }

    /// The policies of a database created now.
    pub fn default_policies(&self) -> Policies {
        let mut p = Policies::new(self.default_retention_ns);
        for rp in &mut p.list {
            rp.shard_duration_ns = self.default_shard_duration_ns;
        }
        p
    }

    /// Per origin node, the highest sequence number applied here.
    pub fn applied(&self) -> BTreeMap<String, u64> {
        read(&self.applied).clone()
    }

    pub fn applied_from(&self, origin: &str) -> u64 {
        read(&self.applied).get(origin).copied().unwrap_or(0)
    }

    /// Records that `origin`'s entries up to `seq` are applied here.
    pub fn note_applied(&self, origin: &str, seq: u64) {
        let mut applied = write(&self.applied);
        match applied.get_mut(origin) {
            Some(s) => *s = (*s).max(seq),
            None => {
                applied.insert(origin.to_string(), seq);
            }
        }
    }

    /// Raises the applied sequence numbers to at least `other`'s (after a resync).
    pub fn raise_applied(&self, other: &BTreeMap<String, u64>) {
        let mut applied = write(&self.applied);
        for (origin, seq) in other {
            let e = applied.entry(origin.clone()).or_insert(0);
            *e = (*e).max(*seq);
        }
    }

    /// Records a drop of database `name` at `version` (the newest drop counts).
    pub fn note_dropped(&self, name: &str, version: Version) {
        let mut d = write(&self.dropped);
        let v = d.entry(name.to_string()).or_insert(version);
        *v = (*v).max(version);
    }

    /// The version of the newest drop of database `name` this node knows of.
    pub fn dropped_at(&self, name: &str) -> Option<Version> {
        read(&self.dropped).get(name).copied()
    }

    /// Every database drop this node knows of.
    pub fn dropped(&self) -> BTreeMap<String, Version> {
        read(&self.dropped).clone()
    }

    pub fn database(&self, name: &str) -> Option<Arc<Database>> {
        read(&self.databases).get(name).cloned()
    }

    pub fn databases(&self) -> Vec<Arc<Database>> {
        read(&self.databases).values().cloned().collect()
    }

    pub fn database_names(&self) -> Vec<String> {
        read(&self.databases).keys().cloned().collect()
    }

    pub fn insert_database(&self, db: Database) {
        write(&self.databases).insert(db.name.clone(), Arc::new(db));
    }

    /// Applies one logged change. Idempotent when replayed in log order. Returns the number
    /// of values it stored.
    pub fn apply(&self, entry: Entry) -> usize {
        match entry {
            Entry::Write {
                db,
                points,
                version,
            } => {
                // A write logged just before its database was dropped finds no database.
                if let Some(db) = self.database(&db) {
                    return db.apply_points(points, version);
                }
            }
            Entry::WriteLines {
                db,
                precision,
                default_time_ns,
                version,
                body,
            } => {
                if let Some(db) = self.database(&db) {
                    let parsed = crate::lineproto::parse_lines(&body, precision, default_time_ns);
                    return db.apply_points(parsed.points, version);
                }
            }
            Entry::Replicated { origin, seq, entry } => {
                // Exactly once: an entry re-sent after a crash is already covered. The data
                // goes in before the mark: a snapshot reads the marks first, so a mark it
                // holds always comes with its data.
                if seq > self.applied_from(&origin) {
                    let values = self.apply(*entry);
                    self.note_applied(&origin, seq);
                    return values;
                }
            }
            Entry::CreateDatabase { name } => {
                let policies = self.default_policies();
                write(&self.databases)
                    .entry(name)
                    .or_insert_with_key(|name| Arc::new(Database::new(name, policies)));
            }
            Entry::DropDatabase { name } => {
                write(&self.databases).remove(&name);
            }
            Entry::DropDatabaseAt { name, version } => {
                write(&self.databases).remove(&name);
                self.note_dropped(&name, version);
            }
            Entry::SetRetentionPolicy {
                db,
                name,
                duration_ns,
                shard_duration_ns,
                default,
            } => {
                if let Some(db) = self.database(&db) {
                    let mut p = write(&db.policies);
                    if default {
                        p.default = name.clone();
                    }
                    match p.list.iter_mut().find(|rp| rp.name == name) {
                        Some(rp) => {
                            rp.duration_ns = duration_ns;
                            rp.shard_duration_ns = shard_duration_ns;
                        }
                        None => p.list.push(RetentionPolicy {
                            name,
                            duration_ns,
                            shard_duration_ns,
                        }),
                    }
                }
            }
            Entry::DropRetentionPolicy { db, name } => {
                if let Some(db) = self.database(&db) {
                    write(&db.policies).list.retain(|rp| rp.name != name);
                }
            }
            Entry::Delete {
                db,
                measurement,
                min_time,
                max_time,
                version,
                drop_schema,
            } => {
                if let Some(db) = self.database(&db) {
                    let t = RangeTombstone {
                        measurement,
                        min_time,
                        max_time,
                        version,
                    };
                    for (name, m) in db.measurements() {
                        if t.covers(&name) {
                            write(&m).delete(&t);
                        }
                    }
                    if let (true, Some(name)) = (drop_schema, &t.measurement) {
                        db.drop_measurement(name);
                        // Its series leave the index: blocks made so far do not list it.
                        db.blocks.add_tombstone(Tombstone {
                            measurement: name.clone(),
                            before_block: self.next_block_id(),
                        });
                    }
                    db.deletes.add(t);
                }
            }
            Entry::DropMeasurement { db, name } => {
                if let Some(db) = self.database(&db) {
                    db.drop_measurement(&name);
                    // Blocks made so far (and by a flush running now, whose ids are
                    // reserved) no longer hold it.
                    db.blocks.add_tombstone(Tombstone {
                        measurement: name,
                        before_block: self.next_block_id(),
                    });
                }
            }
        }
        0
    }
}
