//! The times a write touches, read from its line-protocol body as it streams through, so
//! that a write into an old bucket's time drops that bucket and no other.
//!
//! A point's time is the last space-separated token of its line when that token is an
//! integer (a field set always holds `=`); a line without one is stamped by the node with
//! its own clock. The reader is conservative: a line it cannot be sure about (one whose
//! quoted string is still open at the newline: InfluxDB reads on into the next line) makes
//! the write **unreadable**, and the caller forgets every bucket of the database instead.
//! Nothing is refused here: the node judges the lines.

/// What a write's body says about the times it touches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Written {
    /// The earliest and latest explicit timestamps, in nanoseconds.
    pub span: Option<(i64, i64)>,
    /// Some line had no timestamp: the node stamps it with its clock (now).
    pub untimed: bool,
    /// Some line's time could not be told: every bucket of the database must go.
    pub unreadable: bool,
}

/// The longest last token kept across chunks: an `i64` in decimal, with a sign.
const MAX_TOKEN: usize = 20;

/// Reads a body chunk by chunk.
#[derive(Debug, Clone)]
pub struct WrittenReader {
    /// Nanoseconds per unit of the write's `precision`.
    unit_ns: i64,
    written: Written,
    /// The current line so far: its last token (after its last space), bounded.
    token: Vec<u8>,
    token_too_long: bool,
    /// The line so far holds anything other than blanks.
    content: bool,
    /// The line starts with `#` (a comment).
    comment: bool,
    /// Inside a quoted string, and whether the last byte was a backslash.
    quoted: bool,
    escaped: bool,
}

impl WrittenReader {
    /// A reader for a write with `precision` (`None`: nanoseconds); `None` for a precision
    /// InfluxDB does not know (the node refuses the write).
    pub fn new(precision: Option<&str>) -> Option<WrittenReader> {
        let unit_ns = match precision.unwrap_or("n") {
            "n" | "ns" => 1,
            "u" | "us" | "µ" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        Some(WrittenReader {
            unit_ns,
            written: Written::default(),
            token: Vec::with_capacity(MAX_TOKEN),
            token_too_long: false,
            content: false,
            comment: false,
            quoted: false,
            escaped: false,
        })
    }

    /// Takes in the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            let escaped = self.escaped;
            self.escaped = b == b'\\' && !escaped;
            match b {
                b'\n' => self.end_line(),
                b' ' | b'\t' | b'\r' => {
                    self.token.clear();
                    self.token_too_long = false;
                }
                _ => {
                    if !self.content {
                        self.content = true;
                        self.comment = b == b'#';
                    }
                    if b == b'"' && !escaped {
                        self.quoted = !self.quoted;
                    }
                    if self.token.len() < MAX_TOKEN {
                        self.token.push(b);
                    } else {
                        self.token_too_long = true;
                    }
                }
            }
        }
    }

    /// What the whole body said (a last line without its newline counts).
    pub fn finish(mut self) -> Written {
        self.end_line();
        self.written
    }

    fn end_line(&mut self) {
        if self.content && !self.comment {
            let time = (!self.token_too_long)
                .then(|| std::str::from_utf8(&self.token).ok())
                .flatten()
                .and_then(|t| t.parse::<i64>().ok());
            match time {
                // InfluxDB reads on past this newline, inside the string.
                _ if self.quoted => self.written.unreadable = true,
                Some(t) => {
                    let ns = t.saturating_mul(self.unit_ns);
                    let (lo, hi) = self.written.span.unwrap_or((ns, ns));
                    self.written.span = Some((lo.min(ns), hi.max(ns)));
                }
                None => self.written.untimed = true,
            }
        }
        self.token.clear();
        self.token_too_long = false;
        self.content = false;
        self.comment = false;
        self.quoted = false;
        self.escaped = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(precision: Option<&str>, chunks: &[&str]) -> Written {
        let mut r = WrittenReader::new(precision).unwrap();
        for c in chunks {
            r.feed(c.as_bytes());
        }
        r.finish()
    }

    #[test]
    fn the_span_covers_every_timestamp_in_the_precision_asked() {
        let w = read(
            Some("s"),
            &[
                "cpu,host=a v=1 1700000000\ncpu v=2i 1600000000\n",
                "mem v=3 1800000000",
            ],
        );
        assert_eq!(
            w.span,
            Some((1_600_000_000_000_000_000, 1_800_000_000_000_000_000))
        );
        assert!(!w.untimed && !w.unreadable);
    }

    #[test]
    fn a_timestamp_split_across_chunks_is_read_whole() {
        let w = read(None, &["cpu v=1 17", "000", "\n"]);
        assert_eq!(w.span, Some((17_000, 17_000)));
    }

    #[test]
    fn lines_without_a_time_are_stamped_now_and_comments_and_blanks_are_skipped() {
        let w = read(None, &["# a comment 123\n\n  \ncpu v=1\r\n"]);
        assert_eq!(w.span, None);
        assert!(w.untimed && !w.unreadable);
    }

    #[test]
    fn a_string_open_at_a_newline_is_unreadable_and_a_closed_one_is_not() {
        // InfluxDB reads `5` and `6"` as part of the string: no time can be told.
        let w = read(None, &["log msg=\"took 5\n6\" 99\n"]);
        assert!(w.unreadable);
        let w = read(None, &["log msg=\"took 2\"\n"]);
        assert!(w.untimed && !w.unreadable);
        let w = read(None, &["log msg=\"say \\\"2 99\\\"\" 7\n"]);
        assert_eq!(
            w.span,
            Some((7, 7)),
            "escaped quotes stay inside the string"
        );
        assert!(!w.unreadable);
    }

    #[test]
    fn an_unknown_precision_has_no_reader_and_huge_times_saturate() {
        assert!(WrittenReader::new(Some("fortnight")).is_none());
        let w = read(Some("h"), &["cpu v=1 9223372036854775807\n"]);
        assert_eq!(w.span, Some((i64::MAX, i64::MAX)));
        let w = read(None, &["cpu v=1 123456789012345678901234\n"]);
        assert!(
            w.untimed,
            "a token longer than any i64 is a field, not a time"
        );
    }
}
