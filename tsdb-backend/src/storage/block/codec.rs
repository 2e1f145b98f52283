//! Column encodings: the bytes of one section, and back.
//!
//! Every section starts with a one-byte codec tag. The encoder tries the candidates for the
//! column's type and keeps the smallest, so a column of one or two values costs a few
//! bytes rather than pco's metadata (pco takes 15 bytes for one value and 25 for two,
//! against 8 and 16 plain; it wins from about ten values on):
//!
//! ```text
//! numbers (times i64, float f64, integer i64, unsigned u64, and the versions' parts)
//!   0 plain     n values, little-endian, 8 bytes each (4 for a version's node)
//!   1 constant  one value: every value has these bits
//!   2 pco       a wrapped pco stream: pco header, chunk metadata, one page of n values
//! booleans
//!   0 bitmap    ceil(n/8) bytes, value i in bit i % 8 of byte i / 8, unused bits zero
//!   1 constant  one byte, 0 or 1
//! strings
//!   0 plain     n times (LEB128 length, UTF-8 bytes)
//!   1 zstd      LEB128 length of the plain bytes, then one zstd frame of them
//! versions
//!   0 columns   LEB128 length of the hlc part, the hlc part (numbers of u64), the node
//!               part (numbers of u32)
//! ```
//!
//! The count of values is not in the section: the index holds it, and the decoder is told
//! it. Encoding is deterministic, so equal columns give equal bytes, which is what lets the
//! writer store a section once for several chunks (decoding with each chunk's own count
//! gives each chunk's own values, since the bytes are each one's encoding).
//!
//! Decoding never trusts the bytes: every length is checked against what is left, counts
//! are bounded by the caller (by `MAX_CHUNK_VALUES`), and what does not decode to exactly
//! `n` values with no bytes left over is an error. Pco itself is a parser of untrusted
//! bytes too, but sizes a few tables from fields before reading them (a dictionary of up to
//! 2^25 entries, a lookback window of up to 2^24): a section whose checksum was forged can
//! make it allocate a few hundred MiB once. A corrupted one does not reach it: the crc32 is
//! checked first.

use crate::storage::version::Version;
use pco::data_types::Number;
use pco::wrapped::{FileCompressor, FileDecompressor};
use pco::{ChunkConfig, PagingSpec};
use std::io::Read;

const NUM_PLAIN: u8 = 0;
const NUM_CONSTANT: u8 = 1;
const NUM_PCO: u8 = 2;

const BOOL_BITMAP: u8 = 0;
const BOOL_CONSTANT: u8 = 1;

const STR_PLAIN: u8 = 0;
const STR_ZSTD: u8 = 1;

const VERSIONS_COLUMNS: u8 = 0;

/// Zstd's level for string columns: written once, read often, so worth some effort.
const ZSTD_LEVEL: i32 = 9;
/// Below this many plain bytes, strings are not worth a zstd frame (about 10 bytes).
const ZSTD_MIN_BYTES: usize = 32;

/// Why a section's bytes do not decode; the caller adds the file and the section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DecodeError(pub(super) String);

fn err<T>(reason: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(reason.into()))
}

/// A number type of a column: what pco compresses, and its plain encoding.
pub(super) trait Num: Number + Copy {
    const WIDTH: usize;
    const ZERO: Self;
    fn put(self, out: &mut Vec<u8>);
    /// From exactly `WIDTH` little-endian bytes.
    fn take(bytes: &[u8]) -> Self;
    /// The bits, for "same value" (a float NaN equals itself, -0.0 differs from 0.0).
    fn bits(self) -> u64;
}

macro_rules! num {
    ($t:ty, $w:expr, $bits:expr) => {
        impl Num for $t {
            const WIDTH: usize = $w;
            const ZERO: Self = 0 as $t;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(bytes: &[u8]) -> Self {
                let mut a = [0u8; $w];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
            fn bits(self) -> u64 {
                $bits(self)
            }
        }
    };
}

num!(i64, 8, |x: i64| x as u64);
num!(u64, 8, |x: u64| x);
num!(u32, 4, u64::from);
num!(f64, 8, f64::to_bits);

// === numbers ===

/// Appends the smallest encoding of `values` (non-empty) to `out`.
pub(super) fn encode_numbers<T: Num>(values: &[T], out: &mut Vec<u8>) {
    let Some(&first) = values.first() else {
        out.push(NUM_PLAIN);
        return;
    };
    if values.iter().all(|v| v.bits() == first.bits()) {
        out.push(NUM_CONSTANT);
        first.put(out);
        return;
    }
    let plain_len = 1 + values.len() * T::WIDTH;
    if let Some(pco) = pco_compress(values).filter(|p| 1 + p.len() < plain_len) {
        out.push(NUM_PCO);
        out.extend_from_slice(&pco);
        return;
    }
    out.push(NUM_PLAIN);
    for v in values {
        v.put(out);
    }
}

/// One wrapped pco stream of `values` as one page; `None` if pco refuses them.
fn pco_compress<T: Num>(values: &[T]) -> Option<Vec<u8>> {
    let config = ChunkConfig::default().with_paging_spec(PagingSpec::Exact(vec![values.len()]));
    let file = FileCompressor::default();
    let mut out = Vec::new();
    file.write_header(&mut out).ok()?;
    let mut chunk = file.chunk_compressor(values, &config).ok()?;
    chunk.write_meta(&mut out).ok()?;
    chunk.write_page(0, &mut out).ok()?;
    Some(out)
}

/// Decodes exactly `n` numbers (the caller has bounded `n`).
pub(super) fn decode_numbers<T: Num>(bytes: &[u8], n: usize) -> Result<Vec<T>, DecodeError> {
    let Some((&tag, rest)) = bytes.split_first() else {
        return err("empty section");
    };
    match tag {
        NUM_PLAIN => {
            if Some(rest.len()) != n.checked_mul(T::WIDTH) {
                return err(format!(
                    "plain numbers: {} bytes for {n} values of {} bytes",
                    rest.len(),
                    T::WIDTH
                ));
            }
            Ok(rest.chunks_exact(T::WIDTH).map(T::take).collect())
        }
        NUM_CONSTANT => {
            if rest.len() != T::WIDTH {
                return err(format!("constant: {} bytes for one value", rest.len()));
            }
            Ok(vec![T::take(rest); n])
        }
        NUM_PCO => pco_decompress(rest, n),
        other => err(format!("unknown number codec {other}")),
    }
}

fn pco_decompress<T: Num>(bytes: &[u8], n: usize) -> Result<Vec<T>, DecodeError> {
    let pco = |e: pco::errors::PcoError| DecodeError(e.to_string());
    if n == 0 {
        return err("pco: no values");
    }
    let (file, rest) = FileDecompressor::new(bytes).map_err(pco)?;
    let (mut chunk, rest) = file.chunk_decompressor::<T, &[u8]>(rest).map_err(pco)?;
    let mut page = chunk.page_decompressor(rest, n).map_err(pco)?;
    let mut out = vec![T::ZERO; n];
    let progress = page.read(&mut out).map_err(pco)?;
    if progress.n_processed != n || !progress.finished {
        return err(format!(
            "pco: {} of {n} values decoded",
            progress.n_processed
        ));
    }
    let left = page.into_src().len();
    if left != 0 {
        return err(format!("pco: {left} bytes after the values"));
    }
    Ok(out)
}

// === booleans ===

pub(super) fn encode_booleans(values: &[bool], out: &mut Vec<u8>) {
    if let Some(&first) = values.first() {
        if values.iter().all(|&v| v == first) {
            out.extend_from_slice(&[BOOL_CONSTANT, u8::from(first)]);
            return;
        }
    }
    out.push(BOOL_BITMAP);
    for byte in values.chunks(8) {
        let bits = byte
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << i));
        out.push(bits);
    }
}

pub(super) fn decode_booleans(bytes: &[u8], n: usize) -> Result<Vec<bool>, DecodeError> {
    let Some((&tag, rest)) = bytes.split_first() else {
        return err("empty section");
    };
    match tag {
        BOOL_CONSTANT => match rest {
            [0] => Ok(vec![false; n]),
            [1] => Ok(vec![true; n]),
            _ => err("constant boolean: not one byte of 0 or 1"),
        },
        BOOL_BITMAP => {
            if rest.len() != n.div_ceil(8) {
                return err(format!("bitmap: {} bytes for {n} values", rest.len()));
            }
            let unused = n % 8;
            if let Some(&last) = rest.last() {
                if unused != 0 && last >> unused != 0 {
                    return err("bitmap: bits set past the last value");
                }
            }
            Ok((0..n).map(|i| rest[i / 8] >> (i % 8) & 1 == 1).collect())
        }
        other => err(format!("unknown boolean codec {other}")),
    }
}

// === strings ===

/// The plain bytes of strings: each as LEB128 length and UTF-8 bytes.
pub(super) fn plain_strings_len(values: &[Box<str>]) -> u64 {
    values
        .iter()
        .map(|s| (varint_len(s.len() as u64) + s.len()) as u64)
        .sum()
}

pub(super) fn encode_strings(values: &[Box<str>], out: &mut Vec<u8>) {
    let mut plain = Vec::with_capacity(plain_strings_len(values) as usize);
    for s in values {
        put_varint(&mut plain, s.len() as u64);
        plain.extend_from_slice(s.as_bytes());
    }
    if plain.len() >= ZSTD_MIN_BYTES {
        if let Ok(frame) = zstd::bulk::compress(&plain, ZSTD_LEVEL) {
            if varint_len(plain.len() as u64) + frame.len() < plain.len() {
                out.push(STR_ZSTD);
                put_varint(out, plain.len() as u64);
                out.extend_from_slice(&frame);
                return;
            }
        }
    }
    out.push(STR_PLAIN);
    out.extend_from_slice(&plain);
}

pub(super) fn decode_strings(
    bytes: &[u8],
    n: usize,
    max_plain: u64,
) -> Result<Vec<Box<str>>, DecodeError> {
    let Some((&tag, rest)) = bytes.split_first() else {
        return err("empty section");
    };
    match tag {
        STR_PLAIN => parse_strings(rest, n),
        STR_ZSTD => {
            let mut rest = rest;
            let Some(len) = read_varint(&mut rest) else {
                return err("zstd strings: bad length");
            };
            if len > max_plain {
                return err(format!(
                    "zstd strings: {len} bytes is more than a chunk holds"
                ));
            }
            let decoder = zstd::stream::read::Decoder::with_buffer(rest)
                .map_err(|e| DecodeError(format!("zstd: {e}")))?;
            // The buffer grows as bytes come out, not to the length the section claims.
            let mut plain = Vec::with_capacity((len as usize).min(4 * rest.len() + 1024));
            decoder
                .single_frame()
                .take(len + 1)
                .read_to_end(&mut plain)
                .map_err(|e| DecodeError(format!("zstd: {e}")))?;
            if plain.len() as u64 != len {
                return err(format!(
                    "zstd strings: {} bytes decompressed, {len} expected",
                    plain.len()
                ));
            }
            parse_strings(&plain, n)
        }
        other => err(format!("unknown string codec {other}")),
    }
}

fn parse_strings(mut bytes: &[u8], n: usize) -> Result<Vec<Box<str>>, DecodeError> {
    let mut out = Vec::with_capacity(n.min(bytes.len()));
    for i in 0..n {
        let len = read_varint(&mut bytes)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l <= bytes.len());
        let Some(len) = len else {
            return err(format!("string {i} of {n}: bad length"));
        };
        let (s, rest) = bytes.split_at(len);
        match std::str::from_utf8(s) {
            Ok(s) => out.push(Box::from(s)),
            Err(_) => return err(format!("string {i} of {n}: not UTF-8")),
        }
        bytes = rest;
    }
    if !bytes.is_empty() {
        return err(format!("{} bytes after {n} strings", bytes.len()));
    }
    Ok(out)
}

// === versions ===

pub(super) fn encode_versions(versions: &[Version], out: &mut Vec<u8>) {
    let hlcs: Vec<u64> = versions.iter().map(|v| v.hlc).collect();
    let nodes: Vec<u32> = versions.iter().map(|v| v.node).collect();
    let mut hlc = Vec::new();
    encode_numbers(&hlcs, &mut hlc);
    out.push(VERSIONS_COLUMNS);
    put_varint(out, hlc.len() as u64);
    out.extend_from_slice(&hlc);
    encode_numbers(&nodes, out);
}

pub(super) fn decode_versions(bytes: &[u8], n: usize) -> Result<Vec<Version>, DecodeError> {
    let Some((&tag, mut rest)) = bytes.split_first() else {
        return err("empty section");
    };
    if tag != VERSIONS_COLUMNS {
        return err(format!("unknown versions codec {tag}"));
    }
    let hlc_len = read_varint(&mut rest)
        .and_then(|l| usize::try_from(l).ok())
        .filter(|&l| l <= rest.len());
    let Some(hlc_len) = hlc_len else {
        return err("versions: bad length of the hlc part");
    };
    let (hlc, node) = rest.split_at(hlc_len);
    let hlcs = decode_numbers::<u64>(hlc, n).map_err(|e| DecodeError(format!("hlc: {}", e.0)))?;
    let nodes =
        decode_numbers::<u32>(node, n).map_err(|e| DecodeError(format!("node: {}", e.0)))?;
    Ok(hlcs
        .into_iter()
        .zip(nodes)
        .map(|(hlc, node)| Version { hlc, node })
        .collect())
}

// === LEB128 ===

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one LEB128 u64, refusing more than 10 bytes and bits past 64.
fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        let low = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None;
        }
        v |= low << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Num + std::fmt::Debug>(values: &[T]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_numbers(values, &mut bytes);
        let back = decode_numbers::<T>(&bytes, values.len()).map_err(|e| e.0);
        let bits = |v: &[T]| v.iter().map(|x| x.bits()).collect::<Vec<_>>();
        assert_eq!(back.map(|b| bits(&b)), Ok(bits(values)), "{values:?}");
        bytes
    }

    #[test]
    fn one_or_two_numbers_cost_a_tag_and_their_bytes() {
        assert_eq!(round_trip(&[7i64]).len(), 1 + 8);
        assert_eq!(round_trip(&[7i64, 7]).len(), 1 + 8);
        assert_eq!(round_trip(&[7i64, 8]).len(), 1 + 16);
        assert_eq!(round_trip(&[1.5f64, f64::NAN]).len(), 1 + 16);
    }

    #[test]
    fn a_regular_time_column_takes_a_few_bytes() {
        let times: Vec<i64> = (0..8640)
            .map(|i| 1_700_000_000_000_000_000 + i * 10_000_000_000)
            .collect();
        let bytes = round_trip(&times);
        assert!(bytes.len() < 64, "{} bytes", bytes.len());
    }

    #[test]
    fn floats_keep_their_bits_through_pco() {
        let mut values: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.01).collect();
        values.extend([
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
        ]);
        values.push(f64::from_bits(0x7ff0_0000_dead_beef));
        let bytes = round_trip(&values);
        assert_eq!(bytes[0], NUM_PCO);
    }

    #[test]
    fn integers_at_the_extremes_round_trip() {
        round_trip(&[i64::MIN, i64::MAX, 0, -1, 1, i64::MIN, i64::MAX]);
        round_trip(
            &(0..500)
                .map(|i| if i % 2 == 0 { i64::MIN } else { i64::MAX })
                .collect::<Vec<_>>(),
        );
        round_trip(&[u64::MAX, 0, u64::MAX]);
        round_trip(&[u32::MAX, 0, 1]);
    }

    #[test]
    fn a_section_with_bytes_after_its_values_is_refused() {
        let mut bytes = round_trip(&(0..300i64).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(bytes[0], NUM_PCO);
        bytes.push(0);
        assert!(decode_numbers::<i64>(&bytes, 300).is_err());
        assert!(decode_numbers::<i64>(&bytes[..bytes.len() - 2], 300).is_err());
    }

    #[test]
    fn booleans_round_trip_with_their_padding_checked() {
        for n in [1, 7, 8, 9, 100] {
            let values: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
            let mut bytes = Vec::new();
            encode_booleans(&values, &mut bytes);
            assert_eq!(decode_booleans(&bytes, n).map_err(|e| e.0), Ok(values));
        }
        assert!(decode_booleans(&[BOOL_BITMAP, 0b1000_0000], 7).is_err());
        assert!(decode_booleans(&[BOOL_CONSTANT, 2], 7).is_err());
    }

    #[test]
    fn strings_round_trip_plain_and_compressed() {
        let few: Vec<Box<str>> = vec!["".into(), "é".into(), "a b".into()];
        let many: Vec<Box<str>> = (0..500)
            .map(|i| format!("status {}", i % 3).into())
            .collect();
        for (values, tag) in [(few, STR_PLAIN), (many, STR_ZSTD)] {
            let mut bytes = Vec::new();
            encode_strings(&values, &mut bytes);
            assert_eq!(bytes[0], tag);
            let back = decode_strings(&bytes, values.len(), u64::MAX).map_err(|e| e.0);
            assert_eq!(back, Ok(values));
        }
    }

    #[test]
    fn a_zstd_section_claiming_more_than_a_chunk_holds_is_refused_before_decompressing() {
        let mut bytes = vec![STR_ZSTD];
        put_varint(&mut bytes, 1 << 40);
        assert!(decode_strings(&bytes, 1, 1 << 26).is_err());
    }

    #[test]
    fn varints_refuse_overlong_encodings() {
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert_eq!(read_varint(&mut out.as_slice()), Some(u64::MAX));
        assert_eq!(varint_len(u64::MAX), out.len());
        assert_eq!(read_varint(&mut [0xff; 11].as_slice()), None);
        assert_eq!(
            read_varint(
                &mut [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02].as_slice()
            ),
            None
        );
    }

    #[test]
    fn versions_of_one_batch_cost_a_few_bytes() {
        let v = Version {
            hlc: 123 << 16,
            node: 99,
        };
        let mut bytes = Vec::new();
        encode_versions(&vec![v; 8640], &mut bytes);
        assert_eq!(bytes.len(), 1 + 1 + 9 + 5);
        assert_eq!(
            decode_versions(&bytes, 8640).map_err(|e| e.0),
            Ok(vec![v; 8640])
        );
    }
}
