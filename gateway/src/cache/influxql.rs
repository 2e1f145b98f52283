//! Which InfluxQL queries a cache may answer: only those that read. `SELECT ... INTO`,
//! `CREATE`, `DROP`, `DELETE` and the rest change the database, so a cached (or coalesced)
//! answer to them would be wrong. The test is deliberately coarse: a word `INTO` anywhere
//! outside quotes, or a statement that does not begin with `SELECT` or `SHOW`, is a write.

/// Whether every statement of `q` only reads.
pub fn is_read_only(q: &str) -> bool {
    let mut statements = 0;
    for statement in Statements::new(q) {
        let mut words = Words::new(statement);
        let Some(first) = words.next() else {
            continue;
        };
        statements += 1;
        if !(first.eq_ignore_ascii_case("select") || first.eq_ignore_ascii_case("show")) {
            return false;
        }
        if words.any(|w| w.eq_ignore_ascii_case("into")) {
            return false;
        }
    }
    statements > 0
}

/// Statements separated by `;` outside quotes (on the hot path of every cached query, so
/// nothing is allocated).
struct Statements<'a> {
    rest: Option<&'a str>,
}

impl<'a> Statements<'a> {
    fn new(q: &'a str) -> Self {
        Statements { rest: Some(q) }
    }
}

impl<'a> Iterator for Statements<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let q = self.rest?;
        let mut quote: Option<u8> = None;
        let mut escaped = false;
        for (i, &c) in q.as_bytes().iter().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match (quote, c) {
                (Some(_), b'\\') => escaped = true,
                (Some(open), c) if c == open => quote = None,
                (Some(_), _) => {}
                (None, b'\'' | b'"') => quote = Some(c),
                (None, b';') => {
                    self.rest = Some(&q[i + 1..]);
                    return Some(&q[..i]);
                }
                (None, _) => {}
            }
        }
        self.rest = None;
        Some(q)
    }
}

/// The bare words of a statement: identifiers and keywords outside quotes and comments.
struct Words<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        Words { text, at: 0 }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let mut i = self.at;
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'\'' || c == b'"' {
                // Skip the quoted text (a quoted identifier is never a keyword).
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            } else if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            } else if c.is_ascii_alphanumeric() || c == b'_' {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                self.at = i;
                return self.text.get(start..i);
            } else {
                i += 1;
            }
        }
        self.at = bytes.len();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_and_shows_read() {
        assert!(is_read_only("SELECT mean(v) FROM m GROUP BY time(1m)"));
        assert!(is_read_only("  select * from cpu; SHOW MEASUREMENTS"));
        assert!(is_read_only("SHOW TAG VALUES WITH KEY = \"host\""));
        assert!(is_read_only("SELECT * FROM \"into\""));
        assert!(is_read_only(
            "SELECT * FROM m WHERE t = 'a;DROP DATABASE x'"
        ));
        assert!(is_read_only("-- a comment\nSELECT 1;"));
    }

    #[test]
    fn anything_else_writes() {
        assert!(!is_read_only("DROP DATABASE telemetry"));
        assert!(!is_read_only("CREATE DATABASE x"));
        assert!(!is_read_only(
            "SELECT mean(v) INTO m_1m FROM m GROUP BY time(1m)"
        ));
        assert!(!is_read_only("SELECT * FROM m; DROP MEASUREMENT m"));
        assert!(!is_read_only("DELETE FROM m"));
        assert!(!is_read_only("select * into x from y"));
        assert!(!is_read_only(""));
        assert!(!is_read_only(" ; "));
    }
}
