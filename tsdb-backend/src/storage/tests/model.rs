//! The engine against a plain in-memory model: random batches (several measurements and
//! tags, every field type, out-of-order times, overwrites, dropped measurements, deleted
//! time ranges) with flushes, compactions and restarts at random points must read back
//! exactly as the model says.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// (measurement, host tag, field, time) → value: what a query must show.
type Model = BTreeMap<(String, String, String, i64), FieldValue>;

const MEASUREMENTS: [&str; 3] = ["cpu", "mem", "disk"];
const HOSTS: [&str; 3] = ["a", "b", "c"];

/// Each field keeps one type, as the schema demands: the name says which.
fn random_value(rng: &mut StdRng, field: &str) -> FieldValue {
    match field {
        "f" => FieldValue::Float(match rng.random_range(0..10) {
            0 => f64::NAN,
            1 => -0.0,
            _ => (rng.random_range(-10_000..10_000) as f64) / 100.0,
        }),
        "i" => FieldValue::Integer(rng.random_range(i64::MIN / 2..i64::MAX / 2)),
        "u" => FieldValue::Unsigned(rng.random()),
        "b" => FieldValue::Boolean(rng.random()),
        _ => FieldValue::String(["", "x", "hello world", "ünïcode"][rng.random_range(0..4)].into()),
    }
}

fn random_batch(rng: &mut StdRng) -> Vec<Point> {
    let n = rng.random_range(1..40);
    (0..n)
        .map(|_| {
            let m = MEASUREMENTS[rng.random_range(0..MEASUREMENTS.len())];
            let host = HOSTS[rng.random_range(0..HOSTS.len())];
            let nfields = rng.random_range(1..4);
            let mut names: Vec<&str> = ["f", "i", "u", "b", "s"]
                .into_iter()
                .filter(|_| rng.random_bool(0.5))
                .take(nfields)
                .collect();
            if names.is_empty() {
                names.push("f");
            }
            // Times from a small range (overwrites), sometimes far in the past (late
            // points, other partitions).
            let t = if rng.random_bool(0.1) {
                rng.random_range(0..1_000) * 86_400_000_000_000
            } else {
                1_000 * 86_400_000_000_000 + rng.random_range(0..200) * 1_000_000_000
            };
            Point {
                measurement: m.into(),
                tags: vec![("host".to_string(), host.to_string())].into(),
                fields: names
                    .into_iter()
                    .map(|f| (f.into(), random_value(rng, f)))
                    .collect(),
                timestamp: t,
            }
        })
        .collect()
}

/// Every value the engine shows, through the same read path queries use.
fn engine_values(e: &Engine) -> Model {
    let mut out = Model::new();
    let Some(db) = e.catalog().database("d") else {
        return out;
    };
    for (name, m) in db.measurements() {
        let m = read(&m);
        for s in m.series() {
            let view = read::series_view(e.catalog(), &db, &m, s, (i64::MIN, i64::MAX), None);
            let host = s.tag("host").unwrap_or("").to_string();
            for (t, row) in &view.rows {
                for cell in &row.0 {
                    let field = m.fields()[cell.id as usize].name.clone();
                    out.insert((name.clone(), host.clone(), field, *t), cell.value.clone());
                }
            }
        }
    }
    out
}

/// NaN is not equal to itself: compare values by their bits.
fn same_value(a: &FieldValue, b: &FieldValue) -> bool {
    match (a, b) {
        (FieldValue::Float(x), FieldValue::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn same(a: &Model, b: &Model) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn run_seed(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    let cfg = EngineConfig {
        fsync: FsyncMode::Never,
        ..config(dir.path())
    };
    let mut e = open(cfg.clone(), 2_000 * 86_400_000_000_000);
    rt.block_on(e.log(Entry::CreateDatabase { name: "d".into() }))
        .unwrap();
    for step in 0..60 {
        match rng.random_range(0..20) {
            0..=1 => e.flush_now().unwrap(),
            2 => {
                drop(e);
                e = open(cfg.clone(), 2_000 * 86_400_000_000_000);
            }
            3 => {
                // DROP MEASUREMENT as this release logs it, or as earlier ones did.
                let m = MEASUREMENTS[rng.random_range(0..MEASUREMENTS.len())];
                let entry = if rng.random_bool(0.7) {
                    Entry::Delete {
                        db: "d".into(),
                        measurement: Some(m.into()),
                        min_time: i64::MIN,
                        max_time: i64::MAX,
                        version: e.next_version(),
                        drop_schema: true,
                    }
                } else {
                    Entry::DropMeasurement {
                        db: "d".into(),
                        name: m.into(),
                    }
                };
                rt.block_on(e.log(entry)).unwrap();
                model.retain(|k, _| k.0 != m);
            }
            4 => {
                // DELETE [FROM m] WHERE time in a range.
                let m = (rng.random_bool(0.7))
                    .then(|| MEASUREMENTS[rng.random_range(0..MEASUREMENTS.len())].to_string());
                let day = 86_400_000_000_000i64;
                let a = rng.random_range(0..1_001) * day + rng.random_range(0..200) * 1_000_000_000;
                let b = a + rng.random_range(0..100) * 1_000_000_000 + rng.random_range(0..3) * day;
                rt.block_on(e.log(Entry::Delete {
                    db: "d".into(),
                    measurement: m.clone(),
                    min_time: a,
                    max_time: b,
                    version: e.next_version(),
                    drop_schema: false,
                }))
                .unwrap();
                model.retain(|k, _| {
                    !(m.as_deref().is_none_or(|m| m == k.0) && (a..=b).contains(&k.3))
                });
            }
            _ => {
                let batch = random_batch(&mut rng);
                let report = rt.block_on(e.write("d", batch.clone(), None)).unwrap();
                assert!(report.rejected.is_empty(), "seed {seed} step {step}");
                for p in batch {
                    for (f, v) in p.fields {
                        model.insert(
                            (
                                p.measurement.to_string(),
                                p.tags[0].1.clone(),
                                f.to_string(),
                                p.timestamp,
                            ),
                            v,
                        );
                    }
                }
            }
        }
        let got = engine_values(&e);
        if !same(&got, &model) {
            let diff: Vec<_> = got
                .iter()
                .filter(|(k, v)| model.get(*k).is_none_or(|m| !same_value(m, v)))
                .take(3)
                .map(|(k, v)| format!("{k:?}: engine {v:?}, model {:?}", model.get(k)))
                .collect();
            panic!(
                "seed {seed} step {step}: engine {} values, model {}; first differences: {diff:#?}",
                got.len(),
                model.len()
            );
        }
    }
}

#[test]
fn random_writes_flushes_drops_and_restarts_read_back_as_the_model() {
    for seed in 0..12 {
        run_seed(seed);
    }
}
