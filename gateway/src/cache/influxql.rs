//! Which InfluxQL queries a cache may answer: only those that read. `SELECT ... INTO`,
//! `CREATE`, `DROP`, `DELETE` and the rest change the database, so a cached (or coalesced)
//! answer to them would be wrong. The test is deliberately coarse: a word `INTO` anywhere
//! outside quotes, or a statement that does not begin with `SELECT` or `SHOW`, is a write.

/// Whether every statement of `q` only reads.
pub fn is_read_only(q: &str) -> bool {
    let mut statements = 0;
    for statement in split_statements(q) {
        let words = words(statement);
        let Some(first) = words.first() else {
            continue;
        };
        statements += 1;
        if !(first.eq_ignore_ascii_case("select") || first.eq_ignore_ascii_case("show")) {
            return false;
        }
        if words.iter().any(|w| w.eq_ignore_ascii_case("into")) {
            return false;
        }
    }
    statements > 0
}

/// Statements separated by `;` outside quotes.
fn split_statements(q: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in q.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some(_), '\\') => escaped = true,
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, ';') => {
                out.push(&q[start..i]);
                start = i + 1;
            }
            (None, _) => {}
        }
    }
    out.push(&q[start..]);
    out
}

/// The bare words of a statement: identifiers and keywords outside quotes and comments.
fn words(statement: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = statement.as_bytes();
    let mut i = 0;
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
            out.push(&statement[start..i]);
        } else {
            i += 1;
        }
    }
    out
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
