//! Service-level objectives: lines like `p99 < 20ms` parsed, and judged against the
//! figures of a run.
//!
//! A line is `metric operator threshold`, spaces optional:
//!
//! | metric | threshold | unit of the verdict |
//! | --- | --- | --- |
//! | `p50`, `p90`, `p99`, `p99.9`, `min`, `mean`, `max` | a number with `us`, `ms` or `s` | `ms` |
//! | `error_rate` (5xx and transport errors), `rate_limited` (429s), shares of the requests | a number with `%`; a bare `0` is accepted | `%` |
//! | `achieved_rate` (or `rps`), answers per second | a number, with `/s`, `rps` or nothing | `/s` |
//!
//! Operators are `<`, `<=`, `>`, `>=`. Shares need `%` because a bare `0.1` could mean
//! 0.1% or 10%; only 0 means the same either way. A threshold is kept in the verdict's
//! unit, so `p99 < 1s` has threshold 1000 (ms).
//!
//! An objective over the latency fails when no request was answered, and one over a share
//! fails when no request was due: there is nothing to show that it was met.

use crate::report::{SloVerdict, Summary};
use std::fmt;
use std::str::FromStr;

/// What an objective measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    P50,
    P90,
    P99,
    P999,
    Min,
    Mean,
    Max,
    /// (5xx + transport errors) / requests.
    ErrorRate,
    /// 429 answers / requests.
    RateLimited,
    /// Answers per second.
    AchievedRate,
}

impl Metric {
    /// Every metric, in the order of the documentation.
    pub const ALL: [Metric; 10] = [
        Metric::P50,
        Metric::P90,
        Metric::P99,
        Metric::P999,
        Metric::Min,
        Metric::Mean,
        Metric::Max,
        Metric::ErrorRate,
        Metric::RateLimited,
        Metric::AchievedRate,
    ];

    /// The name operators write.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
            Metric::Min => "min",
            Metric::Mean => "mean",
            Metric::Max => "max",
            Metric::ErrorRate => "error_rate",
            Metric::RateLimited => "rate_limited",
            Metric::AchievedRate => "achieved_rate",
        }
    }

    /// The unit of its threshold and of its verdict.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::ErrorRate | Metric::RateLimited => "%",
            Metric::AchievedRate => "/s",
            _ => "ms",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Metric::ErrorRate | Metric::RateLimited => Kind::Share,
            Metric::AchievedRate => Kind::Rate,
            _ => Kind::Latency,
        }
    }

    /// Its value in `summary`, in [`Metric::unit`]; `None` when there is nothing to
    /// measure (no answer for a latency, no request for a share).
    pub fn measure(self, summary: &Summary) -> Option<f64> {
        let l = &summary.latency;
        let latency = |v: f64| (l.count > 0).then_some(v);
        // count * 100 is exact and the division rounds once, so a share that is exactly
        // the threshold compares equal to it.
        let share = |count: u64| {
            (summary.requests > 0).then(|| count as f64 * 100.0 / summary.requests as f64)
        };
        match self {
            Metric::P50 => latency(l.p50_ms),
            Metric::P90 => latency(l.p90_ms),
            Metric::P99 => latency(l.p99_ms),
            Metric::P999 => latency(l.p999_ms),
            Metric::Min => latency(l.min_ms),
            Metric::Mean => latency(l.mean_ms),
            Metric::Max => latency(l.max_ms),
            Metric::ErrorRate => share(
                summary
                    .server_errors
                    .saturating_add(summary.transport_errors),
            ),
            Metric::RateLimited => share(summary.rate_limited),
            Metric::AchievedRate => Some(summary.achieved_rate),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Latency,
    Share,
    Rate,
}

/// How the measured value must compare with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    /// Whether `actual op threshold` holds.
    pub fn holds(self, actual: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => actual < threshold,
            Op::Le => actual <= threshold,
            Op::Gt => actual > threshold,
            Op::Ge => actual >= threshold,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One objective.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// As written (trimmed).
    pub text: String,
    pub metric: Metric,
    pub op: Op,
    /// In the metric's unit: ms, % or /s.
    pub threshold: f64,
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A line that is not an objective, with the 1-based column (in characters) of the
/// problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SLO {text:?} at column {column}: {message}")]
pub struct SloError {
    pub text: String,
    pub column: usize,
    pub message: String,
}

impl FromStr for Slo {
    type Err = SloError;

    fn from_str(text: &str) -> Result<Slo, SloError> {
        parse(text)
    }
}

/// Reads the line from left to right, one production at a time.
struct Cursor<'a> {
    text: &'a str,
    /// Byte offset of the next character.
    at: usize,
}

impl<'a> Cursor<'a> {
    fn column(&self) -> usize {
        self.text[..self.at].chars().count() + 1
    }

    fn skip_spaces(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> (&'a str, usize) {
        let column = self.column();
        let rest = &self.text[self.at..];
        let len = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        self.at += len;
        (&rest[..len], column)
    }

    fn error(&self, column: usize, message: impl Into<String>) -> SloError {
        SloError {
            text: self.text.to_string(),
            column,
            message: message.into(),
        }
    }
}

const METRICS: &str =
    "p50, p90, p99, p99.9, min, mean, max, error_rate, rate_limited or achieved_rate";

/// Parses one objective, e.g. `p99 < 20ms`, `error_rate <= 0`, `achieved_rate >= 1900/s`.
///
/// ```
/// use loadtest::slo::{parse, Metric, Op};
///
/// let slo = parse("p99.9 < 1s").unwrap();
/// assert_eq!((slo.metric, slo.op, slo.threshold), (Metric::P999, Op::Lt, 1000.0));
/// assert_eq!(
///     parse("p99 << 2ms").unwrap_err().to_string(),
///     "invalid SLO \"p99 << 2ms\" at column 5: expected <, <=, > or >="
/// );
/// ```
pub fn parse(text: &str) -> Result<Slo, SloError> {
    let text = text.trim();
    let mut c = Cursor { text, at: 0 };
    let metric = metric(&mut c)?;
    c.skip_spaces();
    let op = operator(&mut c)?;
    c.skip_spaces();
    let threshold = threshold(&mut c, metric)?;
    c.skip_spaces();
    if c.at < text.len() {
        let column = c.column();
        return Err(c.error(
            column,
            format!("unexpected {:?} after the threshold", &text[c.at..]),
        ));
    }
    Ok(Slo {
        text: text.to_string(),
        metric,
        op,
        threshold,
    })
}

fn metric(c: &mut Cursor<'_>) -> Result<Metric, SloError> {
    let (word, column) = c.take_while(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.');
    if word.is_empty() {
        return Err(c.error(column, format!("expected a metric: {METRICS}")));
    }
    if word == "rps" {
        return Ok(Metric::AchievedRate);
    }
    if let Some(m) = Metric::ALL.into_iter().find(|m| m.as_str() == word) {
        return Ok(m);
    }
    let percentile = word
        .strip_prefix('p')
        .is_some_and(|n| n.parse::<f64>().is_ok());
    Err(c.error(
        column,
        if percentile {
            format!("{word} is not measured: the percentiles are p50, p90, p99 and p99.9")
        } else {
            format!("unknown metric {word:?}: expected {METRICS}")
        },
    ))
}

fn operator(c: &mut Cursor<'_>) -> Result<Op, SloError> {
    let (op, column) = c.take_while(|ch| matches!(ch, '<' | '>' | '=' | '!'));
    match op {
        "<" => Ok(Op::Lt),
        "<=" => Ok(Op::Le),
        ">" => Ok(Op::Gt),
        ">=" => Ok(Op::Ge),
        _ => Err(c.error(column, "expected <, <=, > or >=")),
    }
}

fn threshold(c: &mut Cursor<'_>, metric: Metric) -> Result<f64, SloError> {
    let (number, column) = c.take_while(|ch| ch.is_ascii_digit() || ch == '.');
    if number.is_empty() {
        return Err(c.error(column, "expected a number (0 or more)"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| c.error(column, format!("{number:?} is not a number")))?;
    c.skip_spaces();
    let (unit, unit_column) = c.take_while(|ch| !ch.is_whitespace());
    let bad_unit = |expected: &str| {
        if unit.is_empty() {
            c.error(unit_column, format!("{metric} needs a unit: {expected}"))
        } else {
            c.error(
                unit_column,
                format!("unknown unit {unit:?} for {metric}: expected {expected}"),
            )
        }
    };
    match metric.kind() {
        Kind::Latency => match unit {
            "us" | "µs" => Ok(value / 1000.0),
            "ms" => Ok(value),
            "s" => Ok(value * 1000.0),
            _ => Err(bad_unit("us, ms or s")),
        },
        Kind::Share => match unit {
            "%" if value <= 100.0 => Ok(value),
            "%" => Err(c.error(column, "a share is at most 100%")),
            "" if value == 0.0 => Ok(0.0),
            "" => Err(c.error(
                unit_column,
                format!("{metric} needs %: write {number}% (a bare number is accepted only for 0)"),
            )),
            _ => Err(bad_unit("%")),
        },
        Kind::Rate => match unit {
            "/s" | "rps" | "" => Ok(value),
            _ => Err(bad_unit("/s or rps")),
        },
    }
}

/// What the run made of one objective, judged on `overall` (the stages after warm-up).
pub fn judge(slo: &Slo, overall: &Summary) -> SloVerdict {
    let (actual, passed) = match slo.metric.measure(overall) {
        Some(actual) => (actual, slo.op.holds(actual, slo.threshold)),
        None => (0.0, false),
    };
    SloVerdict {
        text: slo.text.clone(),
        actual,
        threshold: slo.threshold,
        unit: slo.metric.unit().to_string(),
        passed,
    }
}

/// Every objective's verdict, in order.
pub fn judge_all(slos: &[Slo], overall: &Summary) -> Vec<SloVerdict> {
    slos.iter().map(|s| judge(s, overall)).collect()
}

#[cfg(test)]
mod tests;
