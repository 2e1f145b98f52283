//! Parser tests: every statement form round-trips through `Display`, and every error path
//! prints InfluxDB 1.6's text (each expected string was checked against a real influxd).

use super::*;
use crate::ast::{
    BinaryOp, CardinalityOf, DataType, Dimension, Expr, Fill, MeasurementName, SelectStatement,
    Source, TagKeyMatch, WildcardType,
};

fn parse_one(text: &str) -> Statement {
    let mut statements = parse_query(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(statements.len(), 1, "{text}");
    statements.remove(0)
}

fn select(text: &str) -> SelectStatement {
    match parse_one(text) {
        Statement::Select(s) => *s,
        other => panic!("not a select: {other:?}"),
    }
}

/// Parses `text` and checks it prints as `canonical`, which must itself round-trip.
fn assert_round_trip(text: &str, canonical: &str) {
    let printed = parse_one(text).to_string();
    assert_eq!(printed, canonical, "{text}");
    assert_eq!(
        parse_one(&printed).to_string(),
        canonical,
        "reparse of {printed}"
    );
}

fn assert_canonical(text: &str) {
    assert_round_trip(text, text);
}

fn error(text: &str) -> String {
    match parse_query(text) {
        Ok(statements) => panic!("{text} parsed: {statements:?}"),
        Err(e) => e.to_string(),
    }
}

fn var(name: &str) -> Expr {
    Expr::VarRef {
        name: name.to_string(),
        data_type: None,
    }
}

// ---------------------------------------------------------------------------------------
// SELECT
// ---------------------------------------------------------------------------------------

#[test]
fn parse_select_with_group_by_time_and_fill() {
    let text =
        "SELECT mean(value) AS m FROM cpu WHERE time > now() - 1h GROUP BY time(10m) fill(none)";
    assert_canonical(text);
    let stmt = select(text);
    assert_eq!(stmt.fields[0].name(), "m");
    assert_eq!(stmt.fill, Fill::None);
    assert_eq!(stmt.group_by_interval(), Some((600_000_000_000, 0)));
    assert!(!stmt.is_raw_query());
    let Some(Expr::Binary { op, lhs, .. }) = &stmt.condition else {
        panic!("condition {:?}", stmt.condition);
    };
    assert_eq!(*op, BinaryOp::Gt);
    assert!(lhs.is_time_ref());
}

#[test]
fn parse_select_with_every_clause_prints_canonically() {
    assert_round_trip(
        "select MEAN(value) as m, percentile(\"v a\", 90), 1.5 * max(x) + 2 from db.rp.cpu \
         where host =~ /a\\/b/ and x = 'it\\'s' or y <> 2.0 group by time(90m, -30s), host, \
         \"My Tag\" fill(1.5) order by time desc limit 5 offset 2 slimit 3 soffset 1 tz('UTC')",
        "SELECT mean(value) AS m, percentile(\"v a\", 90), 1.500 * max(x) + 2 FROM db.rp.cpu \
         WHERE host =~ /a\\/b/ AND x = 'it\\'s' OR y != 2.000 GROUP BY time(90m, -30s), host, \
         \"My Tag\" fill(1.5) ORDER BY time DESC LIMIT 5 OFFSET 2 SLIMIT 3 SOFFSET 1 TZ('UTC')",
    );
}

#[test]
fn parse_select_star_regex_fields_and_casts() {
    assert_canonical("SELECT * FROM cpu");
    assert_canonical("SELECT *::field, *::tag FROM cpu");
    assert_canonical("SELECT /usage/ FROM cpu");
    assert_canonical("SELECT value::float, host::tag, v::field FROM cpu");
    let stmt = select("SELECT value::integer, * FROM cpu");
    assert_eq!(
        stmt.fields[0].expr,
        Expr::VarRef {
            name: "value".to_string(),
            data_type: Some(DataType::Integer)
        }
    );
    assert_eq!(stmt.fields[1].expr, Expr::Wildcard(None));
    assert!(stmt.has_field_wildcard());
    assert!(stmt.is_raw_query());
    assert_eq!(
        select("SELECT *::tag FROM cpu").fields[0].expr,
        Expr::Wildcard(Some(WildcardType::Tag))
    );
}

#[test]
fn parse_select_arithmetic_respects_precedence_and_parentheses() {
    let stmt = select("SELECT a + b * 2, (a + b) * 2 FROM cpu");
    assert_eq!(
        stmt.fields[0].expr,
        Expr::binary(
            BinaryOp::Add,
            var("a"),
            Expr::binary(BinaryOp::Mul, var("b"), Expr::Integer(2))
        )
    );
    assert_eq!(
        stmt.fields[1].expr,
        Expr::binary(
            BinaryOp::Mul,
            Expr::Paren(Box::new(Expr::binary(BinaryOp::Add, var("a"), var("b")))),
            Expr::Integer(2)
        )
    );
    assert_eq!(stmt.fields[0].name(), "a_b");
    assert_canonical("SELECT a + b * 2, (a + b) * 2 FROM cpu WHERE a = 1 + 2 * 3 - 4 / 2");
}

#[test]
fn parse_select_unary_minus_folds_literals_and_multiplies_terms() {
    assert_round_trip(
        "SELECT -mean(v) * 2, -(a + b), max(x) % 3 FROM cpu WHERE a = -1.5 AND b = -3",
        "SELECT -1 * mean(v) * 2, -1 * (a + b), max(x) % 3 FROM cpu WHERE a = -1.500 AND b = -3",
    );
    let stmt =
        select("SELECT v FROM cpu WHERE a = -9223372036854775808 AND b = 18446744073709551615");
    let mut literals = Vec::new();
    stmt.condition.as_ref().unwrap().walk(&mut |e| {
        if matches!(e, Expr::Integer(_) | Expr::Unsigned(_)) {
            literals.push(e.clone());
        }
    });
    assert_eq!(
        literals,
        vec![Expr::Integer(i64::MIN), Expr::Unsigned(u64::MAX)]
    );
}

#[test]
fn parse_select_functions_generically_with_distinct() {
    let stmt =
        select("SELECT count(distinct value), COUNT(DISTINCT(host)), top(v, host, 3) FROM cpu");
    assert_eq!(
        stmt.fields[0].expr,
        Expr::Call {
            name: "count".to_string(),
            args: vec![Expr::Distinct("value".to_string())]
        }
    );
    assert_eq!(
        stmt.to_string(),
        "SELECT count(DISTINCT value), count(distinct(host)), top(v, host, 3) FROM cpu"
    );
    assert_eq!(
        stmt.column_names(),
        vec!["time", "count", "count_1", "top", "host"]
    );
}

#[test]
fn parse_select_literals_of_every_kind() {
    let stmt = select(
        "SELECT v FROM cpu WHERE a = 'x' AND b = 1 AND c = 1.25 AND d = true AND e = FALSE \
         AND time > 1500000000s AND time < '2009-11-10T23:00:00Z'",
    );
    let mut literals = Vec::new();
    stmt.condition.as_ref().unwrap().walk(&mut |e| match e {
        Expr::Binary { .. } | Expr::VarRef { .. } => {}
        other => literals.push(other.clone()),
    });
    assert_eq!(
        literals,
        vec![
            Expr::String("x".to_string()),
            Expr::Integer(1),
            Expr::Float(1.25),
            Expr::Boolean(true),
            Expr::Boolean(false),
            Expr::Duration(1_500_000_000_000_000_000),
            Expr::String("2009-11-10T23:00:00Z".to_string()),
        ]
    );
    assert_eq!(
        stmt.to_string(),
        "SELECT v FROM cpu WHERE a = 'x' AND b = 1 AND c = 1.250 AND d = true AND e = false \
         AND time > 25000000m AND time < '2009-11-10T23:00:00Z'"
    );
}

#[test]
fn parse_select_sources_in_every_form() {
    let only = |text: &str| {
        let stmt = select(&format!("SELECT v FROM {text}"));
        stmt.measurement().cloned().expect("one measurement")
    };
    let m = only("db.rp.cpu");
    assert_eq!(
        (
            m.database.as_deref(),
            m.retention_policy.as_deref(),
            &m.name
        ),
        (
            Some("db"),
            Some("rp"),
            &MeasurementName::Name("cpu".to_string())
        )
    );
    let m = only("db..cpu");
    assert_eq!(
        (m.database.as_deref(), m.retention_policy),
        (Some("db"), None)
    );
    let m = only("rp.cpu");
    assert_eq!(
        (m.database, m.retention_policy.as_deref()),
        (None, Some("rp"))
    );
    let MeasurementName::Regex(re) = only("/cp.*/").name else {
        panic!("not a regex")
    };
    assert!(re.regex().unwrap().is_match("cpu"));
    for text in [
        "SELECT v FROM db.rp.cpu",
        "SELECT v FROM db..cpu",
        "SELECT v FROM rp.cpu",
        "SELECT v FROM /cpu.*/",
        "SELECT v FROM db.rp./cpu/",
        "SELECT v FROM rp./cpu/",
        "SELECT v FROM \"select\", \"my cpu\"",
        "SELECT v FROM (SELECT mean(v) AS v FROM cpu GROUP BY time(1m))",
    ] {
        assert_canonical(text);
    }
    assert!(matches!(
        select("SELECT v FROM (SELECT v FROM cpu)").sources[0],
        Source::SubQuery(_)
    ));
}

#[test]
fn parse_select_group_by_dimensions_of_every_kind() {
    let stmt =
        select("SELECT mean(v) FROM cpu GROUP BY time(1h, 10m), host, *, /reg/, time(1h, now())");
    assert_eq!(
        stmt.dimensions[0],
        Dimension::Time {
            interval: 3_600_000_000_000,
            offset: Some(600_000_000_000)
        }
    );
    assert_eq!(stmt.dimensions[1], Dimension::Tag("host".to_string()));
    assert_eq!(stmt.dimensions[2], Dimension::Wildcard);
    assert!(matches!(stmt.dimensions[3], Dimension::Regex(_)));
    assert!(matches!(stmt.dimensions[4], Dimension::Expr(_)));
    assert!(stmt.has_dimension_wildcard());
    assert_eq!(
        stmt.to_string(),
        "SELECT mean(v) FROM cpu GROUP BY time(1h, 10m), host, *, /reg/, time(1h, now())"
    );
}

#[test]
fn parse_fill_options_and_fill_without_group_by() {
    let fill = |f: &str| select(&format!("SELECT mean(v) FROM cpu {f}")).fill;
    assert_eq!(fill("fill(null)"), Fill::Null);
    assert_eq!(fill("fill(none)"), Fill::None);
    assert_eq!(fill("fill(previous)"), Fill::Previous);
    assert_eq!(fill("FILL(linear)"), Fill::Linear);
    assert_eq!(fill("fill(-2)"), Fill::Integer(-2));
    assert_eq!(fill("fill(1.5)"), Fill::Float(1.5));
    assert_round_trip(
        "SELECT mean(v) FROM cpu GROUP BY time(1h) fill(null)",
        "SELECT mean(v) FROM cpu GROUP BY time(1h)",
    );
    // InfluxDB prints fill values with Go's %v, which it cannot read back; so do we.
    assert_eq!(
        parse_one("SELECT mean(v) FROM cpu GROUP BY time(1h) fill(1000000.5)").to_string(),
        "SELECT mean(v) FROM cpu GROUP BY time(1h) fill(1.0000005e+06)",
    );
}

#[test]
fn parse_order_by_limit_and_offsets() {
    let stmt = select("SELECT v FROM cpu ORDER BY time DESC LIMIT 10 OFFSET 0 SLIMIT 2");
    assert!(!stmt.time_ascending());
    assert_eq!(
        (stmt.limit, stmt.offset, stmt.slimit),
        (Some(10), None, Some(2))
    );
    assert!(select("SELECT v FROM cpu ORDER BY time").time_ascending());
    assert_canonical("SELECT v FROM cpu ORDER BY DESC");
    assert_round_trip(
        "SELECT v FROM cpu ORDER BY time",
        "SELECT v FROM cpu ORDER BY time ASC",
    );
}

#[test]
fn parse_select_into_targets() {
    assert_canonical("SELECT v INTO db.rp.out FROM cpu");
    assert_canonical("SELECT v INTO db..:MEASUREMENT FROM cpu");
}

#[test]
fn comments_and_newlines_are_skipped() {
    assert_round_trip(
        "SELECT v /* a block */ -- the value\r\nFROM cpu -- trailing",
        "SELECT v FROM cpu",
    );
    // As in InfluxDB, a comment where a regex may start is read as a regex.
    assert_eq!(
        error("SELECT v\nFROM /* a block */ cpu"),
        "error parsing regexp: missing argument to repetition operator: `*` at line 2, char 5"
    );
}

#[test]
fn several_statements_separated_by_semicolons() {
    let statements = parse_query("SELECT v FROM cpu; ; SHOW DATABASES;").unwrap();
    assert_eq!(statements.len(), 2);
    assert_eq!(statements[1], Statement::ShowDatabases);
    assert_eq!(parse_query("  ").unwrap(), vec![]);
}

#[test]
fn identifiers_keep_case_and_keywords_do_not() {
    assert_round_trip("sElEcT Value FrOm Cpu", "SELECT Value FROM Cpu");
    assert_round_trip("SELECT \"a\\\"b\" FROM cpu", "SELECT \"a\\\"b\" FROM cpu");
}

// ---------------------------------------------------------------------------------------
// Other statements
// ---------------------------------------------------------------------------------------

#[test]
fn parse_show_statements_round_trip() {
    for text in [
        "SHOW DATABASES",
        "SHOW MEASUREMENTS",
        "SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /cpu.*/ WHERE host = 'a' LIMIT 1 OFFSET 2",
        "SHOW MEASUREMENTS WITH MEASUREMENT = cpu",
        "SHOW TAG KEYS ON db FROM cpu WHERE host = 'a' LIMIT 1 OFFSET 2 SLIMIT 3 SOFFSET 4",
        "SHOW TAG VALUES ON db FROM cpu WITH KEY = host WHERE region = 'x' LIMIT 5",
        "SHOW TAG VALUES WITH KEY IN (host, \"my tag\")",
        "SHOW TAG VALUES WITH KEY =~ /h.*/",
        "SHOW TAG VALUES WITH KEY != host",
        "SHOW FIELD KEYS ON db FROM cpu LIMIT 1",
        "SHOW SERIES ON db FROM cpu WHERE host = 'a' LIMIT 2 OFFSET 1",
        "SHOW RETENTION POLICIES ON db",
        "SHOW RETENTION POLICIES",
    ] {
        assert_canonical(text);
    }
    let Statement::ShowTagValues(s) = parse_one("SHOW TAG VALUES WITH KEY = \"host\"") else {
        panic!()
    };
    assert_eq!(s.key, TagKeyMatch::Eq("host".to_string()));
}

#[test]
fn parse_ddl_statements_round_trip() {
    for text in [
        "CREATE DATABASE db",
        "CREATE DATABASE db WITH DURATION 1d REPLICATION 1 SHARD DURATION 1h NAME rp",
        "DROP DATABASE \"my db\"",
        "CREATE RETENTION POLICY rp ON db DURATION 2w REPLICATION 1 SHARD DURATION 30m DEFAULT",
        "ALTER RETENTION POLICY rp ON db DURATION 2h REPLICATION 2 SHARD DURATION 1h DEFAULT",
        "DROP RETENTION POLICY rp ON db",
        "DROP MEASUREMENT cpu",
        "DELETE FROM cpu WHERE time < '2020-01-01T00:00:00Z'",
        "DELETE WHERE host = 'a'",
        "DROP SERIES FROM cpu WHERE host = 'a'",
        "EXPLAIN SELECT v FROM cpu",
        "EXPLAIN ANALYZE SELECT v FROM cpu",
    ] {
        assert_canonical(text);
    }
    assert_round_trip(
        "CREATE RETENTION POLICY rp ON db DURATION INF REPLICATION 1",
        "CREATE RETENTION POLICY rp ON db DURATION 0s REPLICATION 1",
    );
    assert_round_trip(
        "ALTER RETENTION POLICY DEFAULT ON db DEFAULT",
        "ALTER RETENTION POLICY \"default\" ON db DEFAULT",
    );
}

#[test]
fn statements_outside_the_subset_are_kept_as_unsupported_text() {
    let statements =
        parse_query("SHOW USERS; GRANT ALL TO bob; CREATE USER bob WITH PASSWORD 'x'").unwrap();
    assert_eq!(
        statements,
        vec![
            Statement::Unsupported("SHOW USERS".to_string()),
            Statement::Unsupported("GRANT ALL TO bob".to_string()),
            Statement::Unsupported("CREATE USER bob WITH PASSWORD 'x'".to_string()),
        ]
    );
}

#[test]
fn cardinality_statements_keep_their_clauses_and_print_as_written() {
    let statements = parse_query(
        "SHOW SERIES CARDINALITY ON db; SHOW SERIES EXACT CARDINALITY FROM cpu WHERE host = 'a'; \
         SHOW TAG VALUES EXACT CARDINALITY FROM cpu WITH KEY IN (host, region); \
         SHOW MEASUREMENT CARDINALITY; SHOW FIELD KEY EXACT CARDINALITY; SHOW TAG KEY CARDINALITY",
    )
    .unwrap();
    let kinds: Vec<(CardinalityOf, bool)> = statements
        .iter()
        .map(|s| match s {
            Statement::ShowCardinality(c) => (c.of, c.exact),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (CardinalityOf::Series, false),
            (CardinalityOf::Series, true),
            (CardinalityOf::TagValues, true),
            (CardinalityOf::Measurement, false),
            (CardinalityOf::FieldKey, true),
            (CardinalityOf::TagKey, false),
        ]
    );
    let Statement::ShowCardinality(c) = &statements[1] else {
        panic!()
    };
    assert_eq!(
        c.to_string(),
        "SHOW SERIES EXACT CARDINALITY FROM cpu WHERE host = 'a'"
    );
    assert!(c.condition.is_some() && c.sources.len() == 1);
    assert_eq!(statements[0].to_string(), "SHOW SERIES CARDINALITY ON db");
}

// ---------------------------------------------------------------------------------------
// Errors, as influxd 1.6 prints them.
// ---------------------------------------------------------------------------------------

#[test]
fn missing_from_is_an_error_at_its_position() {
    assert_eq!(
        error("SELECT value"),
        "found EOF, expected FROM at line 1, char 14"
    );
    assert_eq!(
        error("SELECT value "),
        "found EOF, expected FROM at line 1, char 14"
    );
    assert_eq!(
        error("SELECT value\nFROM cpu\nLIMIT"),
        "found EOF, expected integer at line 3, char 7"
    );
}

#[test]
fn unknown_statements_list_what_influxdb_expects() {
    assert_eq!(
        error("BLAH"),
        "found BLAH, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET, KILL at line 1, char 1"
    );
    assert_eq!(
        error("SHOW"),
        "found EOF, expected CONTINUOUS, DATABASES, DIAGNOSTICS, FIELD, GRANTS, MEASUREMENT, MEASUREMENTS, QUERIES, RETENTION, SERIES, SHARD, SHARDS, STATS, SUBSCRIPTIONS, TAG, USERS at line 1, char 6"
    );
    assert_eq!(
        error("CREATE"),
        "found EOF, expected CONTINUOUS, DATABASE, USER, RETENTION, SUBSCRIPTION at line 1, char 8"
    );
    assert_eq!(
        error("DROP"),
        "found EOF, expected CONTINUOUS, DATABASE, MEASUREMENT, RETENTION, SERIES, SHARD, SUBSCRIPTION, USER at line 1, char 6"
    );
    assert_eq!(
        error("ALTER"),
        "found EOF, expected RETENTION at line 1, char 7"
    );
    assert_eq!(
        error("SET"),
        "found EOF, expected PASSWORD at line 1, char 5"
    );
    assert_eq!(error("KILL"), "found EOF, expected QUERY at line 1, char 6");
    assert_eq!(
        error("EXPLAIN"),
        "found EOF, expected SELECT at line 1, char 9"
    );
    assert_eq!(
        error("GRANT"),
        "found EOF, expected READ, WRITE, ALL [PRIVILEGES] at line 1, char 7"
    );
    assert_eq!(
        error("SHOW TAG"),
        "found EOF, expected KEY, KEYS, VALUES at line 1, char 10"
    );
    assert_eq!(
        error("SHOW FIELD"),
        "found EOF, expected KEY, KEYS at line 1, char 12"
    );
    assert_eq!(
        error("SHOW MEASUREMENT"),
        "found EOF, expected EXACT, CARDINALITY at line 1, char 18"
    );
    assert_eq!(
        error("SHOW TAG VALUES CARDINALITY"),
        "found EOF, expected WITH at line 1, char 29"
    );
    assert_eq!(
        error("SHOW USERS extra"),
        "found extra, expected ; at line 1, char 12"
    );
}

#[test]
fn select_clause_errors_match_influxdb() {
    let cases = [
        ("SELECT FROM", "found FROM, expected identifier, string, number, bool at line 1, char 8"),
        ("SELECT", "found EOF, expected identifier, string, number, bool at line 1, char 8"),
        ("SELECT value FROM", "found EOF, expected identifier at line 1, char 19"),
        ("SELECT value FROM cpu WHERE", "found EOF, expected identifier, string, number, bool at line 1, char 29"),
        ("SELECT value FROM cpu GROUP", "found EOF, expected BY at line 1, char 29"),
        ("SELECT value FROM cpu LIMIT -1", "found -, expected integer at line 1, char 29"),
        ("SELECT value FROM cpu SOFFSET x", "found x, expected integer at line 1, char 31"),
        ("SELECT value FROM cpu SELECT", "found SELECT, expected ; at line 1, char 23"),
        ("SELECT value FROM cpu; SELECT", "found EOF, expected identifier, string, number, bool at line 1, char 31"),
        ("SELECT value FROM cpu WHERE x =", "found EOF, expected identifier, string, number, bool at line 1, char 32"),
        ("SELECT value FROM cpu WHERE x =~", "found EOF, expected regex at line 1, char 34"),
        ("SELECT value FROM cpu WHERE x > 1 AND", "found EOF, expected identifier, string, number, bool at line 1, char 39"),
        ("SELECT value FROM cpu WHERE (x = 1", "found EOF, expected ) at line 1, char 35"),
        ("SELECT value FROM cpu WHERE a IN (1, 2)", "found IN, expected ; at line 1, char 31"),
        ("SELECT mean(x FROM cpu", "found FROM, expected ) at line 1, char 15"),
        ("SELECT value AS", "found EOF, expected identifier at line 1, char 17"),
        ("SELECT value FROM db.", "found EOF, expected identifier at line 1, char 23"),
        ("SELECT value FROM cpu ORDER time", "found time, expected BY at line 1, char 29"),
        ("SELECT value FROM cpu ORDER BY", "found EOF, expected identifier, ASC, DESC at line 1, char 32"),
        ("SELECT distinct", "found EOF, expected (, identifier at line 1, char 17"),
        ("SELECT distinct FROM cpu", "found FROM, expected identifier at line 1, char 17"),
        ("SELECT value::foo FROM cpu", "found foo, expected float, integer, unsigned, string, boolean, field, tag at line 1, char 15"),
        ("SELECT value::1 FROM cpu", "found 1, expected float, integer, string, boolean, field, tag at line 1, char 15"),
        ("SELECT *::x FROM cpu", "found x, expected field, tag at line 1, char 11"),
        ("SELECT - FROM cpu", "found FROM, expected identifier, number, duration, ( at line 1, char 10"),
        ("SELECT value FROM (SHOW", "found SHOW, expected SELECT at line 1, char 20"),
        ("SELECT value INTO a.:x", "found x, expected MEASUREMENT at line 1, char 22"),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn plain_errors_have_no_position_like_influxdb() {
    let cases = [
        ("SELECT value FROM cpu ORDER BY value", "only ORDER BY time supported at this time"),
        ("SELECT value FROM cpu ORDER BY time DESC, x", "only ORDER BY time supported at this time"),
        ("SELECT value FROM cpu fill(foo)", "expected number argument in fill()"),
        ("SELECT value FROM cpu fill(1,2)", "fill requires an argument, e.g.: 0, null, none, previous, linear"),
        ("SELECT value FROM cpu fill", "fill must be a function call"),
        ("SELECT value FROM cpu tz", "tz must be a function call"),
        ("SELECT value FROM cpu tz('a', 'b')", "tz requires exactly one argument"),
        ("SELECT value FROM cpu tz(1)", "expected string argument in tz()"),
        ("SELECT 1.5 FROM cpu WHERE time > 10x", "invalid duration"),
        ("SELECT v FROM cpu WHERE time > 106752d", "overflowed duration 106752d: choose a smaller duration or INF"),
        ("SELECT a = 1 FROM cpu", "invalid operator = in SELECT clause at line 1, char 8; operator is intended for WHERE clause"),
        ("SELECT (a = 1) + (b > 2) FROM cpu", "invalid operator > in SELECT clause at line 1, char 8; operator is intended for WHERE clause"),
        ("SELECT v FROM cpu WHERE a = -9223372036854775809", "constant -9223372036854775809 underflows int64"),
        ("SELECT $x FROM cpu", "missing parameter: x"),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn bad_strings_regexes_and_segments_are_errors_at_influxdb_positions() {
    let cases = [
        (
            "SELECT value FROM cpu WHERE x = 'abc",
            "found abc, expected identifier, string, number, bool at line 1, char 32",
        ),
        (
            "SELECT value FROM cpu WHERE x = 'a\\qb'",
            "found \\q, expected identifier, string, number, bool at line 1, char 36",
        ),
        (
            "SELECT \"abc",
            "found abc, expected identifier, string, number, bool at line 1, char 7",
        ),
        ("SELECT value FROM /abc", "bad regex:  at line 1, char 18"),
        (
            "SELECT value FROM cpu WHERE x =~ /a(/",
            "error parsing regexp: missing closing ): `a(` at line 1, char 33",
        ),
        (
            "SELECT value FROM cpu WHERE x =~ /a\\q/",
            "error parsing regexp: invalid escape sequence: `\\q` at line 1, char 33",
        ),
        (
            "SELECT value FROM a.b.c.d",
            "too many segments in \"a\".\"b\".\"c\".d at line 1, char 1",
        ),
        (
            "SELECT value FROM cpu /* abc",
            "found  , expected regex at line 1, char 22",
        ),
        (
            "SELECT value FROM cpu WHERE a = !",
            "found !, expected identifier, string, number, bool at line 1, char 33",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn show_statement_errors_match_influxdb() {
    let cases = [
        (
            "SHOW TAG VALUES",
            "found EOF, expected WITH at line 1, char 17",
        ),
        (
            "SHOW TAG VALUES WITH",
            "found EOF, expected KEY at line 1, char 22",
        ),
        (
            "SHOW TAG VALUES WITH KEY",
            "found EOF, expected IN, =, =~ at line 1, char 26",
        ),
        (
            "SHOW TAG VALUES WITH KEY IN",
            "found EOF, expected ( at line 1, char 29",
        ),
        (
            "SHOW TAG VALUES WITH KEY IN (a",
            "found EOF, expected ) at line 1, char 32",
        ),
        (
            "SHOW TAG KEYS WITH",
            "found WITH, expected ; at line 1, char 15",
        ),
        (
            "SHOW FIELD KEYS WHERE",
            "found WHERE, expected ; at line 1, char 17",
        ),
        (
            "SHOW RETENTION",
            "found EOF, expected POLICIES at line 1, char 16",
        ),
        (
            "SHOW RETENTION POLICIES ON",
            "found EOF, expected identifier at line 1, char 28",
        ),
        (
            "SHOW MEASUREMENTS ON",
            "found EOF, expected identifier at line 1, char 22",
        ),
        (
            "SHOW MEASUREMENTS WITH",
            "found EOF, expected MEASUREMENT at line 1, char 24",
        ),
        (
            "SHOW MEASUREMENTS WITH MEASUREMENT !=",
            "found !=, expected =, =~ at line 1, char 36",
        ),
        (
            "SHOW SERIES ON",
            "found EOF, expected identifier at line 1, char 16",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn ddl_errors_match_influxdb() {
    let cases = [
        (
            "CREATE DATABASE",
            "found EOF, expected identifier at line 1, char 17",
        ),
        (
            "CREATE DATABASE x WITH",
            "found EOF, expected DURATION, NAME, REPLICATION, SHARD at line 1, char 24",
        ),
        (
            "CREATE DATABASE x WITH DURATION",
            "found EOF, expected duration at line 1, char 33",
        ),
        (
            "CREATE DATABASE x WITH DURATION 1h REPLICATION 0",
            "invalid value 0: must be 1 <= n <= 2147483647 at line 1, char 48",
        ),
        (
            "CREATE DATABASE x WITH SHARD",
            "found EOF, expected DURATION at line 1, char 30",
        ),
        (
            "CREATE DATABASE x WITH DURATION 1x",
            "invalid duration at line 1, char 33",
        ),
        (
            "CREATE RETENTION POLICY p",
            "found EOF, expected ON at line 1, char 27",
        ),
        (
            "CREATE RETENTION POLICY p ON d",
            "found EOF, expected DURATION at line 1, char 32",
        ),
        (
            "CREATE RETENTION POLICY p ON d DURATION 1h",
            "found EOF, expected REPLICATION at line 1, char 43",
        ),
        (
            "CREATE RETENTION POLICY p ON d DURATION 1h REPLICATION",
            "found EOF, expected integer at line 1, char 56",
        ),
        (
            "CREATE RETENTION POLICY p ON d DURATION 1h REPLICATION 1 SHARD DURATION INF",
            "invalid duration INF for shard duration at line 1, char 73",
        ),
        (
            "CREATE RETENTION POLICY p ON d DURATION 1h REPLICATION 99999999999",
            "invalid value 99999999999: must be 1 <= n <= 2147483647 at line 1, char 56",
        ),
        (
            "ALTER RETENTION POLICY p ON d",
            "found EOF, expected DURATION, REPLICATION, SHARD, DEFAULT at line 1, char 31",
        ),
        (
            "ALTER RETENTION POLICY p ON d DEFAULT DEFAULT",
            "found duplicate DEFAULT option at line 1, char 39",
        ),
        (
            "DROP RETENTION POLICY p",
            "found EOF, expected ON at line 1, char 25",
        ),
        (
            "DROP MEASUREMENT",
            "found EOF, expected identifier at line 1, char 18",
        ),
        (
            "DROP SERIES",
            "found EOF, expected FROM, WHERE at line 1, char 13",
        ),
        (
            "DELETE",
            "found EOF, expected FROM, WHERE at line 1, char 8",
        ),
        (
            "DELETE x",
            "found x, expected FROM, WHERE at line 1, char 8",
        ),
        (
            "DELETE FROM a.b.c",
            "retention policy not supported at line 1, char 1",
        ),
        (
            "DELETE FROM a..c",
            "database not supported at line 1, char 1",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn parse_errors_expose_their_position() {
    let err = parse_query("SELECT value").unwrap_err();
    assert_eq!(err.pos(), Some(Pos { line: 0, char: 13 }));
    assert_eq!(ParseError::plain("x").pos(), None);
}

/// Issue 16, found by the `influxql` fuzz target (`fuzz/regressions/influxql/`): an
/// unterminated string token keeps the newline that ended it, and a kept statement ending
/// with it (a comment after it is not kept) printed text that parsed back to a shorter one.
#[test]
fn an_unsupported_statement_ending_in_an_unterminated_string_round_trips() {
    for text in ["GRANT ALL TO \"bob\n-- a comment", "KILL QUERY \"1\r\n-- x"] {
        let printed = parse_one(text).to_string();
        assert!(!printed.ends_with(char::is_whitespace), "{printed:?}");
        assert_eq!(parse_one(&printed).to_string(), printed, "{text:?}");
    }
}

#[test]
fn an_empty_measurement_name_prints_quoted_so_the_statement_parses_back() {
    // `db""` is one identifier, the quoted part: InfluxDB's scanner reads it so too.
    let s = crate::parse_query("SELECT m, 1.50FROM db\"\", m,r").unwrap();
    let printed = s[0].to_string();
    assert_eq!(printed, "SELECT m, 1.500 FROM \"\", m, r");
    assert_eq!(
        crate::parse_query(&printed).unwrap()[0].to_string(),
        printed
    );
}

#[test]
fn deep_nesting_and_long_chains_are_refused_not_a_stack_overflow() {
    // On a thread with a small stack (a tokio worker has 2 MiB): the bound keeps the
    // recursion shallow whatever the input.
    let worker = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            let deep = format!(
                "SELECT {}v{} FROM m",
                "(".repeat(20_000),
                ")".repeat(20_000)
            );
            let err = parse_query(&deep).unwrap_err().to_string();
            assert!(err.contains("too deeply nested"), "{err}");
            let sub = format!(
                "SELECT v FROM {} m {}",
                "(SELECT v FROM ".repeat(5_000),
                ")".repeat(5_000)
            );
            let err = parse_query(&sub).unwrap_err().to_string();
            assert!(err.contains("too deeply nested"), "{err}");
            let chain = format!("SELECT v{} FROM m", "+v".repeat(100_000));
            let err = parse_query(&chain).unwrap_err().to_string();
            assert!(err.contains("too long"), "{err}");
            // What real queries use is well within the bounds.
            let fine = format!("SELECT {}v{} FROM m", "(".repeat(50), ")".repeat(50));
            assert!(parse_query(&fine).is_ok());
            let fine = format!("SELECT v{} FROM m", "+v".repeat(500));
            assert!(parse_query(&fine).is_ok());
            let fine = format!(
                "SELECT v FROM {} m {}",
                "(SELECT v FROM ".repeat(5),
                ")".repeat(5)
            );
            assert!(parse_query(&fine).is_ok(), "{:?}", parse_query(&fine));
        })
        .unwrap();
    worker.join().unwrap();
}
