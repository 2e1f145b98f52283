//! The productions of one line, from measurement to timestamp, read over its bytes.
//!
//! Each production takes the line and the position it starts at and returns what it read
//! and the position after it. Positions only land next to ASCII delimiters, so slicing the
//! `&str` there never splits a character; text is copied out once, unescaped only when a
//! backslash was seen. Which input fails with which error follows InfluxDB 1.6's scanners
//! (`scanKey`, `scanFields`, `scanNumber`, `scanTime`), including the order they check in.

use super::{escape, flat_scan, LineErrorKind, MAX_KEY_LENGTH};
use crate::model::{FieldType, FieldValue, Point, Precision, MAX_NANO_TIME, MIN_NANO_TIME};
use std::collections::HashMap;
use std::num::IntErrorKind;
use std::sync::Arc;

type Result<T> = std::result::Result<T, LineErrorKind>;

/// The tag and field counts of the previous point, to size the next one's vectors: the
/// lines of one body are nearly always alike.
#[derive(Debug, Default)]
pub(super) struct Sizes {
    tags: usize,
    fields: usize,
}

/// What follows a measurement or a tag value, and where it starts.
enum Next {
    Tags(usize),
    Fields(usize),
}

/// Series keys already parsed in this body, by their raw text: a line that repeats one
/// shares its measurement and tags instead of parsing and allocating them again.
pub(super) type KeyCache<'a> =
    HashMap<&'a str, (Arc<str>, Arc<[(String, String)]>), foldhash::fast::RandomState>;

/// Field keys already seen in this body, by their raw text.
pub(super) type NameCache<'a> = HashMap<&'a str, Arc<str>, foldhash::fast::RandomState>;

/// Where the series key ends: the first space not escaped (a run of backslashes escapes
/// the byte after it, as in `past_escape`).
fn raw_key_end(b: &[u8]) -> usize {
    let mut i = 0;
    loop {
        i = find_any(b, i, [b' ', b'\\']);
        match b.get(i) {
            Some(b'\\') => i = past_escape(b, i),
            _ => return i,
        }
    }
}

/// A line, already trimmed of leading whitespace and its line end.
pub(super) fn point<'a>(
    line: &'a str,
    precision: Precision,
    default_time: i64,
    sizes: &mut Sizes,
    keys: &mut KeyCache<'a>,
    names: &mut NameCache<'a>,
) -> Result<Point> {
    let raw_end = raw_key_end(line.as_bytes());
    let (measurement, tags, key_end) = match keys.get(&line[..raw_end]) {
        // The same text parsed before, with this very end: the same key.
        Some((m, t)) => (m.clone(), t.clone(), raw_end),
        None => {
            let (measurement, next) = measurement(line)?;
            let (tags, key_end) = match next {
                Next::Tags(at) => tag_set(line, at, sizes.tags)?,
                Next::Fields(at) => (Vec::new(), at),
            };
            // The series key InfluxDB limits is the raw text before the space.
            if key_end > MAX_KEY_LENGTH {
                return Err(LineErrorKind::MaxKeyLengthExceeded { size: key_end });
            }
            let (measurement, tags): (Arc<str>, Arc<[(String, String)]>) =
                (measurement.into(), tags.into());
            if key_end == raw_end {
                keys.insert(&line[..key_end], (measurement.clone(), tags.clone()));
            }
            (measurement, tags, key_end)
        }
    };
    let fields = match field_set(line, key_end, sizes.fields, names) {
        Ok(fields) => fields,
        Err(Rejection::Scan(kind)) => return Err(kind),
        Err(Rejection::Irregular(ours)) => {
            return Err(flat_scan::verdict(line, key_end, precision).unwrap_or(ours))
        }
    };
    let timestamp = timestamp(line, fields.end, precision, default_time)?;
    // InfluxDB finds this only when storing the point, after every parse error.
    if let Some(conflict) = fields.conflict {
        return Err(LineErrorKind::FieldTypeConflict {
            measurement: measurement.to_string(),
            field: conflict.field,
            first: conflict.first,
            second: conflict.second,
        });
    }
    sizes.tags = tags.len();
    sizes.fields = fields.fields.len();
    Ok(Point {
        measurement,
        tags,
        fields: fields.fields,
        timestamp,
    })
}

/// InfluxDB's `skipWhitespace`: NUL and tab count as blanks too.
pub(super) fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\0')) {
        i += 1;
    }
    i
}

/// `measurement`: up to the first unescaped `,` (tags follow) or space (fields follow);
/// an `=` needs no escape here.
fn measurement(line: &str) -> Result<(String, Next)> {
    let b = line.as_bytes();
    if b.first().is_none_or(|&c| c == b',') {
        return Err(LineErrorKind::MissingMeasurement);
    }
    let mut escaped = false;
    let mut i = 0;
    loop {
        i = plain(b, i);
        let next = match b.get(i) {
            None => return Err(LineErrorKind::MissingFields),
            Some(b',') => Next::Tags(i + 1),
            Some(b' ') => Next::Fields(i),
            Some(b'\\') => {
                escaped = true;
                i = past_escape(b, i);
                continue;
            }
            Some(_) => {
                i += 1;
                continue;
            }
        };
        return Ok((owned(&line[..i], escaped, escape::name), next));
    }
}

/// The position of the next byte that ends or escapes plain text in a key, field key or
/// number (`,`, space, `=`, `\\`), or the end.
fn plain(b: &[u8], i: usize) -> usize {
    find_any(b, i, [b',', b' ', b'=', b'\\'])
}

/// The position of the first of `needles` in `bytes` from `from`, or the length, looking
/// at eight bytes at a time: the scans of a line go through here.
pub(super) fn find_any<const N: usize>(bytes: &[u8], mut from: usize, needles: [u8; N]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    while let Some(chunk) = bytes.get(from..from + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let mut found = 0;
        for needle in needles {
            // Sets the high bit of each byte equal to `needle`; exact up to the first match
            // (a borrow only marks bytes after a real one), all `trailing_zeros` looks at.
            let x = word ^ (ONES * u64::from(needle));
            found |= x.wrapping_sub(ONES) & !x & HIGHS;
        }
        if found != 0 {
            return from + found.trailing_zeros() as usize / 8;
        }
        from += 8;
    }
    let rest = bytes.get(from..).unwrap_or_default();
    from + rest
        .iter()
        .position(|b| needles.contains(b))
        .unwrap_or(rest.len())
}

/// The position after the byte a backslash at `i` escapes. In the series key InfluxDB
/// takes every byte after a backslash as escaped, even another backslash, so in `a\\,b`
/// the comma is escaped too: a run of backslashes escapes the byte after the run.
///
/// A run that ends the line escapes nothing and ends at the line's end: one past it, the
/// series key of `c,p\\` was sliced beyond the line and the parse panicked (issue 16).
fn past_escape(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b'\\') {
        i += 1;
    }
    (i + 1).min(b.len())
}

/// `tag_set`: tags up to the space before the fields, returned sorted by key.
///
/// InfluxDB sorts on the escaped keys; sorting on the unescaped ones keeps the model's
/// promise (`Point::tags` sorted by key). Both find the same duplicates, as unescaping
/// maps distinct raw keys to distinct keys.
fn tag_set(line: &str, mut at: usize, capacity: usize) -> Result<(Vec<(String, String)>, usize)> {
    let mut tags = Vec::with_capacity(capacity);
    loop {
        let (key, value_at) = tag_key(line, at)?;
        let (value, next) = tag_value(line, value_at)?;
        tags.push((key, value));
        match next {
            Next::Tags(next_at) => at = next_at,
            Next::Fields(end) => {
                tags.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                if let Some(pair) = tags.windows(2).find(|pair| pair[0].0 == pair[1].0) {
                    return Err(LineErrorKind::DuplicateTags {
                        key: pair[0].0.clone(),
                    });
                }
                return Ok((tags, end));
            }
        }
    }
}

/// `tag_key`: up to an unescaped `=`; returns the key and where its value starts.
fn tag_key(line: &str, start: usize) -> Result<(String, usize)> {
    let b = line.as_bytes();
    if matches!(b.get(start), None | Some(b' ' | b',' | b'=')) {
        return Err(LineErrorKind::MissingTagKey);
    }
    let mut escaped = false;
    let mut i = start;
    loop {
        i = plain(b, i);
        match b.get(i) {
            None | Some(b' ' | b',') => return Err(LineErrorKind::MissingTagValue),
            Some(b'=') => return Ok((owned(&line[start..i], escaped, escape::tag), i + 1)),
            Some(_) => {
                escaped = true;
                i = past_escape(b, i);
            }
        }
    }
}

/// `tag_value`: up to an unescaped `,` (another tag) or space (the fields).
fn tag_value(line: &str, start: usize) -> Result<(String, Next)> {
    let b = line.as_bytes();
    let mut escaped = false;
    // Like InfluxDB, the first byte is not checked for `=`, so `a==b` gives `a` the value `=b`.
    let mut i = match b.get(start) {
        None | Some(b',' | b' ') => return Err(LineErrorKind::MissingTagValue),
        Some(b'\\') => {
            escaped = true;
            past_escape(b, start)
        }
        Some(_) => start + 1,
    };
    loop {
        i = plain(b, i);
        let next = match b.get(i) {
            None => return Err(LineErrorKind::MissingFields),
            Some(b'=') => return Err(LineErrorKind::InvalidTagFormat),
            Some(b',') => Next::Tags(i + 1),
            Some(b' ') => Next::Fields(i),
            Some(_) => {
                escaped = true;
                i = past_escape(b, i);
                continue;
            }
        };
        return Ok((owned(&line[start..i], escaped, escape::tag), next));
    }
}

/// The fields of a line and where they end.
struct FieldSet {
    fields: Vec<(Arc<str>, FieldValue)>,
    end: usize,
    conflict: Option<Conflict>,
}

/// The first key given twice with values of two types.
struct Conflict {
    field: String,
    first: FieldType,
    second: FieldType,
}

/// Why a field set was refused.
enum Rejection {
    /// An error InfluxDB's scan reports for the same input.
    Scan(LineErrorKind),
    /// Input InfluxDB's flat scan reads otherwise than the grammar: a `,` in a field key,
    /// text after a closing quote, an `=` it takes as escaped (`v\\=1`), an empty key
    /// after a tab. Its own scan then picks the error, or this one if it finds none.
    Irregular(LineErrorKind),
}

/// What InfluxDB's second pass over a clean field scan (`walkFields`) trips on.
enum WalkError {
    /// A key ending in `\\` before its `=`, which the walk reads as escaped.
    EscapedEquals {
        key_at: usize,
    },
    KeyTooLong {
        size: usize,
    },
}

/// `field_set`: fields from after the space at `key_end` (the series key's length) up to
/// the next unquoted space or the end of the line.
fn field_set<'a>(
    line: &'a str,
    key_end: usize,
    capacity: usize,
    names: &mut NameCache<'a>,
) -> std::result::Result<FieldSet, Rejection> {
    let b = line.as_bytes();
    let mut i = skip_whitespace(b, key_end);
    let mut fields = Vec::with_capacity(capacity);
    let mut conflict = None;
    let mut seen = 0;
    // What InfluxDB's second pass over a clean scan (`walkFields`) finds first.
    let mut walk_error = None;
    loop {
        let key_at = i;
        let (key_end_at, escaped) = field_key(b, i);
        i = key_end_at;
        match b.get(i) {
            None | Some(b' ') => return Err(Rejection::Scan(LineErrorKind::InvalidFieldFormat)),
            Some(b',') => return Err(Rejection::Irregular(LineErrorKind::InvalidFieldFormat)),
            Some(_) => {}
        }
        if i == key_at {
            // InfluxDB only tests the byte before the `=`.
            let missing = LineErrorKind::MissingFieldKey;
            return Err(match b[i - 1] {
                b' ' | b',' => Rejection::Scan(missing),
                _ => Rejection::Irregular(missing),
            });
        }
        if walk_error.is_none() {
            if b[i - 1] == b'\\' {
                walk_error = Some(WalkError::EscapedEquals { key_at });
            } else if key_end + 4 + (i - key_at) > MAX_KEY_LENGTH {
                // 4 is the length of the storage engine's field key separator.
                walk_error = Some(WalkError::KeyTooLong {
                    size: key_end + 4 + (i - key_at),
                });
            }
        }
        let (value, value_end) = match field_value(line, i + 1) {
            Ok(parsed) => parsed,
            // Only text after a string's closing quote gives this here.
            Err(LineErrorKind::InvalidFieldFormat) => {
                return Err(Rejection::Irregular(LineErrorKind::InvalidFieldFormat))
            }
            Err(kind) => return Err(Rejection::Scan(kind)),
        };
        if walk_error.is_none() {
            let raw = &line[key_at..i];
            let key = match names.get(raw) {
                Some(k) => k.clone(),
                None => {
                    let k: Arc<str> = owned(raw, escaped, escape::name).into();
                    names.insert(raw, k.clone());
                    k
                }
            };
            insert(&mut fields, &mut seen, key, value, &mut conflict);
        }
        i = value_end;
        if b.get(i) != Some(&b',') {
            break;
        }
        i += 1;
    }
    match walk_error {
        // The walk takes this `=` as escaped and reads on into the next field.
        Some(WalkError::EscapedEquals { key_at }) => {
            Err(Rejection::Irregular(LineErrorKind::InvalidValue {
                key: walked_key(&line[key_at..i]).to_owned(),
            }))
        }
        Some(WalkError::KeyTooLong { size }) => {
            Err(Rejection::Scan(LineErrorKind::MaxKeyLengthExceeded {
                size,
            }))
        }
        None => Ok(FieldSet {
            fields,
            end: i,
            conflict,
        }),
    }
}

/// `field_key`: up to the first unescaped `=`, `,` or space. Unlike in the key, InfluxDB
/// skips the byte after a backslash here, so `\\` is a pair and the `=` after it is real.
fn field_key(b: &[u8], mut i: usize) -> (usize, bool) {
    let mut escaped = false;
    loop {
        i = plain(b, i);
        match b.get(i) {
            Some(b'\\') if i + 1 < b.len() => {
                escaped = true;
                i += 2;
            }
            // A backslash ending the line is a plain byte.
            Some(b'\\') => i += 1,
            _ => return (i, escaped),
        }
    }
}

/// The key InfluxDB's second pass reads for a field whose `=` it takes as escaped: up to
/// the next `=` without a backslash before it, or the end of the field set.
fn walked_key(rest: &str) -> &str {
    let b = rest.as_bytes();
    let end = (0..b.len())
        .find(|&j| b[j] == b'=' && (j == 0 || b[j - 1] != b'\\'))
        .unwrap_or(b.len());
    &rest[..end]
}

/// A key given twice keeps its last value, as in InfluxDB.
///
/// `seen` is a one-word Bloom filter of the keys so far (length and last byte), so most
/// keys are pushed without comparing them to every earlier one.
fn insert(
    fields: &mut Vec<(Arc<str>, FieldValue)>,
    seen: &mut u64,
    key: Arc<str>,
    value: FieldValue,
    conflict: &mut Option<Conflict>,
) {
    let last = key.as_bytes().last().copied().unwrap_or(0);
    let bit = 1u64 << ((key.len() + usize::from(last) * 7) % 64);
    let earlier = if *seen & bit == 0 {
        None
    } else {
        fields.iter_mut().find(|(k, _)| *k == key)
    };
    *seen |= bit;
    match earlier {
        Some((_, old)) => {
            if old.field_type() != value.field_type() && conflict.is_none() {
                *conflict = Some(Conflict {
                    field: key.to_string(),
                    first: old.field_type(),
                    second: value.field_type(),
                });
            }
            *old = value;
        }
        None => fields.push((key, value)),
    }
}

/// `field_value`: its first byte decides its type, as in InfluxDB, so `Inf` and `+1` are
/// invalid booleans and `NaN` an invalid number.
fn field_value(line: &str, at: usize) -> Result<(FieldValue, usize)> {
    match line.as_bytes().get(at) {
        None | Some(b',' | b' ') => Err(LineErrorKind::MissingFieldValue),
        Some(b'0'..=b'9' | b'.' | b'-' | b'N' | b'n') => number(line, at),
        Some(b'"') => string(line, at),
        Some(_) => boolean(line, at),
    }
}

/// `number`: a float (`1`, `-1.5`, `.5`, `1.`, `1e-3`), an integer `12i` or an unsigned
/// `12u`.
fn number(line: &str, start: usize) -> Result<(FieldValue, usize)> {
    let b = line.as_bytes();
    // A number ends at a `,` or space; the `=` and `\\` that also stop `plain` are
    // invalid in one and leave the fast path.
    let end = plain(b, start);
    let text = &line[start..end];
    // Whatever Rust's parsers take here InfluxDB takes as the same value: the text starts
    // with a digit, `.` or `-` (never `+`), and the `inf` and `NaN` they also read are not
    // finite. Everything else goes through InfluxDB's own scan, for its error text.
    let parsed = match text.as_bytes().last() {
        _ if matches!(b.get(end), Some(b'=' | b'\\')) => None,
        Some(b'i') => text[..text.len() - 1].parse().ok().map(FieldValue::Integer),
        Some(b'u') => text[..text.len() - 1]
            .parse()
            .ok()
            .map(FieldValue::Unsigned),
        _ => text
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .map(FieldValue::Float),
    };
    match parsed {
        Some(value) => Ok((value, end)),
        None => scan_number(line, start),
    }
}

/// A number by InfluxDB's `scanNumber` rules, which decide the error text.
pub(super) fn scan_number(line: &str, start: usize) -> Result<(FieldValue, usize)> {
    let b = line.as_bytes();
    let invalid = || LineErrorKind::InvalidNumber {
        value: token(line, start).to_owned(),
    };
    let negative = b[start] == b'-';
    let mut i = start + usize::from(negative);
    if i == b.len() {
        return Err(invalid());
    }
    let (mut integer, mut unsigned, mut decimal, mut scientific) = (false, false, false, false);
    while let Some(&c) = b.get(i) {
        if c.is_ascii_digit() {
            i += 1;
            continue;
        }
        match c {
            b',' | b' ' => break,
            b'i' if i > start && !(integer || unsigned) => integer = true,
            b'u' if i > start && !(integer || unsigned) => unsigned = true,
            b'.' if decimal => return Err(invalid()),
            b'.' => decimal = true,
            b'e' | b'E' if i > start => scientific = true,
            b'+' | b'-' if matches!(b[i - 1], b'e' | b'E') => {}
            _ => return Err(invalid()),
        }
        i += 1;
    }
    if (integer || unsigned) && (decimal || scientific) {
        return Err(invalid());
    }
    let digits = i - start - usize::from(integer) - usize::from(decimal) - usize::from(negative);
    if digits == 0 {
        return Err(invalid());
    }
    let text = &line[start..i];
    let value = if integer {
        // The suffix must end the number: `1i2` is invalid.
        let digits = text.strip_suffix('i').ok_or_else(invalid)?;
        let value = digits
            .parse()
            .map_err(|_| LineErrorKind::IntegerOutOfRange {
                value: digits.to_owned(),
            })?;
        FieldValue::Integer(value)
    } else if unsigned {
        // InfluxDB 1.6 refuses `u` values unless built with uint support (an "invalid
        // number"); the model has unsigned fields, so they are accepted here.
        let digits = text.strip_suffix('u').ok_or_else(invalid)?;
        if negative {
            return Err(invalid());
        }
        let value = digits
            .parse()
            .map_err(|_| LineErrorKind::UnsignedOutOfRange {
                value: digits.to_owned(),
            })?;
        FieldValue::Unsigned(value)
    } else {
        // The scan left digits, one `.`, a leading `-` and `e`/`E` with an optional sign:
        // Rust reads exactly what Go's ParseFloat reads of that, but overflows to infinity
        // where Go fails ("invalid float") and, like Go, underflows to zero.
        match text.parse::<f64>() {
            Ok(value) if value.is_finite() => FieldValue::Float(value),
            _ => {
                return Err(LineErrorKind::InvalidFloat {
                    value: text.to_owned(),
                })
            }
        }
    };
    Ok((value, i))
}

/// `string`: a `"`-quoted string whose escapes are `\"` and `\\` (another backslash is
/// kept); it may hold spaces, commas, `=` and newlines.
fn string(line: &str, at: usize) -> Result<(FieldValue, usize)> {
    let b = line.as_bytes();
    let start = at + 1;
    let mut i = start;
    let mut escaped = false;
    loop {
        match b.get(i) {
            None => return Err(LineErrorKind::UnbalancedQuotes),
            Some(b'\\') if i + 1 < b.len() => {
                escaped = true;
                i += 2;
            }
            Some(b'"') => break,
            Some(_) => i += 1,
        }
    }
    let value = owned(&line[start..i], escaped, escape::string_field);
    let end = i + 1;
    // InfluxDB 1.6 scans on after the closing quote and turns `v="x"y` into the string
    // `x"`; this parser refuses anything but a separator there.
    if !matches!(b.get(end), None | Some(b',' | b' ')) {
        return Err(LineErrorKind::InvalidFieldFormat);
    }
    Ok((FieldValue::String(value.into_boxed_str()), end))
}

/// `boolean`: `t T true True TRUE f F false False FALSE`.
pub(super) fn boolean(line: &str, at: usize) -> Result<(FieldValue, usize)> {
    let text = token(line, at);
    let value = match text.as_bytes() {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => true,
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => false,
        _ => {
            return Err(LineErrorKind::InvalidBoolean {
                value: text.to_owned(),
            })
        }
    };
    Ok((FieldValue::Boolean(value), at + text.len()))
}

/// An unquoted value: up to the next `,` or space.
fn token(line: &str, start: usize) -> &str {
    let rest = &line[start..];
    let end = rest.bytes().position(|c| matches!(c, b',' | b' '));
    &rest[..end.unwrap_or(rest.len())]
}

/// `timestamp`: an optional integer in units of the precision, then nothing but spaces.
pub(super) fn timestamp(
    line: &str,
    at: usize,
    precision: Precision,
    default_time: i64,
) -> Result<i64> {
    let b = line.as_bytes();
    let start = skip_whitespace(b, at);
    let mut i = start;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\n' => break,
            b'0'..=b'9' => {}
            b'-' if i == start => {}
            _ => {
                let rest = &line[start..];
                let end = rest.bytes().position(|c| matches!(c, b' ' | b'\n'));
                return Err(LineErrorKind::BadTimestamp {
                    value: rest[..end.unwrap_or(rest.len())].to_owned(),
                });
            }
        }
        i += 1;
    }
    if i == start {
        return Ok(default_time);
    }
    let text = &line[start..i];
    let given: i64 = text.parse().map_err(|e: std::num::ParseIntError| {
        let value = text.to_owned();
        match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                LineErrorKind::TimestampOverflow { value }
            }
            _ => LineErrorKind::TimestampSyntax { value },
        }
    })?;
    let time = given
        .checked_mul(precision.nanos())
        .filter(|t| (MIN_NANO_TIME..=MAX_NANO_TIME).contains(t))
        .ok_or(LineErrorKind::TimeOutOfRange { timestamp: given })?;
    if b[i..].iter().any(|&c| c != b' ') {
        return Err(LineErrorKind::InvalidPoint);
    }
    Ok(time)
}

/// `raw` as an owned string, unescaped only if a backslash was seen in it.
fn owned(raw: &str, escaped: bool, unescape: fn(&str) -> String) -> String {
    if escaped {
        unescape(raw)
    } else {
        raw.to_owned()
    }
}
