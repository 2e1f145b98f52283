//! Comparison tests: a worse p99 and an error rate rising from 0 are regressions, an
//! improvement is not, and stages that differ are said to differ.

use super::*;
use crate::report::Report;

fn row<'a>(c: &'a Comparison, name: &str) -> &'a Row {
    match c.rows.iter().find(|r| r.name == name) {
        Some(r) => r,
        None => panic!("no row {name:?} in {c:#?}"),
    }
}

fn regressions(c: &Comparison) -> Vec<&str> {
    c.regressions().map(|r| r.name.as_str()).collect()
}

#[test]
fn the_same_report_has_no_regression() {
    let r = Report::example();
    let c = compare(&r, &r, 0.10);
    assert!(!c.has_regression());
    assert!(c.notes.is_empty());
    assert_eq!(
        c.rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        [
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            "achieved rate",
            "error rate",
            "rate limited (429)",
            "stage 2 (15s at 200/s) p99",
            "stage 2 (15s at 200/s) rate",
        ],
        "the warm-up stage is not compared"
    );
    assert!(c.rows.iter().all(|r| r.ratio == Some(1.0)));
}

#[test]
fn a_p99_beyond_the_threshold_is_a_regression_and_one_at_it_is_not() {
    let before = Report::example();
    let mut after = before.clone();
    // p99 12 ms before: 15 ms is exactly 25% worse, 15.5 ms is beyond.
    after.overall.latency.p99_ms = 15.0;
    after.stages[1].summary.latency.p99_ms = 15.5;
    let c = compare(&before, &after, 0.25);
    let p99 = row(&c, "p99");
    assert_eq!((p99.before, p99.after, p99.ratio), (12.0, 15.0, Some(1.25)));
    assert!(!p99.regression, "exactly 25% is not beyond 25%");
    // 13.2 / 12 is 1.0999999999999999 in f64: at the boundary either way, never flagged.
    after.overall.latency.p99_ms = 13.2;
    assert!(!row(&compare(&before, &after, 0.10), "p99").regression);
    assert_eq!(regressions(&c), ["stage 2 (15s at 200/s) p99"]);
    assert!(c.has_regression());
}

#[test]
fn an_error_rate_rising_from_zero_is_a_regression_whatever_the_threshold() {
    let mut before = Report::example();
    before.overall.error_rate = 0.0;
    let mut after = before.clone();
    after.overall.error_rate = 0.0001;
    let c = compare(&before, &after, 10.0);
    let e = row(&c, "error rate");
    assert_eq!((e.before, e.after, e.ratio), (0.0, 0.01, None));
    assert_eq!(regressions(&c), ["error rate"]);
}

#[test]
fn an_improvement_is_not_a_regression() {
    let before = Report::example();
    let mut after = before.clone();
    after.overall.latency.p99_ms = 6.0;
    after.overall.error_rate = 0.0;
    after.overall.achieved_rate = before.overall.achieved_rate * 2.0;
    after.overall.rate_limited = 1000;
    let c = compare(&before, &after, 0.10);
    assert_eq!(row(&c, "p99").ratio, Some(0.5));
    assert_eq!(row(&c, "error rate").ratio, Some(0.0));
    assert_eq!(row(&c, "achieved rate").ratio, Some(2.0));
    assert_eq!(row(&c, "rate limited (429)").direction, Direction::Neutral);
    assert!(!c.has_regression(), "{c}");
}

#[test]
fn a_lower_achieved_rate_is_a_regression() {
    let before = Report::example();
    let mut after = before.clone();
    after.overall.achieved_rate = 250.0;
    let c = compare(&before, &after, 0.10);
    assert_eq!(row(&c, "achieved rate").ratio, Some(250.0 / 300.0));
    assert_eq!(regressions(&c), ["achieved rate"]);
}

#[test]
fn stages_that_differ_are_said_to_differ_and_not_compared() {
    let before = Report::example();
    let mut after = before.clone();
    after.stages[1].label = "15s at 300/s".into();
    after.scenario_name = "other".into();
    let c = compare(&before, &after, 0.10);
    assert!(c.rows.iter().all(|r| !r.name.starts_with("stage")));
    assert_eq!(
        c.notes,
        [
            "the scenarios differ: \"example\" before, \"other\" after",
            "the stages differ (2 stages: 5s at 200/s, 15s at 200/s before, 2 stages: 5s at 200/s, 15s at 300/s after), so they are not compared one by one",
        ]
    );
    after.stages.truncate(1);
    assert_eq!(
        compare(&before, &after, 0.10).notes[1],
        "the stages differ (2 stages: 5s at 200/s, 15s at 200/s before, 1 stage: 5s at 200/s after), so they are not compared one by one"
    );
}

#[test]
fn the_table_is_aligned_marks_regressions_and_ends_with_a_summary() {
    let before = Report::example();
    let mut after = before.clone();
    after.overall.latency.p99_ms = 24.0;
    after.overall.latency.max_ms = 64.0;
    after.stages.pop();
    let text = compare(&before, &after, 0.10).to_string();
    assert_eq!(
        text,
        "\
metric                before     after  ratio
p50                  3.60 ms   3.60 ms  1.00x
p90                  6.00 ms   6.00 ms  1.00x
p99                 12.00 ms  24.00 ms  2.00x  <- regression
p99.9               20.00 ms  20.00 ms  1.00x
max                 32.00 ms  64.00 ms  2.00x  <- regression
achieved rate        300.0/s   300.0/s  1.00x
error rate            0.167%    0.167%  1.00x
rate limited (429)         7         7  1.00x
note: the stages differ (2 stages: 5s at 200/s, 15s at 200/s before, 1 stage: 5s at 200/s after), so they are not compared one by one
2 regressions beyond 10%"
    );
    let one = {
        let mut a = Report::example();
        a.overall.latency.p50_ms = 10.0;
        compare(&Report::example(), &a, 0.025).to_string()
    };
    assert!(one.ends_with("\n1 regression beyond 2.5%"), "{one}");
    let none = compare(&Report::example(), &Report::example(), 0.10).to_string();
    assert!(none.ends_with("\nno regression beyond 10%"), "{none}");
}

#[test]
fn a_report_is_read_back_and_a_wrong_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, serde_json::to_string(&Report::example()).unwrap()).unwrap();
    // serde_json's default float parser may differ from the written value in the last
    // bit, so the figures are not compared for equality.
    let back = read_report(&good).unwrap();
    assert_eq!(
        (
            back.scenario_name.as_str(),
            back.overall.requests,
            back.stages.len()
        ),
        ("example", 3000, 2)
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let e = read_report(&bad).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: not a loadtest report: ", bad.display())),
        "{e}"
    );

    std::fs::write(&bad, r#"{"format": 2, "tool": "loadtest"}"#).unwrap();
    assert_eq!(
        read_report(&bad).unwrap_err().to_string(),
        format!(
            "{}: report format 2, but this loadtest reads format 1",
            bad.display()
        )
    );

    std::fs::write(&bad, r#"{"name": "x"}"#).unwrap();
    assert_eq!(
        read_report(&bad).unwrap_err().to_string(),
        format!(
            "{}: not a loadtest report: it has no format number",
            bad.display()
        )
    );

    let missing = dir.path().join("missing.json");
    let e = read_report(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );
}
