//! An entry's JSON line, written byte by byte into the writer's buffer.
//!
//! serde's derive took about 14,000 instructions a line (every field through its map
//! serializer, every string escaped a byte at a time); lines are written at the gateway's
//! request rate, on a thread that shares the machine with the requests, so the object is
//! written here by hand: runs of plain bytes copied at once, integers by `itoa`, the
//! duration by `ryu`, the time from its calendar fields. The tests parse the lines back
//! with serde_json.

use super::Entry;
use chrono::{Datelike, Timelike};
use std::io::Write as _;
use std::time::SystemTime;

/// `entry` as one JSON object, no line end, appended to `out`.
pub(super) fn write(entry: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    time(out, entry.time.0);
    out.extend_from_slice(b"\",\"request_id\":");
    string(out, &entry.request_id);
    out.extend_from_slice(b",\"trace_id\":\"");
    if let Some(id) = entry.trace_id {
        let mut digits = [0u8; 32];
        crate::text::put_hex(&mut digits, id);
        out.extend_from_slice(&digits);
    }
    out.extend_from_slice(b"\",\"client\":\"");
    if let Some(ip) = entry.client {
        crate::text::write_ip(out, ip);
    }
    out.extend_from_slice(b"\",\"identity\":");
    optional(out, entry.identity.as_deref());
    out.extend_from_slice(b",\"tenant\":");
    optional(out, entry.tenant.as_deref());
    out.extend_from_slice(b",\"method\":");
    string(out, entry.method.as_str());
    out.extend_from_slice(b",\"host\":");
    string(out, &entry.host);
    out.extend_from_slice(b",\"path\":");
    string(out, &entry.path);
    out.extend_from_slice(b",\"status\":");
    integer(out, entry.status);
    out.extend_from_slice(b",\"bytes_in\":");
    integer(out, entry.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    integer(out, entry.bytes_out);
    out.extend_from_slice(b",\"duration_ms\":");
    if entry.duration_ms.is_finite() {
        out.extend_from_slice(
            ryu::Buffer::new()
                .format_finite(entry.duration_ms)
                .as_bytes(),
        );
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"upstream\":");
    match entry.upstream {
        Some(addr) => {
            out.push(b'"');
            crate::text::write_socket_addr(out, addr);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"tries\":");
    integer(out, entry.tries);
    out.extend_from_slice(b",\"cache\":");
    optional(out, entry.cache);
    out.extend_from_slice(b",\"rate_limit\":");
    optional(out, entry.rate_limit);
    out.extend_from_slice(b",\"route\":");
    string(out, &entry.route);
    out.extend_from_slice(b",\"pool\":");
    optional(out, entry.pool.as_deref());
    out.extend_from_slice(b",\"user_agent\":");
    optional(out, entry.user_agent.as_deref());
    out.push(b'}');
}

fn integer(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// `s` as a JSON string: quotes and backslashes escaped, control bytes as `\u00XX` (or
/// their short forms), everything else (UTF-8 included) as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most fields need nothing escaped: one pass without an early exit (which the compiler
    // turns into wide compares) says so, and the field is copied whole.
    let plain = !bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(escaped);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// UTC, RFC 3339 with milliseconds, as [`super::time_text`] writes it.
fn time(out: &mut Vec<u8>, at: SystemTime) {
    let at: chrono::DateTime<chrono::Utc> = at.into();
    let year = at.year();
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(super::time_text(at.into()).as_bytes());
        return;
    }
    let digits = |out: &mut Vec<u8>, n: u32, width: usize| {
        let mut buf = [b'0'; 4];
        let mut n = n;
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    };
    digits(out, year.unsigned_abs(), 4);
    out.push(b'-');
    digits(out, at.month(), 2);
    out.push(b'-');
    digits(out, at.day(), 2);
    out.push(b'T');
    digits(out, at.hour(), 2);
    out.push(b':');
    digits(out, at.minute(), 2);
    out.push(b':');
    digits(out, at.second(), 2);
    out.push(b'.');
    // A leap second's nanoseconds run past 1e9; its milliseconds stay three digits.
    digits(out, (at.nanosecond() / 1_000_000).min(999), 3);
    out.extend_from_slice(b"Z");
}

#[cfg(test)]
mod tests {
    use super::super::{time_text, LineTime};
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn text(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_string_reads_back_as_itself() {
        let all_controls: String = (0u8..0x20).map(char::from).collect();
        for s in [
            "",
            "plain",
            "quote \" and \\ backslash",
            "grüße ☃ 😀",
            &all_controls,
            "\u{7f}\u{2028}",
            "end\\",
        ] {
            let line = text(|o| string(o, s));
            let back: String = serde_json::from_str(&line).unwrap();
            assert_eq!(back, s, "{line}");
        }
    }

    #[test]
    fn the_time_is_written_as_time_text_writes_it() {
        for ms in [
            0,
            1_500,
            1_796_655_600_123,
            253_402_300_799_999,
            951_782_400_000,
        ] {
            let at = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(text(|o| time(o, at)), time_text(at));
        }
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(text(|o| time(o, far)), time_text(far));
    }

    #[test]
    fn a_line_parses_with_every_field_in_its_type() {
        let entry = Entry {
            time: LineTime(UNIX_EPOCH + Duration::from_millis(1_796_655_600_123)),
            request_id: "r\"1".into(),
            trace_id: Some(0xabc),
            client: Some("::1".parse().unwrap()),
            method: http::Method::from_bytes(b"PURGE").unwrap(),
            status: 503,
            bytes_in: u64::MAX,
            duration_ms: 0.1,
            upstream: Some("10.0.0.1:8086".parse().unwrap()),
            tries: 2,
            cache: Some("MISS"),
            pool: Some("p".into()),
            ..Entry::default()
        };
        let mut out = Vec::new();
        write(&entry, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2026-12-07T15:00:00.123Z");
        assert_eq!(v["request_id"], "r\"1");
        assert_eq!(v["trace_id"], "00000000000000000000000000000abc");
        assert_eq!(v["client"], "::1");
        assert_eq!(v["method"], "PURGE");
        assert_eq!(v["status"], 503);
        assert_eq!(v["bytes_in"], u64::MAX);
        assert_eq!(v["duration_ms"], 0.1);
        assert_eq!(v["upstream"], "10.0.0.1:8086");
        assert_eq!(v["tries"], 2);
        assert_eq!(v["cache"], "MISS");
        assert!(v["identity"].is_null() && v["rate_limit"].is_null());
        assert_eq!(v["pool"], "p");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 20, "{keys:?}");
        let mut nan = entry.clone();
        nan.duration_ms = f64::NAN;
        out.clear();
        write(&nan, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["duration_ms"].is_null());
    }
}
