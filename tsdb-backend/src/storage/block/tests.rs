use super::*;
use crate::storage::series::FieldDef;
use std::path::Path;

const DAY_NS: i64 = 86_400_000_000_000;
/// 2016-01-01T00:00:00Z, where TSBS data starts.
const START_NS: i64 = 1_451_606_400_000_000_000;

fn field(name: &str, ty: FieldType) -> FieldDef {
    FieldDef {
        name: name.to_string(),
        ty,
    }
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn version(hlc: u64) -> Version {
    Version {
        hlc: hlc << 16,
        node: 0xdead_beef,
    }
}

/// A column at `START_NS + i` seconds for each `i`, all of one version.
fn column(seconds: &[i64], values: Values) -> Column {
    Column {
        times: seconds
            .iter()
            .map(|s| START_NS + s * 1_000_000_000)
            .collect(),
        versions: vec![version(1); seconds.len()],
        values,
    }
}

/// One added column: measurement, tags, field, column.
type Added = (String, Vec<(String, String)>, FieldDef, Column);

/// Columns of every type and edge case, in no particular order.
fn sample() -> Vec<Added> {
    let floats = vec![
        0.0,
        -0.0,
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff8_0000_0000_beef),
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::MAX,
        1.5,
    ];
    let n = floats.len() as i64;
    let mut out: Vec<Added> = vec![
        (
            "weather".into(),
            tags(&[("city", "oslo")]),
            field("temp", FieldType::Float),
            column(&(0..n).collect::<Vec<_>>(), Values::Float(floats)),
        ),
        (
            "weather".into(),
            tags(&[("city", "oslo")]),
            field("count", FieldType::Integer),
            column(
                &[0, 1, 2, 3, 4],
                Values::Integer(vec![i64::MIN, i64::MAX, 0, -1, i64::MIN]),
            ),
        ),
        (
            "weather".into(),
            tags(&[("city", "oslo")]),
            field("bytes", FieldType::Unsigned),
            column(&[7], Values::Unsigned(vec![u64::MAX])),
        ),
        (
            "weather".into(),
            tags(&[("city", "oslo")]),
            field("raining", FieldType::Boolean),
            column(&[0, 5, 9], Values::Boolean(vec![true, false, true])),
        ),
        (
            "weather".into(),
            tags(&[("city", "oslo")]),
            field("note", FieldType::String),
            column(
                &[0, 1, 2, 3],
                Values::String(vec!["".into(), "sol ☀".into(), "".into(), "a\nb".into()]),
            ),
        ),
        (
            "events".into(),
            vec![],
            field("message", FieldType::String),
            column(&[3], Values::String(vec!["".into()])),
        ),
    ];
    // Many series, one value each or a hundred, added from the last to the first.
    for host in (0..40).rev() {
        let rows: Vec<i64> = if host % 2 == 0 {
            vec![host]
        } else {
            (0..100).map(|i| i * 10).collect()
        };
        let values = rows.iter().map(|&r| (r * host) as f64 / 4.0).collect();
        out.push((
            "cpu".into(),
            tags(&[("host", &format!("h{host:02}")), ("region", "eu")]),
            field("usage", FieldType::Float),
            column(&rows, Values::Float(values)),
        ));
    }
    out
}

fn build(added: &[Added]) -> BlockBuilder {
    let mut b = BlockBuilder::new("db", START_NS, START_NS + DAY_NS);
    for (m, t, f, c) in added {
        if let Err(e) = b.add(m, t, f, c.clone()) {
            panic!("{m} {t:?} {}: {e}", f.name);
        }
    }
    b
}

fn write(added: &[Added], dir: &Path) -> BlockFile {
    match build(added).write(dir, "sample.blk") {
        Ok(block) => block,
        Err(e) => panic!("writing the sample: {e}"),
    }
}

/// Every column of the block, read back, as `(measurement, tags, field name, column)`,
/// with the chunks of one field joined.
fn read_all(block: &BlockFile) -> Result<Vec<Added>, BlockError> {
    let mut out: Vec<Added> = Vec::new();
    for (m, s, c) in block.index().columns() {
        let col = block.read_column(c)?;
        let f = m.fields[c.field as usize].clone();
        match out.last_mut() {
            Some((lm, lt, lf, last)) if *lm == m.name && *lt == s.tags && *lf == f => {
                last.times.extend(col.times);
                last.versions.extend(col.versions);
                if last.values.append(col.values).is_err() {
                    panic!("chunks of one field of different types");
                }
            }
            _ => out.push((m.name.clone(), s.tags.clone(), f, col)),
        }
    }
    Ok(out)
}

/// `added`, sorted as the index sorts: measurement, tags, field name.
fn sorted(mut added: Vec<Added>) -> Vec<Added> {
    added.sort_by(|a, b| (&a.0, &a.1, &a.2.name).cmp(&(&b.0, &b.1, &b.2.name)));
    added
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// === round trips ===

#[test]
fn every_value_type_round_trips_bit_exact() {
    let dir = tempdir();
    let block = write(&sample(), dir.path());
    let back = read_all(&block).map_err(|e| e.to_string());
    assert_eq!(back, Ok(sorted(sample())));
    assert_eq!(block.verify().map_err(|e| e.to_string()), Ok(()));
}

#[test]
fn the_index_alone_gives_measurements_series_fields_and_time_ranges() {
    let dir = tempdir();
    let block = write(&sample(), dir.path());
    let index = block.index();
    let names: Vec<&str> = index.measurements.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["cpu", "events", "weather"]);
    assert_eq!(index.db, "db");
    assert_eq!(
        (index.partition_start_ns, index.partition_end_ns),
        (START_NS, START_NS + DAY_NS)
    );
    assert_eq!(index.min_time, START_NS);
    assert_eq!(index.max_time, START_NS + 990 * 1_000_000_000);
    let total: usize = sample().iter().map(|a| a.3.len()).sum();
    assert_eq!(index.value_count, total as u64);

    let Some(weather) = index.measurement("weather") else {
        panic!("no weather in {names:?}");
    };
    let fields: Vec<(&str, FieldType)> = weather
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.ty))
        .collect();
    assert_eq!(
        fields,
        [
            ("bytes", FieldType::Unsigned),
            ("count", FieldType::Integer),
            ("note", FieldType::String),
            ("raining", FieldType::Boolean),
            ("temp", FieldType::Float),
        ]
    );
    let Some(oslo) = weather.series(&tags(&[("city", "oslo")])) else {
        panic!("no oslo series");
    };
    let temp = weather.field("temp");
    let Some(col) = oslo.columns.iter().find(|c| Some(c.field) == temp) else {
        panic!("no temp column");
    };
    assert_eq!(
        (col.count, col.min_time, col.max_time),
        (10, START_NS, START_NS + 9_000_000_000)
    );
    assert!(col.overlaps(START_NS + 9_000_000_000, i64::MAX));
    assert!(!col.overlaps(START_NS + 9_000_000_001, i64::MAX));

    let cpu = index.measurement("cpu").map(|m| m.series.len());
    assert_eq!(cpu, Some(40));
    let hosts: Vec<String> = index.measurements[0]
        .series
        .iter()
        .map(|s| s.tags[0].1.clone())
        .collect();
    let mut expected = hosts.clone();
    expected.sort();
    assert_eq!(hosts, expected);
}

#[test]
fn times_and_versions_read_without_the_values() {
    let dir = tempdir();
    let added = sorted(sample());
    let block = write(&added, dir.path());
    for ((_, _, c), (_, _, _, expected)) in block.index().columns().zip(&added) {
        assert_eq!(
            block.read_times(c).map_err(|e| e.to_string()),
            Ok(expected.times.clone())
        );
        assert_eq!(
            block.read_versions(c).map_err(|e| e.to_string()),
            Ok(expected.versions.clone())
        );
    }
}

#[test]
fn columns_longer_than_a_chunk_are_split_in_time_order() {
    let dir = tempdir();
    let rows: Vec<i64> = (0..1000).collect();
    let mut b = BlockBuilder::new("db", START_NS, START_NS + DAY_NS).with_max_chunk_values(300);
    let floats = column(
        &rows,
        Values::Float(rows.iter().map(|&r| r as f64).collect()),
    );
    let strings = column(
        &rows,
        Values::String(rows.iter().map(|r| r.to_string().into()).collect()),
    );
    let t = tags(&[("host", "a")]);
    for (f, c) in [
        (field("f", FieldType::Float), &floats),
        (field("s", FieldType::String), &strings),
    ] {
        if let Err(e) = b.add("m", &t, &f, c.clone()) {
            panic!("{e}");
        }
    }
    let block = match b.write(dir.path(), "split.blk") {
        Ok(block) => block,
        Err(e) => panic!("{e}"),
    };
    let counts: Vec<(u32, u32)> = block
        .index()
        .columns()
        .map(|(_, _, c)| (c.field, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            (0, 300),
            (0, 300),
            (0, 300),
            (0, 100),
            (1, 300),
            (1, 300),
            (1, 300),
            (1, 100)
        ]
    );
    let back = read_all(&block).map_err(|e| e.to_string());
    let f = field("f", FieldType::Float);
    let s = field("s", FieldType::String);
    assert_eq!(
        back,
        Ok(vec![
            ("m".into(), t.clone(), f, floats),
            ("m".into(), t, s, strings)
        ])
    );
}

#[test]
fn fields_of_one_series_share_one_times_section_and_one_batch_one_versions_section() {
    let dir = tempdir();
    let rows: Vec<i64> = (0..500).map(|i| i * 10 + i % 7).collect();
    let mut added = Vec::new();
    for host in ["a", "b"] {
        for f in ["x", "y", "z"] {
            let values = rows.iter().map(|&r| (r % 13) as f64).collect();
            added.push((
                "m".to_string(),
                tags(&[("host", host)]),
                field(f, FieldType::Float),
                column(&rows, Values::Float(values)),
            ));
        }
    }
    let block = write(&added, dir.path());
    let cols: Vec<&ColumnRef> = block.index().columns().map(|(_, _, c)| c).collect();
    assert!(cols
        .iter()
        .all(|c| c.times == cols[0].times && c.versions == cols[0].versions));
    assert_eq!(
        read_all(&block).map_err(|e| e.to_string()),
        Ok(sorted(added))
    );
}

#[test]
fn equal_blocks_have_equal_content_hashes_and_different_ones_do_not() {
    let (a, b, c) = (tempdir(), tempdir(), tempdir());
    let first = write(&sample(), a.path());
    let again = write(&sample(), b.path());
    let mut changed = sample();
    changed[1].3.versions[0] = version(2);
    let other = write(&changed, c.path());
    assert_eq!(first.content_hash(), again.content_hash());
    assert_ne!(first.content_hash(), other.content_hash());
    assert_eq!(
        first.file_len(),
        std::fs::metadata(first.path()).unwrap().len()
    );
}

#[test]
fn a_written_block_leaves_no_temporary_and_names_must_be_plain() {
    let dir = tempdir();
    write(&sample(), dir.path());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["sample.blk"]);
    for bad in ["", "..", "a/b", "/abs"] {
        let r = build(&sample()).write(dir.path(), bad);
        assert!(
            matches!(r, Err(BlockError::BadFileName { .. })),
            "{bad:?}: {r:?}"
        );
    }
    let empty = BlockBuilder::new("db", 0, 1).write(dir.path(), "empty.blk");
    assert!(
        matches!(empty, Err(BlockError::EmptyBlock { .. })),
        "{empty:?}"
    );
}

// === what the builder refuses ===

fn problem(column: Column, f: FieldDef, t: &[(String, String)]) -> Option<ColumnProblem> {
    let mut b = BlockBuilder::new("db", START_NS, START_NS + DAY_NS);
    match b.add("m", t, &f, column) {
        Ok(()) => None,
        Err(BlockError::InvalidColumn { problem, .. }) => Some(problem),
        Err(e) => panic!("not an InvalidColumn: {e}"),
    }
}

#[test]
fn the_builder_refuses_columns_that_break_the_format_rules() {
    let f = field("f", FieldType::Float);
    let floats = |n: usize| Values::Float(vec![1.0; n]);
    let t = tags(&[("host", "a")]);
    assert_eq!(
        problem(column(&[0, 2, 1], floats(3)), f.clone(), &t),
        Some(ColumnProblem::UnsortedTime {
            at: 2,
            time: START_NS + 1_000_000_000
        })
    );
    assert_eq!(
        problem(column(&[0, 1, 1], floats(3)), f.clone(), &t),
        Some(ColumnProblem::DuplicateTime {
            at: 2,
            time: START_NS + 1_000_000_000
        })
    );
    assert_eq!(
        problem(column(&[0, 1], floats(3)), f.clone(), &t),
        Some(ColumnProblem::LengthMismatch {
            times: 2,
            versions: 2,
            values: 3
        })
    );
    let mut short_versions = column(&[0, 1], floats(2));
    short_versions.versions.pop();
    assert_eq!(
        problem(short_versions, f.clone(), &t),
        Some(ColumnProblem::LengthMismatch {
            times: 2,
            versions: 1,
            values: 2
        })
    );
    assert_eq!(
        problem(column(&[0], Values::Integer(vec![1])), f.clone(), &t),
        Some(ColumnProblem::TypeMismatch {
            declared: FieldType::Float,
            got: FieldType::Integer
        })
    );
    assert_eq!(
        problem(column(&[], floats(0)), f.clone(), &t),
        Some(ColumnProblem::Empty)
    );
    assert_eq!(
        problem(column(&[86_400], floats(1)), f.clone(), &t),
        Some(ColumnProblem::OutsidePartition {
            time: START_NS + DAY_NS,
            start: START_NS,
            end: START_NS + DAY_NS
        })
    );
    assert_eq!(problem(column(&[86_399], floats(1)), f.clone(), &t), None);
    assert_eq!(
        problem(
            column(&[0], floats(1)),
            f.clone(),
            &tags(&[("b", "1"), ("a", "2")])
        ),
        Some(ColumnProblem::UnsortedTags)
    );
    assert_eq!(
        problem(column(&[0], floats(1)), f, &tags(&[("a", "1"), ("a", "2")])),
        Some(ColumnProblem::UnsortedTags)
    );
}

#[test]
fn the_builder_refuses_a_second_column_of_a_field_and_a_second_type() {
    let mut b = BlockBuilder::new("db", START_NS, START_NS + DAY_NS);
    let f = field("f", FieldType::Float);
    let a = tags(&[("host", "a")]);
    let one = column(&[0], Values::Float(vec![1.0]));
    assert!(b.add("m", &a, &f, one.clone()).is_ok());
    let again = b.add("m", &a, &f, one);
    assert!(
        matches!(
            again,
            Err(BlockError::InvalidColumn {
                problem: ColumnProblem::DuplicateColumn,
                ..
            })
        ),
        "{again:?}"
    );
    let as_int = b.add(
        "m",
        &tags(&[("host", "b")]),
        &field("f", FieldType::Integer),
        column(&[0], Values::Integer(vec![1])),
    );
    assert!(
        matches!(
            as_int,
            Err(BlockError::InvalidColumn {
                problem: ColumnProblem::FieldTypeConflict {
                    existing: FieldType::Float,
                    declared: FieldType::Integer
                },
                ..
            })
        ),
        "{as_int:?}"
    );
    assert_eq!(b.value_count(), 1);
    assert!(!b.is_empty());
}

// === damaged files ===

/// Opens the block at `path`, verifies it and reads every column; the first error, or the
/// columns.
fn open_and_read(path: &Path) -> Result<Vec<Added>, BlockError> {
    let block = BlockFile::open(path)?;
    block.verify()?;
    read_all(&block)
}

#[test]
fn a_block_with_damaged_column_bytes_opens_and_reading_that_chunk_fails_naming_the_file() {
    let dir = tempdir();
    let block = write(&sample(), dir.path());
    let path = block.path().to_path_buf();
    let Some((_, _, col)) = block
        .index()
        .columns()
        .find(|(m, _, _)| m.name == "weather")
    else {
        panic!("no weather column");
    };
    let col = *col;
    let other = block
        .index()
        .columns()
        .map(|(_, _, c)| *c)
        .find(|c| ![c.times, c.versions, c.values].contains(&col.values));
    drop(block);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[col.values.offset as usize + 1] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let block = match BlockFile::open(&path) {
        Ok(block) => block,
        Err(e) => panic!("a block with damaged column bytes does not open: {e}"),
    };
    let read = block.read_column(&col);
    assert!(
        matches!(&read, Err(BlockError::Checksum { section: Section::Values { offset }, .. }) if *offset == col.values.offset),
        "{read:?}"
    );
    let message = read.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains(&*path.to_string_lossy()) && message.contains("values section"),
        "{message}"
    );
    let verify = block.verify();
    assert!(
        matches!(verify, Err(BlockError::Checksum { .. })),
        "{verify:?}"
    );
    // Times are a separate section and still read, as do other columns.
    assert!(block.read_times(&col).is_ok());
    if let Some(other) = other {
        assert!(block.read_column(&other).is_ok());
    }
}

#[test]
fn a_flipped_byte_anywhere_gives_an_error_never_a_panic_or_a_wrong_value() {
    let dir = tempdir();
    let path = write(&sample(), dir.path()).path().to_path_buf();
    let good = std::fs::read(&path).unwrap();
    let damaged = dir.path().join("damaged.blk");
    let mut silent = Vec::new();
    for at in 0..good.len() {
        // Every byte once, with a low bit, a high bit, all bits or a middle bit.
        let flip = [0x01u8, 0x80, 0xff, 0x10][at % 4];
        let mut bytes = good.clone();
        bytes[at] ^= flip;
        std::fs::write(&damaged, &bytes).unwrap();
        // A panic here fails the test by itself; a success is a wrong read.
        if let Ok(read) = open_and_read(&damaged) {
            silent.push((at, flip, read == sorted(sample())));
        }
    }
    assert!(
        silent.is_empty(),
        "flips that went unnoticed (at, flip, read the same): {silent:?}"
    );
}

#[test]
fn truncated_and_empty_files_and_foreign_bytes_give_clear_errors() {
    let dir = tempdir();
    let path = write(&sample(), dir.path()).path().to_path_buf();
    let good = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.blk");
    let open = |bytes: &[u8]| {
        std::fs::write(&cut, bytes).unwrap();
        BlockFile::open(&cut).map(|_| ())
    };
    let r = open(&[]);
    assert!(
        matches!(r, Err(BlockError::TooShort { len: 0, .. })),
        "{r:?}"
    );
    assert!(r.err().is_some_and(|e| e.to_string().contains("cut.blk")));
    for len in [1, 12, 39] {
        let r = open(&good[..len]);
        assert!(
            matches!(r, Err(BlockError::TooShort { .. })),
            "{len}: {r:?}"
        );
    }
    for len in [40, good.len() / 2, good.len() - 28, good.len() - 1] {
        let r = open(&good[..len]);
        assert!(
            matches!(
                r,
                Err(BlockError::BadMagic {
                    section: Section::Footer,
                    ..
                })
            ),
            "{len}: {r:?}"
        );
        assert!(r.err().is_some_and(|e| e.to_string().contains("truncated")));
    }
    let r = open(b"this is not a block file, but it is long enough to look like one");
    assert!(
        matches!(
            r,
            Err(BlockError::BadMagic {
                section: Section::Header,
                ..
            })
        ),
        "{r:?}"
    );

    let mut future = good.clone();
    future[8..12].copy_from_slice(&2u32.to_le_bytes());
    let r = open(&future);
    assert!(
        matches!(r, Err(BlockError::UnsupportedVersion { found: 2, .. })),
        "{r:?}"
    );
    assert!(r.err().is_some_and(|e| e
        .to_string()
        .contains("format version 2, this build reads only version 1")));

    let mut grown = good.clone();
    grown.push(0);
    let r = open(&grown);
    assert!(
        matches!(
            r,
            Err(BlockError::BadMagic {
                section: Section::Footer,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn a_column_ref_from_another_block_is_refused_not_read_past_the_data() {
    let (a, b) = (tempdir(), tempdir());
    let big = write(&sample(), a.path());
    let small_added = vec![sample().swap_remove(2)];
    let small = write(&small_added, b.path());
    let mut refused = 0;
    for (_, _, c) in big.index().columns() {
        match small.read_column(c) {
            Ok(col) => panic!("read {col:?} from a foreign column ref"),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0);
}

// === a block of version 1, kept ===

fn fixture_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/block/testdata/v1.blk")
}

#[test]
fn a_version_1_block_written_before_still_reads() {
    match open_and_read(&fixture_path()) {
        Ok(back) => assert!(back == sorted(sample()), "the fixture reads other values"),
        Err(e) => panic!("{e}"),
    }
}

/// Writes the fixture above from `sample()`, and the `block` fuzz target's seeds (it and
/// a few small blocks); run by hand when they must change, which is when FORMAT_VERSION
/// changes.
#[test]
#[ignore]
fn write_the_version_1_fixture_and_the_fuzz_seeds() {
    let dir = tempdir();
    let block = write(&sample(), dir.path());
    std::fs::copy(block.path(), fixture_path()).unwrap();

    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/block");
    std::fs::create_dir_all(&seeds).unwrap();
    std::fs::copy(block.path(), seeds.join("sample")).unwrap();
    let t = tags(&[("host", "a")]);
    let small: [(&str, FieldDef, Column); 3] = [
        (
            "one-float-column",
            field("f", FieldType::Float),
            column(&[0, 10, 20], Values::Float(vec![0.5, 0.25, f64::NAN])),
        ),
        (
            "zstd-strings",
            field("s", FieldType::String),
            column(
                &(0..50).collect::<Vec<_>>(),
                Values::String(
                    (0..50)
                        .map(|i| format!("status {}", i % 3).into())
                        .collect(),
                ),
            ),
        ),
        (
            "split-pco-integers",
            field("i", FieldType::Integer),
            column(
                &(0..40).collect::<Vec<_>>(),
                Values::Integer((0..40).map(|i| i * i - 300).collect()),
            ),
        ),
    ];
    for (name, f, c) in small {
        let mut b = BlockBuilder::new("db", START_NS, START_NS + DAY_NS).with_max_chunk_values(30);
        b.add("m", &t, &f, c).unwrap();
        let block = b.write(dir.path(), name).unwrap();
        std::fs::copy(block.path(), seeds.join(name)).unwrap();
    }
}

mod sizes;
