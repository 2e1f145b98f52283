//! Parses InfluxDB 1.x line protocol into [`Point`]s, one result per line.
//!
//! The grammar and the error texts follow InfluxDB 1.6 (`models/points.go`,
//! `ParsePointsWithPrecision`), because the HTTP layer reports them to clients verbatim as
//! `partial write: unable to parse '<line>': <reason> dropped=N`. A bad line never stops
//! the parse: every good line of a body becomes a point and every bad one an error.
//!
//! ```text
//! line        = measurement ("," tag_set)? " "+ field_set (" "+ timestamp)? " "*
//! tag_set     = tag_key "=" tag_value ("," tag_key "=" tag_value)*
//! field_set   = field_key "=" field_value ("," field_key "=" field_value)*
//! field_value = float | integer "i" | unsigned "u" | boolean | '"' string '"'
//! ```
//!
//! Where this parser knowingly differs from InfluxDB 1.6, the code says so at the spot;
//! in short: `\r\n` line ends are accepted, invalid UTF-8 is an error (InfluxDB stores the
//! bytes), unsigned `12u` values are accepted (1.6 needs a build flag), a comment line ends
//! at its newline even if it holds a quote or ends in a backslash, and the few inputs 1.6
//! turns into garbage fields (`v="x"y`, a field key ending in an escaped backslash before
//! more fields, an empty field key after a tab, one field key given twice with two types)
//! are errors. A line 1.6 refuses gets 1.6's error text, however odd the line.

mod escape;
mod flat_scan;
mod grammar;
#[cfg(test)]
mod tests;

use crate::model::{FieldType, Point, Precision, MAX_NANO_TIME, MIN_NANO_TIME};

/// The largest series key InfluxDB accepts (`models.MaxKeyLength`).
const MAX_KEY_LENGTH: usize = 65535;

/// How much of an offending line an error quotes, so one huge line cannot bloat a response.
const MAX_ERROR_TEXT: usize = 1024;

/// All points of a body that parsed, and one error per line that did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedBatch {
    pub points: Vec<Point>,
    pub errors: Vec<LineError>,
}

/// One line that did not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unable to parse '{text}': {kind}")]
pub struct LineError {
    /// 1-based number of the physical line of the body where the bad line starts.
    pub line: usize,
    /// The offending line (lossy UTF-8, at most about 1 KiB, then an ellipsis).
    pub text: String,
    pub kind: LineErrorKind,
}

/// Why a line did not parse; the texts are InfluxDB 1.6's where it has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineErrorKind {
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { offset: usize },
    #[error("missing measurement")]
    MissingMeasurement,
    #[error("missing fields")]
    MissingFields,
    #[error("missing tag key")]
    MissingTagKey,
    #[error("missing tag value")]
    MissingTagValue,
    #[error("invalid tag format")]
    InvalidTagFormat,
    #[error("duplicate tags")]
    DuplicateTags { key: String },
    #[error("max key length exceeded: {size} > {}", MAX_KEY_LENGTH)]
    MaxKeyLengthExceeded { size: usize },
    #[error("missing field key")]
    MissingFieldKey,
    #[error("missing field value")]
    MissingFieldValue,
    #[error("invalid field format")]
    InvalidFieldFormat,
    #[error("unbalanced quotes")]
    UnbalancedQuotes,
    /// A field key whose `=` InfluxDB reads as escaped (`v\\=1`), leaving no value.
    #[error("invalid value: field-key={key}")]
    InvalidValue { key: String },
    #[error("invalid number")]
    InvalidNumber { value: String },
    #[error("invalid float")]
    InvalidFloat { value: String },
    #[error(
        "unable to parse integer {value}: strconv.ParseInt: parsing \"{value}\": value out of range"
    )]
    IntegerOutOfRange { value: String },
    #[error(
        "unable to parse unsigned {value}: strconv.ParseUint: parsing \"{value}\": value out of range"
    )]
    UnsignedOutOfRange { value: String },
    #[error("invalid boolean")]
    InvalidBoolean { value: String },
    /// One field key given twice in a line with values of two types; InfluxDB refuses the
    /// whole write then, with the shard's wording used here.
    #[error(
        "field type conflict: input field \"{field}\" on measurement \"{measurement}\" is type {second}, already exists as type {first}"
    )]
    FieldTypeConflict {
        measurement: String,
        field: String,
        first: FieldType,
        second: FieldType,
    },
    #[error("bad timestamp")]
    BadTimestamp { value: String },
    #[error("strconv.ParseInt: parsing \"{value}\": invalid syntax")]
    TimestampSyntax { value: String },
    #[error("strconv.ParseInt: parsing \"{value}\": value out of range")]
    TimestampOverflow { value: String },
    /// The timestamp as written, before scaling by the precision.
    #[error("time outside range {} - {}", MIN_NANO_TIME, MAX_NANO_TIME)]
    TimeOutOfRange { timestamp: i64 },
    /// Something other than spaces after the timestamp.
    #[error("point is invalid")]
    InvalidPoint,
}

/// Parses a whole write body. Never stops at a bad line: good lines are kept.
///
/// `default_time_ns` stamps lines without a timestamp; like InfluxDB it is truncated to
/// the precision (a write with `precision=s` lands on a whole second).
pub fn parse_lines(body: &[u8], precision: Precision, default_time_ns: i64) -> ParsedBatch {
    let default_time = default_time_ns
        .checked_sub(default_time_ns.rem_euclid(precision.nanos()))
        .unwrap_or(default_time_ns);
    let mut batch = ParsedBatch::default();
    let mut sizes = grammar::Sizes::default();
    let mut keys = grammar::KeyCache::default();
    let mut names = grammar::NameCache::default();
    let mut pos = 0;
    let mut line_number = 1;
    while pos < body.len() {
        let start = pos;
        let (end, inner_newlines) = line_end(body, start);
        let block = &body[start..end];
        let number = line_number;
        line_number += 1 + inner_newlines;
        pos = end + 1;

        let Some(line) = trimmed(block) else {
            continue;
        };
        let parsed = match std::str::from_utf8(line) {
            Ok(text) => grammar::point(
                text,
                precision,
                default_time,
                &mut sizes,
                &mut keys,
                &mut names,
            ),
            Err(e) => Err(LineErrorKind::InvalidUtf8 {
                offset: e.valid_up_to(),
            }),
        };
        match parsed {
            Ok(point) => {
                if batch.points.capacity() == 0 {
                    // Lines of one body are alike: size for the whole body at once.
                    batch.points.reserve(body.len() / (end - start + 1) + 1);
                }
                batch.points.push(point)
            }
            Err(kind) => batch.errors.push(LineError {
                line: number,
                text: error_text(line),
                kind,
            }),
        }
    }
    batch
}

fn newlines(body: &[u8]) -> usize {
    body.iter().filter(|&&b| b == b'\n').count()
}

/// Where the line starting at `start` ends (its `\n`, or the end of the body), and how
/// many newlines it holds inside, which only a quoted string or an escape can.
///
/// Mirrors InfluxDB's `scanLine`: a backslash escapes the next byte, even a newline, and
/// once past the first space a `"` after a field's `=` opens a string a newline cannot end.
fn line_end(body: &[u8], start: usize) -> (usize, usize) {
    let rest = &body[start..];
    // Unlike InfluxDB, a comment ends at its newline whatever it holds: 1.6 lets `# a="x`
    // or a comment ending in `\` swallow the lines after it, silently dropping them.
    if rest.get(grammar::skip_whitespace(rest, 0)) == Some(&b'#') {
        let newline = rest.iter().position(|&b| b == b'\n');
        return (newline.map_or(body.len(), |k| start + k), 0);
    }
    let special = grammar::find_any(rest, 0, [b'\n', b'"', b'\\']);
    match rest.get(special) {
        None => return (body.len(), 0),
        Some(b'\n') => return (start + special, 0),
        Some(_) => {}
    }

    let mut i = start;
    let (mut quoted, mut in_fields) = (false, false);
    let (mut equals, mut commas) = (0usize, 0usize);
    while i < body.len() {
        let b = body[i];
        if b == b'\\' {
            i += 2;
            continue;
        }
        in_fields |= b == b' ';
        if in_fields {
            if !quoted && b == b'=' {
                equals += 1;
            } else if !quoted && b == b',' {
                commas += 1;
            } else if b == b'"' && equals > commas {
                quoted = !quoted;
            }
        }
        if b == b'\n' && !quoted {
            break;
        }
        i += 1;
    }
    // A backslash as the body's last byte steps past the end.
    let end = i.min(body.len());
    (end, newlines(&body[start..end]))
}

/// The parseable part of a block, or `None` for a blank or comment line.
fn trimmed(block: &[u8]) -> Option<&[u8]> {
    // InfluxDB strips the newline a block can end with after an escaping backslash.
    let block = block.strip_suffix(b"\n").unwrap_or(block);
    // InfluxDB 1.6 keeps the `\r` of a `\r\n` line end and then fails the line (`bad
    // timestamp`, `invalid number`); Windows clients deserve better.
    let block = block.strip_suffix(b"\r").unwrap_or(block);
    let start = grammar::skip_whitespace(block, 0);
    match block.get(start) {
        None | Some(b'#') => None,
        Some(_) => Some(&block[start..]),
    }
}

/// The line as an error quotes it: lossy UTF-8, cut on a character boundary.
fn error_text(line: &[u8]) -> String {
    if line.len() <= MAX_ERROR_TEXT {
        return String::from_utf8_lossy(line).into_owned();
    }
    let mut cut = MAX_ERROR_TEXT;
    // Back off at most the three continuation bytes a UTF-8 character can have.
    while cut > MAX_ERROR_TEXT - 3 && line[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    let mut text = String::from_utf8_lossy(&line[..cut]).into_owned();
    text.push('…');
    text
}
