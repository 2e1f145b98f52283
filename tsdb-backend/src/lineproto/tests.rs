//! Every expected error text here was checked against a running InfluxDB 1.6.

use super::*;
use crate::model::FieldValue;

const NOW: i64 = 1_700_000_000_123_456_789;

fn parse(body: &str) -> ParsedBatch {
    parse_lines(body.as_bytes(), Precision::Nanoseconds, NOW)
}

fn point(line: &str) -> Point {
    let batch = parse(line);
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
    assert_eq!(batch.points.len(), 1);
    batch.points.into_iter().next().unwrap()
}

fn error(line: &str) -> LineErrorKind {
    let batch = parse(line);
    assert!(batch.points.is_empty(), "{:?}", batch.points);
    assert_eq!(batch.errors.len(), 1);
    batch.errors.into_iter().next().unwrap().kind
}

fn message(line: &str) -> String {
    error(line).to_string()
}

fn field(line: &str) -> FieldValue {
    let p = point(line);
    assert_eq!(p.fields.len(), 1);
    p.fields.into_iter().next().unwrap().1
}

fn tags(p: &Point) -> Vec<(&str, &str)> {
    p.tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

// ---- lines of a body ----

#[test]
fn a_simple_line_becomes_a_point() {
    let p = point("cpu,host=a value=1.5 10");
    assert_eq!(&*p.measurement, "cpu");
    assert_eq!(tags(&p), [("host", "a")]);
    assert_eq!(
        p.fields,
        [(std::sync::Arc::<str>::from("value"), FieldValue::Float(1.5))]
    );
    assert_eq!(p.timestamp, 10);
}

#[test]
fn parse_lines_returns_all_lines_even_when_a_line_errors() {
    let batch = parse("cpu v=1 1\ncpu x=\n\ncpu,a=1,a=2 v=1\ncpu v=2 2");
    let times: Vec<i64> = batch.points.iter().map(|p| p.timestamp).collect();
    assert_eq!(times, [1, 2]);
    assert_eq!(batch.errors.len(), 2);
    assert_eq!(
        batch.errors[0].to_string(),
        "unable to parse 'cpu x=': missing field value"
    );
    assert_eq!(
        batch.errors[1].to_string(),
        "unable to parse 'cpu,a=1,a=2 v=1': duplicate tags"
    );
}

#[test]
fn error_lines_are_numbered_by_physical_line_of_the_body() {
    let body = "# comment\n\ncpu v=\"a\nb\" 1\n  \ncpu x=\ncpu v=1 2\ncpu y=";
    let batch = parse(body);
    assert_eq!(batch.points.len(), 2);
    let lines: Vec<usize> = batch.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [6, 8]);
}

#[test]
fn blank_lines_comments_and_leading_whitespace_are_skipped() {
    let batch = parse("\n   \n\t\n  # note\n#x\n \t cpu v=1 1\n\n");
    assert!(batch.errors.is_empty());
    assert_eq!(batch.points.len(), 1);
}

#[test]
fn leading_nul_and_tab_are_whitespace() {
    assert_eq!(&*point("\0\t cpu v=1 1").measurement, "cpu");
}

#[test]
fn crlf_line_ends_are_accepted() {
    // InfluxDB 1.6 fails these lines ("bad timestamp"); see `trimmed`.
    let batch = parse("cpu v=1 1\r\ncpu v=2\r\n\r\ncpu v=3 3\r\n");
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
    assert_eq!(batch.points.len(), 3);
}

#[test]
fn a_newline_inside_a_quoted_string_does_not_end_the_line() {
    let batch = parse("cpu v=\"a\nb,c=d e\" 1\ncpu v=\"c\" 2");
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
    assert_eq!(
        batch.points[0].fields[0].1,
        FieldValue::String("a\nb,c=d e".into())
    );
    assert_eq!(batch.points[1].timestamp, 2);
}

#[test]
fn a_backslash_escapes_the_newline_after_it() {
    let batch = parse("cpu v=1 10\\\ncpu v=2 11\ncpu v=3 12");
    assert_eq!(batch.points.len(), 1);
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].line, 1);
    assert_eq!(batch.errors[0].text, "cpu v=1 10\\\ncpu v=2 11");
    assert!(matches!(
        batch.errors[0].kind,
        LineErrorKind::BadTimestamp { .. }
    ));
    assert_eq!(batch.points[0].timestamp, 12);
}

#[test]
fn a_comment_with_a_quote_ends_at_its_newline() {
    // InfluxDB 1.6 lets the quote swallow the following lines.
    let batch = parse("# a=\"x\ncpu v=1 10\ncpu v=2 11");
    assert_eq!(batch.points.len(), 2);
}

#[test]
fn a_comment_ending_in_a_backslash_ends_at_its_newline() {
    // InfluxDB 1.6 takes the newline as escaped and skips the next line with the comment.
    let batch = parse("# a\\\ncpu v=1 10\ncpu v=2 11");
    assert_eq!(batch.points.len(), 2);
}

#[test]
fn invalid_utf8_fails_only_its_line() {
    let batch = parse_lines(
        b"cpu v=1 1\ncpu,t=\xff v=1 2\ncpu v=3 3",
        Precision::default(),
        NOW,
    );
    assert_eq!(batch.points.len(), 2);
    assert_eq!(batch.errors.len(), 1);
    let e = &batch.errors[0];
    assert_eq!(e.line, 2);
    assert_eq!(e.text, "cpu,t=\u{fffd} v=1 2");
    assert!(matches!(e.kind, LineErrorKind::InvalidUtf8 { offset: 6 }));
    assert_eq!(e.kind.to_string(), "invalid UTF-8 at byte 6");
}

#[test]
fn a_long_bad_line_is_quoted_up_to_about_one_kib() {
    let line = format!("cpu v={}é", "x".repeat(1017));
    let batch = parse(&line);
    let text = &batch.errors[0].text;
    assert!(text.ends_with("x…"), "{text}");
    assert_eq!(text.len(), 1023 + '…'.len_utf8());
}

#[test]
fn an_empty_body_gives_nothing() {
    assert_eq!(parse(""), ParsedBatch::default());
}

// ---- measurement ----

#[test]
fn a_line_without_fields_is_missing_fields() {
    assert!(matches!(error("cpu"), LineErrorKind::MissingFields));
    assert_eq!(message("cpu"), "missing fields");
    assert_eq!(message("cpu,a=1"), "missing fields");
}

#[test]
fn a_line_starting_with_a_comma_is_missing_its_measurement() {
    assert!(matches!(
        error(",cpu a=1"),
        LineErrorKind::MissingMeasurement
    ));
    assert_eq!(message(",cpu a=1"), "missing measurement");
}

#[test]
fn measurement_escapes_are_removed() {
    let p = point(r#"c\,p\ u\=x\"y\\z\q,t=a f=1 1"#);
    assert_eq!(&*p.measurement, r#"c,p u=x"y\\z\q"#);
}

#[test]
fn an_unescaped_equals_sign_is_part_of_the_measurement() {
    assert_eq!(&*point("cpu=x v=1").measurement, "cpu=x");
}

#[test]
fn a_backslash_before_a_space_keeps_it_in_the_measurement() {
    // After `\\` the space still counts as escaped, as in InfluxDB.
    assert!(matches!(
        error(r"cpu\\ v=1 10"),
        LineErrorKind::InvalidFieldFormat
    ));
}

// ---- tags ----

#[test]
fn tags_are_sorted_by_key() {
    let p = point(r"cpu,b=1,a=2,c=3,\,=4,A=5,_=6 v=1");
    let keys: Vec<&str> = p.tags.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [",", "A", "_", "a", "b", "c"]);
}

#[test]
fn escaped_comma_in_tag_value_is_kept() {
    let p = point(r"cpu,a=x\,y v=1");
    assert_eq!(tags(&p), [("a", "x,y")]);
}

#[test]
fn tag_escapes_are_comma_space_and_equals_only() {
    let p = point(r#"cpu,t\"k\\\q\ x=v\"a\\l\q\,\ \= f=1"#);
    assert_eq!(tags(&p), [(r#"t\"k\\\q x"#, r#"v\"a\\l\q, ="#)]);
}

#[test]
fn a_tag_value_may_start_with_an_equals_sign() {
    assert_eq!(tags(&point("cpu,a==b v=1")), [("a", "=b")]);
}

#[test]
fn a_tag_value_may_end_with_an_escaped_space() {
    assert_eq!(tags(&point(r"cpu,a=b\  v=1")), [("a", "b ")]);
}

#[test]
fn duplicate_tag_keys_are_refused() {
    assert!(matches!(
        error("cpu,b=1,a=1,b=2 v=1"),
        LineErrorKind::DuplicateTags { ref key } if key == "b"
    ));
    assert_eq!(message("cpu,a=1,a=2 v=1"), "duplicate tags");
}

#[test]
fn a_tag_without_a_key_is_missing_its_key() {
    assert!(matches!(error("cpu,=a v=1"), LineErrorKind::MissingTagKey));
    assert_eq!(message("cpu,"), "missing tag key");
    assert_eq!(message("cpu, v=1"), "missing tag key");
}

#[test]
fn a_tag_without_a_value_is_missing_its_value() {
    assert!(matches!(error("cpu,a v=1"), LineErrorKind::MissingTagValue));
    for line in [
        "cpu,a",
        "cpu,a=",
        "cpu,a= v=1",
        "cpu,a=,b=1 v=1",
        r"cpu,t\\=a v=1",
    ] {
        assert_eq!(message(line), "missing tag value", "{line}");
    }
}

#[test]
fn an_equals_sign_inside_a_tag_value_is_an_invalid_tag_format() {
    assert!(matches!(
        error("cpu,a=b=c v=1"),
        LineErrorKind::InvalidTagFormat
    ));
    assert_eq!(message(r"m,t=a\\ v=1 10"), "invalid tag format");
}

// ---- fields ----

#[test]
fn floats_take_every_form_influxdb_accepts() {
    let p = point("cpu a=1,b=1.0,c=-1.5,d=1e10,e=1E5,f=.5,g=1.,h=-.5,i=00.5,j=1.e5,k=1e+2,l=-0 1");
    let values: Vec<f64> = p
        .fields
        .iter()
        .map(|(_, v)| match v {
            FieldValue::Float(f) => *f,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        values,
        [1.0, 1.0, -1.5, 1e10, 1e5, 0.5, 1.0, -0.5, 0.5, 1e5, 100.0, -0.0]
    );
}

#[test]
fn a_float_too_small_for_f64_is_zero() {
    assert_eq!(field("cpu v=1e-400"), FieldValue::Float(0.0));
}

#[test]
fn malformed_numbers_are_invalid_numbers() {
    assert!(matches!(
        error("cpu v=1.2.3"),
        LineErrorKind::InvalidNumber { ref value } if value == "1.2.3"
    ));
    for line in [
        "cpu v=NaN",
        "cpu v=nan",
        "cpu v=-Inf",
        "cpu v=.",
        "cpu v=-",
        "cpu v=-.",
        "cpu v=-,w=1",
        "cpu v=1x",
        "cpu v=0x10",
        "cpu v=1_000",
        "cpu v=1=2",
        "cpu v=1-2",
        "cpu v=1\t123",
    ] {
        assert_eq!(message(line), "invalid number", "{line}");
    }
}

#[test]
fn a_float_that_does_not_convert_is_an_invalid_float() {
    assert!(matches!(
        error("cpu v=1e400"),
        LineErrorKind::InvalidFloat { ref value } if value == "1e400"
    ));
    for line in [
        "cpu v=1e",
        "cpu v=1e+",
        "cpu v=-e5",
        "cpu v=.e5",
        "cpu v=1e5e5",
        "cpu v=1e.5",
    ] {
        assert_eq!(message(line), "invalid float", "{line}");
    }
    let huge = format!("cpu v={}", "9".repeat(400));
    assert_eq!(message(&huge), "invalid float");
}

#[test]
fn integers_take_an_i_suffix() {
    assert_eq!(field("cpu v=12i"), FieldValue::Integer(12));
    assert_eq!(field("cpu v=-12i"), FieldValue::Integer(-12));
    assert_eq!(
        field("cpu v=9223372036854775807i"),
        FieldValue::Integer(i64::MAX)
    );
    assert_eq!(
        field("cpu v=-9223372036854775808i"),
        FieldValue::Integer(i64::MIN)
    );
}

#[test]
fn an_integer_out_of_range_is_refused_with_go_wording() {
    assert!(matches!(
        error("cpu v=9223372036854775808i"),
        LineErrorKind::IntegerOutOfRange { ref value } if value == "9223372036854775808"
    ));
    assert_eq!(
        message("cpu v=-9223372036854775809i"),
        "unable to parse integer -9223372036854775809: strconv.ParseInt: parsing \"-9223372036854775809\": value out of range"
    );
}

#[test]
fn misplaced_integer_suffixes_are_invalid_numbers() {
    for line in [
        "cpu v=1i2",
        "cpu v=1.5i",
        "cpu v=1e5i",
        "cpu v=-i",
        "cpu v=1ii",
        "cpu v=1iu",
    ] {
        assert_eq!(message(line), "invalid number", "{line}");
    }
}

#[test]
fn unsigned_integers_take_a_u_suffix() {
    // InfluxDB 1.6 without its uint build flag calls these "invalid number".
    assert_eq!(field("cpu v=12u"), FieldValue::Unsigned(12));
    assert_eq!(
        field("cpu v=18446744073709551615u"),
        FieldValue::Unsigned(u64::MAX)
    );
    assert_eq!(message("cpu v=-1u"), "invalid number");
}

#[test]
fn an_unsigned_out_of_range_is_refused_with_go_wording() {
    assert!(matches!(
        error("cpu v=18446744073709551616u"),
        LineErrorKind::UnsignedOutOfRange { ref value } if value == "18446744073709551616"
    ));
    assert_eq!(
        message("cpu v=18446744073709551616u"),
        "unable to parse unsigned 18446744073709551616: strconv.ParseUint: parsing \"18446744073709551616\": value out of range"
    );
}

#[test]
fn booleans_take_their_ten_spellings() {
    let p = point("cpu a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE");
    let values: Vec<&FieldValue> = p.fields.iter().map(|(_, v)| v).collect();
    let t = FieldValue::Boolean(true);
    let f = FieldValue::Boolean(false);
    assert_eq!(values, [&t, &t, &t, &t, &t, &f, &f, &f, &f, &f]);
}

#[test]
fn other_words_are_invalid_booleans() {
    assert!(matches!(
        error("cpu v=tRUE"),
        LineErrorKind::InvalidBoolean { ref value } if value == "tRUE"
    ));
    for line in [
        "cpu v=tru",
        "cpu v=abc",
        "cpu v=Inf",
        "cpu v=inf",
        "cpu v=+1",
        "cpu v=e5",
    ] {
        assert_eq!(message(line), "invalid boolean", "{line}");
    }
}

#[test]
fn strings_unescape_quotes_and_backslashes_only() {
    assert_eq!(
        field(r#"cpu v="a\"b\\c\nd\q" 1"#),
        FieldValue::String(r#"a"b\c\nd\q"#.into())
    );
    assert_eq!(
        field(r#"cpu v="a b,c=d" 1"#),
        FieldValue::String("a b,c=d".into())
    );
    assert_eq!(field(r#"cpu v="""#), FieldValue::String("".into()));
}

#[test]
fn an_unclosed_string_is_unbalanced() {
    assert!(matches!(
        error(r#"cpu v="abc"#),
        LineErrorKind::UnbalancedQuotes
    ));
    assert_eq!(message(r#"cpu v="x\"#), "unbalanced quotes");
    assert_eq!(message(r#"cpu v="x\" 1"#), "unbalanced quotes");
}

#[test]
fn text_after_a_closing_quote_is_an_invalid_field_format() {
    // InfluxDB 1.6 stores `v="x"y` as the string `x"`.
    assert_eq!(message(r#"cpu v="x"y 1"#), "invalid field format");
}

#[test]
fn field_key_escapes_are_removed() {
    let p = point(r#"cpu f\"k\ x\,y\=z\q=1"#);
    assert_eq!(&*p.fields[0].0, r#"f"k x,y=z\q"#);
}

#[test]
fn a_field_key_given_twice_keeps_the_last_value() {
    let p = point("cpu a=1,b=2,a=3 10");
    assert_eq!(
        p.fields,
        [
            (std::sync::Arc::<str>::from("a"), FieldValue::Float(3.0)),
            (std::sync::Arc::<str>::from("b"), FieldValue::Float(2.0))
        ]
    );
}

#[test]
fn a_field_key_given_twice_with_two_types_is_a_conflict() {
    assert!(matches!(
        error(r#"cpu a=1,a="x" 10"#),
        LineErrorKind::FieldTypeConflict {
            first: FieldType::Float,
            second: FieldType::String,
            ..
        }
    ));
    assert_eq!(
        message("cpu a=1i,a=2 10"),
        "field type conflict: input field \"a\" on measurement \"cpu\" is type float, already exists as type integer"
    );
}

#[test]
fn a_field_without_a_key_is_missing_its_key() {
    assert!(matches!(error("cpu =1"), LineErrorKind::MissingFieldKey));
    assert_eq!(message("cpu v=1,=2"), "missing field key");
    // InfluxDB 1.6 stores a field with an empty key here.
    assert_eq!(message("cpu \t=1 10"), "missing field key");
}

#[test]
fn a_field_without_a_value_is_missing_its_value() {
    assert!(matches!(error("cpu v="), LineErrorKind::MissingFieldValue));
    assert_eq!(message("cpu v=,w=1"), "missing field value");
    assert_eq!(message("cpu v= 1"), "missing field value");
}

#[test]
fn a_field_set_that_is_not_key_value_pairs_is_an_invalid_field_format() {
    assert!(matches!(error("cpu v"), LineErrorKind::InvalidFieldFormat));
    for line in [
        "cpu ",
        "cpu  ",
        "cpu,a=1 ",
        "cpu v=1,",
        "cpu v=1, w=2",
        "cpu a,b=1",
        r"m v\\,w=1 10",
        r"m f\\ x=1 10",
        r"m a\\,=1 10",
    ] {
        assert_eq!(message(line), "invalid field format", "{line:?}");
    }
}

#[test]
fn an_error_in_a_later_value_wins_over_a_comma_in_a_key() {
    assert_eq!(message("cpu a,b=x"), "invalid boolean");
}

#[test]
fn a_field_key_ending_in_an_escaped_backslash_has_no_value() {
    assert!(matches!(
        error(r"cpu v\\=1i 10"),
        LineErrorKind::InvalidValue { ref key } if key == r"v\\=1i"
    ));
    assert_eq!(
        message(r"cpu v=1i,w\\=1i 10"),
        r"invalid value: field-key=w\\=1i"
    );
    // InfluxDB 1.6 accepts this as one field named `v\=1i,w`.
    assert_eq!(
        message(r"cpu v\\=1i,w=2 10"),
        r"invalid value: field-key=v\\=1i,w"
    );
}

#[test]
fn max_key_length_counts_the_raw_series_key() {
    let long_tag = format!("m,{}=v f=1 10", "t".repeat(65530));
    assert!(matches!(
        error(&long_tag),
        LineErrorKind::MaxKeyLengthExceeded { size: 65539 }
    ));
    let fits = format!("m,{}=v f=1 10", "t".repeat(65520));
    assert_eq!(point(&fits).fields.len(), 1);
    let long_field = format!("m,{}=v {}=1 10", "t".repeat(65520), r"f\ ".repeat(10));
    assert_eq!(
        message(&long_field),
        "max key length exceeded: 65558 > 65535"
    );
    let long_key = format!("m,{}=v f=1 10", "t".repeat(65534));
    assert_eq!(message(&long_key), "max key length exceeded: 65538 > 65535");
}

#[test]
fn a_value_error_wins_over_a_long_field_key() {
    let line = format!("m,{}=v {}=1,g=x 10", "t".repeat(65520), "f".repeat(20));
    assert_eq!(message(&line), "invalid boolean");
}

#[test]
fn input_influxdb_scans_otherwise_gets_influxdb_error() {
    // InfluxDB's flat scan does not open a string after `a,b=`, so no "unbalanced quotes".
    assert_eq!(message(r#"cpu a,b="x y"#), "invalid field format");
    // An empty key after a tab passes InfluxDB's scan, so a later error is reported.
    assert_eq!(message("cpu \t=-.5Na"), "invalid number");
    assert_eq!(message("cpu \t=1 1.5"), "bad timestamp");
    // Text after a closing quote passes InfluxDB's scan too.
    assert_eq!(message(r#"cpu v="x"y,w=zz"#), "invalid boolean");
    assert_eq!(message(r#"cpu v="x"y 10 x"#), "point is invalid");
    assert_eq!(
        message(r#"cpu v=1,f\\="x"y 10"#),
        r#"invalid value: field-key=f\\="x"y"#
    );
}

// ---- timestamp ----

#[test]
fn a_line_without_a_timestamp_takes_the_default_time() {
    assert_eq!(point("cpu v=1").timestamp, NOW);
    assert_eq!(point("cpu v=1 ").timestamp, NOW);
}

#[test]
fn the_default_time_is_truncated_to_the_precision() {
    let at = |precision| parse_lines(b"cpu v=1", precision, NOW).points[0].timestamp;
    assert_eq!(at(Precision::Seconds), 1_700_000_000_000_000_000);
    assert_eq!(at(Precision::Hours), 1_699_999_200_000_000_000);
    assert_eq!(
        parse_lines(b"cpu v=1", Precision::Seconds, -1).points[0].timestamp,
        -1_000_000_000
    );
}

#[test]
fn timestamps_are_scaled_by_the_precision() {
    let at = |precision| parse_lines(b"cpu v=1 -10", precision, NOW).points[0].timestamp;
    assert_eq!(at(Precision::Nanoseconds), -10);
    assert_eq!(at(Precision::Microseconds), -10_000);
    assert_eq!(at(Precision::Milliseconds), -10_000_000);
    assert_eq!(at(Precision::Seconds), -10_000_000_000);
    assert_eq!(at(Precision::Minutes), -600_000_000_000);
    assert_eq!(at(Precision::Hours), -36_000_000_000_000);
}

#[test]
fn spaces_and_tabs_may_surround_the_timestamp() {
    assert_eq!(point("cpu v=1  \t 123  ").timestamp, 123);
}

#[test]
fn a_timestamp_that_is_not_an_integer_is_a_bad_timestamp() {
    assert!(matches!(
        error("cpu v=1 12a"),
        LineErrorKind::BadTimestamp { ref value } if value == "12a"
    ));
    for line in [
        "cpu v=1 abc",
        "cpu v=1 1.5",
        "cpu v=1 12-3",
        "cpu v=1 123\t",
    ] {
        assert_eq!(message(line), "bad timestamp", "{line}");
    }
}

#[test]
fn a_lone_minus_timestamp_is_invalid_syntax() {
    assert!(matches!(
        error("cpu v=1 -"),
        LineErrorKind::TimestampSyntax { .. }
    ));
    assert_eq!(
        message("cpu v=1 -"),
        "strconv.ParseInt: parsing \"-\": invalid syntax"
    );
}

#[test]
fn a_timestamp_beyond_i64_is_out_of_range() {
    assert!(matches!(
        error("cpu v=1 99999999999999999999"),
        LineErrorKind::TimestampOverflow { .. }
    ));
    assert_eq!(
        message("cpu v=1 99999999999999999999"),
        "strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
    );
}

#[test]
fn a_time_outside_influxdb_range_is_refused() {
    assert!(matches!(
        error("cpu v=1 9223372036854775807"),
        LineErrorKind::TimeOutOfRange {
            timestamp: i64::MAX
        }
    ));
    let range = "time outside range -9223372036854775806 - 9223372036854775806";
    assert_eq!(message("cpu v=1 -9223372036854775807"), range);
    assert_eq!(
        point("cpu v=1 9223372036854775806").timestamp,
        MAX_NANO_TIME
    );
    assert_eq!(
        point("cpu v=1 -9223372036854775806").timestamp,
        MIN_NANO_TIME
    );
    let hours = parse_lines(b"cpu v=1 9300000000000", Precision::Hours, NOW);
    assert_eq!(hours.errors[0].kind.to_string(), range);
}

#[test]
fn text_after_the_timestamp_makes_the_point_invalid() {
    assert!(matches!(
        error("cpu v=1 123 456"),
        LineErrorKind::InvalidPoint
    ));
    assert_eq!(message("cpu v=1 123 x"), "point is invalid");
}

// ---- throughput-shaped input ----

#[test]
fn a_tsbs_cpu_batch_of_5000_lines_parses_completely() {
    let body = tsbs_cpu_body(5000);
    let batch = parse_lines(body.as_bytes(), Precision::Nanoseconds, NOW);
    assert!(batch.errors.is_empty(), "{:?}", batch.errors.first());
    assert_eq!(batch.points.len(), 5000);
    let p = &batch.points[4999];
    assert_eq!(p.tags.len(), 10);
    assert_eq!(p.tags[0], ("arch".to_owned(), "x64".to_owned()));
    assert_eq!(p.fields.len(), 10);
    assert_eq!(
        p.timestamp,
        1_451_606_400_000_000_000 + 4999 * 10_000_000_000
    );
}

/// Lines shaped like TSBS's `cpu-only` use case, one host per line.
fn tsbs_cpu_body(lines: usize) -> String {
    let mut body = String::new();
    for i in 0..lines {
        body.push_str(&format!(
            "cpu,hostname=host_{i},region=eu-west-1,datacenter=eu-west-1a,rack=87,os=Ubuntu16.04LTS,\
             arch=x64,team=NYC,service=18,service_version=1,service_environment=production \
             usage_user=58.1317132304976170,usage_system=2.6224297271376256,\
             usage_idle=24.9969495069947490,usage_nice=61.9921788026592240,\
             usage_iowait=22.9024245028489745,usage_irq=63.6340598262662240,\
             usage_softirq=6.0505850519985560,usage_steal=44.9532706018040380,\
             usage_guest=80.8625508924897200,usage_guest_nice=38.6628662101960990 {}\n",
            1_451_606_400_000_000_000_i64 + i as i64 * 10_000_000_000
        ));
    }
    body
}

// ---- scanning helpers ----

#[test]
fn the_word_search_finds_the_first_needle_at_every_offset() {
    for len in 0..40 {
        for first in 0..len {
            // Bytes with the high bit set around the needles, as UTF-8 text has.
            let mut bytes: Vec<u8> = (0..len).map(|i| [b'a', 0xC3, 0xA9, 0xFF][i % 4]).collect();
            bytes[first] = b'=';
            if first + 3 < len {
                bytes[first + 3] = b',';
            }
            for from in 0..=len + 1 {
                let expected = bytes
                    .get(from..)
                    .and_then(|rest| rest.iter().position(|&b| b == b',' || b == b'='))
                    .map_or(from.max(len), |k| from + k);
                let found = grammar::find_any(&bytes, from, [b',', b'=']);
                assert_eq!(found, expected, "{bytes:?} from {from}");
            }
        }
    }
}

/// InfluxDB's `scanLine`, as written in Go, to check the fast path of `line_end` against.
fn scan_line(body: &[u8], start: usize) -> usize {
    let (mut i, mut quoted, mut fields) = (start, false, false);
    let (mut equals, mut commas) = (0, 0);
    while i < body.len() {
        if body[i] == b'\\' {
            i += 2;
            continue;
        }
        if body[i] == b' ' {
            fields = true;
        }
        if fields {
            if !quoted && body[i] == b'=' {
                i += 1;
                equals += 1;
                continue;
            } else if !quoted && body[i] == b',' {
                i += 1;
                commas += 1;
                continue;
            } else if body[i] == b'"' && equals > commas {
                i += 1;
                quoted = !quoted;
                continue;
            }
        }
        if body[i] == b'\n' && !quoted {
            break;
        }
        i += 1;
    }
    i.min(body.len())
}

#[test]
fn lines_end_where_influxdb_ends_them() {
    // A fixed pseudo-random walk over the bytes that matter, so the test is repeatable.
    let alphabet = b"a= ,\"\\\n\t#x";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..20_000 {
        let len = (state % 24) as usize;
        let body: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect();
        let comment = body.get(grammar::skip_whitespace(&body, 0)) == Some(&b'#');
        if comment {
            continue;
        }
        assert_eq!(line_end(&body, 0).0, scan_line(&body, 0), "{body:?}");
    }
}

#[test]
fn lines_repeating_a_series_key_share_its_measurement_and_tags() {
    let body = b"cpu,host=a,dc=x v=1 1\ncpu,host=a,dc=x v=2 2\ncpu,host=b,dc=x v=3 3\n";
    let batch = parse_lines(body, Precision::Nanoseconds, 0);
    assert!(batch.errors.is_empty(), "{:?}", batch.errors);
    let p = &batch.points;
    assert!(std::sync::Arc::ptr_eq(&p[0].tags, &p[1].tags));
    assert!(std::sync::Arc::ptr_eq(&p[0].measurement, &p[1].measurement));
    assert!(!std::sync::Arc::ptr_eq(&p[0].tags, &p[2].tags));
    assert_eq!(
        p[1].tags[0],
        ("dc".to_owned(), "x".to_owned()),
        "still sorted"
    );
}

#[test]
fn a_cached_key_does_not_hide_an_error_in_a_later_line() {
    let body = b"cpu,host=a v=1 1\ncpu,host=a v= 2\ncpu,host=a\\ b v=3 3\n";
    let batch = parse_lines(body, Precision::Nanoseconds, 0);
    assert_eq!(batch.points.len(), 2);
    assert_eq!(batch.errors.len(), 1);
    assert_eq!(batch.errors[0].line, 2);
    assert_eq!(batch.points[1].tags[0].1, "a b");
}

// ---- hostile input (issue 16) ----

/// Issue 16: one outside corpus of malformed lines dropped the connection on lines like
/// this one instead of answering 400; the line is named and the good lines are kept.
#[test]
fn a_string_field_ending_in_a_backslash_is_a_named_error_not_a_panic() {
    for body in [
        "cpu v=1 1\nm f=\"x\\",
        "cpu v=1 1\nm f=\"x\\\n",
        "cpu v=1 1\nm f=\"x\\\\",
    ] {
        let batch = parse(body);
        assert_eq!(batch.points.len(), 1, "{body:?}");
        assert_eq!(batch.points[0].timestamp, 1);
        assert_eq!(batch.errors.len(), 1, "{body:?}");
        assert_eq!(batch.errors[0].line, 2);
        assert_eq!(
            batch.errors[0].to_string(),
            format!(
                "unable to parse '{}': unbalanced quotes",
                body[10..].trim_end_matches('\n')
            )
        );
    }
}

/// Issue 16, found by the `lineproto` fuzz target (`fuzz/regressions/lineproto/`): a
/// series key ending in a run of backslashes was sliced past the end of its line.
#[test]
fn a_series_key_ending_in_a_backslash_is_a_named_error_not_a_panic() {
    for (bad, kind) in [
        ("c,p\\\\", LineErrorKind::MissingTagValue),
        ("c,p\\", LineErrorKind::MissingTagValue),
        ("m\\", LineErrorKind::MissingFields),
        ("m\\\\\\", LineErrorKind::MissingFields),
        ("c,t=v\\\\", LineErrorKind::MissingFields),
    ] {
        // Last, as a backslash before a newline escapes it (and joins the next line).
        let batch = parse(&format!("cpu v=1 1\ncpu v=2 2\n{bad}"));
        let times: Vec<i64> = batch.points.iter().map(|p| p.timestamp).collect();
        assert_eq!(times, [1, 2], "{bad:?}");
        assert_eq!(batch.errors.len(), 1, "{bad:?}");
        assert_eq!(batch.errors[0].line, 3);
        assert_eq!(batch.errors[0].text, bad);
        assert_eq!(batch.errors[0].kind, kind, "{bad:?}");
    }
}
