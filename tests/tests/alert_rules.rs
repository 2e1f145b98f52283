//! The alerting rules shipped in `deploy/prometheus/`: Debian's `promtool` checks them and
//! runs their unit tests (`alerts_test.yml`: each alert fires on a failing series, stays
//! quiet on a healthy one); every rule carries `for:`, a severity, a summary, a description
//! and a runbook that is a section of `docs/sre-guide.md`; and every metric a rule reads,
//! with the labels it reads of it, is exposed by a running gateway and TSDB pool, so that a
//! renamed metric breaks this test instead of silencing an alert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use tests::gateway::GatewayProcess;
use tests::http::request;
use tests::redis::RedisProcess;
use tests::{under_ci, workspace_root, Pool};

const PROMTOOL: &str = "/usr/bin/promtool";

#[derive(Debug, Deserialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn rules_dir() -> PathBuf {
    workspace_root().join("deploy/prometheus")
}

fn rules() -> Vec<Rule> {
    let path = rules_dir().join("alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let file: RuleFile =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        !file.groups.is_empty(),
        "no rule group in {}",
        path.display()
    );
    file.groups
        .into_iter()
        .flat_map(|g| {
            assert!(!g.rules.is_empty(), "group {} has no rule", g.name);
            g.rules
        })
        .collect()
}

/// Whether promtool is there. Without it: skip locally (false), fail under CI.
fn promtool_available() -> bool {
    let ok = std::path::Path::new(PROMTOOL).is_file();
    if !ok {
        assert!(
            !under_ci(),
            "{PROMTOOL} is missing under CI: run scripts/install-test-deps.sh (Debian `prometheus`)"
        );
        eprintln!("SKIPPED: {PROMTOOL} is missing; run scripts/install-test-deps.sh to enable");
    }
    ok
}

/// Runs `promtool <args>` in `deploy/prometheus/` and fails with its output unless it exits 0.
fn promtool(args: &[&str]) {
    let out = Command::new(PROMTOOL)
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("running promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} exited {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules() {
    if promtool_available() {
        promtool(&["check", "rules", "alerts.yml"]);
    }
}

#[test]
fn each_alert_fires_on_a_failing_series_and_not_on_a_healthy_one() {
    if promtool_available() {
        promtool(&["test", "rules", "alerts_test.yml"]);
    }
}

/// The anchor GitHub gives a Markdown heading: lower case, spaces to dashes, other
/// punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_waits_names_its_severity_and_points_at_its_runbook_section() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/sre-guide.md")).unwrap();
    let anchors: BTreeSet<String> = guide
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let rules = rules();
    let alerts_test =
        std::fs::read_to_string(rules_dir().join("alerts_test.yml")).expect("alerts_test.yml");
    for r in &rules {
        let a = &r.alert;
        assert!(r.for_.is_some(), "{a}: no `for:`");
        assert!(
            matches!(
                r.labels.get("severity").map(String::as_str),
                Some("critical" | "warning")
            ),
            "{a}: severity must be critical or warning: {:?}",
            r.labels
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                r.annotations.get(key).is_some_and(|v| !v.trim().is_empty()),
                "{a}: no {key} annotation"
            );
        }
        let runbook = &r.annotations["runbook"];
        let section = runbook
            .strip_prefix("docs/sre-guide.md#")
            .unwrap_or_else(|| {
                panic!("{a}: runbook {runbook:?} is not a docs/sre-guide.md section")
            });
        assert!(
            anchors.contains(section),
            "{a}: docs/sre-guide.md has no heading with anchor #{section}"
        );
        assert!(
            alerts_test.contains(&format!("alertname: {a}\n")),
            "{a} has no unit test in alerts_test.yml"
        );
    }
}

/// Metric names (ours start with `gateway_` or `tsdb_`) read by `expr`, each with the label
/// names its selectors match on.
fn selectors(expr: &str) -> BTreeMap<String, BTreeSet<String>> {
    let name = regex::Regex::new(r"\b((?:gateway|tsdb)_[A-Za-z0-9_]+)(\{[^}]*\})?").unwrap();
    let matcher = regex::Regex::new(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)").unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in name.captures_iter(expr) {
        let labels = out.entry(c[1].to_string()).or_default();
        if let Some(m) = c.get(2) {
            labels.extend(matcher.captures_iter(m.as_str()).map(|l| l[1].to_string()));
        }
    }
    out
}

/// Label names a rule groups by (`by (a, b)`) or prints (`$labels.a`).
fn grouping_labels(r: &Rule) -> BTreeSet<String> {
    let by = regex::Regex::new(r"\bby\s*\(([^)]*)\)").unwrap();
    let printed = regex::Regex::new(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    let mut out: BTreeSet<String> = by
        .captures_iter(&r.expr)
        .flat_map(|c| {
            c[1].split(',')
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect();
    for text in r.annotations.values() {
        out.extend(printed.captures_iter(text).map(|c| c[1].to_string()));
    }
    out
}

/// Each sample of a Prometheus text exposition: (metric name, its label names).
fn samples(text: &str) -> Vec<(String, BTreeSet<String>)> {
    let label = regex::Regex::new(r#"([A-Za-z_][A-Za-z0-9_]*)=""#).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let end = l.find(['{', ' ']).unwrap_or(l.len());
            let labels = match (l.find('{'), l.rfind('}')) {
                (Some(a), Some(b)) if a < b => label
                    .captures_iter(&l[a..b])
                    .map(|c| c[1].to_string())
                    .collect(),
                _ => BTreeSet::new(),
            };
            (l[..end].to_string(), labels)
        })
        .collect()
}

fn scrape(url: &str) -> String {
    let r = request("GET", url, &[], None).unwrap();
    assert_eq!(r.status, 200, "GET {url}: {}", r.body);
    r.body
}

#[test]
fn every_metric_the_rules_read_is_exposed_by_a_running_gateway_and_pool() {
    // What a real deployment has for every rule to see something: two replicating nodes,
    // a gateway in front with a cache, outlier detection and a global limit (so Redis).
    let redis = RedisProcess::start().unwrap();
    let pool = Pool::builder(2)
        .arg("--create-database")
        .arg("telemetry")
        .start()
        .unwrap();
    let backends: String = pool
        .nodes()
        .iter()
        .map(|n| format!("      - {{ address: {} }}\n", n.addr))
        .collect();
    let policy = format!(
        "caches:\n  queries: {{ max_size: 1MiB, ttl: 5s }}\nrate_limits:\n  shared: {{ key: [client_ip], rate: 1000/s, burst: 1000, scope: global }}\npools:\n  tsdb:\n    backends:\n{backends}    health_check: {{ path: /ping, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 2 }}\n    outlier_detection: {{ consecutive_failures: 5, base_ejection: 30s, max_ejected: 50% }}\nroutes:\n  - name: write\n    match: {{ path_prefix: /write, methods: [POST] }}\n    pool: tsdb\n  - name: query\n    match: {{ path_prefix: /query }}\n    pool: tsdb\n    rate_limit: [shared]\n    cache: {{ use: queries, key: [method, path, query] }}\n"
    );
    let gw = GatewayProcess::builder(&policy)
        .redis(&redis.url())
        .start()
        .unwrap();
    let w = request(
        "POST",
        &format!("{}/write?db=telemetry", gw.url()),
        &[],
        Some(b"alerting v=1i"),
    )
    .unwrap();
    assert_eq!(w.status, 204, "{}", w.body);
    let q = request(
        "GET",
        &format!(
            "{}/query?db=telemetry&q=SELECT%20count(v)%20FROM%20alerting",
            gw.url()
        ),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(q.status, 200, "{}", q.body);

    let mut exposed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut texts = vec![scrape(&format!("{}/metrics", gw.admin_url()))];
    texts.extend(
        pool.nodes()
            .iter()
            .map(|n| scrape(&format!("{}/metrics", n.url()))),
    );
    for text in &texts {
        for (name, labels) in samples(text) {
            exposed.entry(name).or_default().extend(labels);
        }
    }
    // Prometheus adds these to every series it scrapes.
    let scrape_labels = ["instance", "job"];
    let mut problems = Vec::new();
    for r in rules() {
        let read = selectors(&r.expr);
        assert!(
            !read.is_empty(),
            "{}: reads no gateway_ or tsdb_ metric",
            r.alert
        );
        let mut labels_of_read = BTreeSet::new();
        for (metric, labels) in &read {
            let Some(have) = exposed.get(metric) else {
                problems.push(format!("{}: {metric} is not exposed", r.alert));
                continue;
            };
            labels_of_read.extend(have.iter().cloned());
            for l in labels.iter().filter(|l| !have.contains(*l)) {
                problems.push(format!(
                    "{}: {metric} has no label {l} (it has {have:?})",
                    r.alert
                ));
            }
        }
        for l in grouping_labels(&r) {
            if !labels_of_read.contains(&l) && !scrape_labels.contains(&l.as_str()) {
                problems.push(format!(
                    "{}: groups by or prints {l}, which none of {:?} has",
                    r.alert,
                    read.keys()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nexposed: {:?}",
        problems.join("\n"),
        exposed.keys()
    );
}
