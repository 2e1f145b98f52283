//! Engine tests: durability across reopen, flushes into blocks, validation.

use super::*;
use crate::clock::ManualTime;
use crate::model::FieldValue;

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        fsync: FsyncMode::Always,
        flush: crate::storage::FlushPolicy {
            max_wal_bytes: 1 << 30,
            quiet: std::time::Duration::from_secs(3600),
            ..crate::storage::FlushPolicy::default()
        },
        column_cache_bytes: 16 << 20,
        default_retention_ns: 0,
        default_shard_duration_ns: 0,
        node_id: "n1".into(),
        replication_backlog_bytes: None,
    }
}

fn open(cfg: EngineConfig, now: i64) -> Engine {
    let metrics = Arc::new(Metrics::new().unwrap());
    Engine::open(cfg, Arc::new(ManualTime::new(now)), metrics).unwrap()
}

fn point(m: &str, host: &str, field: &str, v: FieldValue, ts: i64) -> Point {
    Point {
        measurement: m.into(),
        tags: vec![("host".into(), host.into())].into(),
        fields: vec![(field.into(), v)],
        timestamp: ts,
    }
}

fn count(engine: &Engine, db: &str, m: &str) -> usize {
    let Some(db) = engine.catalog().database(db) else {
        return 0;
    };
    let Some(m) = db.measurement(m) else { return 0 };
    let m = read(&m);
    m.series()
        .iter()
        .map(|s| {
            read::series_view(engine.catalog(), &db, &m, s, (i64::MIN, i64::MAX), None)
                .rows
                .values()
                .map(|r| r.0.len())
                .sum::<usize>()
        })
        .sum()
}

/// Another engine in this process as the receiver of a state transfer.
struct Local<'a> {
    to: &'a Engine,
    rt: &'a tokio::runtime::Runtime,
    origin: String,
}

impl transfer::Sink for Local<'_> {
    type Error = StorageError;

    fn merge_state(&mut self, bytes: &[u8]) -> Result<u64, StorageError> {
        self.rt.block_on(self.to.merge_snapshot(bytes))?;
        Ok(self.to.catalog().applied_from(&self.origin))
    }

    fn blocks(&mut self) -> Result<Vec<transfer::BlockSummary>, StorageError> {
        Ok(self.to.block_list())
    }

    fn send_block(
        &mut self,
        b: &transfer::BlockSummary,
        mut bytes: transfer::BlockReader,
    ) -> Result<(), StorageError> {
        let path = self.to.incoming_block_path()?;
        let mut file = std::fs::File::create(&path).unwrap();
        std::io::copy(&mut bytes, &mut file).unwrap();
        file.sync_all().unwrap();
        let hash = transfer::parse_hash(&b.hash).unwrap();
        self.to
            .receive_block(&b.db, hash, &path)
            .map(|_| ())
            .map_err(|e| StorageError::CheckpointFailed(e.to_string()))
    }
}

/// Sends `from`'s state to `to` as a resync does.
fn resync(from: &Engine, to: &Engine, rt: &tokio::runtime::Runtime) -> transfer::Sent {
    let mut sink = Local {
        to,
        rt,
        origin: from.origin().to_string(),
    };
    transfer::send_state(from, &mut sink).unwrap()
}

fn multi_thread_rt() -> tokio::runtime::Runtime {
    // Merging state moves the CPU-bound part off the async workers (block_in_place).
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn acknowledged_points_are_present_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let e = open(config(dir.path()), 0);
        rt.block_on(async {
            e.log(Entry::CreateDatabase { name: "d".into() })
                .await
                .unwrap();
            for i in 0..10 {
                let r = e
                    .write(
                        "d",
                        vec![point("cpu", "a", "v", FieldValue::Integer(i), i)],
                        None,
                    )
                    .await
                    .unwrap();
                assert_eq!(r.written, 1);
            }
        });
        assert_eq!(count(&e, "d", "cpu"), 10);
    }
    let e = open(config(dir.path()), 0);
    assert_eq!(count(&e, "d", "cpu"), 10);
    assert_eq!(e.last_seq(), 11);
}

#[test]
fn a_flush_trims_the_wal_and_reopen_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let e = open(config(dir.path()), 0);
        rt.block_on(async {
            e.log(Entry::CreateDatabase { name: "d".into() })
                .await
                .unwrap();
            e.write(
                "d",
                vec![point("cpu", "a", "v", FieldValue::Float(1.0), 1)],
                None,
            )
            .await
            .unwrap();
        });
        e.flush_now().unwrap();
        rt.block_on(async {
            e.write(
                "d",
                vec![point("cpu", "b", "v", FieldValue::Float(2.0), 2)],
                None,
            )
            .await
            .unwrap();
        });
    }
    let e = open(config(dir.path()), 0);
    assert_eq!(count(&e, "d", "cpu"), 2);
    assert_eq!(
        e.head_values(),
        1,
        "only the write after the flush is replayed"
    );
    assert_eq!(manifest::list(dir.path()).unwrap().len(), 1);
    let oldest = wal::list_segments(dir.path()).unwrap()[0].0;
    assert_eq!(
        oldest, 3,
        "the segment of records 1 and 2, which the flush covered, is gone"
    );
}

#[test]
fn the_writer_flushes_by_itself_when_the_wal_passes_its_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut cfg = config(dir.path());
    cfg.flush.max_wal_bytes = 4096;
    {
        let e = open(cfg.clone(), 0);
        rt.block_on(async {
            e.log(Entry::CreateDatabase { name: "d".into() })
                .await
                .unwrap();
            for i in 0..200 {
                e.write(
                    "d",
                    vec![point("cpu", "a", "v", FieldValue::Integer(i), i)],
                    None,
                )
                .await
                .unwrap();
            }
        });
        e.shutdown().unwrap();
        assert!(e.metrics().checkpoints.get() >= 1);
    }
    assert!(!manifest::list(dir.path()).unwrap().is_empty());
    let e = open(cfg, 0);
    assert_eq!(count(&e, "d", "cpu"), 200);
    assert!(e.head_values() < 200, "some values came back from blocks");
}

#[test]
fn a_type_conflict_drops_only_the_conflicting_point() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(config(dir.path()), 0);
    let r = rt().block_on(async {
        e.log(Entry::CreateDatabase { name: "d".into() })
            .await
            .unwrap();
        e.write(
            "d",
            vec![
                point("cpu", "a", "v", FieldValue::Float(1.0), 1),
                point("cpu", "a", "v", FieldValue::Integer(2), 2),
                point("cpu", "a", "v", FieldValue::Float(3.0), 3),
            ],
            None,
        )
        .await
        .unwrap()
    });
    assert_eq!(r.written, 2);
    assert!(
        matches!(&r.rejected[..], [Rejection::TypeConflict(c)] if c.got == crate::model::FieldType::Integer)
    );
}

#[test]
fn writing_to_an_unknown_database_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(config(dir.path()), 0);
    let err = rt()
        .block_on(e.write(
            "nodb",
            vec![point("cpu", "a", "v", FieldValue::Float(1.0), 1)],
            None,
        ))
        .unwrap_err();
    assert_eq!(err.to_string(), "database not found: \"nodb\"");
}

#[test]
fn points_older_than_the_retention_are_refused_and_expired_ones_swept() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000_000_000i64;
    let mut cfg = config(dir.path());
    cfg.default_retention_ns = hour;
    let now = 10 * hour;
    let time = ManualTime::new(now);
    let e = Engine::open(
        cfg,
        Arc::new(time.clone()),
        Arc::new(Metrics::new().unwrap()),
    )
    .unwrap();
    let r = rt().block_on(async {
        e.log(Entry::CreateDatabase { name: "d".into() })
            .await
            .unwrap();
        e.write(
            "d",
            vec![
                point("cpu", "a", "v", FieldValue::Integer(1), now - hour - 1),
                point("cpu", "a", "v", FieldValue::Integer(2), now - hour),
                point("cpu", "a", "v", FieldValue::Integer(3), now),
            ],
            None,
        )
        .await
        .unwrap()
    });
    assert_eq!(r.written, 2);
    assert_eq!(r.rejected, vec![Rejection::BeyondRetention]);
    time.advance(1);
    assert_eq!(
        e.enforce_retention().unwrap(),
        1,
        "the point at now - 1h is now one ns too old"
    );
    assert_eq!(count(&e, "d", "cpu"), 1);
}

#[test]
fn a_corrupt_snapshot_falls_back_to_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let e = open(config(dir.path()), 0);
        rt.block_on(async {
            e.log(Entry::CreateDatabase { name: "d".into() })
                .await
                .unwrap();
            e.write(
                "d",
                vec![point("cpu", "a", "v", FieldValue::Float(1.0), 1)],
                None,
            )
            .await
            .unwrap();
        });
    }
    // A snapshot that claims to cover everything but is garbage must not be trusted.
    std::fs::write(snapshot::snapshot_path(dir.path(), 99), b"TSDBSNAP1garbage").unwrap();
    let e = open(config(dir.path()), 0);
    assert_eq!(count(&e, "d", "cpu"), 1);
}

#[test]
fn a_time_field_is_dropped_and_a_time_tag_refuses_the_point() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(config(dir.path()), 0);
    let mut with_time_field = point("cpu", "a", "v", FieldValue::Float(1.0), 1);
    with_time_field
        .fields
        .push(("time".into(), FieldValue::Float(9.0)));
    let mut only_time = point("cpu", "a", "time", FieldValue::Float(1.0), 2);
    only_time.fields.truncate(1);
    let mut time_tag = point("cpu", "a", "v", FieldValue::Float(1.0), 3);
    time_tag.tags = vec![("time".into(), "x".into())].into();
    let r = rt().block_on(async {
        e.log(Entry::CreateDatabase { name: "d".into() })
            .await
            .unwrap();
        e.write("d", vec![with_time_field, only_time, time_tag], None)
            .await
            .unwrap()
    });
    assert_eq!(r.written, 1);
    assert_eq!(
        r.rejected,
        vec![
            Rejection::TimeFieldOnly {
                measurement: "cpu".into()
            },
            Rejection::TimeTag {
                measurement: "cpu".into()
            },
        ]
    );
    let db = e.catalog().database("d").unwrap();
    let m = db.measurement("cpu").unwrap();
    assert!(read(&m).field_id("time").is_none());
}

#[test]
fn flushes_keep_the_wal_a_peer_lacks_and_a_restart_puts_it_back_in_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut cfg = config(dir.path());
    cfg.replication_backlog_bytes = Some(1 << 20);
    {
        let e = open(cfg.clone(), 0);
        rt.block_on(async {
            e.log(Entry::CreateDatabase { name: "d".into() })
                .await
                .unwrap();
            for i in 0..3 {
                e.write(
                    "d",
                    vec![point("cpu", "a", "v", FieldValue::Integer(i), i)],
                    None,
                )
                .await
                .unwrap();
            }
        });
        // No peer has acknowledged anything yet (floor 0): the covered segment stays.
        e.flush_now().unwrap();
        assert!(!wal::list_segments(dir.path()).unwrap().is_empty());
    }
    let e = open(cfg.clone(), 0);
    let backlog = e.backlog().unwrap();
    let seqs: Vec<u64> = backlog
        .after(0, u64::MAX)
        .unwrap()
        .iter()
        .map(|i| i.seq)
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4],
        "the create and the three writes are shippable again"
    );
    // Every peer has everything: the next checkpoint may drop the old segments.
    e.set_replication_floor(4);
    rt.block_on(async {
        e.write(
            "d",
            vec![point("cpu", "a", "v", FieldValue::Integer(9), 9)],
            None,
        )
        .await
        .unwrap();
    });
    e.flush_now().unwrap();
    drop(e);
    let e = open(cfg, 0);
    let backlog = e.backlog().unwrap();
    assert!(
        backlog.after(0, u64::MAX).is_err(),
        "entries 1..=4 are gone: a peer at 0 needs a resync"
    );
    assert_eq!(count(&e, "d", "cpu"), 4);
}

#[test]
fn a_replicated_entry_is_applied_once_however_often_it_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(config(dir.path()), 0);
    let rt = rt();
    let write = |v: i64, hlc: u64| {
        Entry::Write {
            db: "d".into(),
            points: vec![point("cpu", "a", "v", FieldValue::Integer(v), 1)],
            version: version::Version { hlc, node: 7 },
        }
        .encode()
        .unwrap()
    };
    rt.block_on(async {
        e.log(Entry::CreateDatabase { name: "d".into() })
            .await
            .unwrap();
        let applied = e
            .apply_replicated("b/1", 0, vec![(3, write(1, 10)), (8, write(2, 20))])
            .await
            .unwrap();
        assert_eq!(applied, 8);
        // The same batch again (a retry after a lost answer): nothing changes.
        let again = e
            .apply_replicated("b/1", 8, vec![(3, write(1, 10)), (8, write(2, 20))])
            .await
            .unwrap();
        assert_eq!(again, 8);
        // A sender that believes this node has more than it has is told where to resume.
        let behind = e.apply_replicated("b/1", 9, vec![]).await.unwrap_err();
        assert!(
            matches!(behind, ReplicateError::Behind { applied: 8 }),
            "{behind}"
        );
    });
    let db = e.catalog().database("d").unwrap();
    let m = db.measurement("cpu").unwrap();
    let m = read(&m);
    assert_eq!(m.series()[0].rows[&1].get(0), Some(&FieldValue::Integer(2)));
    drop(m);
    drop(e);
    // After a restart the mark comes back from the WAL: a re-send is still skipped.
    let e = open(config(dir.path()), 0);
    assert_eq!(e.catalog().applied_from("b/1"), 8);
}

mod model;

/// Every value of database `db` as (measurement, tags, field, time) → (value, version),
/// through the read path queries use.
type Dump = BTreeMap<(String, Vec<(String, String)>, String, i64), (FieldValue, version::Version)>;

fn dump(catalog: &Catalog, db: &str) -> Dump {
    let mut out = Dump::new();
    let Some(db) = catalog.database(db) else {
        return out;
    };
    for (name, m) in db.measurements() {
        let m = read(&m);
        for s in m.series() {
            let view = read::series_view(catalog, &db, &m, s, (i64::MIN, i64::MAX), None);
            for (t, row) in &view.rows {
                for cell in &row.0 {
                    let field = m.fields()[cell.id as usize].name.clone();
                    out.insert(
                        (name.clone(), s.tags.clone(), field, *t),
                        (cell.value.clone(), cell.version),
                    );
                }
            }
        }
    }
    out
}

use std::collections::BTreeMap;

#[test]
fn a_data_directory_of_the_snapshot_format_is_converted_to_blocks_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    // The previous release's layout: a snapshot of state 5, then WAL records 6 and 7.
    let old = Catalog::new(0);
    old.apply(Entry::CreateDatabase { name: "d".into() });
    old.apply(Entry::CreateDatabase { name: "e".into() });
    let v = |hlc| version::Version { hlc, node: 7 };
    let mut points = Vec::new();
    for i in 0..500i64 {
        let mut p = point(
            "cpu",
            ["a", "b", "c"][(i % 3) as usize],
            "usage",
            FieldValue::Float(i as f64 / 100.0),
            i * 10_000_000_000,
        );
        p.fields.push(("n".into(), FieldValue::Integer(-i)));
        p.fields
            .push(("ok".into(), FieldValue::Boolean(i % 2 == 0)));
        p.fields
            .push(("s".into(), FieldValue::String(format!("v{i}").into())));
        p.fields
            .push(("u".into(), FieldValue::Unsigned(i as u64 * 3)));
        points.push(p);
    }
    old.apply(Entry::Write {
        db: "d".into(),
        points,
        version: v(100),
    });
    old.apply(Entry::Write {
        db: "e".into(),
        points: vec![point("mem", "z", "free", FieldValue::Integer(42), -5)],
        version: v(101),
    });
    snapshot::write_snapshot(dir.path(), 5, &old).unwrap();
    let later = [
        Entry::Write {
            db: "d".into(),
            points: vec![point("cpu", "a", "usage", FieldValue::Float(9.5), 0)],
            version: v(200),
        },
        Entry::Write {
            db: "d".into(),
            points: vec![point("disk", "a", "used", FieldValue::Float(1.0), 77)],
            version: v(201),
        },
    ];
    let mut seg = wal::Segment::open(dir.path(), 6).unwrap();
    let mut buf = Vec::new();
    for (i, entry) in later.iter().enumerate() {
        wal::encode_record(&mut buf, 6 + i as u64, &entry.encode().unwrap());
        old.apply(entry.clone());
    }
    seg.append(&buf).unwrap();
    seg.sync().unwrap();
    drop(seg);
    let (want_d, want_e) = (dump(&old, "d"), dump(&old, "e"));
    assert_eq!(want_d.len(), 500 * 5 + 1, "an overwrite and a new series");

    let e = open(config(dir.path()), 0);
    assert!(
        snapshot::list_snapshots(dir.path()).unwrap().is_empty(),
        "the snapshot is gone once its values are in blocks"
    );
    assert!(
        !e.catalog().database("d").unwrap().blocks.all().is_empty(),
        "the values are in blocks"
    );
    assert_eq!(dump(e.catalog(), "d"), want_d);
    assert_eq!(dump(e.catalog(), "e"), want_e);
    drop(e);
    // And again from the blocks alone.
    let e = open(config(dir.path()), 0);
    assert_eq!(e.head_values(), 0);
    assert_eq!(dump(e.catalog(), "d"), want_d);
    assert_eq!(dump(e.catalog(), "e"), want_e);
}

#[test]
fn a_damaged_block_is_set_aside_and_the_other_blocks_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let e = open(config(dir.path()), 0);
        rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
            .unwrap();
        // Two flushes: two blocks.
        for (host, t) in [("a", 1), ("b", 2)] {
            rt.block_on(e.write(
                "d",
                vec![point("cpu", host, "v", FieldValue::Float(t as f64), t)],
                None,
            ))
            .unwrap();
            e.flush_now().unwrap();
        }
    }
    let blocks = blocks::blocks_dir(dir.path());
    let mut files: Vec<_> = std::fs::read_dir(&blocks)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    // Flip one byte in the middle of the first block's column data.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x40;
    std::fs::write(&files[0], bytes).unwrap();

    let e = open(config(dir.path()), 0);
    // Whether the index or a column was hit, the block is set aside (at open, by the
    // background check, or by the first read), and the other block answers.
    let deadline = crate::clock::monotonic_now() + std::time::Duration::from_secs(10);
    let values = loop {
        let values = count(&e, "d", "cpu");
        if !e.damaged().is_empty() || crate::clock::monotonic_now() > deadline {
            break values;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(values, 1, "the undamaged block's value");
    let damaged = e.damaged();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(damaged[0]
        .file
        .ends_with(files[0].file_name().unwrap().to_str().unwrap()));
    assert!(
        files[0].with_extension("damaged").exists(),
        "the file is renamed aside"
    );
}

#[test]
fn small_blocks_are_compacted_and_a_leftover_block_file_is_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let want;
    {
        let e = open(config(dir.path()), 0);
        rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
            .unwrap();
        for i in 0..6i64 {
            let batch = vec![
                point("cpu", "a", "v", FieldValue::Float(i as f64), i),
                // Overwrites of the same time across flushes: the last one must win.
                point("cpu", "b", "v", FieldValue::Float(i as f64), 0),
            ];
            rt.block_on(e.write("d", batch, None)).unwrap();
            e.flush_now().unwrap();
        }
        assert!(e.metrics().compactions.get() >= 1);
        let blocks = e.catalog().database("d").unwrap().blocks.all();
        assert!(blocks.len() < 6, "{} blocks after compaction", blocks.len());
        want = dump(e.catalog(), "d");
        assert_eq!(want.len(), 7);
        let b0 = want
            .iter()
            .find(|(k, _)| k.1[0].1 == "b")
            .map(|(_, v)| v.0.clone());
        assert_eq!(b0, Some(FieldValue::Float(5.0)));
    }
    // A block a crash left unnamed by any manifest (a flush or compaction that did not
    // finish): its values must not show up twice, and the file goes.
    let blocks = blocks::blocks_dir(dir.path());
    let named: Vec<_> = std::fs::read_dir(&blocks)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let leftover = blocks.join(blocks::block_file_name(999_999));
    std::fs::copy(&named[0], &leftover).unwrap();
    let e = open(config(dir.path()), 0);
    assert!(!leftover.exists(), "the leftover block is deleted");
    assert_eq!(dump(e.catalog(), "d"), want);
}

#[test]
fn a_delete_survives_a_resync_from_a_replica_that_missed_it() {
    let rt = multi_thread_rt();
    let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(config(da.path()), 1_000);
    let mut cb = config(db_.path());
    cb.node_id = "n2".into();
    let b = open(cb, 1_000);
    for e in [&a, &b] {
        rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
            .unwrap();
    }
    // The same old values on both (as replication would have left them), some in blocks.
    let old: Vec<Point> = (0..10)
        .map(|t| point("cpu", "h", "v", FieldValue::Integer(t), t))
        .collect();
    rt.block_on(a.write("d", old.clone(), None)).unwrap();
    rt.block_on(b.write("d", old, None)).unwrap();
    a.flush_now().unwrap();
    b.flush_now().unwrap();
    // A deletes times 0..=4; B never hears of it (its peers' link was down).
    rt.block_on(a.log(Entry::Delete {
        db: "d".into(),
        measurement: Some("cpu".into()),
        min_time: 0,
        max_time: 4,
        version: a.next_version(),
        drop_schema: false,
    }))
    .unwrap();
    assert_eq!(count(&a, "d", "cpu"), 5);
    // B's state is sent to A (a resync; its values in blocks): the deleted values stay
    // deleted.
    let sent = resync(&b, &a, &rt);
    assert_eq!(sent.blocks_sent, 1, "{sent:?}");
    assert_eq!(
        count(&a, "d", "cpu"),
        5,
        "a resync brought deleted values back"
    );
    // And A's state sent to B carries the tombstone there.
    resync(&a, &b, &rt);
    assert_eq!(count(&b, "d", "cpu"), 5);
    // A write after the delete, at a deleted time, is kept.
    rt.block_on(a.write(
        "d",
        vec![point("cpu", "h", "v", FieldValue::Integer(99), 2)],
        None,
    ))
    .unwrap();
    assert_eq!(count(&a, "d", "cpu"), 6);
    drop(a);
    let a = open(config(da.path()), 1_000);
    assert_eq!(count(&a, "d", "cpu"), 6, "after a restart too");
}

#[test]
fn a_forced_flush_covers_what_was_written_while_another_flush_ran() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut cfg = config(dir.path());
    // Every write fills the head: a flush starts after each, and the next write lands
    // while it runs.
    cfg.flush.max_head_values = 2;
    let e = open(cfg, 0);
    rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
        .unwrap();
    for i in 0..20 {
        // A head over twice its budget refuses writes until the flush catches up: retry,
        // as a client told 503 + Retry-After does (bounded).
        let mut attempts = 0;
        loop {
            let batch = vec![point("cpu", "a", "v", FieldValue::Integer(i), i)];
            match rt.block_on(e.write("d", batch, None)) {
                Ok(_) => break,
                Err(StorageError::Overloaded { .. }) if attempts < 5_000 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(err) => panic!("write {i}: {err}"),
            }
        }
    }
    e.flush_now().unwrap();
    assert_eq!(
        e.head_values(),
        0,
        "the forced flush left values in the head"
    );
    let wal: u64 = wal::list_segments(dir.path())
        .unwrap()
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(wal, 0, "the WAL the forced flush covered is gone");
    assert_eq!(count(&e, "d", "cpu"), 20);
}

#[test]
fn a_resync_sends_the_blocks_the_peer_lacks_then_the_head() {
    let rt = multi_thread_rt();
    let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(config(da.path()), 1_000);
    let mut cb = config(db_.path());
    cb.node_id = "n2".into();
    let b = open(cb.clone(), 1_000);
    rt.block_on(a.log(Entry::CreateDatabase { name: "d".into() }))
        .unwrap();
    let batch = |from: i64| -> Vec<Point> {
        (from..from + 50)
            .map(|t| {
                point(
                    "cpu",
                    &format!("h{}", t % 3),
                    "v",
                    FieldValue::Float(t as f64),
                    t,
                )
            })
            .collect()
    };
    // Two blocks, and values in the head.
    rt.block_on(a.write("d", batch(0), None)).unwrap();
    a.flush_now().unwrap();
    rt.block_on(a.write("d", batch(50), None)).unwrap();
    a.flush_now().unwrap();
    rt.block_on(a.write("d", batch(100), None)).unwrap();
    assert_eq!(a.catalog().database("d").unwrap().blocks.all().len(), 2);

    // The engine's own background work (a flush's checkpoint) may log an entry while the
    // resync runs: every mark known before it must travel, and none that did not exist.
    let before = a.catalog().applied_from(a.origin());
    let sent = resync(&a, &b, &rt);
    let after = a.catalog().applied_from(a.origin());
    assert_eq!((sent.blocks_sent, sent.blocks_skipped), (2, 0), "{sent:?}");
    assert_eq!(dump(b.catalog(), "d"), dump(a.catalog(), "d"));
    assert_eq!(count(&b, "d", "cpu"), 150);
    assert!(before > 0);
    assert!(
        (before..=after).contains(&sent.applied),
        "the marks travel last, and all of them: sent {}, applied {before} before and {after} after",
        sent.applied
    );

    // More on A, flushed with the head B was sent: a second resync sends only that block.
    rt.block_on(a.write("d", batch(150), None)).unwrap();
    a.flush_now().unwrap();
    let sent = resync(&a, &b, &rt);
    assert_eq!((sent.blocks_sent, sent.blocks_skipped), (1, 2), "{sent:?}");
    assert_eq!(dump(b.catalog(), "d"), dump(a.catalog(), "d"));

    // What B received is durable: its blocks are in its manifest, the head was flushed.
    let want = dump(b.catalog(), "d");
    drop(b);
    let b = open(cb, 1_000);
    assert_eq!(dump(b.catalog(), "d"), want);
    assert_eq!(b.catalog().applied_from(a.origin()), sent.applied);
}

#[test]
fn a_received_block_is_checked_before_it_is_stored() {
    let rt = multi_thread_rt();
    let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(config(da.path()), 1_000);
    let b = open(config(db_.path()), 1_000);
    for e in [&a, &b] {
        rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
            .unwrap();
    }
    let points: Vec<Point> = (0..20)
        .map(|t| point("cpu", "h", "v", FieldValue::Integer(t), t))
        .collect();
    rt.block_on(a.write("d", points, None)).unwrap();
    a.flush_now().unwrap();
    let (summary, mut reader) = a.block_readers().pop().unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut bytes).unwrap();
    let hash = transfer::parse_hash(&summary.hash).unwrap();
    let receive = |bytes: &[u8], db: &str, hash: u64| {
        let path = b.incoming_block_path().unwrap();
        std::fs::write(&path, bytes).unwrap();
        let res = b.receive_block(db, hash, &path);
        assert!(!path.exists(), "the incoming file is gone in every case");
        res
    };

    // One flipped byte in the data: its checksum fails.
    let mut flipped = bytes.clone();
    flipped[20] ^= 0x40;
    let err = receive(&flipped, "d", hash).unwrap_err();
    assert!(matches!(err, transfer::ReceiveError::Invalid(_)), "{err}");
    // A hash that is not the block's.
    let err = receive(&bytes, "d", hash ^ 1).unwrap_err();
    assert!(err.to_string().contains("content hash"), "{err}");
    // Another database's name.
    let err = receive(&bytes, "other", hash).unwrap_err();
    assert!(err.to_string().contains("\"d\""), "{err}");
    assert!(b.block_list().is_empty(), "nothing was stored");
    assert_eq!(count(&b, "d", "cpu"), 0);

    // The block itself is stored once; sent again, it is recognised.
    assert!(matches!(
        receive(&bytes, "d", hash),
        Ok(transfer::Received::Stored { .. })
    ));
    assert_eq!(
        receive(&bytes, "d", hash).unwrap(),
        transfer::Received::AlreadyHeld
    );
    assert_eq!(count(&b, "d", "cpu"), 20);

    // On a node whose deletes hide all of it, nothing is kept.
    let dc = tempfile::tempdir().unwrap();
    // Its clock is later than A's: its delete is newer than the block's values.
    let c = open(config(dc.path()), 1_000_000);
    rt.block_on(c.log(Entry::CreateDatabase { name: "d".into() }))
        .unwrap();
    rt.block_on(c.log(Entry::Delete {
        db: "d".into(),
        measurement: Some("cpu".into()),
        min_time: i64::MIN,
        max_time: i64::MAX,
        version: c.next_version(),
        drop_schema: true,
    }))
    .unwrap();
    let path = c.incoming_block_path().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(
        c.receive_block("d", hash, &path).unwrap(),
        transfer::Received::AllDeleted
    );
    assert!(c.block_list().is_empty());
    assert!(
        c.catalog()
            .database("d")
            .unwrap()
            .measurement("cpu")
            .is_none(),
        "a dropped measurement does not come back with a peer's block"
    );
}

#[test]
fn the_default_shard_duration_sets_the_partition_of_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let cfg = EngineConfig {
        default_shard_duration_ns: 100,
        ..config(dir.path())
    };
    let e = open(cfg, 0);
    rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
        .unwrap();
    let db = e.catalog().database("d").unwrap();
    assert_eq!(read(&db.policies).list[0].shard_group_duration(), 100);
    let points: Vec<Point> = (0..350)
        .map(|t| point("cpu", "h", "v", FieldValue::Integer(t), t))
        .collect();
    rt.block_on(e.write("d", points, None)).unwrap();
    e.flush_now().unwrap();
    let partitions: Vec<(i64, i64)> = db.blocks.all().iter().map(|b| b.partition()).collect();
    assert_eq!(
        partitions,
        vec![(0, 100), (100, 200), (200, 300), (300, 400)]
    );
}

#[test]
fn a_dropped_database_stays_dropped_through_a_resync_from_a_node_that_missed_the_drop() {
    let rt = multi_thread_rt();
    let (da, db_) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca = config(da.path());
    let a = open(ca.clone(), 1_000);
    let mut cb = config(db_.path());
    cb.node_id = "n2".into();
    let b = open(cb, 1_000);
    let old: Vec<Point> = (0..10)
        .map(|t| point("cpu", "h", "v", FieldValue::Integer(t), t))
        .collect();
    for e in [&a, &b] {
        rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
            .unwrap();
        rt.block_on(e.write("d", old.clone(), None)).unwrap();
        e.flush_now().unwrap();
    }
    // A drops the database; B never hears of it.
    rt.block_on(a.log(Entry::DropDatabaseAt {
        name: "d".into(),
        version: a.next_version(),
    }))
    .unwrap();
    assert!(a.catalog().database("d").is_none());

    // B's state sent to A: its copy is stale, the database does not come back.
    let sent = resync(&b, &a, &rt);
    assert_eq!(sent.blocks_sent, 1);
    assert!(
        a.catalog().database("d").is_none(),
        "a resync brought it back"
    );
    assert!(a.block_list().is_empty());
    // A's state sent to B carries the drop there.
    resync(&a, &b, &rt);
    assert!(
        b.catalog().database("d").is_none(),
        "B keeps a dropped database"
    );

    // Created again after the drop, it is a new database: it travels, with its new values.
    rt.block_on(a.log(Entry::CreateDatabase { name: "d".into() }))
        .unwrap();
    rt.block_on(a.write(
        "d",
        vec![point("cpu", "h", "v", FieldValue::Integer(99), 50)],
        None,
    ))
    .unwrap();
    resync(&a, &b, &rt);
    assert_eq!(count(&b, "d", "cpu"), 1);
    assert_eq!(count(&a, "d", "cpu"), 1);

    // The drop is remembered across a restart.
    a.flush_now().unwrap();
    drop(a);
    let a = open(ca, 1_000);
    assert!(a.catalog().dropped_at("d").is_some());
    assert_eq!(count(&a, "d", "cpu"), 1);
}
