//! The cache's own behaviour, on an injected clock: freshness at the exact boundaries, the
//! size bound under a flood of distinct keys, invalidation by database and of the buckets a
//! write touches, purge, and what a reload keeps.

use super::*;
use crate::clock::ManualClock;
use crate::config::cache::CacheConfig;
use bytes::Bytes;

fn config(max_size: u64) -> CacheConfig {
    CacheConfig {
        name: "queries".into(),
        max_size,
        ttl: Duration::from_secs(5),
        stale_while_revalidate: Duration::from_secs(10),
        max_entry_size: max_size,
        coalesce_timeout: Duration::from_secs(5),
        invalidate_on_write: true,
    }
}

fn key(s: &str) -> Key {
    Arc::from(s.as_bytes())
}

fn entry(cache: &QueryCache, body: &str, db: Option<&str>) -> Entry {
    Entry {
        headers: Vec::new(),
        body: Bytes::from(body.to_string()),
        stored_at: cache.now(),
        fresh_for: cache.config.ttl,
        stale_for: cache.config.stale_while_revalidate,
        pool: Arc::from("tsdb"),
        db: db.map(str::to_string),
    }
}

fn body_of(l: &Lookup) -> Option<&[u8]> {
    match l {
        Lookup::Fresh(e) | Lookup::Stale(e) => Some(&e.body),
        Lookup::Miss => None,
    }
}

#[tokio::test]
async fn an_entry_is_fresh_for_its_ttl_then_stale_for_its_window_then_gone() {
    let clock = ManualClock::new();
    let cache = QueryCache::new(config(1 << 20), Arc::new(clock.clone()));
    let e = entry(&cache, "a", None);
    assert!(cache.store(key("k"), e, &WriteMark::default()).await);
    let ns = Duration::from_nanos(1);
    clock.advance(Duration::from_secs(5) - ns);
    assert!(matches!(cache.lookup(&key("k")).await, Lookup::Fresh(_)));
    clock.advance(ns);
    assert!(matches!(cache.lookup(&key("k")).await, Lookup::Stale(_)));
    clock.advance(Duration::from_secs(10) - ns);
    assert!(matches!(cache.lookup(&key("k")).await, Lookup::Stale(_)));
    clock.advance(ns);
    assert!(matches!(cache.lookup(&key("k")).await, Lookup::Miss));
    // Expired is dropped, not kept for later.
    cache.settle().await;
    assert_eq!(cache.entries(), 0);
}

#[tokio::test]
async fn a_flood_of_distinct_keys_stays_within_max_size_and_counts_evictions() {
    let max = 64 << 10;
    let cache = QueryCache::new(config(max), Arc::new(ManualClock::new()));
    let body = "x".repeat(1000);
    for i in 0..2000 {
        let e = entry(&cache, &body, None);
        cache
            .store(key(&format!("q{i}")), e, &WriteMark::default())
            .await;
        if i % 100 == 0 {
            cache.settle().await;
            assert!(
                cache.bytes() <= max,
                "{} bytes after {i} keys",
                cache.bytes()
            );
        }
    }
    cache.settle().await;
    assert!(cache.bytes() <= max, "{} bytes", cache.bytes());
    assert!(cache.entries() > 10, "the cache still holds answers");
    let evicted = CacheStats::get(&cache.stats().evictions);
    assert!(evicted > 1000, "{evicted} evictions");
}

#[tokio::test]
async fn a_write_drops_only_its_databases_answers_from_its_pool() {
    let cache = QueryCache::new(config(1 << 20), Arc::new(ManualClock::new()));
    let none = WriteMark::default();
    let mark_a = cache.write_mark("tsdb", Some("a"));
    cache
        .store(key("a1"), entry(&cache, "a", Some("a")), &mark_a)
        .await;
    let mark_b = cache.write_mark("tsdb", Some("b"));
    cache
        .store(key("b1"), entry(&cache, "b", Some("b")), &mark_b)
        .await;
    cache.store(key("n"), entry(&cache, "n", None), &none).await;
    cache.invalidate_db("other-pool", "a");
    assert_eq!(body_of(&cache.lookup(&key("a1")).await), Some(&b"a"[..]));
    cache.invalidate_db("tsdb", "a");
    assert!(matches!(cache.lookup(&key("a1")).await, Lookup::Miss));
    assert_eq!(body_of(&cache.lookup(&key("b1")).await), Some(&b"b"[..]));
    assert_eq!(body_of(&cache.lookup(&key("n")).await), Some(&b"n"[..]));
}

#[tokio::test]
async fn an_answer_fetched_before_a_write_is_not_stored_after_it() {
    let cache = QueryCache::new(config(1 << 20), Arc::new(ManualClock::new()));
    let before = cache.write_mark("tsdb", Some("a"));
    cache.invalidate_db("tsdb", "a");
    assert!(
        !cache
            .store(key("a1"), entry(&cache, "old", Some("a")), &before)
            .await
    );
    assert!(matches!(cache.lookup(&key("a1")).await, Lookup::Miss));
    let after = cache.write_mark("tsdb", Some("a"));
    assert!(
        cache
            .store(key("a1"), entry(&cache, "new", Some("a")), &after)
            .await
    );
}

#[tokio::test]
async fn without_invalidate_on_write_writes_are_not_tracked() {
    let mut c = config(1 << 20);
    c.invalidate_on_write = false;
    let cache = QueryCache::new(c, Arc::new(ManualClock::new()));
    assert_eq!(cache.write_mark("tsdb", Some("a")), WriteMark::default());
}

#[tokio::test]
async fn purge_drops_everything() {
    let cache = QueryCache::new(config(1 << 20), Arc::new(ManualClock::new()));
    for i in 0..10 {
        let e = entry(&cache, "x", None);
        cache
            .store(key(&format!("k{i}")), e, &WriteMark::default())
            .await;
    }
    cache.settle().await;
    assert_eq!(cache.purge(), 10);
    assert!(matches!(cache.lookup(&key("k3")).await, Lookup::Miss));
}

#[tokio::test]
async fn a_reload_keeps_the_entries_of_a_cache_whose_size_stays_and_the_counters_always() {
    let clock = Arc::new(ManualClock::new());
    let registry = CacheRegistry::new(clock);
    let mut policy = Policy::default();
    policy.caches.insert("queries".into(), config(1 << 20));
    let first = registry.build(&policy);
    let c = first.get("queries").unwrap();
    c.store(key("k"), entry(c, "x", None), &WriteMark::default())
        .await;
    c.stats().count(Outcome::Hit);
    // A new ttl: same entries.
    policy.caches.get_mut("queries").unwrap().ttl = Duration::from_secs(1);
    let second = registry.build(&policy);
    let c2 = second.get("queries").unwrap();
    assert!(matches!(c2.lookup(&key("k")).await, Lookup::Fresh(_)));
    assert_eq!(c2.config.ttl, Duration::from_secs(1));
    // A new size: empty, counters kept.
    policy.caches.get_mut("queries").unwrap().max_size = 2 << 20;
    let third = registry.build(&policy);
    let c3 = third.get("queries").unwrap();
    assert!(matches!(c3.lookup(&key("k")).await, Lookup::Miss));
    assert_eq!(CacheStats::get(&c3.stats().hits), 1);
}

/// A shape's store holding settled buckets 0..=9 and young buckets 10..=11 of 10 s each.
fn filled_store(cache: &QueryCache, db: &str) -> Arc<ShapeStore> {
    let q = "SELECT count(v) FROM m WHERE time >= 0 AND time < 120000000000 GROUP BY time(10s)";
    let shape = shape::shape(q, 0).unwrap();
    let store = cache.shape_store(
        &key(&format!("shape-{db}")),
        "tsdb",
        Some(db),
        shape.grid,
        Duration::from_secs(600),
    );
    let rows: Vec<serde_json::Value> = (0..12i64)
        .map(|k| serde_json::json!([k * 10_000_000_000, 1]))
        .collect();
    let series =
        vec![serde_json::json!({"name": "m", "columns": ["time", "count"], "values": rows})];
    store
        .lock()
        .absorb(&shape, &[series], &[(0, 9)], &[(10, 11)], i64::MAX)
        .unwrap();
    store
}

fn usable(store: &ShapeStore) -> Vec<(i64, i64)> {
    store.lock().usable(0).runs().collect()
}

#[test]
fn a_write_drops_the_buckets_its_times_land_in_and_only_in_its_database() {
    let cache = QueryCache::new(config(1 << 20), Arc::new(ManualClock::new()));
    let (d, other) = (filled_store(&cache, "d"), filled_store(&cache, "other"));
    let at = |s: i64| written::Written {
        span: Some((s * 1_000_000_000, s * 1_000_000_000)),
        ..Default::default()
    };
    cache.invalidate_written("tsdb", "d", &at(35), 0);
    assert_eq!(usable(&d), vec![(0, 2), (4, 11)]);
    assert_eq!(
        usable(&other),
        vec![(0, 11)],
        "another database keeps its buckets"
    );
    cache.invalidate_written("tsdb", "d", &at(105), 0);
    assert_eq!(
        usable(&d),
        vec![(0, 2), (4, 9), (11, 11)],
        "young ones too, with invalidate_on_write"
    );
    let unreadable = written::Written {
        unreadable: true,
        ..Default::default()
    };
    cache.invalidate_written("tsdb", "d", &unreadable, 0);
    assert!(usable(&d).is_empty());
    assert_eq!(usable(&other), vec![(0, 11)]);
    assert_eq!(CacheStats::get(&cache.stats().buckets_invalidated), 3);
}

#[test]
fn without_invalidate_on_write_young_buckets_last_their_brief_keep() {
    let mut c = config(1 << 20);
    c.invalidate_on_write = false;
    let cache = QueryCache::new(c, Arc::new(ManualClock::new()));
    let d = filled_store(&cache, "d");
    let at = |s: i64| written::Written {
        span: Some((s * 1_000_000_000, s * 1_000_000_000)),
        ..Default::default()
    };
    cache.invalidate_written("tsdb", "d", &at(105), 0);
    assert_eq!(usable(&d), vec![(0, 11)]);
    cache.invalidate_written("tsdb", "d", &at(5), 0);
    assert_eq!(usable(&d), vec![(1, 11)], "settled ones always go");
}
