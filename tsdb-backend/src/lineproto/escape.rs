//! Removes the backslash escapes each part of a line allows, as InfluxDB 1.6 does.
//!
//! A backslash escapes only the bytes listed for its part; before any other byte (another
//! backslash included) it is kept literally. Callers only come here when the raw text
//! holds a backslash, so the common case allocates one plain copy and no more.

/// Measurement names and field keys: InfluxDB unescapes them with `escape.Unescape`.
pub(super) fn name(raw: &str) -> String {
    unescape(raw, |b| matches!(b, b',' | b'"' | b' ' | b'='))
}

/// Tag keys and values: InfluxDB's `unescapeTag` knows no `\"`.
pub(super) fn tag(raw: &str) -> String {
    unescape(raw, |b| matches!(b, b',' | b' ' | b'='))
}

/// The inside of a string field value.
pub(super) fn string_field(raw: &str) -> String {
    unescape(raw, |b| matches!(b, b'"' | b'\\'))
}

fn unescape(raw: &str, escapable: impl Fn(u8) -> bool) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\\' && escapable(bytes[i + 1]) {
            // Both bytes are ASCII, so these slices split `raw` on character boundaries.
            out.push_str(&raw[copied..i]);
            copied = i + 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push_str(&raw[copied..]);
    out
}
