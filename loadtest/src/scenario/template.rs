//! Request text with the per-request placeholders split out once, so the engine renders a
//! request by copying bytes: `${client}`, `${token}`, and the time the request is sent as
//! `${now_s}`, `${now_ms}`, `${now_us}` or `${now_ns}` (Unix time in that unit), optionally
//! shifted by a duration, `${now_ms - 1h}` or `${now_s + 30s}`, as a dashboard writes its
//! time range.

use std::fmt;

/// A path, header value or body: literal bytes with `${client}` (the client's number, in
/// decimal), `${token}` (the client's token) and `${now_<unit> [± duration]}` in between.
///
/// ```
/// use loadtest::scenario::Template;
///
/// let t = Template::parse(b"/write?client=c${client}&t=${token}").unwrap();
/// let mut out = Vec::new();
/// t.render(42, "abc", 0, &mut out);
/// assert_eq!(out, b"/write?client=c42&t=abc");
/// assert!(!t.is_static());
///
/// let range = Template::parse(b"time >= ${now_ms - 1h}ms and time <= ${now_ms}ms").unwrap();
/// let mut out = Vec::new();
/// range.render(0, "", 1_700_003_600_000_000_000, &mut out);
/// assert_eq!(out, b"time >= 1700000000000ms and time <= 1700003600000ms");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    Client,
    Token,
    Now(Now),
}

/// `${now_<unit> [± duration]}`: the time a request is sent, shifted, in a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now {
    /// Nanoseconds in one of the unit (1 for `ns`, 1,000,000 for `ms`).
    unit_ns: i64,
    /// Added to the time before it is written (negative: earlier).
    shift_ns: i64,
    /// The inside of the placeholder as written, for `Display`.
    written: Box<str>,
}

impl Now {
    /// Reads the inside of `${...}` (`now_ms - 1h`). `None`: not a time placeholder at all
    /// (it does not start with `now_`); `Some(Err)`: one, written wrong.
    pub fn parse(inner: &str) -> Option<Result<Now, String>> {
        let rest = inner.trim().strip_prefix("now_")?;
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let (unit, shift) = rest.split_at(unit_end);
        let text = format!("now_{unit}");
        let unit_ns = match unit {
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" => 1_000,
            "ns" => 1,
            other => {
                return Some(Err(format!(
                    "now_{other}: the time's unit is s, ms, us or ns (now_ms)"
                )))
            }
        };
        let shift = shift.trim();
        let shift_ns = if shift.is_empty() {
            0
        } else {
            let (sign, amount) = match shift.split_at(1) {
                ("-", a) => (-1, a),
                ("+", a) => (1, a),
                _ => {
                    return Some(Err(format!(
                        "{inner:?}: after {text} comes `- DURATION` or `+ DURATION` (now_ms - 1h)"
                    )))
                }
            };
            match super::duration::parse_duration(amount) {
                Ok(d) => match i64::try_from(d.as_nanos()) {
                    Ok(ns) => sign * ns,
                    Err(_) => return Some(Err(format!("{inner:?}: the shift is too long"))),
                },
                Err(e) => return Some(Err(format!("{inner:?}: {e}"))),
            }
        };
        Some(Ok(Now {
            unit_ns,
            shift_ns,
            written: inner.trim().into(),
        }))
    }

    /// The value written for a request sent at `now_ns` (Unix nanoseconds).
    pub fn value(&self, now_ns: i64) -> i64 {
        now_ns
            .saturating_add(self.shift_ns)
            .div_euclid(self.unit_ns)
    }
}

/// A `${...}` the engine does not fill in, at byte `offset` of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found} is not expanded here: only ${{client}}, ${{token}} and ${{now_ms}} (s, ms, us, ns; `- 1h` or `+ 30s` after it) are left for each request (other variables are replaced before parsing){reason}")]
pub struct TemplateError {
    pub offset: usize,
    /// The `${...}` as written (cut at the end of its line).
    pub found: String,
    /// What is wrong with a time placeholder (`: ...`), or nothing.
    pub reason: String,
}

impl Template {
    /// Splits `text` at its placeholders; any other `${` is an error.
    pub fn parse(text: &[u8]) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if !rest.starts_with(b"${") {
                literal.push(text[i]);
                i += 1;
                continue;
            }
            let end = rest
                .iter()
                .position(|&b| b == b'}' || b == b'\n')
                .map_or(rest.len(), |e| if rest[e] == b'}' { e + 1 } else { e });
            let whole = &rest[..end];
            let fail = |reason: String| TemplateError {
                offset: i,
                found: String::from_utf8_lossy(whole).into_owned(),
                reason,
            };
            let part = match whole {
                b"${client}" => Part::Client,
                b"${token}" => Part::Token,
                _ => {
                    let inner = whole
                        .strip_prefix(b"${")
                        .and_then(|w| w.strip_suffix(b"}"))
                        .and_then(|w| std::str::from_utf8(w).ok());
                    match inner.and_then(Now::parse) {
                        Some(Ok(now)) => Part::Now(now),
                        Some(Err(reason)) => return Err(fail(format!(": {reason}"))),
                        None => return Err(fail(String::new())),
                    }
                }
            };
            i += whole.len();
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Text without placeholders, taken as it is (a `${` in it stays literal).
    pub fn literal(text: impl Into<Vec<u8>>) -> Template {
        let text = text.into();
        Template {
            parts: if text.is_empty() {
                Vec::new()
            } else {
                vec![Part::Text(text)]
            },
        }
    }

    /// Appends the text for `client`, its `token` and a request sent at `now_ns` (Unix
    /// nanoseconds) to `out`; allocates nothing but what `out` needs to grow.
    pub fn render(&self, client: u32, token: &str, now_ns: i64, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Client => push_decimal(u64::from(client), out),
                Part::Token => out.extend_from_slice(token.as_bytes()),
                Part::Now(now) => {
                    let v = now.value(now_ns);
                    if v < 0 {
                        out.push(b'-');
                    }
                    push_decimal(v.unsigned_abs(), out);
                }
            }
        }
    }

    /// The same for every request: no placeholder.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The text, when it is the same for every request.
    pub fn as_static(&self) -> Option<&[u8]> {
        match self.parts.as_slice() {
            [] => Some(&[]),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether it needs the client's token (so a token file must be given).
    pub fn uses_token(&self) -> bool {
        self.parts.contains(&Part::Token)
    }
}

/// The text as written, placeholders included (bytes that are not UTF-8 shown as `\u{FFFD}`).
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => f.write_str(&String::from_utf8_lossy(t))?,
                Part::Client => f.write_str("${client}")?,
                Part::Token => f.write_str("${token}")?,
                Part::Now(now) => write!(f, "${{{}}}", now.written)?,
            }
        }
        Ok(())
    }
}

fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    // u64::MAX has 20 digits; filled from the right.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}
