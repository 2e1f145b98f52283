//! Scenario variables: `${NAME}` and `${NAME:-default}` replaced in the text before it is
//! parsed as YAML.
//!
//! A value comes from the `--set NAME=value` pairs first (the last pair of a name wins),
//! then from the environment, then from the default. As in the shell, `:-` also takes the
//! default when the value is empty. `${client}`, `${token}` and the time placeholders
//! (`${now_ms}`, `${now_ms - 1h}`, ...) are left as they are: the engine fills them in for
//! every request (see [`super::template`]).
//!
//! The replacement is textual and done in one pass: a value is not searched for variables
//! again, defaults do not nest, and a `${...}` in a YAML comment is replaced (or refused)
//! like any other. Values may not contain a line break, so line numbers of later errors
//! still match the file; columns after a replaced variable on the same line move.

use super::error::position;

/// Placeholders that belong to the engine, not to the operator.
pub const RESERVED: [&str; 2] = ["client", "token"];

/// What is wrong with one `${...}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarErrorKind {
    #[error("unknown variable {name}: pass --set {name}=VALUE, set it in the environment, or give a default: ${{{name}:-VALUE}}")]
    Unknown { name: String },
    #[error("the value of {name} contains a line break, which would move the lines after it")]
    Multiline { name: String },
    #[error("`${{` has no closing `}}` on its line")]
    Unclosed,
    #[error("{text:?} is not a variable name (letters, digits and _, not starting with a digit)")]
    BadName { text: String },
}

/// One bad `${...}`, at the 1-based line and column of its `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarError {
    pub line: u64,
    pub column: u64,
    pub kind: VarErrorKind,
}

/// Replaces every variable of `text`, or returns every bad one.
pub fn substitute(
    text: &str,
    set: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<VarError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut done = 0;
    while let Some(found) = text[done..].find("${") {
        let start = done + found;
        out.push_str(&text[done..start]);
        let fail = |kind| {
            let (line, column) = position(text.as_bytes(), start);
            VarError { line, column, kind }
        };
        let after = &text[start + 2..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let Some(close) = after[..line_end].find('}') else {
            errors.push(fail(VarErrorKind::Unclosed));
            out.push_str("${");
            done = start + 2;
            continue;
        };
        let whole = &text[start..start + 2 + close + 1];
        done = start + whole.len();
        let inner = &after[..close];
        if super::template::Now::parse(inner).is_some() {
            // The engine's (a wrong one is named when the template is read).
            out.push_str(whole);
            continue;
        }
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if !is_name(name) {
            errors.push(fail(VarErrorKind::BadName {
                text: whole.to_string(),
            }));
            out.push_str(whole);
            continue;
        }
        if RESERVED.contains(&name) {
            out.push_str(whole);
            continue;
        }
        let given = set
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| env(name));
        let value = match (given, default) {
            (Some(v), Some(d)) if v.is_empty() => Some(d.to_string()),
            (Some(v), _) => Some(v),
            (None, d) => d.map(str::to_string),
        };
        match value {
            None => {
                errors.push(fail(VarErrorKind::Unknown { name: name.into() }));
                out.push_str(whole);
            }
            Some(v) if v.contains(['\n', '\r']) => {
                errors.push(fail(VarErrorKind::Multiline { name: name.into() }));
                out.push_str(whole);
            }
            Some(v) => out.push_str(&v),
        }
    }
    out.push_str(&text[done..]);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits a `--set NAME=value` argument (for the command line's parser).
pub fn parse_set(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if is_name(name) => Ok((name.to_string(), value.to_string())),
        Some((name, _)) => Err(format!(
            "{name:?} is not a variable name (letters, digits and _, not starting with a digit)"
        )),
        None => Err(format!("{arg:?} should be NAME=VALUE")),
    }
}
