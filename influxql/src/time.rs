//! Time in InfluxQL conditions: the literals a comparison with `time` takes, and the range
//! a condition's top-level `AND`ed time comparisons allow. The TSDB node's executor scans by
//! it and the gateway's query cache cuts dashboard queries into buckets by it, so both read a
//! condition's time the same way.
//!
//! InfluxDB 1.x accepts, when a string is compared with `time`, RFC3339 with optional
//! fractional seconds and offset (`2006-01-02T15:04:05.999999999Z07:00`), a date and time
//! separated by a space without offset (`2006-01-02 15:04:05.999999999`, taken as UTC), and
//! a bare date (`2006-01-02`, midnight UTC).

use crate::ast::{BinaryOp, Expr};
use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Nanoseconds since the epoch for a time literal, or `None` if it is not one.
pub fn parse_time_literal(s: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return dt.timestamp_nanos_opt();
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        return dt.and_utc().timestamp_nanos_opt();
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt();
    }
    None
}

/// Go's `time.RFC3339Nano` in UTC: fractional seconds with trailing zeros removed.
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000) as u32;
    let Some(dt) = chrono::DateTime::from_timestamp(secs, frac) else {
        return ns.to_string();
    };
    let mut s = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    if frac != 0 {
        let digits = format!("{frac:09}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// What one unit of an `epoch=` query parameter is in nanoseconds (`ns`, `u`/`µ`, `ms`,
/// `s`, `m`, `h`, as InfluxDB 1.x takes them); `None` for anything else.
pub fn epoch_unit_ns(epoch: &str) -> Option<i64> {
    Some(match epoch {
        "n" | "ns" => 1,
        "u" | "us" | "µ" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Folds a time expression to nanoseconds: `'2000-01-01T00:00:00Z'`, `946684800000000000`,
/// `1500000000s`, `now()`, and `+`/`-` of those with durations.
pub fn const_time(e: &Expr, now: i64) -> Option<i64> {
    match e {
        Expr::String(s) => parse_time_literal(s),
        Expr::Integer(i) => Some(*i),
        Expr::Float(f) => Some(*f as i64),
        Expr::Duration(d) => Some(*d),
        Expr::Call { name, args } if name == "now" && args.is_empty() => Some(now),
        Expr::Paren(inner) => const_time(inner, now),
        Expr::Binary { op, lhs, rhs } => {
            let (a, b) = (const_time(lhs, now)?, const_time(rhs, now)?);
            match op {
                BinaryOp::Add => a.checked_add(b),
                BinaryOp::Sub => a.checked_sub(b),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The time range a condition allows, from the comparisons with `time` that are joined to
/// the rest by `AND` at the top level: `(min, max)` inclusive. Comparisons under `OR` are
/// left to per-row evaluation.
pub fn time_range(cond: Option<&Expr>, now: i64) -> Result<(Option<i64>, Option<i64>), String> {
    let mut lo: Option<i64> = None;
    let mut hi: Option<i64> = None;
    let mut stack: Vec<&Expr> = cond.into_iter().collect();
    while let Some(e) = stack.pop() {
        match e {
            Expr::Paren(inner) => stack.push(inner),
            Expr::Binary {
                op: BinaryOp::And,
                lhs,
                rhs,
            } => {
                stack.push(lhs);
                stack.push(rhs);
            }
            Expr::Binary { op, lhs, rhs } if lhs.is_time_ref() || rhs.is_time_ref() => {
                let (other, op) = if lhs.is_time_ref() {
                    (rhs, *op)
                } else {
                    (lhs, flip(*op))
                };
                let t = const_time(other, now)
                    .ok_or_else(|| format!("invalid time comparison: {e}"))?;
                let (l, h) = match op {
                    BinaryOp::Gt => (t.checked_add(1), None),
                    BinaryOp::Gte => (Some(t), None),
                    BinaryOp::Lt => (None, t.checked_sub(1)),
                    BinaryOp::Lte => (None, Some(t)),
                    BinaryOp::Eq => (Some(t), Some(t)),
                    _ => (None, None),
                };
                if let Some(l) = l {
                    lo = Some(lo.map_or(l, |x| x.max(l)));
                }
                if let Some(h) = h {
                    hi = Some(hi.map_or(h, |x| x.min(h)));
                }
            }
            _ => {}
        }
    }
    Ok((lo, hi))
}

fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Gte => BinaryOp::Lte,
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Lte => BinaryOp::Gte,
        other => other,
    }
}

/// The condition without its top-level `AND`ed time comparisons (they become the range).
pub fn strip_time(cond: &Expr) -> Option<Expr> {
    match cond {
        Expr::Paren(inner) => strip_time(inner),
        Expr::Binary {
            op: BinaryOp::And,
            lhs,
            rhs,
        } => match (strip_time(lhs), strip_time(rhs)) {
            (Some(a), Some(b)) => Some(Expr::binary(BinaryOp::And, a, b)),
            (a, b) => a.or(b),
        },
        Expr::Binary { op, lhs, rhs }
            if op.is_condition()
                && !matches!(op, BinaryOp::And | BinaryOp::Or)
                && (lhs.is_time_ref() || rhs.is_time_ref()) =>
        {
            None
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_parses_to_utc_nanoseconds() {
        assert_eq!(
            parse_time_literal("1970-01-01T00:00:01Z"),
            Some(1_000_000_000)
        );
        assert_eq!(
            parse_time_literal("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert_eq!(parse_time_literal("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_time_literal("1970-01-01 00:00:02"),
            Some(2_000_000_000)
        );
        assert_eq!(parse_time_literal("1970-01-02"), Some(86_400_000_000_000));
        assert_eq!(parse_time_literal("yesterday"), None);
    }

    fn condition(q: &str) -> Expr {
        match crate::parse_query(q).unwrap().remove(0) {
            crate::ast::Statement::Select(s) => s.condition.unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_range_comes_from_top_level_and_comparisons_in_every_form() {
        let now = 10_000_000_000_000;
        let c = condition(
            "SELECT v FROM m WHERE time >= 1000ms AND host = 'a' AND (time < now() - 1s)",
        );
        assert_eq!(
            time_range(Some(&c), now),
            Ok((Some(1_000_000_000), Some(now - 1_000_000_001)))
        );
        let c = condition("SELECT v FROM m WHERE '1970-01-01T00:00:05Z' < time AND time <= 9s");
        assert_eq!(
            time_range(Some(&c), now),
            Ok((Some(5_000_000_001), Some(9_000_000_000)))
        );
        // Under OR a comparison does not bound the range.
        let c = condition("SELECT v FROM m WHERE time > 5s OR host = 'a'");
        assert_eq!(time_range(Some(&c), now), Ok((None, None)));
        let c = condition("SELECT v FROM m WHERE time > host");
        assert!(time_range(Some(&c), now).is_err());
    }

    #[test]
    fn stripping_time_leaves_the_rest_of_the_condition() {
        let c = condition("SELECT v FROM m WHERE time >= 1s AND host = 'a' AND time < 2s");
        assert_eq!(
            strip_time(&c).map(|e| e.to_string()),
            Some("host = 'a'".to_string())
        );
        let only_time = condition("SELECT v FROM m WHERE time >= 1s AND time < 2s");
        assert_eq!(strip_time(&only_time), None);
    }
}
