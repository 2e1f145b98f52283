//! Request text with the per-request placeholders `${client}` and `${token}` split out
//! once, so the engine renders a request by copying bytes.

use std::fmt;

/// A path, header value or body: literal bytes with `${client}` (the client's number, in
/// decimal) and `${token}` (the client's token) in between.
///
/// ```
/// use loadtest::scenario::Template;
///
/// let t = Template::parse(b"/write?client=c${client}&t=${token}").unwrap();
/// let mut out = Vec::new();
/// t.render(42, "abc", &mut out);
/// assert_eq!(out, b"/write?client=c42&t=abc");
/// assert!(!t.is_static());
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
}

/// A `${...}` other than `${client}` and `${token}`, at byte `offset` of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{found} is not expanded here: only ${{client}} and ${{token}} are left for each request (other variables are replaced before parsing)")]
pub struct TemplateError {
    pub offset: usize,
    /// The `${...}` as written (cut at the end of its line).
    pub found: String,
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
            let part = if rest.starts_with(b"${client}") {
                Part::Client
            } else if rest.starts_with(b"${token}") {
                Part::Token
            } else {
                let end = rest
                    .iter()
                    .position(|&b| b == b'}' || b == b'\n')
                    .map_or(rest.len(), |e| if rest[e] == b'}' { e + 1 } else { e });
                return Err(TemplateError {
                    offset: i,
                    found: String::from_utf8_lossy(&rest[..end]).into_owned(),
                });
            };
            i += if part == Part::Client { 9 } else { 8 };
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

    /// Appends the text for `client` and its `token` to `out`; allocates nothing but what
    /// `out` needs to grow.
    pub fn render(&self, client: u32, token: &str, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Client => push_decimal(client, out),
                Part::Token => out.extend_from_slice(token.as_bytes()),
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
            }
        }
        Ok(())
    }
}

fn push_decimal(mut n: u32, out: &mut Vec<u8>) {
    // u32::MAX has 10 digits; filled from the right.
    let mut digits = [0u8; 10];
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
