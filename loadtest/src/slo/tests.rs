//! SLO tests: every form of line parses to its metric, operator and threshold; mistakes
//! name their column; verdicts hold exactly at the boundary.

use super::*;
use crate::report::{Latency, Summary};

fn parsed(text: &str) -> (Metric, Op, f64) {
    match parse(text) {
        Ok(s) => (s.metric, s.op, s.threshold),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_form_of_objective_parses_to_metric_operator_and_threshold() {
    let table = [
        ("p99 < 20ms", (Metric::P99, Op::Lt, 20.0)),
        ("p50 <= 5ms", (Metric::P50, Op::Le, 5.0)),
        ("p90<7.5ms", (Metric::P90, Op::Lt, 7.5)),
        ("p99.9 < 1s", (Metric::P999, Op::Lt, 1000.0)),
        ("  max < 2s  ", (Metric::Max, Op::Lt, 2000.0)),
        ("min > 250us", (Metric::Min, Op::Gt, 0.25)),
        ("mean < 10 ms", (Metric::Mean, Op::Lt, 10.0)),
        ("error_rate < 0.1%", (Metric::ErrorRate, Op::Lt, 0.1)),
        ("error_rate <= 0", (Metric::ErrorRate, Op::Le, 0.0)),
        ("rate_limited < 5%", (Metric::RateLimited, Op::Lt, 5.0)),
        (
            "achieved_rate >= 1900/s",
            (Metric::AchievedRate, Op::Ge, 1900.0),
        ),
        (
            "achieved_rate >= 1900rps",
            (Metric::AchievedRate, Op::Ge, 1900.0),
        ),
        ("rps >= 0.5", (Metric::AchievedRate, Op::Ge, 0.5)),
    ];
    for (text, want) in table {
        assert_eq!(parsed(text), want, "{text}");
    }
    let s = parse("  p99 < 20ms ").unwrap();
    assert_eq!(s.text, "p99 < 20ms", "kept as written, trimmed");
    assert_eq!(s.to_string(), "p99 < 20ms");
    assert_eq!(
        "p50 < 1ms".parse::<Slo>().map(|s| s.metric),
        Ok(Metric::P50)
    );
}

#[test]
fn mistakes_are_named_with_their_column() {
    let table = [
        ("p99 << 2ms", "at column 5: expected <, <=, > or >="),
        ("p99 = 2ms", "at column 5: expected <, <=, > or >="),
        ("p99 2ms", "at column 5: expected <, <=, > or >="),
        ("", "at column 1: expected a metric: p50, p90, p99, p99.9, min, mean, max, error_rate, rate_limited or achieved_rate"),
        ("p95 < 2ms", "at column 1: p95 is not measured: the percentiles are p50, p90, p99 and p99.9"),
        ("latency < 2ms", "at column 1: unknown metric \"latency\": expected p50, p90, p99, p99.9, min, mean, max, error_rate, rate_limited or achieved_rate"),
        ("p99 < ms", "at column 7: expected a number (0 or more)"),
        ("p99 < -1ms", "at column 7: expected a number (0 or more)"),
        ("p99 < 1.2.3ms", "at column 7: \"1.2.3\" is not a number"),
        ("p99 < 20", "at column 9: p99 needs a unit: us, ms or s"),
        ("p99 < 20m", "at column 9: unknown unit \"m\" for p99: expected us, ms or s"),
        ("error_rate < 0.1", "at column 17: error_rate needs %: write 0.1% (a bare number is accepted only for 0)"),
        ("error_rate < 101%", "at column 14: a share is at most 100%"),
        ("rate_limited < 5/s", "at column 17: unknown unit \"/s\" for rate_limited: expected %"),
        ("achieved_rate > 5%", "at column 18: unknown unit \"%\" for achieved_rate: expected /s or rps"),
        ("p99 < 20ms or so", "at column 12: unexpected \"or so\" after the threshold"),
    ];
    for (text, want) in table {
        let got = parse(text).map(|s| s.threshold).unwrap_err().to_string();
        assert_eq!(got, format!("invalid SLO {text:?} {want}"), "{text}");
    }
}

fn summary(p99_ms: f64, requests: u64, errors: u64, rate_limited: u64) -> Summary {
    Summary {
        requests,
        server_errors: errors,
        rate_limited,
        achieved_rate: 1900.0,
        latency: Latency {
            count: requests,
            p99_ms,
            ..Latency::default()
        },
        ..Summary::default()
    }
}

fn verdict(text: &str, s: &Summary) -> (f64, bool) {
    let v = judge(&parse(text).unwrap(), s);
    (v.actual, v.passed)
}

#[test]
fn a_latency_exactly_at_the_threshold_fails_below_and_passes_at_most() {
    let s = summary(20.0, 1000, 0, 0);
    assert_eq!(verdict("p99 < 20ms", &s), (20.0, false));
    assert_eq!(verdict("p99 <= 20ms", &s), (20.0, true));
    assert_eq!(verdict("p99 < 0.02s", &s), (20.0, false));
    assert_eq!(verdict("p99 < 20001us", &s), (20.0, true));
    assert_eq!(verdict("p99 > 20ms", &s), (20.0, false));
    assert_eq!(verdict("p99 >= 20ms", &s), (20.0, true));
}

#[test]
fn an_error_rate_exactly_at_the_threshold_fails_below_and_passes_at_most() {
    // 1 error in 1000 requests is exactly 0.1%.
    let mut s = summary(1.0, 1000, 1, 0);
    assert_eq!(verdict("error_rate < 0.1%", &s), (0.1, false));
    assert_eq!(verdict("error_rate <= 0.1%", &s), (0.1, true));
    assert_eq!(verdict("error_rate <= 0", &s), (0.1, false));
    s.transport_errors = 2;
    assert_eq!(
        verdict("error_rate <= 0.3%", &s),
        (0.3, true),
        "transport errors count"
    );
    s.client_errors = 50;
    assert_eq!(
        verdict("error_rate <= 0.3%", &s),
        (0.3, true),
        "4xx do not count"
    );
    let none = summary(1.0, 1000, 0, 0);
    assert_eq!(verdict("error_rate <= 0", &none), (0.0, true));
}

#[test]
fn rate_limited_is_the_share_of_429_answers() {
    let s = summary(1.0, 200, 0, 10);
    assert_eq!(verdict("rate_limited < 5%", &s), (5.0, false));
    assert_eq!(verdict("rate_limited <= 5%", &s), (5.0, true));
}

#[test]
fn the_achieved_rate_is_judged_per_second() {
    let s = summary(1.0, 1000, 0, 0);
    assert_eq!(verdict("achieved_rate >= 1900/s", &s), (1900.0, true));
    assert_eq!(verdict("achieved_rate > 1900/s", &s), (1900.0, false));
}

#[test]
fn nothing_measured_fails_the_objective() {
    let empty = Summary::default();
    assert_eq!(verdict("p99 < 20ms", &empty), (0.0, false), "no answer");
    assert_eq!(
        verdict("error_rate < 1%", &empty),
        (0.0, false),
        "no request"
    );
    assert_eq!(verdict("achieved_rate >= 0/s", &empty), (0.0, true));
}

#[test]
fn verdicts_carry_the_text_threshold_and_unit() {
    let slos = [
        parse("p99 < 1s").unwrap(),
        parse("error_rate < 0.1%").unwrap(),
        parse("rps >= 10").unwrap(),
    ];
    let verdicts = judge_all(&slos, &summary(12.0, 1000, 2, 0));
    assert_eq!(
        verdicts,
        [
            SloVerdict {
                text: "p99 < 1s".into(),
                actual: 12.0,
                threshold: 1000.0,
                unit: "ms".into(),
                passed: true,
            },
            SloVerdict {
                text: "error_rate < 0.1%".into(),
                actual: 0.2,
                threshold: 0.1,
                unit: "%".into(),
                passed: false,
            },
            SloVerdict {
                text: "rps >= 10".into(),
                actual: 1900.0,
                threshold: 10.0,
                unit: "/s".into(),
                passed: true,
            },
        ]
    );
}
