//! The answer to a query, and its InfluxDB 1.x JSON rendering.
//!
//! The shape is `{"results":[{"statement_id":0,"series":[{"name":..,"tags":{..},
//! "columns":[..],"values":[[..]]}]}]}`, with `"error"` in place of `"series"` for a
//! failed statement. Times are RFC3339 with trailing zeros trimmed (Go's `RFC3339Nano`)
//! unless `epoch=` asks for integers, and floats print as Go's `encoding/json` does
//! (`1` not `1.0`, exponents as `1e+21`), so byte-for-byte comparisons with InfluxDB hold.

use crate::model::Precision;
use std::fmt::Write as _;

/// One cell of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Float(f64),
    Integer(i64),
    Unsigned(u64),
    Boolean(bool),
    String(String),
    /// A timestamp in nanoseconds, rendered per `epoch`.
    Time(i64),
}

impl Value {
    /// A number as a float (`None` for anything else).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            Value::Unsigned(u) => Some(*u as f64),
            _ => None,
        }
    }
}

/// One series of an answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultSeries {
    pub name: String,
    /// `None` omits the `tags` key (no GROUP BY tags); `Some` prints it, even when empty.
    pub tags: Option<Vec<(String, String)>>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// The answer to one statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatementResult {
    pub statement_id: usize,
    pub series: Vec<ResultSeries>,
    pub error: Option<String>,
    /// Informational messages, e.g. InfluxDB's warning for a write statement sent by GET.
    pub messages: Vec<Message>,
    /// The statement's `tz()`: RFC 3339 times are written with its offset.
    pub zone: Option<chrono_tz::Tz>,
}

/// A `{"level":..,"text":..}` message attached to a statement's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub level: &'static str,
    pub text: String,
}

impl StatementResult {
    pub fn error(statement_id: usize, message: impl Into<String>) -> Self {
        StatementResult {
            statement_id,
            series: Vec::new(),
            error: Some(message.into()),
            messages: Vec::new(),
            zone: None,
        }
    }
}

/// Renders the whole `{"results":[...]}` document.
pub fn render(results: &[StatementResult], epoch: Option<Precision>) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"results\":[");
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"statement_id\":{}", r.statement_id);
        if !r.messages.is_empty() {
            out.push_str(",\"messages\":[");
            for (j, m) in r.messages.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"level\":");
                json_string(&mut out, m.level);
                out.push_str(",\"text\":");
                json_string(&mut out, &m.text);
                out.push('}');
            }
            out.push(']');
        }
        if let Some(e) = &r.error {
            out.push_str(",\"error\":");
            json_string(&mut out, e);
        } else if !r.series.is_empty() {
            out.push_str(",\"series\":[");
            for (j, s) in r.series.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                series(&mut out, s, epoch, r.zone);
            }
            out.push(']');
        }
        out.push('}');
    }
    // Go's json.Encoder ends the document with a newline; so do we, byte for byte.
    out.push_str("]}\n");
    out
}

/// Renders `{"error":"..."}`.
pub fn render_error(message: &str) -> String {
    let mut out = String::from("{\"error\":");
    json_string(&mut out, message);
    out.push_str("}\n");
    out
}

fn series(
    out: &mut String,
    s: &ResultSeries,
    epoch: Option<Precision>,
    zone: Option<chrono_tz::Tz>,
) {
    // Go's `omitempty`: SHOW SERIES and SHOW RETENTION POLICIES have no name.
    out.push('{');
    if !s.name.is_empty() {
        out.push_str("\"name\":");
        json_string(out, &s.name);
        out.push(',');
    }
    if let Some(tags) = &s.tags {
        out.push_str("\"tags\":{");
        for (i, (k, v)) in tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_string(out, k);
            out.push(':');
            json_string(out, v);
        }
        out.push_str("},");
    }
    out.push_str("\"columns\":[");
    for (i, c) in s.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, c);
    }
    out.push_str("],\"values\":[");
    for (i, row) in s.values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        for (j, v) in row.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            value(out, v, epoch, zone);
        }
        out.push(']');
    }
    out.push_str("]}");
}

fn value(out: &mut String, v: &Value, epoch: Option<Precision>, zone: Option<chrono_tz::Tz>) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Float(f) => go_float(out, *f),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Unsigned(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => json_string(out, s),
        Value::Time(t) => match epoch {
            Some(p) => {
                let _ = write!(out, "{}", t / p.nanos());
            }
            None => {
                out.push('"');
                match zone {
                    Some(z) => out.push_str(&crate::query::zone::rfc3339_nano(*t, z)),
                    None => out.push_str(&rfc3339_nano(*t)),
                }
                out.push('"');
            }
        },
    }
}

/// Formats a float as Go's `encoding/json` does. NaN and infinities, which JSON cannot
/// carry, become `null`.
pub fn go_float(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        // Rust prints `1e21` and `1.5e-7`; Go prints `1e+21` and `1.5e-07` then trims the
        // exponent's leading zero back to `1.5e-7`.
        match s.split_once('e') {
            Some((mant, exp)) if !exp.starts_with('-') => {
                let _ = write!(out, "{mant}e+{exp}");
            }
            _ => out.push_str(&s),
        }
    } else {
        let _ = write!(out, "{f}");
    }
}

pub use influxql::time::rfc3339_nano;

/// Appends a JSON string literal, escaping as Go does for `<`, `>`, `&` too (so answers
/// embedded in HTML stay inert, and match InfluxDB's bytes).
pub fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(x: f64) -> String {
        let mut s = String::new();
        go_float(&mut s, x);
        s
    }

    #[test]
    fn floats_print_as_go_encoding_json_prints_them() {
        assert_eq!(f(1.0), "1");
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(-0.25), "-0.25");
        assert_eq!(f(0.0), "0");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1e20), "100000000000000000000");
        assert_eq!(f(1.5e-7), "1.5e-7");
        assert_eq!(f(0.000001), "0.000001");
        assert_eq!(f(f64::NAN), "null");
    }

    #[test]
    fn times_print_as_rfc3339_with_trailing_zeros_trimmed() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_nano(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(rfc3339_nano(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn a_result_renders_in_influxdb_shape() {
        let r = StatementResult {
            statement_id: 0,
            series: vec![ResultSeries {
                name: "cpu".into(),
                tags: Some(vec![("host".into(), "a".into())]),
                columns: vec!["time".into(), "v".into()],
                values: vec![vec![Value::Time(1_000_000_000), Value::Float(2.0)]],
            }],
            error: None,
            messages: Vec::new(),
            zone: None,
        };
        assert_eq!(
            render(std::slice::from_ref(&r), None),
            "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"cpu\",\"tags\":{\"host\":\"a\"},\"columns\":[\"time\",\"v\"],\"values\":[[\"1970-01-01T00:00:01Z\",2]]}]}]}\n"
        );
        assert_eq!(
            render(&[r], Some(Precision::Milliseconds)),
            "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"cpu\",\"tags\":{\"host\":\"a\"},\"columns\":[\"time\",\"v\"],\"values\":[[1000,2]]}]}]}\n"
        );
        assert_eq!(
            render(&[StatementResult::default()], None),
            "{\"results\":[{\"statement_id\":0}]}\n"
        );
    }
}
