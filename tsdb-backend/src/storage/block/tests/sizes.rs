//! What a block costs on disk per value, on generated data of known shape (seeded, so the
//! figures repeat). Two targets are asserted; `print_bytes_per_value` prints the table
//! that `docs/tsdb.md` quotes:
//!
//! ```sh
//! cargo test -p tsdb-backend --release --lib storage::block::tests::sizes -- --ignored --nocapture
//! ```

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One day of one series every 10 s, as TSBS's cpu-only use case generates.
const ROWS_PER_DAY: usize = 8640;
const STEP_NS: i64 = 10_000_000_000;
/// TSBS's default batch: 10 000 rows per write, each with its own version.
const BATCH_ROWS: usize = 10_000;

const CPU_FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// How the times of a row are made.
#[derive(Clone, Copy)]
enum Times {
    /// Exactly every 10 s (TSBS).
    Regular,
    /// Every 10 s plus a random 0-999 ms, as an agent's clock gives (shared by the row).
    Jittered,
}

/// How the versions of a row are made.
#[derive(Clone, Copy)]
enum Versions {
    /// A bulk load: one version per batch of `BATCH_ROWS` rows over all hosts.
    Bulk,
    /// Live ingestion: each row written by itself 0-199 ms after its time.
    PerRow,
}

/// A measurement of `hosts` series with `fields`, one day of rows; `value(rng, field, n)`
/// makes each field's column.
fn day(
    rng: &mut StdRng,
    hosts: usize,
    fields: &[(&str, FieldType)],
    times: Times,
    versions: Versions,
    mut value: impl FnMut(&mut StdRng, usize, usize) -> Values,
) -> BlockBuilder {
    let mut b = BlockBuilder::new("benchmark", START_NS, START_NS + DAY_NS);
    for host in 0..hosts {
        let row_times: Vec<i64> = (0..ROWS_PER_DAY as i64)
            .map(|i| match times {
                Times::Regular => START_NS + i * STEP_NS,
                Times::Jittered => START_NS + i * STEP_NS + rng.random_range(0..1000) * 1_000_000,
            })
            .collect();
        let row_versions: Vec<Version> = (0..ROWS_PER_DAY)
            .map(|i| match versions {
                Versions::Bulk => {
                    let batch = (i * hosts + host) / BATCH_ROWS;
                    version(1_700_000_000_000 + batch as u64 * 20)
                }
                Versions::PerRow => {
                    let ms = (row_times[i] / 1_000_000) as u64 + rng.random_range(0..200);
                    version(ms)
                }
            })
            .collect();
        let t = tsbs_tags(host);
        for (i, (name, ty)) in fields.iter().enumerate() {
            let column = Column {
                times: row_times.clone(),
                versions: row_versions.clone(),
                values: value(rng, i, ROWS_PER_DAY),
            };
            if let Err(e) = b.add("cpu", &t, &field(name, *ty), column) {
                panic!("{e}");
            }
        }
    }
    b
}

/// The tags TSBS gives a host, sorted by key.
fn tsbs_tags(host: usize) -> Vec<(String, String)> {
    tags(&[
        ("arch", "x64"),
        ("datacenter", "eu-west-1a"),
        ("hostname", &format!("host_{host}")),
        ("os", "Ubuntu16.04LTS"),
        ("rack", &(host % 100).to_string()),
        ("region", "eu-west-1"),
        ("service", "18"),
        ("service_environment", "production"),
        ("service_version", "1"),
        ("team", "NYC"),
    ])
}

/// A standard normal draw (Box-Muller), as TSBS's `ND(0, 1)`.
fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// TSBS's cpu fields: a random walk of normal steps clamped to [0, 100], from a uniform
/// start; `decimals` rounds each value as a client printing two decimals does.
fn walk(rng: &mut StdRng, n: usize, decimals: Option<i32>) -> Values {
    let mut v = rng.random::<f64>() * 100.0;
    let scale = decimals.map(|d| 10f64.powi(d));
    Values::Float(
        (0..n)
            .map(|_| {
                v = (v + normal(rng)).clamp(0.0, 100.0);
                match scale {
                    Some(s) => (v * s).round() / s,
                    None => v,
                }
            })
            .collect(),
    )
}

fn cpu_fields() -> Vec<(&'static str, FieldType)> {
    CPU_FIELDS.iter().map(|f| (*f, FieldType::Float)).collect()
}

fn fields_of(ty: FieldType) -> Vec<(&'static str, FieldType)> {
    CPU_FIELDS.iter().map(|f| (*f, ty)).collect()
}

/// What a written block takes, in bytes, by kind of section.
#[derive(Debug, Default)]
struct Sizes {
    values: u64,
    file: u64,
    times: u64,
    versions: u64,
    data: u64,
    /// Header, index and footer.
    rest: u64,
    /// What the times would take if each chunk had its own.
    times_unshared: u64,
    /// Encoding and writing the block, then reading and decoding every column.
    write: std::time::Duration,
    read: std::time::Duration,
}

impl Sizes {
    fn per_value(&self, bytes: u64) -> f64 {
        bytes as f64 / self.values as f64
    }
}

fn measure(b: BlockBuilder) -> Sizes {
    let dir = tempdir();
    let started = crate::clock::monotonic_now();
    let block = b.write(dir.path(), "m.blk").unwrap();
    let write = started.elapsed();
    let mut seen = std::collections::HashSet::new();
    let mut s = Sizes {
        values: block.index().value_count,
        file: block.file_len(),
        ..Sizes::default()
    };
    for (_, _, c) in block.index().columns() {
        s.times_unshared += u64::from(c.times.len);
        for (section, total) in [
            (c.times, &mut s.times),
            (c.versions, &mut s.versions),
            (c.values, &mut s.data),
        ] {
            if seen.insert(section) {
                *total += u64::from(section.len);
            }
        }
    }
    s.rest = s.file - s.times - s.versions - s.data;
    s.write = write;
    let started = crate::clock::monotonic_now();
    for (_, _, c) in block.index().columns() {
        assert!(block.read_column(c).is_ok());
    }
    s.read = started.elapsed();
    s
}

#[test]
fn tsbs_cpu_data_takes_at_most_one_and_a_half_bytes_per_value() {
    let mut rng = StdRng::seed_from_u64(1);
    let b = day(
        &mut rng,
        1,
        &cpu_fields(),
        Times::Regular,
        Versions::Bulk,
        |rng, _, n| walk(rng, n, Some(2)),
    );
    let s = measure(b);
    let per_value = s.per_value(s.file);
    assert!(per_value <= 1.5, "{per_value:.3} bytes per value: {s:?}");
}

#[test]
fn full_precision_floats_take_at_most_nine_bytes_per_value() {
    let mut rng = StdRng::seed_from_u64(2);
    let b = day(
        &mut rng,
        1,
        &cpu_fields(),
        Times::Regular,
        Versions::Bulk,
        |rng, _, n| Values::Float((0..n).map(|_| rng.random::<f64>()).collect()),
    );
    let s = measure(b);
    let per_value = s.per_value(s.file);
    assert!(per_value <= 9.0, "{per_value:.3} bytes per value: {s:?}");
}

#[test]
#[ignore]
fn print_bytes_per_value() {
    let mut rng = StdRng::seed_from_u64(3);
    let rng = &mut rng;
    type Make<'a> = Box<dyn Fn(&mut StdRng) -> BlockBuilder + 'a>;
    let cpu = |hosts, times, versions| -> Make {
        Box::new(move |rng: &mut StdRng| {
            day(rng, hosts, &cpu_fields(), times, versions, |rng, _, n| {
                walk(rng, n, Some(2))
            })
        })
    };
    let of = |ty, value: fn(&mut StdRng, usize) -> Values| -> Make {
        Box::new(move |rng: &mut StdRng| {
            day(
                rng,
                1,
                &fields_of(ty),
                Times::Regular,
                Versions::Bulk,
                |rng, _, n| value(rng, n),
            )
        })
    };
    let tiny = |per_series: usize| -> Make {
        Box::new(move |rng: &mut StdRng| {
            let mut b = BlockBuilder::new("benchmark", START_NS, START_NS + DAY_NS);
            for host in 0..1000 {
                let times = (0..per_series as i64)
                    .map(|i| START_NS + i * STEP_NS)
                    .collect();
                let column = Column {
                    times,
                    versions: vec![version(1); per_series],
                    values: walk(rng, per_series, Some(2)),
                };
                let f = field("usage_user", FieldType::Float);
                b.add("cpu", &tsbs_tags(host), &f, column).unwrap();
            }
            b
        })
    };
    let cases: Vec<(&str, Make)> = vec![
        (
            "TSBS cpu, 1 host, bulk load",
            cpu(1, Times::Regular, Versions::Bulk),
        ),
        (
            "TSBS cpu, 100 hosts, bulk load",
            cpu(100, Times::Regular, Versions::Bulk),
        ),
        (
            "TSBS cpu, 1 host, a version per row",
            cpu(1, Times::Regular, Versions::PerRow),
        ),
        (
            "TSBS cpu, 1 host, times jittered by ms",
            cpu(1, Times::Jittered, Versions::Bulk),
        ),
        (
            "TSBS cpu, 1 host, jittered, version per row",
            cpu(1, Times::Jittered, Versions::PerRow),
        ),
        ("1 value in each of 1000 series (1 field)", tiny(1)),
        ("2 values in each of 1000 series (1 field)", tiny(2)),
        (
            "float: the walk at full precision",
            of(FieldType::Float, |rng, n| walk(rng, n, None)),
        ),
        (
            "float: uniform random in [0, 1)",
            of(FieldType::Float, |rng, n| {
                Values::Float((0..n).map(|_| rng.random::<f64>()).collect())
            }),
        ),
        (
            "integer: counter, +0..999 a row",
            of(FieldType::Integer, |rng, n| {
                let mut c = 0i64;
                Values::Integer(
                    (0..n)
                        .map(|_| {
                            c += rng.random_range(0..1000);
                            c
                        })
                        .collect(),
                )
            }),
        ),
        (
            "integer: gauge, uniform 0..100",
            of(FieldType::Integer, |rng, n| {
                Values::Integer((0..n).map(|_| rng.random_range(0..100)).collect())
            }),
        ),
        (
            "integer: uniform random i64",
            of(FieldType::Integer, |rng, n| {
                Values::Integer((0..n).map(|_| rng.random()).collect())
            }),
        ),
        (
            "string: one of 3 statuses",
            of(FieldType::String, |rng, n| {
                let s = ["ok", "warning", "critical"];
                Values::String((0..n).map(|_| s[rng.random_range(0..3)].into()).collect())
            }),
        ),
        (
            "string: random 32-hex-digit ids",
            of(FieldType::String, |rng, n| {
                Values::String(
                    (0..n)
                        .map(|_| format!("{:032x}", rng.random::<u128>()).into())
                        .collect(),
                )
            }),
        ),
        (
            "boolean: uniform random",
            of(FieldType::Boolean, |rng, n| {
                Values::Boolean((0..n).map(|_| rng.random()).collect())
            }),
        ),
        (
            "boolean: 1% true",
            of(FieldType::Boolean, |rng, n| {
                Values::Boolean((0..n).map(|_| rng.random_range(0..100) == 0).collect())
            }),
        ),
    ];
    println!(
        "| data (10 fields x 8640 rows a series) | values | bytes/value | times | versions | values | index etc. | times unshared | write Mvalues/s | read Mvalues/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, make) in cases {
        let s = measure(make(rng));
        let rate = |d: std::time::Duration| s.values as f64 / d.as_secs_f64() / 1e6;
        println!(
            "| {name} | {} | **{:.3}** | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} |",
            s.values,
            s.per_value(s.file),
            s.per_value(s.times),
            s.per_value(s.versions),
            s.per_value(s.data),
            s.per_value(s.rest),
            s.per_value(s.times_unshared),
            rate(s.write),
            rate(s.read),
        );
    }
}
