//! The write-ahead log: framed, checksummed records in numbered segment files.
//!
//! A record on disk is `len: u32 LE | crc32: u32 LE | seq: u64 LE | payload[len]`, where the
//! CRC covers `seq` and the payload. Segments are named `wal-<first seq, 20 digits>.log` and
//! only ever appended to. On open, every segment is read in order; the first record that is
//! short (a torn write) or whose checksum does not match ends the log: the file is cut
//! there, later segments are set aside as `.corrupt`, and nothing after the cut is mistaken
//! for data.
//!
//! This file knows nothing about what a record means (see `storage/entry.rs`) nor about
//! threads (see `storage/writer.rs`): it is the byte format and the file handling.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes before each payload: length, checksum, sequence number.
pub const HEADER_LEN: usize = 16;
/// A payload larger than this is treated as corruption when reading (a torn length field
/// could otherwise make us allocate gigabytes).
pub const MAX_RECORD_LEN: u32 = 1 << 30;
/// The most a record's buffer is sized to before its bytes are read.
const PREALLOCATE_MAX: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl WalError {
    /// True when the file system is out of space (or of the user's quota): nothing is wrong
    /// with the log, and a write can succeed once space is freed.
    pub fn is_out_of_space(&self) -> bool {
        let WalError::Io { source, .. } = self;
        matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends one framed record to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&hasher.finalize().to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// Why reading a segment stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailState {
    /// Every byte of the segment belonged to a valid record.
    Clean,
    /// The segment ends inside a record (a write torn by a crash) at this offset.
    Torn { offset: u64 },
    /// A record at this offset failed its checksum or has an impossible length.
    Corrupt { offset: u64 },
}

/// Reads every valid record of one segment, stopping at the first bad one.
pub fn read_segment(reader: impl Read) -> io::Result<(Vec<Record>, TailState)> {
    read_records(BufReader::with_capacity(1 << 20, reader))
}

/// [`read_segment`] over a segment already in memory, without a read buffer (the `wal`
/// fuzz target reads its input so). Reading a slice cannot fail, so the error is never
/// seen in practice.
pub fn read_segment_bytes(bytes: &[u8]) -> io::Result<(Vec<Record>, TailState)> {
    read_records(bytes)
}

fn read_records(mut reader: impl Read) -> io::Result<(Vec<Record>, TailState)> {
    let mut records = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut header = [0u8; HEADER_LEN];
        match read_full(&mut reader, &mut header)? {
            0 => return Ok((records, TailState::Clean)),
            n if n < HEADER_LEN => return Ok((records, TailState::Torn { offset })),
            _ => {}
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let seq_bytes = [
            header[8], header[9], header[10], header[11], header[12], header[13], header[14],
            header[15],
        ];
        if len > MAX_RECORD_LEN {
            return Ok((records, TailState::Corrupt { offset }));
        }
        // The buffer grows as the bytes arrive instead of being sized by the length field:
        // a torn length in a 16-byte tail made every open allocate and zero up to 1 GiB.
        let mut payload = Vec::with_capacity((len as usize).min(PREALLOCATE_MAX));
        (&mut reader)
            .take(u64::from(len))
            .read_to_end(&mut payload)?;
        if payload.len() < len as usize {
            return Ok((records, TailState::Torn { offset }));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq_bytes);
        hasher.update(&payload);
        if hasher.finalize() != crc {
            return Ok((records, TailState::Corrupt { offset }));
        }
        records.push(Record {
            seq: u64::from_le_bytes(seq_bytes),
            payload,
        });
        offset += HEADER_LEN as u64 + u64::from(len);
    }
}

/// Like `read_exact`, but reports how much was read instead of failing on a short read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The path of the segment whose first record has sequence number `first_seq`.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("wal-{first_seq:020}.log"))
}

/// The segments in `dir`, ordered by their first sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix("wal-")
            .and_then(|rest| rest.strip_suffix(".log"))
        else {
            continue;
        };
        if let Ok(first) = num.parse::<u64>() {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// What recovery found in the log directory.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Records with a sequence number above the snapshot's, in log order.
    pub records: Vec<Record>,
    /// Records the snapshot already covers, in segments kept for peers that lack them.
    pub retained: Vec<Record>,
    /// The first sequence number of the oldest segment (records before it are gone).
    pub first_seq: Option<u64>,
    /// The highest sequence number seen (or the snapshot's when the log is empty).
    pub last_seq: u64,
    /// Bytes cut off the end of the log because they were torn or corrupt.
    pub cut_bytes: u64,
}

/// Reads all segments, keeping records after `after_seq`, and cuts the log at the first bad
/// record so that the next append starts on a clean boundary.
pub fn recover(dir: &Path, after_seq: u64) -> Result<Recovered, WalError> {
    let mut rec = Recovered {
        last_seq: after_seq,
        ..Recovered::default()
    };
    let segments = list_segments(dir)?;
    rec.first_seq = segments.first().map(|(first, _)| *first);
    let mut broken = false;
    for (_, path) in &segments {
        if broken {
            // Everything after a corrupt record is untrusted: keep it for a human, never replay it.
            let aside = path.with_extension("log.corrupt");
            tracing::error!(segment = %path.display(), "setting aside a wal segment that follows a corrupt record");
            fs::rename(path, &aside).map_err(io_err(path))?;
            continue;
        }
        let file = File::open(path).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        let (records, tail) = read_segment(file).map_err(io_err(path))?;
        for r in records {
            if r.seq > after_seq {
                rec.last_seq = rec.last_seq.max(r.seq);
                rec.records.push(r);
            } else {
                rec.retained.push(r);
            }
        }
        let cut_at = match tail {
            TailState::Clean => None,
            TailState::Torn { offset } => {
                tracing::warn!(segment = %path.display(), offset, "wal ends in a torn record: cutting it off");
                Some(offset)
            }
            TailState::Corrupt { offset } => {
                tracing::error!(segment = %path.display(), offset, "wal record fails its checksum: cutting the log there");
                broken = true;
                Some(offset)
            }
        };
        if let Some(offset) = cut_at {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err(path))?;
            f.set_len(offset).map_err(io_err(path))?;
            f.sync_all().map_err(io_err(path))?;
            rec.cut_bytes += size - offset;
        }
    }
    Ok(rec)
}

/// An open segment being appended to.
#[derive(Debug)]
pub struct Segment {
    pub path: PathBuf,
    pub first_seq: u64,
    file: File,
    pub len: u64,
}

impl Segment {
    /// Opens (or creates) the segment that starts at `first_seq` for appending.
    pub fn open(dir: &Path, first_seq: u64) -> Result<Segment, WalError> {
        let path = segment_path(dir, first_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = file.metadata().map_err(io_err(&path))?.len();
        sync_dir(dir)?;
        Ok(Segment {
            path,
            first_seq,
            file,
            len,
        })
    }

    /// Appends already framed bytes.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        self.file.write_all(bytes).map_err(io_err(&self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// Cuts the segment back to `len` bytes (what it held before a failed append) and makes
    /// that durable, so that the next append starts on a record boundary again. Appends go
    /// to the end of the file (`O_APPEND`), which is `len` afterwards.
    pub fn truncate_to(&mut self, len: u64) -> Result<(), WalError> {
        self.file.set_len(len).map_err(io_err(&self.path))?;
        self.file.sync_data().map_err(io_err(&self.path))?;
        self.len = len;
        Ok(())
    }
}

/// Makes a directory's entries (created or renamed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (seq, p) in records {
            encode_record(&mut buf, *seq, p);
        }
        buf
    }

    #[test]
    fn records_read_back_in_order() {
        let buf = framed(&[(1, b"a"), (2, b"bb"), (3, b"")]);
        let (recs, tail) = read_segment(&buf[..]).unwrap();
        assert_eq!(tail, TailState::Clean);
        assert_eq!(
            recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(recs[1].payload, b"bb");
    }

    #[test]
    fn a_torn_last_record_is_reported_at_its_start_for_every_cut_point() {
        let whole = framed(&[(1, b"first"), (2, b"second record")]);
        let first_len = HEADER_LEN + 5;
        for cut in first_len + 1..whole.len() {
            let (recs, tail) = read_segment(&whole[..cut]).unwrap();
            assert_eq!(recs.len(), 1, "cut at {cut}");
            assert_eq!(
                tail,
                TailState::Torn {
                    offset: first_len as u64
                },
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_flipped_bit_in_a_payload_is_caught_by_the_checksum() {
        let mut buf = framed(&[(1, b"first"), (2, b"second")]);
        let last = buf.len() - 1;
        buf[last] ^= 0x01;
        let (recs, tail) = read_segment(&buf[..]).unwrap();
        assert_eq!(recs.len(), 1);
        assert!(matches!(tail, TailState::Corrupt { .. }), "{tail:?}");
    }

    #[test]
    fn a_flipped_bit_in_a_sequence_number_is_caught_by_the_checksum() {
        let mut buf = framed(&[(7, b"x")]);
        buf[8] ^= 0x10;
        let (recs, tail) = read_segment(&buf[..]).unwrap();
        assert!(recs.is_empty());
        assert_eq!(tail, TailState::Corrupt { offset: 0 });
    }

    #[test]
    fn recover_cuts_a_torn_tail_so_appends_continue_on_a_clean_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::open(dir.path(), 1).unwrap();
        let buf = framed(&[(1, b"one"), (2, b"two")]);
        seg.append(&buf[..buf.len() - 2]).unwrap();
        drop(seg);
        let rec = recover(dir.path(), 0).unwrap();
        assert_eq!(rec.records.len(), 1);
        assert_eq!(rec.last_seq, 1);
        assert_eq!(rec.cut_bytes, (HEADER_LEN + 3 - 2) as u64);

        let mut seg = Segment::open(dir.path(), 1).unwrap();
        seg.append(&framed(&[(2, b"two again")])).unwrap();
        drop(seg);
        let rec = recover(dir.path(), 0).unwrap();
        assert_eq!(rec.records.len(), 2);
        assert_eq!(rec.records[1].payload, b"two again");
    }

    #[test]
    fn truncating_after_a_half_written_append_leaves_a_log_that_recovers_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::open(dir.path(), 1).unwrap();
        seg.append(&framed(&[(1, b"kept")])).unwrap();
        let before = seg.len;
        // What a write cut short by a full disk leaves: part of the next record.
        let next = framed(&[(2, b"lost to a full disk")]);
        seg.append(&next[..7]).unwrap();
        seg.truncate_to(before).unwrap();
        assert_eq!(seg.len, before);
        seg.append(&framed(&[(2, b"written once space returned")]))
            .unwrap();
        drop(seg);
        let rec = recover(dir.path(), 0).unwrap();
        assert_eq!(rec.cut_bytes, 0);
        assert_eq!(
            rec.records
                .iter()
                .map(|r| r.payload.as_slice())
                .collect::<Vec<_>>(),
            vec![&b"kept"[..], &b"written once space returned"[..]]
        );
    }

    #[test]
    fn only_a_full_disk_or_quota_counts_as_out_of_space() {
        let err = |kind: io::ErrorKind| WalError::Io {
            path: PathBuf::from("wal"),
            source: io::Error::from(kind),
        };
        assert!(err(io::ErrorKind::StorageFull).is_out_of_space());
        assert!(err(io::ErrorKind::QuotaExceeded).is_out_of_space());
        assert!(!err(io::ErrorKind::Other).is_out_of_space());
        // ENOSPC as the kernel reports it.
        let enospc = WalError::Io {
            path: PathBuf::from("wal"),
            source: io::Error::from_raw_os_error(28),
        };
        assert!(enospc.is_out_of_space());
    }

    #[test]
    fn recover_skips_records_covered_by_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::open(dir.path(), 1).unwrap();
        seg.append(&framed(&[(1, b"a"), (2, b"b"), (3, b"c")]))
            .unwrap();
        drop(seg);
        let rec = recover(dir.path(), 2).unwrap();
        assert_eq!(
            rec.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(rec.last_seq, 3);
    }

    #[test]
    fn segments_after_a_corrupt_record_are_set_aside_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = framed(&[(1, b"a"), (2, b"b")]);
        let n = first.len();
        first[n - 1] ^= 0xff;
        Segment::open(dir.path(), 1)
            .unwrap()
            .append(&first)
            .unwrap();
        Segment::open(dir.path(), 3)
            .unwrap()
            .append(&framed(&[(3, b"c")]))
            .unwrap();
        let rec = recover(dir.path(), 0).unwrap();
        assert_eq!(rec.records.len(), 1);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        assert!(dir
            .path()
            .join("wal-00000000000000000003.log.corrupt")
            .exists());
    }
}
