//! Two reports side by side: each headline figure before and after, their ratio, and
//! whether the change is a regression beyond a threshold.
//!
//! Direction decides what is worse: a higher latency or error rate, a lower achieved rate.
//! A change is a regression when it is worse by more than the threshold, relative to the
//! figure before (`after / before > 1 + threshold`, or `< 1 - threshold` for a rate); a
//! latency or error rate that rises from 0 is a regression whatever the threshold. The
//! count of 429 answers is shown but never judged: more of them may be the gateway doing
//! its job, and only the test knows.
//!
//! Per-stage rows (p99 and achieved rate of each measured stage) are added when both runs
//! have the same stages (same count and labels); otherwise a note says why they are left
//! out.

use crate::report::{Report, Summary, FORMAT};
use std::fmt;
use std::path::{Path, PathBuf};

/// Ratios within this of the threshold count as at it: `13.2 / 12` is `1.0999999999999999`
/// in f64, and a change of exactly the threshold is not beyond it, whichever way it rounds.
const ROUNDING: f64 = 1e-9;

/// Which way a figure gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    HigherIsWorse,
    LowerIsWorse,
    /// Shown, never a regression.
    Neutral,
}

/// The unit a row's figures are in, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Ms,
    PerSecond,
    Percent,
    Count,
}

impl Unit {
    fn format(self, v: f64) -> String {
        match self {
            Unit::Ms => format!("{v:.2} ms"),
            Unit::PerSecond => format!("{v:.1}/s"),
            Unit::Percent => format!("{v:.3}%"),
            Unit::Count => format!("{v:.0}"),
        }
    }
}

/// One figure of both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// E.g. `p99`, `stage 2 (20s at 2000/s) p99`.
    pub name: String,
    pub unit: Unit,
    pub before: f64,
    pub after: f64,
    /// `after / before`; 1 when both are 0, `None` when only `before` is 0.
    pub ratio: Option<f64>,
    pub direction: Direction,
    pub regression: bool,
}

impl Row {
    fn new(
        name: String,
        unit: Unit,
        before: f64,
        after: f64,
        direction: Direction,
        threshold: f64,
    ) -> Row {
        let ratio = if before == 0.0 {
            (after == 0.0).then_some(1.0)
        } else {
            Some(after / before)
        };
        let regression = match (direction, ratio) {
            (Direction::HigherIsWorse, Some(r)) => r > 1.0 + threshold + ROUNDING,
            // From 0 to more than 0.
            (Direction::HigherIsWorse, None) => true,
            (Direction::LowerIsWorse, Some(r)) => r < 1.0 - threshold - ROUNDING,
            // From 0 to more than 0 is better.
            (Direction::LowerIsWorse, None) => false,
            (Direction::Neutral, _) => false,
        };
        Row {
            name,
            unit,
            before,
            after,
            ratio,
            direction,
            regression,
        }
    }
}

/// The rows, and notes about what could not be compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub rows: Vec<Row>,
    /// E.g. that the scenarios or the stages differ.
    pub notes: Vec<String>,
    /// As given to [`compare`], e.g. 0.10.
    pub threshold: f64,
}

impl Comparison {
    pub fn has_regression(&self) -> bool {
        self.rows.iter().any(|r| r.regression)
    }

    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.regression)
    }
}

/// Compares `after` with `before`; `threshold` is the relative change (0.10 for 10%)
/// beyond which a change for the worse is a regression.
pub fn compare(before: &Report, after: &Report, threshold: f64) -> Comparison {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    if before.scenario_name != after.scenario_name {
        notes.push(format!(
            "the scenarios differ: {:?} before, {:?} after",
            before.scenario_name, after.scenario_name
        ));
    }
    if before.mode != after.mode {
        notes.push(format!(
            "the modes differ: {:?} before, {:?} after",
            before.mode, after.mode
        ));
    }
    summary_rows(&mut rows, "", &before.overall, &after.overall, threshold);
    let labels = |r: &Report| r.stages.iter().map(|s| s.label.clone()).collect::<Vec<_>>();
    if labels(before) == labels(after) {
        for (b, a) in before.stages.iter().zip(&after.stages) {
            // Warm-up stages are noisy by design, which is why they are kept out of the
            // overall figures; comparing them would flag noise.
            if b.warmup || a.warmup {
                continue;
            }
            let name = |what: &str| format!("stage {} ({}) {what}", b.index + 1, b.label);
            let (bs, as_) = (&b.summary, &a.summary);
            rows.push(Row::new(
                name("p99"),
                Unit::Ms,
                bs.latency.p99_ms,
                as_.latency.p99_ms,
                Direction::HigherIsWorse,
                threshold,
            ));
            rows.push(Row::new(
                name("rate"),
                Unit::PerSecond,
                bs.achieved_rate,
                as_.achieved_rate,
                Direction::LowerIsWorse,
                threshold,
            ));
        }
    } else {
        notes.push(format!(
            "the stages differ ({} before, {} after), so they are not compared one by one",
            describe(&before.stages),
            describe(&after.stages)
        ));
    }
    Comparison {
        rows,
        notes,
        threshold,
    }
}

fn describe(stages: &[crate::report::StageReport]) -> String {
    let labels: Vec<&str> = stages.iter().map(|s| s.label.as_str()).collect();
    match labels.len() {
        0 => "none".into(),
        1 => format!("1 stage: {}", labels[0]),
        n => format!("{n} stages: {}", labels.join(", ")),
    }
}

fn summary_rows(rows: &mut Vec<Row>, prefix: &str, b: &Summary, a: &Summary, threshold: f64) {
    let latency = [
        ("p50", b.latency.p50_ms, a.latency.p50_ms),
        ("p90", b.latency.p90_ms, a.latency.p90_ms),
        ("p99", b.latency.p99_ms, a.latency.p99_ms),
        ("p99.9", b.latency.p999_ms, a.latency.p999_ms),
        ("max", b.latency.max_ms, a.latency.max_ms),
    ];
    for (name, before, after) in latency {
        rows.push(Row::new(
            format!("{prefix}{name}"),
            Unit::Ms,
            before,
            after,
            Direction::HigherIsWorse,
            threshold,
        ));
    }
    rows.push(Row::new(
        format!("{prefix}achieved rate"),
        Unit::PerSecond,
        b.achieved_rate,
        a.achieved_rate,
        Direction::LowerIsWorse,
        threshold,
    ));
    rows.push(Row::new(
        format!("{prefix}error rate"),
        Unit::Percent,
        b.error_rate * 100.0,
        a.error_rate * 100.0,
        Direction::HigherIsWorse,
        threshold,
    ));
    rows.push(Row::new(
        format!("{prefix}rate limited (429)"),
        Unit::Count,
        b.rate_limited as f64,
        a.rate_limited as f64,
        Direction::Neutral,
        threshold,
    ));
}

/// A threshold as a percentage without useless decimals: 0.1 is `10%`, 0.025 is `2.5%`.
fn percent(threshold: f64) -> String {
    let s = format!("{:.2}", threshold * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// An aligned table, regressions marked, notes below it, then one summary line.
impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.name.clone(),
                    r.unit.format(r.before),
                    r.unit.format(r.after),
                    r.ratio
                        .map_or_else(|| "from 0".into(), |x| format!("{x:.2}x")),
                ]
            })
            .collect();
        let header = ["metric", "before", "after", "ratio"].map(String::from);
        let mut width = [0usize; 4];
        for row in std::iter::once(&header).chain(&cells) {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, row: &[String; 4], mark: &str| {
            let text = format!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}{mark}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2],
                w3 = width[3],
            );
            writeln!(f, "{}", text.trim_end())
        };
        line(f, &header, "")?;
        for (row, r) in cells.iter().zip(&self.rows) {
            line(f, row, if r.regression { "  <- regression" } else { "" })?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        let t = percent(self.threshold);
        match self.regressions().count() {
            0 => write!(f, "no regression beyond {t}"),
            1 => write!(f, "1 regression beyond {t}"),
            n => write!(f, "{n} regressions beyond {t}"),
        }
    }
}

/// Why a report could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a loadtest report: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: not a loadtest report: it has no format number", path.display())]
    NoFormat { path: PathBuf },
    #[error("{}: report format {found}, but this loadtest reads format {FORMAT}", path.display())]
    Format { path: PathBuf, found: u64 },
}

/// Reads a `report.json` written by `loadtest run`.
pub fn read_report(path: &Path) -> Result<Report, CompareError> {
    let text = std::fs::read_to_string(path).map_err(|source| CompareError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_report(&text, path)
}

/// Parses report JSON; `origin` names it in errors. The format number is checked first,
/// so a report of another version gets that message rather than a missing field.
pub fn parse_report(text: &str, origin: &Path) -> Result<Report, CompareError> {
    let json = |source| CompareError::Json {
        path: origin.to_path_buf(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(json)?;
    match value.get("format").and_then(serde_json::Value::as_u64) {
        None => Err(CompareError::NoFormat {
            path: origin.to_path_buf(),
        }),
        Some(found) if found != u64::from(FORMAT) => Err(CompareError::Format {
            path: origin.to_path_buf(),
            found,
        }),
        Some(_) => serde_json::from_value(value).map_err(json),
    }
}

#[cfg(test)]
mod tests;
