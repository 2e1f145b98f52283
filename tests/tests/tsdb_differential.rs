//! Differential tests: every case in `tests/cases/differential/*.json` is sent to a private real
//! InfluxDB 1.x and to our `tsdb-backend`, and the answers are compared as JSON values. Our
//! node's head is flushed into blocks after each case's setup writes, so the queries read
//! from blocks (and from the head, for what the steps write).
//!
//! - `cargo test -p tests --test tsdb_differential`: the comparison, plus checks that the
//!   case files are valid and that influxd still gives the recorded answers.
//! - `DIFF_ORACLE_ONLY=1 cargo test -p tests --test tsdb_differential`: influxd only;
//!   rewrites `tests/cases/differential/expected/<group>.json` with its answers.

use tests::diff;

fn run(group: &str) {
    let report = diff::run_group(group).expect("running the differential group");
    report.assert_clean(group);
}

#[test]
fn line_protocol_writes_match_influxdb() {
    run("writes");
}

#[test]
fn raw_selects_match_influxdb() {
    run("select_raw");
}

#[test]
fn aggregates_match_influxdb() {
    run("aggregates");
}

#[test]
fn show_statements_and_admin_match_influxdb() {
    run("show_admin");
}

#[test]
fn error_answers_match_influxdb() {
    run("errors");
}

#[test]
fn transformations_match_influxdb() {
    run("transformations");
}

#[test]
fn what_grafana_sends_matches_influxdb() {
    run("grafana");
}

#[test]
fn time_zones_match_influxdb() {
    run("timezones");
}

#[test]
fn subqueries_match_influxdb() {
    run("subqueries");
}

#[test]
fn every_case_file_has_a_test_function() {
    let groups: Vec<String> = diff::load_all()
        .expect("case files parse")
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    let covered = [
        "writes",
        "select_raw",
        "aggregates",
        "show_admin",
        "errors",
        "transformations",
        "grafana",
        "timezones",
        "subqueries",
    ];
    for g in &groups {
        assert!(
            covered.contains(&g.as_str()),
            "cases/differential/{g}.json has no test function in tsdb_differential.rs"
        );
    }
}

#[test]
fn case_files_are_valid_and_plentiful() {
    let all = diff::load_all().expect("case files parse");
    let total: usize = all.iter().map(|(_, f)| f.cases.len()).sum();
    for (group, file) in &all {
        eprintln!("{group}: {} cases", file.cases.len());
    }
    assert!(total >= 70, "only {total} differential cases");
}

#[test]
fn influxdb_still_gives_the_recorded_answers() {
    if diff::oracle_only() {
        eprintln!("DIFF_ORACLE_ONLY set: recordings are being rewritten, not checked");
        return;
    }
    let report = diff::check_recorded_against_influxd().expect("running cases against influxd");
    report.assert_clean("recorded");
}
