//! Which InfluxQL queries a cache may answer: only those that read. `SELECT ... INTO`,
//! `CREATE`, `DROP`, `DELETE` and the rest change the database, so a cached (or coalesced)
//! answer to them would be wrong.
//!
//! The query is read with the TSDB node's own parser (the `influxql` crate, InfluxDB 1.6's
//! grammar), so the gateway and the backends agree on where statements end and what each
//! one is. A query the parser rejects is not read-only: the backend would only answer it
//! with an error, and nothing the gateway cannot read is cached.

use influxql::ast::{SelectStatement, Source, Statement};
use influxql::lexer::{Keyword, Lexer, Token};
use std::sync::{Arc, LazyLock};

/// The longest query text that is parsed (and remembered); a longer one is not cached. The
/// parser bounds its own depth and chains (`influxql::parser::MAX_NESTING`), so this only
/// bounds the time and memory one request can spend here.
pub(super) const MAX_PARSED_LEN: usize = 16 << 10;

/// Bytes of query text whose answer [`is_read_only`] remembers.
const MEMO_BYTES: u64 = 4 << 20;

/// The answers for the query texts seen lately: dashboards send the same queries again and
/// again, and a lookup (a hash of the text) costs a small fraction of a parse.
static MEMO: LazyLock<moka::sync::Cache<Arc<str>, bool>> = LazyLock::new(text_memo);

/// A cache of facts about query texts, bounded by [`MEMO_BYTES`] of text.
pub(super) fn text_memo<V: Clone + Send + Sync + 'static>() -> moka::sync::Cache<Arc<str>, V> {
    moka::sync::Cache::builder()
        .max_capacity(MEMO_BYTES)
        .weigher(|q: &Arc<str>, _: &V| weight(q))
        .build()
}

/// What a remembered query costs, about.
fn weight(q: &str) -> u32 {
    u32::try_from(q.len() + 16).unwrap_or(u32::MAX)
}

/// Whether `q` parses and every one of its statements only reads: `SELECT` without `INTO`
/// (in its subqueries too) and `SHOW ...`.
pub fn is_read_only(q: &str) -> bool {
    if q.len() > MAX_PARSED_LEN {
        return false;
    }
    if let Some(known) = MEMO.get(q) {
        return known;
    }
    let answer = match influxql::parse_query(q) {
        Ok(statements) => !statements.is_empty() && statements.iter().all(reads),
        Err(_) => false,
    };
    MEMO.insert(q.into(), answer);
    answer
}

/// Whether one statement only reads. Every kind is named, so a new one has to be decided.
fn reads(statement: &Statement) -> bool {
    match statement {
        Statement::Select(select) => select_reads(select),
        Statement::ShowDatabases
        | Statement::ShowMeasurements(_)
        | Statement::ShowTagKeys(_)
        | Statement::ShowTagValues(_)
        | Statement::ShowFieldKeys(_)
        | Statement::ShowSeries(_)
        | Statement::ShowCardinality(_)
        | Statement::ShowRetentionPolicies(_) => true,
        // The statements the TSDB node does not execute, kept as their text: `SHOW USERS`,
        // `SHOW QUERIES`... read; `GRANT`, `CREATE USER`, `KILL
        // QUERY`... do not.
        Statement::Unsupported(text) => {
            Lexer::new(text).scan().token == Token::Keyword(Keyword::Show)
        }
        // `EXPLAIN ANALYZE` runs its query and answers with timings: not cached.
        Statement::Explain(_)
        | Statement::Delete(_)
        | Statement::DropSeries(_)
        | Statement::CreateDatabase(_)
        | Statement::DropDatabase(_)
        | Statement::CreateRetentionPolicy(_)
        | Statement::AlterRetentionPolicy(_)
        | Statement::DropRetentionPolicy(_)
        | Statement::DropMeasurement(_) => false,
    }
}

/// A `SELECT` reads when neither it nor any of its subqueries has an `INTO` target.
fn select_reads(select: &SelectStatement) -> bool {
    select.into.is_none()
        && select.sources.iter().all(|source| match source {
            Source::Measurement(_) => true,
            Source::SubQuery(inner) => select_reads(inner),
        })
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
        assert!(is_read_only("-- a comment\nSELECT v FROM m;"));
        assert!(is_read_only("SELECT v FROM m WHERE t = 'into'"));
        assert!(is_read_only("SELECT max(v) FROM (SELECT v FROM m)"));
    }

    #[test]
    fn shows_the_tsdb_does_not_execute_still_read() {
        assert!(is_read_only("SHOW USERS"));
        assert!(is_read_only("show queries"));
        assert!(is_read_only("SHOW SERIES CARDINALITY ON db"));
        assert!(is_read_only("SHOW GRANTS FOR bob; SHOW SHARD GROUPS"));
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
        assert!(!is_read_only("SELECT v FROM (SELECT v INTO x FROM m)"));
        assert!(!is_read_only("GRANT ALL TO bob"));
        assert!(!is_read_only("CREATE USER bob WITH PASSWORD 'x'"));
        assert!(!is_read_only("KILL QUERY 1"));
        assert!(!is_read_only("EXPLAIN ANALYZE SELECT v FROM m"));
    }

    #[test]
    fn a_query_that_does_not_parse_is_not_read_only() {
        // InfluxDB 1.x: `found EOF, expected FROM at line 1, char 9`.
        assert!(!is_read_only("SELECT 1"));
        assert!(!is_read_only("SELECT v FROM m WHERE"));
        assert!(!is_read_only("SELECT v FROM m; SELEC v FROM m"));
        assert!(!is_read_only("SHOW"));
        assert!(!is_read_only("SELECT v FROM m WHERE t = 'unterminated"));
    }

    /// A read within the parser's bounds; reads as long, or as deep, as this file lets the
    /// parser see (past its bounds), and one past either limit.
    fn at_the_limits() -> [(String, bool); 6] {
        let chain = |prefix: &str, suffix: &str| {
            let mut q = format!("{prefix}v");
            while q.len() + 2 + suffix.len() <= MAX_PARSED_LEN {
                q.push_str("+v");
            }
            q + suffix
        };
        let long = chain("SELECT v FROM m WHERE v = ", "");
        // Past the parser's bound on subqueries (10 deep).
        let nested = 32;
        let deep = chain(
            &format!(
                "SELECT v FROM {}m WHERE v = ",
                "(SELECT v FROM ".repeat(nested)
            ),
            &")".repeat(nested),
        );
        let too_long = format!("{long}+v");
        let too_deep = format!(
            "SELECT v FROM {}m{}",
            "(SELECT v FROM ".repeat(nested + 1),
            ")".repeat(nested + 1)
        );
        // Within the parser's own bounds (`influxql::parser::MAX_NESTING`, chains of
        // operators): read. At this file's limits, past the parser's: refused, not a
        // stack overflow.
        let within = format!(
            "SELECT v FROM {}m WHERE v = v{}{}",
            "(SELECT v FROM ".repeat(5),
            "+v".repeat(900),
            ")".repeat(5)
        );
        // Deep parentheses within the length: the parser's own bound refuses them.
        let parens = format!("SELECT {}v{} FROM m", "(".repeat(5000), ")".repeat(5000));
        [
            (within, true),
            (parens, false),
            (long, false),
            (deep, false),
            (too_long, false),
            (too_deep, false),
        ]
    }

    #[test]
    fn the_deepest_query_parsed_leaves_most_of_a_worker_stack() {
        // Half of a tokio worker's 2 MiB, in a debug build.
        let worker = std::thread::Builder::new().stack_size(1 << 20);
        let handle = worker
            .spawn(|| {
                for (q, read_only) in at_the_limits() {
                    assert_eq!(is_read_only(&q), read_only, "{} bytes", q.len());
                }
            })
            .unwrap();
        handle.join().unwrap();
    }
}
