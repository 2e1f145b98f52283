//! Differential cases: the same requests sent to a real influxd and to our node, answers
//! compared as JSON values. Schema and how to add a case: `tests/cases/README.md`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{self, Method};
use crate::process::{InfluxdProcess, TsdbProcess};

/// Directory holding the case files (`*.json`) and `expected/`.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/differential")
}

/// True when `DIFF_ORACLE_ONLY` is set to something other than "" / "0": run influxd only
/// and record its answers into `expected/`.
pub fn oracle_only() -> bool {
    std::env::var("DIFF_ORACLE_ONLY").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// One file of cases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// What the file covers.
    #[serde(default)]
    pub description: String,
    /// Named lists of setup writes that cases refer to with `fixture`.
    #[serde(default)]
    pub fixtures: std::collections::BTreeMap<String, Vec<WriteReq>>,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One case: a fresh database `d_<name>`, setup writes, then steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// snake_case, unique across all files; the database is `d_<name>`.
    pub name: String,
    /// Free text: what InfluxDB behaviour this pins down.
    #[serde(default)]
    pub doc: String,
    /// Create the database `d_<name>` before setup (default true).
    #[serde(default = "default_true")]
    pub create_db: bool,
    /// Name of a file-level fixture whose writes run before `setup`.
    #[serde(default)]
    pub fixture: Option<String>,
    /// Writes that must succeed (204) on both servers before the steps.
    #[serde(default)]
    pub setup: Vec<WriteReq>,
    /// Requests whose answers are compared.
    pub steps: Vec<Step>,
    /// Why our node intentionally differs; then only `compare` (default `status`) is checked.
    #[serde(default)]
    pub differs: Option<String>,
}

fn default_true() -> bool {
    true
}

/// A `/write` request. `$DB` in `db` and in the body is replaced by the case's database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteReq {
    /// Target database (default `$DB`).
    #[serde(default)]
    pub db: Option<String>,
    /// Send no `db` parameter at all.
    #[serde(default)]
    pub omit_db: bool,
    /// `precision` parameter (n, u, ms, s, m, h); omitted when absent.
    #[serde(default)]
    pub precision: Option<String>,
    /// `rp` parameter; omitted when absent.
    #[serde(default)]
    pub rp: Option<String>,
    /// Lines, joined with `\n` (plus a trailing `\n`).
    #[serde(default)]
    pub lines: Vec<String>,
    /// Raw body, used instead of `lines` when present (CRLF, no trailing newline, ...).
    #[serde(default)]
    pub body: Option<String>,
}

/// What of two answers is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// Status and the whole JSON body (default without `differs`).
    #[default]
    Full,
    /// Status only (default with `differs`).
    Status,
    /// Status, and both bodies contain `error_contains`.
    ErrorContains,
}

/// One step: exactly one of `write` or `query`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A write.
    #[serde(default)]
    pub write: Option<WriteReq>,
    /// A query text (`q`); `$DB` is replaced.
    #[serde(default)]
    pub query: Option<String>,
    /// `db` parameter of the query (default `$DB`).
    #[serde(default)]
    pub db: Option<String>,
    /// Send the query without a `db` parameter.
    #[serde(default)]
    pub omit_db: bool,
    /// `epoch` parameter.
    #[serde(default)]
    pub epoch: Option<String>,
    /// GET (default) or POST (form body).
    #[serde(default)]
    pub method: Method,
    /// What to compare (default `full`, or `status` when the case `differs`).
    #[serde(default)]
    pub compare: Option<Compare>,
    /// Substring both bodies must contain, with `compare: error_contains`.
    #[serde(default)]
    pub error_contains: Option<String>,
    /// Status influxd must answer (checked in every mode; guards the case itself).
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// Where the case `differs`: the status our node must answer (instead of influxd's).
    #[serde(default)]
    pub ours_status: Option<u16>,
    /// Where the case `differs`: a substring our body must contain (after `$DB`
    /// substitution).
    #[serde(default)]
    pub ours_contains: Option<String>,
    /// Keep only `values` rows whose first column starts with this (after `$DB` substitution);
    /// for `SHOW DATABASES` on servers shared by parallel tests.
    #[serde(default)]
    pub keep_rows_prefixed: Option<String>,
}

/// The answer to one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Parsed body (`Null` when empty).
    pub body: Value,
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
}

impl Case {
    /// The case's database name.
    pub fn db(&self) -> String {
        format!("d_{}", self.name)
    }

    fn compare_of(&self, step: &Step) -> Compare {
        step.compare.unwrap_or(if self.differs.is_some() {
            Compare::Status
        } else {
            Compare::Full
        })
    }
}

impl WriteReq {
    fn body_text(&self, db: &str) -> String {
        let raw = match &self.body {
            Some(b) => b.clone(),
            None => {
                let mut s = self.lines.join("\n");
                s.push('\n');
                s
            }
        };
        raw.replace("$DB", db)
    }

    fn describe(&self, db: &str) -> String {
        let target = if self.omit_db {
            "(no db)".to_string()
        } else {
            self.db.as_deref().unwrap_or("$DB").replace("$DB", db)
        };
        format!(
            "POST /write db={target} precision={} rp={}\n{}",
            self.precision.as_deref().unwrap_or("(none)"),
            self.rp.as_deref().unwrap_or("(none)"),
            self.body_text(db).trim_end()
        )
    }

    fn send(&self, addr: SocketAddr, db: &str) -> anyhow::Result<Answer> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if !self.omit_db {
            params.push(("db", self.db.as_deref().unwrap_or("$DB").replace("$DB", db)));
        }
        if let Some(p) = &self.precision {
            params.push(("precision", p.clone()));
        }
        if let Some(rp) = &self.rp {
            params.push(("rp", rp.clone()));
        }
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = format!("http://{addr}/write?{}", http::form(&pairs));
        let body = self.body_text(db);
        let r = http::request(
            "POST",
            &url,
            &[("Content-Type", "text/plain; charset=utf-8")],
            Some(body.as_bytes()),
        )?;
        Ok(Answer {
            status: r.status,
            body: r.json(),
            content_type: r.header("content-type").map(str::to_string),
        })
    }
}

impl Step {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.write.is_some() != self.query.is_some(),
            "a step needs exactly one of `write` or `query`"
        );
        if self.write.is_some() {
            anyhow::ensure!(
                self.db.is_none() && self.epoch.is_none() && !self.omit_db,
                "db/epoch/omit_db belong inside `write` for a write step"
            );
        }
        if self.compare == Some(Compare::ErrorContains) {
            anyhow::ensure!(
                self.error_contains.is_some(),
                "compare: error_contains needs `error_contains`"
            );
        }
        Ok(())
    }

    /// A one-paragraph description of the request, for reports.
    pub fn describe(&self, db: &str) -> String {
        if let Some(w) = &self.write {
            return w.describe(db);
        }
        let q = self.query.as_deref().unwrap_or("").replace("$DB", db);
        let target = if self.omit_db {
            "(no db)".to_string()
        } else {
            self.db.as_deref().unwrap_or("$DB").replace("$DB", db)
        };
        format!(
            "{:?} /query db={target} epoch={} q={q}",
            self.method,
            self.epoch.as_deref().unwrap_or("(none)")
        )
        .replace("Get ", "GET ")
        .replace("Post ", "POST ")
    }

    fn send(&self, addr: SocketAddr, db: &str) -> anyhow::Result<Answer> {
        if let Some(w) = &self.write {
            return w.send(addr, db);
        }
        let q = self.query.as_deref().unwrap_or("").replace("$DB", db);
        let target = self.db.as_deref().unwrap_or("$DB").replace("$DB", db);
        let r = http::query_response(
            addr,
            (!self.omit_db).then_some(target.as_str()),
            &q,
            self.epoch.as_deref(),
            self.method,
        )?;
        let mut body = r.json();
        if let Some(prefix) = &self.keep_rows_prefixed {
            keep_rows_prefixed(&mut body, &prefix.replace("$DB", db));
        }
        Ok(Answer {
            status: r.status,
            body,
            content_type: r.header("content-type").map(str::to_string),
        })
    }
}

/// Drops `values` rows (in every series of every result) whose first column is not a string
/// starting with `prefix`.
fn keep_rows_prefixed(body: &mut Value, prefix: &str) {
    let Some(results) = body.get_mut("results").and_then(Value::as_array_mut) else {
        return;
    };
    for r in results {
        let Some(series) = r.get_mut("series").and_then(Value::as_array_mut) else {
            continue;
        };
        for s in series {
            if let Some(values) = s.get_mut("values").and_then(Value::as_array_mut) {
                values.retain(|row| {
                    row.get(0)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.starts_with(prefix))
                });
            }
        }
    }
}

/// Loads and validates one case file.
pub fn load_file(path: &Path) -> anyhow::Result<CaseFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut file: CaseFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    for case in &mut file.cases {
        if let Some(name) = case.fixture.take() {
            let writes = file.fixtures.get(&name).with_context(|| {
                format!(
                    "{}: case {} uses unknown fixture {name}",
                    path.display(),
                    case.name
                )
            })?;
            let mut setup = writes.clone();
            setup.append(&mut case.setup);
            case.setup = setup;
            case.fixture = Some(name);
        }
        anyhow::ensure!(
            !case.name.is_empty()
                && case
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{}: case name {:?} must be snake_case [a-z0-9_]",
            path.display(),
            case.name
        );
        anyhow::ensure!(
            !case.steps.is_empty(),
            "{}: case {} has no steps",
            path.display(),
            case.name
        );
        for (i, s) in case.steps.iter().enumerate() {
            s.validate()
                .with_context(|| format!("{}: case {} step {i}", path.display(), case.name))?;
        }
    }
    Ok(file)
}

/// All case files of the directory, sorted by name: (group name, file).
pub fn load_all() -> anyhow::Result<Vec<(String, CaseFile)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .with_context(|| format!("reading {}", cases_dir().display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for p in paths {
        let group = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = load_file(&p)?;
        for c in &file.cases {
            anyhow::ensure!(
                names.insert(c.name.clone()),
                "case name {} is used twice",
                c.name
            );
        }
        out.push((group, file));
    }
    Ok(out)
}

/// After the setup writes: nothing (influxd), or force our node's head into blocks, so the
/// steps read values from blocks (and from the head, for what the steps write themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSetup {
    Nothing,
    Flush,
}

/// Runs a case's preparation (fresh database, setup writes) and steps against one server.
/// Setup failures are errors; step answers are returned whatever their status.
pub fn run_case(addr: SocketAddr, case: &Case) -> anyhow::Result<Vec<Answer>> {
    run_case_with(addr, case, AfterSetup::Nothing)
}

/// `run_case`, then `after` once the setup writes are in.
pub fn run_case_with(
    addr: SocketAddr,
    case: &Case,
    after: AfterSetup,
) -> anyhow::Result<Vec<Answer>> {
    let db = case.db();
    // Drop what an earlier run of this case on the same server left: `$DB` and `$DB_*`.
    let (_, dbs) = http::query(addr, None, "SHOW DATABASES", None, Method::Get)?;
    let existing: Vec<String> = dbs
        .pointer("/results/0/series/0/values")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r.get(0).and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for name in existing {
        if name == db || name.starts_with(&format!("{db}_")) {
            let drop_q = format!("DROP DATABASE \"{name}\"");
            http::query(addr, None, &drop_q, None, Method::Post)?;
        }
    }
    if case.create_db {
        let create_q = format!("CREATE DATABASE \"{db}\"");
        let (status, body) = http::query(addr, None, &create_q, None, Method::Post)?;
        anyhow::ensure!(
            status == 200 && body.pointer("/results/0/error").is_none(),
            "{create_q} answered {status} {body}"
        );
    }
    for (i, w) in case.setup.iter().enumerate() {
        let a = w.send(addr, &db)?;
        anyhow::ensure!(
            a.status == 204,
            "setup write {i} answered {} {}\n{}",
            a.status,
            a.body,
            w.describe(&db)
        );
    }
    if after == AfterSetup::Flush {
        let url = format!("http://{addr}/debug/flush");
        let r = http::request("POST", &url, &[], None)?;
        anyhow::ensure!(
            r.status == 204,
            "POST /debug/flush answered {}: {}",
            r.status,
            r.body
        );
    }
    case.steps.iter().map(|s| s.send(addr, &db)).collect()
}

/// Checks the `expect_status` of every step against influxd's answers.
pub fn check_expectations(case: &Case, answers: &[Answer]) -> Vec<String> {
    let db = case.db();
    case.steps
        .iter()
        .zip(answers)
        .enumerate()
        .filter_map(|(i, (s, a))| match s.expect_status {
            Some(want) if want != a.status => Some(format!(
                "case {} step {i}: influxd answered {} (expected {want}) to\n{}\nbody: {}",
                case.name,
                a.status,
                s.describe(&db),
                pretty(&a.body)
            )),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// comparison

/// JSON equality where numbers compare by value: `1` == `1.0`; two integers compare exactly;
/// otherwise floats are equal within a relative 1e-12 (summation order). Object key order is
/// ignored; array order is not.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                return i == j;
            }
            if let (Some(i), Some(j)) = (x.as_u64(), y.as_u64()) {
                return i == j;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(f), Some(g)) => f == g || (f - g).abs() <= 1e-12 * f.abs().max(g.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Checks our answer against a step's own expectations (`ours_status`, `ours_contains`),
/// for steps where we differ from InfluxDB on purpose.
fn check_ours(case: &Case, step: &Step, ours: &Answer) -> Option<String> {
    if let Some(want) = step.ours_status {
        if ours.status != want {
            return Some(format!(
                "our status {} is not the intended {want}",
                ours.status
            ));
        }
    }
    if let Some(needle) = &step.ours_contains {
        let needle = needle.replace("$DB", &case.db());
        if !ours.body.to_string().contains(&needle) {
            return Some(format!("our body lacks {needle:?}"));
        }
    }
    None
}

/// Compares two answers under `mode`; `None` when they agree, else a one-line reason.
pub fn compare(
    mode: Compare,
    needle: Option<&str>,
    theirs: &Answer,
    ours: &Answer,
) -> Option<String> {
    if theirs.status != ours.status {
        return Some(format!(
            "status differs: influxd {} vs ours {}",
            theirs.status, ours.status
        ));
    }
    match mode {
        Compare::Status => None,
        Compare::ErrorContains => {
            let needle = needle.unwrap_or("error");
            let t = theirs.body.to_string();
            let o = ours.body.to_string();
            if !t.contains(needle) {
                Some(format!("influxd's body lacks {needle:?} (fix the case)"))
            } else if !o.contains(needle) {
                Some(format!("our body lacks {needle:?}"))
            } else {
                None
            }
        }
        Compare::Full => {
            if !json_eq(&theirs.body, &ours.body) {
                return Some("bodies differ".into());
            }
            let ct = |a: &Answer| {
                a.content_type.as_deref().map(|s| {
                    s.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
            };
            if !theirs.body.is_null() && ct(theirs) != ct(ours) {
                return Some(format!(
                    "Content-Type differs: influxd {:?} vs ours {:?}",
                    theirs.content_type, ours.content_type
                ));
            }
            None
        }
    }
}

/// Pretty JSON (never fails).
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A unified-style line diff of `a` (influxd, `-`) and `b` (ours, `+`) with 3 lines of
/// context. Falls back to printing both when they are very long.
pub fn unified_diff(a: &str, b: &str) -> String {
    let x: Vec<&str> = a.lines().collect();
    let y: Vec<&str> = b.lines().collect();
    if x.len() * y.len() > 4_000_000 {
        return format!("--- influxd\n{a}\n+++ ours\n{b}\n");
    }
    // LCS table.
    let (n, m) = (x.len(), y.len());
    let mut t = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if x[i] == y[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            ops.push((' ', x[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || t[i][j + 1] >= t[i + 1][j]) {
            ops.push(('+', y[j]));
            j += 1;
        } else {
            ops.push(('-', x[i]));
            i += 1;
        }
    }
    let near_change: Vec<bool> = (0..ops.len())
        .map(|k| {
            let lo = k.saturating_sub(3);
            let hi = (k + 3).min(ops.len().saturating_sub(1));
            (lo..=hi).any(|q| ops[q].0 != ' ')
        })
        .collect();
    let mut out = String::from("--- influxd\n+++ ours\n");
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change[k] {
            if skipped {
                out.push_str("@@ ... @@\n");
                skipped = false;
            }
            let _ = writeln!(out, "{op}{line}");
        } else {
            skipped = true;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// servers and the runners used by the test files

/// The pair of servers one test binary shares across its test functions.
#[derive(Debug)]
pub struct Servers {
    /// The reference.
    pub influxd: InfluxdProcess,
    /// Our node; `None` in oracle-only mode.
    pub ours: Option<TsdbProcess>,
}

/// The shared servers, started on first use and stopped (killed) when the last test using
/// them drops its handle. A later test starts a fresh pair.
pub fn shared_servers(with_ours: bool) -> anyhow::Result<Arc<Servers>> {
    static SLOT: OnceLock<Mutex<Weak<Servers>>> = OnceLock::new();
    let slot = SLOT.get_or_init(|| Mutex::new(Weak::new()));
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.upgrade() {
        if s.ours.is_some() || !with_ours {
            return Ok(s);
        }
    }
    let influxd = InfluxdProcess::start()?;
    let ours = if with_ours {
        Some(TsdbProcess::start()?)
    } else {
        None
    };
    let s = Arc::new(Servers { influxd, ours });
    *guard = Arc::downgrade(&s);
    Ok(s)
}

/// Records influxd's answers to a group as documentation JSON (ordered arrays).
pub fn record(file: &CaseFile, answers: &[(String, Result<Vec<Answer>, String>)]) -> Value {
    let cases: Vec<Value> = file
        .cases
        .iter()
        .zip(answers)
        .map(|(case, (_, res))| {
            let db = case.db();
            let steps: Vec<Value> = match res {
                Ok(ans) => case
                    .steps
                    .iter()
                    .zip(ans)
                    .map(|(s, a)| {
                        json!({
                            "request": s.describe(&db),
                            "status": a.status,
                            "body": a.body,
                        })
                    })
                    .collect(),
                Err(e) => vec![json!({ "setup_error": e })],
            };
            json!({ "name": case.name, "db": db, "steps": steps })
        })
        .collect();
    json!({ "recorded_from": "influxd (InfluxDB 1.x)", "cases": cases })
}

fn expected_path(group: &str) -> PathBuf {
    cases_dir().join("expected").join(format!("{group}.json"))
}

/// Outcome of running a group.
#[derive(Debug, Default)]
pub struct Report {
    /// Cases run.
    pub cases: usize,
    /// Steps compared.
    pub steps: usize,
    /// Human-readable mismatch entries.
    pub mismatches: Vec<String>,
}

impl Report {
    /// Panics with every mismatch when there is any.
    pub fn assert_clean(&self, group: &str) {
        if !self.mismatches.is_empty() {
            panic!(
                "{} mismatches over {} cases ({} steps) in group `{group}`:\n\n{}",
                self.mismatches.len(),
                self.cases,
                self.steps,
                self.mismatches.join("\n")
            );
        }
        eprintln!(
            "group `{group}`: {} cases, {} steps, all matched",
            self.cases, self.steps
        );
    }
}

fn mismatch_entry(case: &Case, i: usize, why: &str, theirs: &Answer, ours: &Answer) -> String {
    let db = case.db();
    let step = &case.steps[i];
    let (t, o) = (pretty(&theirs.body), pretty(&ours.body));
    let mut s = String::new();
    let _ = writeln!(s, "=== case {} step {i}: {why}", case.name);
    if let Some(d) = &case.differs {
        let _ = writeln!(s, "(case differs on purpose: {d})");
    }
    let _ = writeln!(s, "request: {}", step.describe(&db));
    let _ = writeln!(s, "influxd: {} {}", theirs.status, t);
    let _ = writeln!(s, "ours:    {} {}", ours.status, o);
    if t != o {
        s.push_str(&unified_diff(&t, &o));
    }
    s
}

/// Runs one group (`cases/differential/<group>.json`) differentially against the shared pair.
/// In oracle-only mode runs influxd only and rewrites `expected/<group>.json`.
pub fn run_group(group: &str) -> anyhow::Result<Report> {
    let path = cases_dir().join(format!("{group}.json"));
    let file = load_file(&path)?;
    let oracle = oracle_only();
    let servers = shared_servers(!oracle)?;
    let mut report = Report {
        cases: file.cases.len(),
        ..Report::default()
    };
    let mut recorded = Vec::new();
    for case in &file.cases {
        let theirs = run_case(servers.influxd.addr, case);
        let theirs = match theirs {
            Ok(a) => a,
            Err(e) => {
                report.mismatches.push(format!(
                    "=== case {}: influxd failed the setup (fix the case): {e:#}\n",
                    case.name
                ));
                recorded.push((case.name.clone(), Err(format!("{e:#}"))));
                continue;
            }
        };
        for e in check_expectations(case, &theirs) {
            report.mismatches.push(format!("=== {e}\n"));
        }
        if let Some(ours_server) = &servers.ours {
            match run_case_with(ours_server.addr, case, AfterSetup::Flush) {
                Err(e) => report.mismatches.push(format!(
                    "=== case {}: our node failed the setup: {e:#}\n",
                    case.name
                )),
                Ok(ours) => {
                    for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
                        report.steps += 1;
                        let step = &case.steps[i];
                        let why = if step.ours_status.is_some() || step.ours_contains.is_some() {
                            check_ours(case, step, o)
                        } else {
                            compare(case.compare_of(step), step.error_contains.as_deref(), t, o)
                        };
                        if let Some(why) = why {
                            report.mismatches.push(mismatch_entry(case, i, &why, t, o));
                        }
                    }
                }
            }
        } else {
            report.steps += theirs.len();
        }
        recorded.push((case.name.clone(), Ok(theirs)));
    }
    if oracle {
        let doc = record(&file, &recorded);
        let out = expected_path(group);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&out, pretty(&doc) + "\n")?;
        eprintln!("recorded influxd's answers to {}", out.display());
    }
    Ok(report)
}

/// Runs every group against influxd alone and compares with the recorded `expected/*.json`:
/// proves the cases give InfluxDB stable answers (no dependence on time or ordering luck).
pub fn check_recorded_against_influxd() -> anyhow::Result<Report> {
    // A private influxd: the live comparison tests use the same database names on the
    // shared pair, concurrently.
    let influxd = InfluxdProcess::start()?;
    let mut report = Report::default();
    for (group, file) in load_all()? {
        let text = std::fs::read_to_string(expected_path(&group)).with_context(|| {
            format!(
                "missing recording for `{group}`: run \
                 `DIFF_ORACLE_ONLY=1 cargo test -p tests --test tsdb_differential`"
            )
        })?;
        let recorded: Value = serde_json::from_str(&text)?;
        for case in &file.cases {
            report.cases += 1;
            let rec = recorded
                .get("cases")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c.get("name") == Some(&json!(case.name))));
            let Some(rec) = rec else {
                report.mismatches.push(format!(
                    "=== case {} ({group}): not recorded yet\n",
                    case.name
                ));
                continue;
            };
            let answers = match run_case(influxd.addr, case) {
                Ok(a) => a,
                Err(e) => {
                    report
                        .mismatches
                        .push(format!("=== case {}: setup failed: {e:#}\n", case.name));
                    continue;
                }
            };
            for e in check_expectations(case, &answers) {
                report.mismatches.push(format!("=== {e}\n"));
            }
            let rec_steps = rec.get("steps").and_then(Value::as_array);
            for (i, a) in answers.iter().enumerate() {
                report.steps += 1;
                let r = rec_steps.and_then(|s| s.get(i));
                let rec_answer = Answer {
                    status: r
                        .and_then(|r| r.get("status"))
                        .and_then(Value::as_u64)
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(0),
                    body: r
                        .and_then(|r| r.get("body"))
                        .cloned()
                        .unwrap_or(Value::Null),
                    // Not recorded: compare bodies only.
                    content_type: a.content_type.clone(),
                };
                if let Some(why) = compare(Compare::Full, None, &rec_answer, a) {
                    let mut entry = mismatch_entry(case, i, &why, &rec_answer, a);
                    entry = entry
                        .replace("influxd: ", "recorded: ")
                        .replace("ours:    ", "live:     ");
                    report.mismatches.push(entry);
                }
            }
        }
    }
    Ok(report)
}
