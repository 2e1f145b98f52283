//! The query cache: answers to repeated requests, from a Moka cache bounded in bytes, in
//! front of a route's pool.
//!
//! ```text
//! key.rs       the key: pool, caller (authenticated routes), and the parts the route names
//! control.rs   Cache-Control: what the client allows, what the backend's answer allows
//! influxql.rs  only queries that read are cached
//! buckets.rs   dashboard queries by step-aligned bucket: what is cached, what to fetch
//! shape.rs     which queries split into buckets, and their shape without the time range
//! assemble.rs  the buckets kept per shape, and an answer put together from them and fetches
//! bucketed.rs  the bucket path of a request: which take it, their key, the answer rendered
//! written.rs   the times a write touches, read from its body, to drop the buckets they hit
//! entry.rs     a stored answer and its freshness (fresh, stale, expired) at an instant
//! flight.rs    coalescing: one request per key goes to a backend, the others wait
//! request.rs   one request's plan (bypass or key), and its answer taken in as it passes
//! answer.rs    a stored answer written to the client
//! refresh.rs   stale-while-revalidate: the background refresh of a stale entry
//! ```
//!
//! Freshness is decided by the gateway's clock (so tests drive it); Moka only drops
//! entries once they could no longer be served, and evicts by size (TinyLFU) when the
//! weights of the entries reach `max_size`.

pub mod answer;
pub mod assemble;
pub mod bucketed;
pub mod buckets;
pub mod control;
pub mod entry;
pub mod flight;
pub mod influxql;
pub mod key;
pub mod request;
pub mod shape;
pub mod step;
pub mod written;

use crate::clock::Clock;
use crate::config::cache::CacheConfig;
use crate::config::Policy;
use entry::{freshness, Entry, Freshness};
use flight::{Flights, Join};
use key::Key;
use moka::notification::RemovalCause;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// What the cache did for one request, as `X-Cache` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from a fresh entry.
    Hit,
    /// Looked up, not found (or expired): the backend answered.
    Miss,
    /// Answered from an expired entry within its stale window; a refresh is on its way.
    Stale,
    /// Answered from kept buckets and a fetch of the missing ones.
    Partial,
    /// Not looked up: the method, the client's Cache-Control or the query rule it out.
    Bypass,
}

impl Outcome {
    pub fn header(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss => "MISS",
            Outcome::Stale => "STALE",
            Outcome::Partial => "PARTIAL",
            Outcome::Bypass => "BYPASS",
        }
    }
}

/// A cache's counters; they outlive policy reloads (also one that resizes the cache).
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale: AtomicU64,
    pub bypass: AtomicU64,
    /// Requests that waited for an identical one and were answered from its entry.
    pub coalesced: AtomicU64,
    /// Entries dropped to keep the cache within `max_size`.
    pub evictions: AtomicU64,
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
    /// Entries dropped by `invalidate_on_write` and purges (one per request that dropped).
    pub invalidations: AtomicU64,
    /// Requests answered from kept buckets and a fetch of the missing ones.
    pub partial: AtomicU64,
    /// Buckets served from the cache, and buckets asked of a backend, by bucketed requests.
    pub bucket_hits: AtomicU64,
    pub buckets_fetched: AtomicU64,
    /// Kept buckets dropped because a write through the gateway landed in their time.
    pub buckets_invalidated: AtomicU64,
}

impl CacheStats {
    pub fn count(&self, outcome: Outcome) {
        let c = match outcome {
            Outcome::Hit => &self.hits,
            Outcome::Miss => &self.misses,
            Outcome::Stale => &self.stale,
            Outcome::Partial => &self.partial,
            Outcome::Bypass => &self.bypass,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Per (pool, database): how many writes invalidated it, so an answer fetched before a
/// write is not stored after the write dropped the entries.
#[derive(Debug, Default)]
struct WriteEpochs {
    epochs: HashMap<(String, String), u64>,
    /// Bumped when `epochs` is cleared to stay bounded: marks taken before are all stale.
    resets: u64,
}

/// The most databases whose write epochs are remembered before the table starts over.
const MAX_WRITE_EPOCHS: usize = 4096;

/// The writes seen for a database when a fetch began (`None`: not tracked).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteMark(Option<(u64, u64)>);

/// The Moka cache and what goes with it; kept across reloads that keep `max_size`.
#[derive(Debug)]
struct Store {
    entries: moka::future::Cache<Key, Arc<Entry>>,
    /// The kept buckets of dashboard queries, one store per query shape (and caller).
    shapes: moka::sync::Cache<Key, Arc<ShapeStore>>,
    /// The shape stores of each (pool, database), for writes to find theirs.
    shapes_by_db: Mutex<ShapesByDb>,
    flights: Arc<Flights>,
    writes: Mutex<WriteEpochs>,
    stats: Arc<CacheStats>,
    max_size: u64,
}

/// Moka drops an entry once it could no longer be served (fresh or stale).
struct Lifetime;

impl moka::Expiry<Key, Arc<Entry>> for Lifetime {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.lifetime())
    }
}

/// The shape stores of each (pool, database); dropped stores are pruned as lists are read.
type ShapesByDb = HashMap<(Arc<str>, String), Vec<Weak<ShapeStore>>>;

/// Moka drops a shape's buckets when the route's bucket ttl has passed since the first.
struct ShapeLifetime;

impl moka::Expiry<Key, Arc<ShapeStore>> for ShapeLifetime {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<ShapeStore>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The buckets kept for one query shape, asked by one caller of one pool.
#[derive(Debug)]
pub struct ShapeStore {
    pub pool: Arc<str>,
    pub db: Option<String>,
    pub grid: buckets::Grid,
    ttl: Duration,
    pub stored: Mutex<assemble::Stored>,
    /// The headers of the last answer fetched (content type, the node's version), for a
    /// request answered from kept buckets alone.
    pub headers: Mutex<Vec<(http::HeaderName, http::HeaderValue)>>,
}

impl ShapeStore {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, assemble::Stored> {
        self.stored.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How much of `max_size` the kept buckets may take: a quarter (the rest for answers).
const SHAPES_SHARE: u64 = 4;

impl Store {
    fn new(max_size: u64, stats: Arc<CacheStats>) -> Store {
        let shapes = moka::sync::Cache::builder()
            .max_capacity((max_size / SHAPES_SHARE).max(1))
            .weigher(|k: &Key, v: &Arc<ShapeStore>| {
                let rows = v.lock().weight();
                u32::try_from(k.len() + rows + 256).unwrap_or(u32::MAX)
            })
            .expire_after(ShapeLifetime)
            .build();
        let evicted = stats.clone();
        let entries = moka::future::Cache::builder()
            .max_capacity(max_size)
            .weigher(|k: &Key, v: &Arc<Entry>| v.weight(k.len()))
            .expire_after(Lifetime)
            .support_invalidation_closures()
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evicted.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Store {
            entries,
            shapes,
            shapes_by_db: Mutex::new(HashMap::new()),
            flights: Arc::new(Flights::default()),
            writes: Mutex::new(WriteEpochs::default()),
            stats,
            max_size,
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Fresh(Arc<Entry>),
    Stale(Arc<Entry>),
    Miss,
}

/// One cache of the policy: its settings and its entries.
#[derive(Debug)]
pub struct QueryCache {
    pub config: CacheConfig,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
}

impl QueryCache {
    pub fn new(config: CacheConfig, clock: Arc<dyn Clock>) -> QueryCache {
        let store = Arc::new(Store::new(config.max_size, Arc::default()));
        QueryCache {
            config,
            store,
            clock,
        }
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The wall clock in nanoseconds since the epoch: what `now()` in a query is, and what
    /// bucket times are compared with.
    pub fn wall_ns(&self) -> i64 {
        crate::clock::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    pub fn stats(&self) -> &CacheStats {
        &self.store.stats
    }

    /// The entry for `key`, and how fresh it is now; an expired one is dropped.
    pub async fn lookup(&self, key: &Key) -> Lookup {
        let Some(entry) = self.store.entries.get(key).await else {
            return Lookup::Miss;
        };
        match freshness(entry.age(self.now()), entry.fresh_for, entry.stale_for) {
            Freshness::Fresh => Lookup::Fresh(entry),
            Freshness::Stale => Lookup::Stale(entry),
            Freshness::Expired => {
                self.store.entries.invalidate(key).await;
                Lookup::Miss
            }
        }
    }

    /// Leads the fetch of `key`, or waits for the request that does.
    pub fn join(&self, key: &Key) -> Join {
        self.store.flights.join(key)
    }

    /// The write epoch of `db` in `pool` now, taken when a fetch begins (only with
    /// `invalidate_on_write`).
    pub fn write_mark(&self, pool: &str, db: Option<&str>) -> WriteMark {
        let Some(db) = db.filter(|_| self.config.invalidate_on_write) else {
            return WriteMark(None);
        };
        let w = self
            .store
            .writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let epoch = w
            .epochs
            .get(&(pool.to_string(), db.to_string()))
            .copied()
            .unwrap_or(0);
        WriteMark(Some((w.resets, epoch)))
    }

    /// Stores `entry` unless its database was written since `mark`; returns whether it did.
    pub async fn store(&self, key: Key, entry: Entry, mark: &WriteMark) -> bool {
        if *mark != self.write_mark(&entry.pool, entry.db.as_deref()) {
            return false;
        }
        self.store.entries.insert(key, Arc::new(entry)).await;
        true
    }

    /// Drops the entries of database `db` answered by `pool` (a write went through).
    pub fn invalidate_db(&self, pool: &str, db: &str) {
        {
            let mut w = self
                .store
                .writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if w.epochs.len() >= MAX_WRITE_EPOCHS {
                w.epochs.clear();
                w.resets += 1;
            }
            *w.epochs
                .entry((pool.to_string(), db.to_string()))
                .or_insert(0) += 1;
        }
        let (pool, db): (Arc<str>, String) = (Arc::from(pool), db.to_string());
        let dropped = self
            .store
            .entries
            .invalidate_entries_if(move |_, e| e.pool == pool && e.db.as_deref() == Some(&db));
        if let Err(e) = dropped {
            // Only possible without support_invalidation_closures, which the store sets.
            tracing::error!(cache = %self.config.name, error = %e, "invalidating a database's entries failed");
        }
        self.stats().invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// The bucket store of shape `key`, made (empty) if there is none.
    pub fn shape_store(
        &self,
        key: &Key,
        pool: &str,
        db: Option<&str>,
        grid: buckets::Grid,
        ttl: Duration,
    ) -> Arc<ShapeStore> {
        let made = self.store.shapes.entry(key.clone()).or_insert_with(|| {
            Arc::new(ShapeStore {
                pool: Arc::from(pool),
                db: db.map(str::to_string),
                grid,
                ttl,
                stored: Mutex::new(assemble::Stored::default()),
                headers: Mutex::new(Vec::new()),
            })
        });
        let store = made.value().clone();
        if made.is_fresh() {
            if let Some(db) = db {
                let mut by_db = self
                    .store
                    .shapes_by_db
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // Databases whose stores are all gone (expired, evicted) leave the index
                // now and then, so hostile database names cannot grow it without bound.
                if by_db.len() >= MAX_WRITE_EPOCHS {
                    by_db.retain(|_, list| {
                        list.retain(|w| w.strong_count() > 0);
                        !list.is_empty()
                    });
                }
                let list = by_db.entry((Arc::from(pool), db.to_string())).or_default();
                list.retain(|w| w.strong_count() > 0);
                list.push(Arc::downgrade(&store));
            }
        }
        store
    }

    /// Weighs shape `key`'s store again after its buckets changed (Moka weighs on insert).
    pub fn reweigh(&self, key: &Key, store: &Arc<ShapeStore>) {
        if self.store.shapes.contains_key(key) {
            self.store.shapes.insert(key.clone(), store.clone());
        }
    }

    /// A write to `db` through `pool` touched `written`: the kept buckets in its time go
    /// (every bucket of the database when its times could not be read). A write that
    /// touches young buckets only drops them with `invalidate_on_write`, as for answers:
    /// otherwise they are served until their brief keep (the route's ttl) ends.
    pub fn invalidate_written(
        &self,
        pool: &str,
        db: &str,
        written: &written::Written,
        now_ns: i64,
    ) {
        let stores: Vec<Arc<ShapeStore>> = {
            let mut by_db = self
                .store
                .shapes_by_db
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(list) = by_db.get_mut(&(Arc::from(pool), db.to_string())) else {
                return;
            };
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        // Points without a time are stamped by the node's clock: around now.
        const CLOCK_SKEW_NS: i64 = 60_000_000_000;
        let untimed = written
            .untimed
            .then(|| (now_ns - CLOCK_SKEW_NS, now_ns + CLOCK_SKEW_NS));
        let mut dropped = 0u64;
        for store in stores {
            let mut stored = store.lock();
            if written.unreadable {
                stored.invalidate_all();
                dropped += 1;
                continue;
            }
            for (lo, hi) in written.span.into_iter().chain(untimed) {
                let (first, last) = (store.grid.bucket_of(lo), store.grid.bucket_of(hi));
                if stored.touches(first, last, self.config.invalidate_on_write) {
                    stored.invalidate(first, last);
                    dropped += 1;
                }
            }
        }
        self.stats()
            .buckets_invalidated
            .fetch_add(dropped, Ordering::Relaxed);
    }

    /// Drops every entry; returns how many there were (as Moka last counted).
    pub fn purge(&self) -> u64 {
        let n = self.entries();
        self.store.entries.invalidate_all();
        self.store.shapes.invalidate_all();
        self.stats().invalidations.fetch_add(1, Ordering::Relaxed);
        n
    }

    pub fn entries(&self) -> u64 {
        self.store.entries.entry_count()
    }

    /// The weight of the entries, in bytes (as Moka last counted).
    pub fn bytes(&self) -> u64 {
        self.store.entries.weighted_size()
    }

    /// Requests on their way to a backend for a key of this cache.
    pub fn in_flight(&self) -> usize {
        self.store.flights.len()
    }

    /// Lets Moka apply what is pending (evictions, expiries, invalidations), so the
    /// counts above are exact.
    pub async fn settle(&self) {
        self.store.entries.run_pending_tasks().await;
    }
}

/// The caches of one policy, by name.
#[derive(Debug, Default)]
pub struct Caches {
    by_name: BTreeMap<String, Arc<QueryCache>>,
}

impl Caches {
    pub fn get(&self, name: &str) -> Option<&Arc<QueryCache>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<QueryCache>> {
        self.by_name.values()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Drops the cached answers about database `db` from `pool` in every cache that
    /// invalidates on writes.
    pub fn invalidate_db(&self, pool: &str, db: &str) {
        for c in self.iter().filter(|c| c.config.invalidate_on_write) {
            c.invalidate_db(pool, db);
        }
    }

    /// Drops the kept buckets a write to `db` through `pool` landed in, in every cache.
    pub fn invalidate_written(
        &self,
        pool: &str,
        db: &str,
        written: &written::Written,
        now_ns: i64,
    ) {
        for c in self.iter() {
            c.invalidate_written(pool, db, written, now_ns);
        }
    }
}

/// Entries that outlive policy versions: a reload that keeps a cache's `max_size` keeps its
/// entries; one that changes it starts the cache empty (its counters carry on).
#[derive(Debug)]
pub struct CacheRegistry {
    kept: Mutex<HashMap<String, Arc<Store>>>,
    clock: Arc<dyn Clock>,
}

impl CacheRegistry {
    pub fn new(clock: Arc<dyn Clock>) -> CacheRegistry {
        CacheRegistry {
            kept: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// The caches of `policy`.
    pub fn build(&self, policy: &Policy) -> Caches {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::new();
        let mut by_name = BTreeMap::new();
        for (name, config) in &policy.caches {
            let store = match kept.get(name) {
                Some(s) if s.max_size == config.max_size => s.clone(),
                Some(s) => Arc::new(Store::new(config.max_size, s.stats.clone())),
                None => Arc::new(Store::new(config.max_size, Arc::default())),
            };
            next.insert(name.clone(), store.clone());
            by_name.insert(
                name.clone(),
                Arc::new(QueryCache {
                    config: config.clone(),
                    store,
                    clock: self.clock.clone(),
                }),
            );
        }
        *kept = next;
        Caches { by_name }
    }
}

impl Default for CacheRegistry {
    fn default() -> Self {
        CacheRegistry::new(Arc::new(crate::clock::SystemClock))
    }
}

#[cfg(test)]
mod tests;
