//! InfluxDB 1.6's own field-set scan, to pick the error for input the grammar reads otherwise.
//!
//! InfluxDB does not parse fields by the grammar: it scans the field set as one flat run
//! of bytes, counting `=` and `,` (`scanFields`), and later walks it again to split keys
//! from values (`walkFields`). On well-formed input both agree with the grammar. On some
//! malformed input (a `,` in a key, text after a closing quote, a key ending in `\\`) they
//! drift, and which error InfluxDB reports, if any, depends on that drift. These ports run
//! only then, so their speed does not matter; their job is the same error text.

use super::grammar::{boolean, scan_number, skip_whitespace, timestamp};
use super::{LineErrorKind, MAX_KEY_LENGTH};
use crate::model::Precision;

/// The error InfluxDB reports for the fields and timestamp of `line` after the series key
/// ending at `key_end`, or `None` if it accepts them.
pub(super) fn verdict(line: &str, key_end: usize, precision: Precision) -> Option<LineErrorKind> {
    let end = match scan_fields(line, key_end) {
        Ok(end) => end,
        Err(kind) => return Some(kind),
    };
    let start = skip_whitespace(line.as_bytes(), key_end);
    walk_fields(&line[start..end], key_end).or_else(|| timestamp(line, end, precision, 0).err())
}

/// `scanFields`: the end of the field set, or the first error in it.
fn scan_fields(line: &str, key_end: usize) -> Result<usize, LineErrorKind> {
    let b = line.as_bytes();
    let mut i = skip_whitespace(b, key_end);
    let mut quoted = false;
    let (mut equals, mut commas) = (0usize, 0usize);
    while let Some(&c) = b.get(i) {
        if c == b'\\' && i + 1 < b.len() {
            i += 2;
            continue;
        }
        // A quote opens or closes a string only where a value is due.
        if c == b'"' && equals > commas {
            quoted = !quoted;
            i += 1;
            continue;
        }
        if c == b'=' && !quoted {
            equals += 1;
            if matches!(b[i - 1], b' ' | b',') && b[i - 2] != b'\\' {
                return Err(LineErrorKind::MissingFieldKey);
            }
            match b.get(i + 1) {
                None | Some(b',' | b' ') => return Err(LineErrorKind::MissingFieldValue),
                Some(b'0'..=b'9' | b'.' | b'-' | b'N' | b'n') => {
                    i = scan_number(line, i + 1)?.1;
                    continue;
                }
                Some(b'"') => {}
                Some(_) => {
                    i = boolean(line, i + 1)?.1;
                    continue;
                }
            }
        }
        if !quoted {
            match c {
                b',' => commas += 1,
                b' ' => break,
                _ => {}
            }
        }
        i += 1;
    }
    if quoted {
        return Err(LineErrorKind::UnbalancedQuotes);
    }
    if equals == 0 || commas + 1 != equals {
        return Err(LineErrorKind::InvalidFieldFormat);
    }
    Ok(i)
}

/// `walkFields` with its checks: each key runs to the next `=` without a backslash
/// before it, and each value to the next unquoted `,`.
fn walk_fields(fields: &str, key_end: usize) -> Option<LineErrorKind> {
    let b = fields.as_bytes();
    let mut at = 0;
    while at < b.len() {
        let rest = &b[at..];
        let equals = (0..rest.len())
            .find(|&j| rest[j] == b'=' && (j == 0 || rest[j - 1] != b'\\'))
            .unwrap_or(rest.len());
        if equals + 2 > rest.len() {
            return Some(LineErrorKind::InvalidValue {
                key: fields[at..at + equals].to_owned(),
            });
        }
        let size = key_end + 4 + equals;
        if size > MAX_KEY_LENGTH {
            return Some(LineErrorKind::MaxKeyLengthExceeded { size });
        }
        let mut i = at + equals + 1;
        let mut quoted = false;
        while let Some(&c) = b.get(i) {
            match c {
                b'\\' if matches!(b.get(i + 1), Some(b'"' | b'\\')) => i += 1,
                b'"' => quoted = !quoted,
                b',' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        at = i + 1;
    }
    None
}
