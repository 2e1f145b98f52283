//! Regex literals read as InfluxDB reads them: with Go's `regexp` (RE2 syntax), where the
//! Perl classes `\d`, `\w`, `\s` and the word boundaries `\b`, `\B` are ASCII, while the regex crate
//! makes them Unicode (`\d` also matches `٣`, `\w` also `é`).
//!
//! So each of them is rewritten to its ASCII form before the pattern is compiled; nothing
//! else changes (`.`, `[^a]` and `\pL` stay Unicode, as in Go). Besides answering as
//! InfluxDB does, this makes a query's regexes much cheaper to compile: a Unicode `\w` is
//! a class of every word character there is (about 290 µs to compile here, 6 µs ASCII),
//! which any client could otherwise make the TSDB node build many times per query.
//!
//! Go's `\s` is `[\t\n\f\r ]` (no vertical tab), its `\d` `[0-9]`, its `\w` `[0-9A-Za-z_]`.

use regex_syntax::ast::{self, Ast, ClassPerlKind, ClassSetItem};

/// Compiles a pattern (already unescaped from its `/.../` literal) with Go's classes.
///
/// ```
/// use influxql::go_regex::compile;
/// let re = compile(r"^cpu\d+$").unwrap();
/// assert!(re.is_match("cpu12"));
/// assert!(!re.is_match("cpu٣"));
/// ```
pub fn compile(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&go_classes(pattern))
}

/// Checks a pattern's syntax as [`compile`] would read it, without compiling it (a small
/// fraction of the cost); the error is the regex crate's text.
pub fn check(pattern: &str) -> Result<(), String> {
    regex_syntax::Parser::new()
        .parse(&go_classes(pattern))
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The pattern with each Perl class and `\b` in its ASCII form. A pattern that does not
/// parse is returned as it is, so that compiling it reports its error in its own words.
pub fn go_classes(pattern: &str) -> String {
    let Ok(parsed) = ast::parse::Parser::new().parse(pattern) else {
        return pattern.to_string();
    };
    let Ok(mut edits) = ast::visit(&parsed, Edits::default());
    if edits.is_empty() {
        return pattern.to_string();
    }
    edits.sort_by_key(|(start, _, _)| *start);
    let mut out = String::with_capacity(pattern.len() + 16 * edits.len());
    let mut at = 0;
    for (start, end, replacement) in edits {
        // Spans of distinct leaves never overlap; skip one that would, rather than panic.
        if start < at || end > pattern.len() {
            continue;
        }
        out.push_str(&pattern[at..start]);
        out.push_str(replacement);
        at = end;
    }
    out.push_str(&pattern[at..]);
    out
}

/// The replacements to make: byte range of the pattern, and what goes there.
type Edit = (usize, usize, &'static str);

/// Collects the Perl classes and word boundaries of a parsed pattern.
#[derive(Debug, Default)]
struct Edits(Vec<Edit>);

impl ast::Visitor for Edits {
    type Output = Vec<Edit>;
    type Err = std::convert::Infallible;

    fn finish(self) -> Result<Vec<Edit>, Self::Err> {
        Ok(self.0)
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), Self::Err> {
        match ast {
            Ast::ClassPerl(class) => self.0.push((
                class.span.start.offset,
                class.span.end.offset,
                ascii_class(&class.kind, class.negated),
            )),
            Ast::Assertion(a) => {
                let ascii = match a.kind {
                    ast::AssertionKind::WordBoundary => r"(?-u:\b)",
                    ast::AssertionKind::NotWordBoundary => r"(?-u:\B)",
                    _ => return Ok(()),
                };
                self.0.push((a.span.start.offset, a.span.end.offset, ascii));
            }
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), Self::Err> {
        if let ClassSetItem::Perl(class) = item {
            // Inside brackets a nested class is a union: `[x\d]` becomes `[x[0-9]]`.
            self.0.push((
                class.span.start.offset,
                class.span.end.offset,
                ascii_class(&class.kind, class.negated),
            ));
        }
        Ok(())
    }
}

/// Go's ASCII meaning of a Perl class, as a bracketed class (valid alone or nested).
fn ascii_class(kind: &ClassPerlKind, negated: bool) -> &'static str {
    match (kind, negated) {
        (ClassPerlKind::Digit, false) => "[0-9]",
        (ClassPerlKind::Digit, true) => "[^0-9]",
        (ClassPerlKind::Word, false) => "[0-9A-Za-z_]",
        (ClassPerlKind::Word, true) => "[^0-9A-Za-z_]",
        (ClassPerlKind::Space, false) => r"[\t\n\f\r ]",
        (ClassPerlKind::Space, true) => r"[^\t\n\f\r ]",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_become_their_ascii_forms_and_nothing_else_changes() {
        assert_eq!(go_classes(r"^cpu\d+$"), "^cpu[0-9]+$");
        assert_eq!(
            go_classes(r"\w\W\s\S\D"),
            r"[0-9A-Za-z_][^0-9A-Za-z_][\t\n\f\r ][^\t\n\f\r ][^0-9]"
        );
        assert_eq!(go_classes(r"[x\d-]"), "[x[0-9]-]");
        assert_eq!(go_classes(r"\bhost\b"), r"(?-u:\b)host(?-u:\b)");
        assert_eq!(go_classes(r"a.[^b]\pL\\d"), r"a.[^b]\pL\\d");
        // A pattern that does not parse keeps its words for the error.
        assert_eq!(go_classes(r"a(\d"), r"a(\d");
    }

    #[test]
    fn classes_match_ascii_only_as_in_go() {
        let re = compile(r"^\w+\s\d$").unwrap();
        assert!(re.is_match("cpu_1 7"));
        assert!(!re.is_match("café 7"), "é is not a word character in Go");
        assert!(!re.is_match("cpu\u{0b}7"), "Go's \\s has no vertical tab");
        assert!(!re.is_match("cpu ٣"));
        // `.` and negated brackets stay Unicode, as in Go.
        assert!(compile("^.$").unwrap().is_match("é"));
        assert!(compile("^[^a]$").unwrap().is_match("é"));
        // `\b` is ASCII too: no boundary between the start and `é`, one after `a`.
        assert!(!compile(r"\bé").unwrap().is_match("é"));
        assert!(compile(r"\Bé").unwrap().is_match("é"));
    }

    #[test]
    fn a_bad_pattern_fails_with_the_regex_crates_reason() {
        let err = compile(r"a(\d").unwrap_err().to_string();
        assert!(err.contains("unclosed group"), "{err}");
    }
}
