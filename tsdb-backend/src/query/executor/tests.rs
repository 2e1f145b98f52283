//! Executor tests on an in-memory catalog: grouping, ordering, selectors, fill.

use super::select::select;
use crate::model::{FieldValue, Point};
use crate::query::result::{ResultSeries, Value};
use crate::storage::catalog::Catalog;
use crate::storage::entry::Entry;
use influxql::ast::Statement;
use influxql::parse_query;

const S: i64 = 1_000_000_000;

/// A point: measurement, tags, value of field `v`, time.
type Line<'a> = (&'a str, &'a [(&'a str, &'a str)], f64, i64);

fn catalog(lines: &[Line<'_>]) -> Catalog {
    let c = Catalog::new(0);
    c.apply(Entry::CreateDatabase { name: "d".into() });
    let points = lines
        .iter()
        .map(|(m, tags, v, t)| Point {
            measurement: (*m).into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: vec![("v".into(), FieldValue::Float(*v))],
            timestamp: *t,
        })
        .collect();
    c.apply(Entry::Write {
        db: "d".into(),
        points,
        version: Default::default(),
    });
    c
}

fn run(c: &Catalog, q: &str) -> Result<Vec<ResultSeries>, String> {
    let stmts = parse_query(q).map_err(|e| e.to_string())?;
    let Some(Statement::Select(s)) = stmts.first() else {
        return Err("not a select".into());
    };
    select(c, s, "d", 1_000 * S)
}

fn rows(series: &ResultSeries) -> Vec<(i64, Value)> {
    series
        .values
        .iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Time(t), v) => (*t, v.clone()),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

#[test]
fn rows_at_the_same_time_come_in_series_key_order() {
    let c = catalog(&[
        ("cpu", &[("host", "b")], 2.0, S),
        ("cpu", &[], 3.0, S),
        ("cpu", &[("host", "a")], 1.0, S),
    ]);
    let out = run(&c, "SELECT v FROM cpu").unwrap();
    assert_eq!(
        rows(&out[0]),
        vec![
            (S, Value::Float(3.0)),
            (S, Value::Float(1.0)),
            (S, Value::Float(2.0))
        ]
    );
}

#[test]
fn groups_are_ordered_by_tag_value_with_the_missing_tag_first() {
    let c = catalog(&[
        ("cpu", &[("host", "b")], 2.0, S),
        ("cpu", &[], 3.0, S),
        ("cpu", &[("host", "a")], 1.0, S),
    ]);
    let out = run(&c, "SELECT v FROM cpu GROUP BY host").unwrap();
    let tags: Vec<_> = out
        .iter()
        .map(|s| s.tags.clone().unwrap()[0].1.clone())
        .collect();
    assert_eq!(tags, vec!["", "a", "b"]);
}

#[test]
fn a_lone_selector_prints_its_points_time_and_two_selectors_print_the_lower_bound() {
    let c = catalog(&[("cpu", &[], 1.0, 5 * S), ("cpu", &[], 9.0, 7 * S)]);
    let out = run(&c, "SELECT max(v) FROM cpu").unwrap();
    assert_eq!(rows(&out[0]), vec![(7 * S, Value::Float(9.0))]);
    let out = run(&c, "SELECT max(v), min(v) FROM cpu WHERE time >= 2s").unwrap();
    assert_eq!(out[0].values[0][0], Value::Time(2 * S));
}

#[test]
fn empty_buckets_count_zero_and_other_functions_null() {
    let c = catalog(&[("cpu", &[], 1.0, 0), ("cpu", &[], 2.0, 25 * S)]);
    let out = run(
        &c,
        "SELECT count(v), mean(v) FROM cpu WHERE time >= 0 AND time < 30s GROUP BY time(10s)",
    )
    .unwrap();
    let v = &out[0].values;
    assert_eq!(v.len(), 3);
    assert_eq!(
        v[1],
        vec![Value::Time(10 * S), Value::Integer(0), Value::Null]
    );
    assert_eq!(
        v[2],
        vec![Value::Time(20 * S), Value::Integer(1), Value::Float(2.0)]
    );
}

#[test]
fn order_by_time_desc_with_limit_returns_each_groups_latest_row() {
    let c = catalog(&[
        ("cpu", &[("host", "a")], 1.0, S),
        ("cpu", &[("host", "a")], 2.0, 2 * S),
        ("cpu", &[("host", "b")], 3.0, S),
    ]);
    let out = run(
        &c,
        "SELECT v FROM cpu GROUP BY host ORDER BY time DESC LIMIT 1",
    )
    .unwrap();
    assert_eq!(rows(&out[0]), vec![(2 * S, Value::Float(2.0))]);
    assert_eq!(rows(&out[1]), vec![(S, Value::Float(3.0))]);
}

#[test]
fn a_plain_field_beside_an_aggregate_is_refused() {
    let c = catalog(&[("cpu", &[], 1.0, S)]);
    assert_eq!(
        run(&c, "SELECT mean(v), v FROM cpu").unwrap_err(),
        "mixing aggregate and non-aggregate queries is not supported"
    );
}

#[test]
fn too_many_buckets_is_an_error_not_an_allocation() {
    let c = catalog(&[("cpu", &[], 1.0, S)]);
    let err = run(
        &c,
        "SELECT count(v) FROM cpu WHERE time >= 0 AND time < 1000s GROUP BY time(1ns)",
    )
    .unwrap_err();
    assert!(err.starts_with("too many GROUP BY time() buckets"), "{err}");
}

/// A storage engine on `dir` that flushes only when told (blocks are what these tests read).
fn engine(dir: &std::path::Path) -> crate::storage::Engine {
    use crate::storage::{EngineConfig, FlushPolicy, FsyncMode};
    let config = EngineConfig {
        data_dir: dir.to_path_buf(),
        fsync: FsyncMode::Never,
        flush: FlushPolicy {
            quiet: std::time::Duration::from_secs(3600),
            ..FlushPolicy::default()
        },
        column_cache_bytes: 16 << 20,
        default_retention_ns: 0,
        default_shard_duration_ns: 0,
        node_id: "n1".into(),
        replication_backlog_bytes: None,
    };
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new().unwrap());
    let time = std::sync::Arc::new(crate::clock::ManualTime::new(0));
    crate::storage::Engine::open(config, time, metrics).unwrap()
}

#[test]
fn last_reads_the_newest_block_only_and_a_range_query_reads_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let week = 7 * 86_400_000_000_000i64;
    let e = engine(dir.path());
    rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
        .unwrap();
    // Three weeks, three partitions, three blocks (one flush each).
    for w in 0..3 {
        let batch = (0..10)
            .map(|i| Point {
                measurement: "cpu".into(),
                tags: vec![("host".to_string(), "a".to_string())].into(),
                fields: vec![("v".into(), FieldValue::Float((w * 10 + i) as f64))],
                timestamp: w * week + i,
            })
            .collect();
        rt.block_on(e.write("d", batch, None)).unwrap();
        e.flush_now().unwrap();
    }
    let blocks: Vec<u64> = e
        .catalog()
        .database("d")
        .unwrap()
        .blocks
        .all()
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(blocks.len(), 3);
    let params = super::QueryParams {
        db: "d".into(),
        rp: String::new(),
        allow_writes: false,
    };
    let answer = |q: &str| {
        let r = rt.block_on(super::run(&e, q, &params)).unwrap();
        format!("{:?}", r[0].series)
    };
    let last = answer("SELECT last(v) FROM cpu");
    assert!(last.contains("29.0") || last.contains("29]"), "{last}");
    assert_eq!(
        e.catalog()
            .columns
            .cached_blocks()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![blocks[2]],
        "last() read only the newest block"
    );
    // TSBS' lastpoint, as a raw query: the newest row per series.
    let newest = answer("SELECT * FROM cpu GROUP BY * ORDER BY time DESC LIMIT 1");
    assert!(newest.contains("29.0"), "{newest}");
    assert_eq!(
        e.catalog().columns.cached_blocks().len(),
        1,
        "ORDER BY time DESC LIMIT 1 read only the newest block"
    );
    // Two rows, when the newest block has only one at the bound: it falls back correctly.
    let two = answer("SELECT v FROM cpu WHERE time <= 2 ORDER BY time DESC LIMIT 2");
    assert!(two.contains("2.0") && two.contains("1.0"), "{two}");
    let count = answer("SELECT count(v) FROM cpu");
    assert!(count.contains("30"), "{count}");
    assert_eq!(e.catalog().columns.cached_blocks().len(), 3);
}
