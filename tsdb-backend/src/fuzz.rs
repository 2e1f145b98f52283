//! The bodies of the fuzz targets over this crate's parsers, callable on stable.
//!
//! Each function takes arbitrary bytes, passes them to the entry point the node itself uses
//! (the HTTP handlers, WAL recovery, a peer's resync), and panics only when an invariant the
//! node relies on breaks: a parser itself must never panic, whatever it is given. The
//! `fuzz/` crate (cargo-fuzz, nightly) calls them from its targets, and the `fuzz_replay`
//! test in `tests/` calls them on stable for every saved input under `fuzz/corpus` and
//! `fuzz/regressions`, so what fuzzing found stays fixed. They live here, beside the
//! parsers, because a crate shared by the fuzz crate and one test would be a crate for one
//! member (see `docs/fuzzing.md`).

use crate::http::params;
use crate::lineproto::{self, ParsedBatch};
use crate::model::{Precision, MAX_NANO_TIME, MIN_NANO_TIME};
use crate::replication::shipper::{decode_frames, encode_frames};
use crate::storage::block::{self, BlockBuilder, BlockFile, Column};
use crate::storage::entry::Entry;
use crate::storage::log_tail::Item;
use crate::storage::series::FieldDef;
use crate::storage::snapshot;
use crate::storage::wal::{self, TailState, HEADER_LEN};
use influxql::parse_query;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The time stamped on lines without one: a fixed instant, so a run replays exactly.
const DEFAULT_TIME_NS: i64 = 1_700_000_000_123_456_789;

/// Every precision a write may name.
const PRECISIONS: [Precision; 6] = [
    Precision::Nanoseconds,
    Precision::Microseconds,
    Precision::Milliseconds,
    Precision::Seconds,
    Precision::Minutes,
    Precision::Hours,
];

/// `lineproto`: a `/write` body, parsed as the handler parses it, at a precision chosen by
/// the body's length (a trailing space changes it), so one parse per input covers them all
/// (hours scale a timestamp most, where it can overflow).
pub fn lineproto(data: &[u8]) {
    let precision = PRECISIONS[data.len() % PRECISIONS.len()];
    let batch = lineproto::parse_lines(data, precision, DEFAULT_TIME_NS);
    check_batch(data, &batch);
}

/// What the write handler relies on: errors name a line of the body and print, points
/// carry a time in range.
fn check_batch(body: &[u8], batch: &ParsedBatch) {
    let lines = body.iter().filter(|&&b| b == b'\n').count() + 1;
    for e in &batch.errors {
        assert!(
            (1..=lines).contains(&e.line),
            "error on line {} of {lines}",
            e.line
        );
        assert!(!e.to_string().is_empty());
    }
    assert!(batch.points.len() + batch.errors.len() <= lines);
    for p in &batch.points {
        assert!((MIN_NANO_TIME..=MAX_NANO_TIME).contains(&p.timestamp));
        assert!(!p.measurement.is_empty() && !p.fields.is_empty());
    }
}

/// `influxql`: query text as `/query` gets it. A query that parses prints canonical text
/// (STYLE §14) which parses again, to a statement that prints the same.
pub fn influxql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let statements = match parse_query(text) {
        Ok(statements) => statements,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for statement in statements {
        let canonical = statement.to_string();
        let again = match parse_query(&canonical) {
            Ok(again) => again,
            Err(e) => panic!("{text:?} prints as {canonical:?}, which does not parse: {e}"),
        };
        let printed: Vec<String> = again.iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            std::slice::from_ref(&canonical),
            "{text:?} prints as {canonical:?}, which prints otherwise"
        );
    }
}

/// `tsdb_query_params`: a query string, a newline, then a form body, decoded as `/write`
/// and `/query` decode them.
pub fn query_params(data: &[u8]) {
    let (query, form) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let query = std::str::from_utf8(query).ok();
    let mut params = params::from_query(query);
    let _ = params::write_target(&params);
    let given = params.clone();
    if let Some(form) = form {
        params::add_form(&mut params, form);
    }
    // The query string wins over the form body.
    for (name, value) in &given {
        assert_eq!(params.get(name), Some(value));
    }
    if let Ok(request) = params::query_request(&params, form.is_some()) {
        assert!(!request.text.trim().is_empty());
    }
}

/// `replication_frames`: a replicate request's body, decoded as a peer's frames are, each
/// frame as the entry it carries. A body that decodes encodes back to itself.
pub fn replication_frames(data: &[u8]) {
    let Some(frames) = decode_frames(data) else {
        return;
    };
    let items: Vec<Item> = frames
        .iter()
        .map(|(seq, payload)| Item {
            seq: *seq,
            at_ns: 0,
            payload: Arc::new(payload.clone()),
        })
        .collect();
    assert!(encode_frames(&items) == data, "frames do not re-encode");
    for (_, payload) in &frames {
        entry(payload);
    }
}

/// An entry as a peer or WAL recovery applies it: decoded, and a logged body parsed again.
fn entry(payload: &[u8]) {
    let lines = match Entry::decode(payload) {
        Ok(Entry::WriteLines {
            precision,
            default_time_ns,
            body,
            ..
        }) => (body, precision, default_time_ns),
        Ok(Entry::Replicated { entry, .. }) => match *entry {
            Entry::WriteLines {
                precision,
                default_time_ns,
                body,
                ..
            } => (body, precision, default_time_ns),
            _ => return,
        },
        _ => return,
    };
    let (body, precision, default_time_ns) = lines;
    let batch = lineproto::parse_lines(&body, precision, default_time_ns);
    check_batch(&body, &batch);
}

/// `wal`: a WAL segment's bytes, read as recovery reads them (the records, then each as an
/// entry), once as given and once with every record's checksum made to match, so mutations
/// reach the entries behind the checksums.
pub fn wal(data: &[u8]) {
    wal_segment(data);
    let mut fixed = data.to_vec();
    let mut at = 0;
    while let Some(header) = fixed.get(at..at + HEADER_LEN) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(end) = (at + HEADER_LEN)
            .checked_add(len)
            .filter(|&e| e <= fixed.len())
        else {
            break;
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&fixed[at + 8..end]);
        fixed[at + 4..at + 8].copy_from_slice(&hasher.finalize().to_le_bytes());
        at = end;
    }
    wal_segment(&fixed);
}

fn wal_segment(data: &[u8]) {
    let Ok((records, tail)) = wal::read_segment_bytes(data) else {
        panic!("reading a slice failed");
    };
    // The records read are exactly the bytes before the tail.
    let mut again = Vec::new();
    for r in &records {
        wal::encode_record(&mut again, r.seq, &r.payload);
    }
    let end = match tail {
        TailState::Clean => data.len(),
        TailState::Torn { offset } | TailState::Corrupt { offset } => offset as usize,
    };
    assert!(
        again == data[..end],
        "records do not re-encode to the bytes read"
    );
    for r in &records {
        entry(&r.payload);
    }
}

/// `snapshot`: a snapshot file's (or a peer's resync body's) bytes, decoded as they are at
/// start-up, once as given and once with every frame's checksum made to match. A snapshot
/// that decodes encodes to one that decodes to the same bytes.
pub fn snapshot(data: &[u8]) {
    snapshot_decode(data);
    let mut fixed = data.to_vec();
    let mut at = SNAPSHOT_HEADER_LEN;
    while let Some(header) = fixed.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some(end) = (at + 8).checked_add(len).filter(|&e| e <= fixed.len()) else {
            break;
        };
        let crc = crc32fast::hash(&fixed[at + 8..end]);
        fixed[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    snapshot_decode(&fixed);
}

/// The magic and the sequence number before a snapshot's frames.
const SNAPSHOT_HEADER_LEN: usize = 9 + 8;

fn snapshot_decode(data: &[u8]) {
    let origin = Path::new("fuzz.snap");
    let Ok((seq, catalog)) = snapshot::decode(data, origin, 0) else {
        return;
    };
    let bytes = match snapshot::snapshot_bytes(seq, &catalog) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a decoded snapshot does not encode: {e}"),
    };
    let (seq_again, catalog_again) = match snapshot::decode(&bytes, origin, 0) {
        Ok(decoded) => decoded,
        Err(e) => panic!("a re-encoded snapshot does not decode: {e}"),
    };
    assert_eq!(seq, seq_again);
    let bytes_again = snapshot::snapshot_bytes(seq_again, &catalog_again);
    assert!(
        bytes_again.is_ok_and(|b| b == bytes),
        "a snapshot changes on its second round trip"
    );
}

/// `block`: a block file's bytes, opened, verified and read column by column as the
/// engine reads them, once as given and once with every checksum made to match, so
/// mutations reach the index and the column decoders. What opens and reads whole, if it
/// holds at most `REWRITE_MAX_VALUES` values, is written again as a new block, which must
/// read back to the same columns.
pub fn block(data: &[u8]) {
    block_file(data);
    if let Some(fixed) = block::with_checksums_fixed(data).filter(|f| f != data) {
        block_file(&fixed);
    }
}

/// Where the block target writes its files: memory (`/dev/shm`) where there is one, so
/// the fsyncs of a rewrite cost nothing.
fn block_scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The most values of a block the `block` target writes again.
const REWRITE_MAX_VALUES: u64 = 512;

/// A block's column: measurement, tags, field, values.
type NamedColumn = (String, Vec<(String, String)>, FieldDef, Column);

fn block_file(data: &[u8]) {
    let dir = block_scratch_dir();
    let name = format!("tsdb-fuzz-block-{}", std::process::id());
    let path = dir.join(format!("{name}.blk"));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let opened = BlockFile::open(&path);
    let _ = std::fs::remove_file(&path);
    let Ok(file) = opened else {
        return;
    };
    let _ = file.verify();
    let index = file.index().clone();
    // The chunks of one field joined.
    let mut columns: Vec<NamedColumn> = Vec::new();
    for (m, s, c) in index.columns() {
        let Ok(col) = file.read_column(c) else {
            return;
        };
        let field = m.fields[c.field as usize].clone();
        let n = c.count as usize;
        assert!(
            col.times.len() == n && col.versions.len() == n && col.values.len() == n,
            "a chunk of {n} values read as {} times, {} versions, {} values",
            col.times.len(),
            col.versions.len(),
            col.values.len()
        );
        assert_eq!(col.values.field_type(), field.ty);
        assert!(col.times.windows(2).all(|p| p[0] < p[1]));
        assert!(
            index.partition_start_ns <= col.times[0] && col.times[n - 1] < index.partition_end_ns
        );
        match columns.last_mut() {
            Some((lm, lt, lf, last)) if *lm == m.name && *lt == s.tags && *lf == field => {
                assert!(
                    last.times.last() < col.times.first(),
                    "chunks of a field overlap"
                );
                last.times.extend(col.times);
                last.versions.extend(col.versions);
                assert!(last.values.append(col.values).is_ok());
            }
            _ => columns.push((m.name.clone(), s.tags.clone(), field, col)),
        }
    }
    // Encoding costs ten times what reading does (pco searches for its delta encoding):
    // only small blocks are written again, which keeps the target near 10,000 inputs a
    // second; the small seeds and what grows from them still reach the encoder.
    if index.value_count > REWRITE_MAX_VALUES {
        return;
    }
    let mut again = BlockBuilder::new(&index.db, index.partition_start_ns, index.partition_end_ns);
    for (m, tags, field, col) in &columns {
        if let Err(e) = again.add(m, tags, field, col.clone()) {
            panic!("a block that reads does not build again: {e}");
        }
    }
    let rewritten = match again.write(&dir, &format!("{name}-again.blk")) {
        Ok(rewritten) => rewritten,
        Err(e) => panic!("a block that reads does not write again: {e}"),
    };
    let _ = std::fs::remove_file(rewritten.path());
    let mut read = rewritten
        .index()
        .columns()
        .map(|(_, _, c)| rewritten.read_column(c));
    for (_, _, _, col) in &columns {
        let mut joined: Option<Column> = None;
        while joined.as_ref().map_or(0, Column::len) < col.len() {
            let chunk = match read.next() {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => panic!("a rewritten block does not read: {e}"),
                None => panic!("a rewritten block has fewer values"),
            };
            match &mut joined {
                None => joined = Some(chunk),
                Some(j) => {
                    j.times.extend(chunk.times);
                    j.versions.extend(chunk.versions);
                    assert!(j.values.append(chunk.values).is_ok());
                }
            }
        }
        assert!(
            joined.as_ref() == Some(col),
            "a rewritten block reads other values"
        );
    }
    assert!(read.next().is_none(), "a rewritten block has more columns");
}

#[cfg(test)]
mod tests {
    /// The version-1 block kept by the block format's tests.
    fn block_fixture() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/storage/block/testdata/v1.blk");
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_block_body_reads_and_rewrites_the_fixture_and_survives_its_mutations() {
        let good = block_fixture();
        super::block(&good);
        // Damage behind the checksums, which the fuzz body fixes before reading.
        for at in (12..good.len()).step_by(97) {
            let mut bytes = good.clone();
            bytes[at] ^= 0x5a;
            super::block(&bytes);
        }
    }
}
