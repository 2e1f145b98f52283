//! Transformations: `derivative`, `non_negative_derivative`, `difference`,
//! `non_negative_difference`, `moving_average`, `cumulative_sum` and `elapsed`, over a raw
//! field or over an aggregate inside `GROUP BY time()`, as InfluxDB 1.x computes them.
//!
//! A statement whose columns are transformations runs in two steps: an inner `SELECT` of
//! what they read (the raw fields, or the aggregates per bucket, `fill()` applied) through
//! `select.rs`, then each column's function over each series' rows in output order. As in
//! InfluxDB:
//!
//! - null values (empty buckets under `fill(null)`) are skipped, not transformed;
//! - under `GROUP BY time()`, every function but `cumulative_sum` reads the bucket before
//!   the range (after it, with `ORDER BY time DESC`), so the first bucket has a value, and
//!   rows outside the range are dropped afterwards;
//! - `derivative`'s unit defaults to the `GROUP BY` interval (1 s without one); `elapsed`'s
//!   to 1 ns;
//! - `LIMIT` and `OFFSET` count the transformed rows.
//!
//! The arithmetic follows InfluxDB's reducers (`query/functions.go`) step for step, so that
//! float results are equal to the last bit: the moving average keeps a running sum.

use super::select;
use crate::query::result::{ResultSeries, Value};
use crate::storage::catalog::Catalog;
use influxql::ast::{BinaryOp, Expr, Field, SelectStatement};

type StatementError = String;

/// A transformation function.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Derivative { non_negative: bool },
    Difference { non_negative: bool },
    MovingAverage(usize),
    CumulativeSum,
    Elapsed,
}

impl Kind {
    /// Whether the inner query reads the bucket before the range (InfluxDB's
    /// `buildExprIterator` moves the start one interval back for these).
    fn reads_bucket_before(self) -> bool {
        !matches!(self, Kind::CumulativeSum)
    }
}

/// One column of the statement: its function, what it reads, its unit.
#[derive(Debug, Clone)]
struct Column {
    kind: Kind,
    /// The field or the aggregate call it reads.
    input: Expr,
    unit_ns: Option<i64>,
    name: String,
}

const NAMES: [&str; 7] = [
    "derivative",
    "non_negative_derivative",
    "difference",
    "non_negative_difference",
    "moving_average",
    "cumulative_sum",
    "elapsed",
];

/// Whether a field is a transformation call.
fn is_transform(e: &Expr) -> bool {
    matches!(e, Expr::Call { name, .. } if NAMES.contains(&name.as_str()))
}

/// Runs a `SELECT`: with transformations here, any other through `select.rs`.
pub fn select(
    catalog: &Catalog,
    stmt: &SelectStatement,
    default_db: &str,
    now: i64,
) -> Result<Vec<ResultSeries>, StatementError> {
    if !stmt.fields.iter().any(|f| is_transform(&f.expr)) {
        return select::select(catalog, stmt, default_db, now);
    }
    let grid = stmt.group_by_interval();
    let interval = grid.map(|(i, _)| i);
    let columns = columns(stmt, interval)?;
    let ascending = stmt.order_by.as_ref().is_none_or(|o| o.ascending);

    // The inner statement: each distinct input once, aliased by position.
    let mut inputs: Vec<Expr> = Vec::new();
    for c in &columns {
        if !inputs.contains(&c.input) {
            inputs.push(c.input.clone());
        }
    }
    let mut inner = stmt.clone();
    inner.fields = inputs
        .iter()
        .enumerate()
        .map(|(i, e)| Field {
            expr: e.clone(),
            alias: Some(format!("__input{i}")),
        })
        .collect();
    inner.limit = None;
    inner.offset = None;
    let (lo, hi) = influxql::time::time_range(stmt.condition.as_ref(), now)?;
    let mut keep = (lo, hi);
    if let Some(step) = interval {
        // GROUP BY time() without an upper bound ends now, as `select.rs` ends it.
        let hi = hi.unwrap_or(now);
        // Rows are kept from the start of the range's first bucket, which may lie before
        // the lower bound (InfluxDB prints a bucket at its start).
        let offset = grid.map_or(0, |(_, o)| o);
        keep = (
            lo.map(|l| super::fill::bucket_start(l, step, offset)),
            Some(hi),
        );
        if columns.iter().any(|c| c.kind.reads_bucket_before()) {
            let (lo, hi) = if ascending {
                (lo.map(|l| l.saturating_sub(step)), hi)
            } else {
                (lo, hi.saturating_add(step))
            };
            inner.condition = with_time_range(stmt.condition.as_ref(), lo, Some(hi));
        }
    }
    let series = select::select(catalog, &inner, default_db, now)?;

    let names = unique_names(&columns);
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let transformed: Vec<Vec<(i64, Value)>> = columns
            .iter()
            .map(|c| {
                let k = inputs.iter().position(|e| *e == c.input).unwrap_or(0);
                let points: Vec<(i64, &Value)> = s
                    .values
                    .iter()
                    .filter_map(|row| match (row.first(), row.get(k + 1)) {
                        (Some(Value::Time(t)), Some(v)) if !matches!(v, Value::Null) => {
                            Some((*t, v))
                        }
                        _ => None,
                    })
                    .collect();
                let unit = c.unit_ns.unwrap_or(match c.kind {
                    Kind::Elapsed => 1,
                    _ => interval.unwrap_or(1_000_000_000),
                });
                apply(c.kind, &points, unit, ascending)
            })
            .collect();
        let rows = join(&transformed, keep, ascending);
        let rows: Vec<Vec<Value>> = rows
            .into_iter()
            .skip(stmt.offset.unwrap_or(0) as usize)
            .take(stmt.limit.map_or(usize::MAX, |l| l as usize))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mut col_names = vec!["time".to_string()];
        col_names.extend(names.iter().cloned());
        out.push(ResultSeries {
            name: s.name,
            tags: s.tags,
            columns: col_names,
            values: rows,
        });
    }
    Ok(out)
}

/// The statement's columns, every one a transformation, checked as InfluxDB checks them.
fn columns(stmt: &SelectStatement, interval: Option<i64>) -> Result<Vec<Column>, StatementError> {
    stmt.fields
        .iter()
        .map(|f| {
            let Expr::Call { name, args } = &f.expr else {
                return Err(format!(
                    "{} beside a transformation is not supported by this node: every column must be one",
                    f.expr
                ));
            };
            if !NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "{name}() beside a transformation is not supported by this node: every column must be one"
                ));
            }
            let (kind, unit_ns) = kind_of(name, args)?;
            let input = args[0].clone();
            match (&input, interval) {
                (Expr::VarRef { .. }, None) | (Expr::Call { .. }, Some(_)) => {}
                (Expr::Call { .. }, None) => {
                    return Err(format!("{name} aggregate requires a GROUP BY interval"))
                }
                (_, Some(_)) => {
                    return Err(format!(
                        "aggregate function required inside the call to {name}"
                    ))
                }
                (_, None) => {
                    return Err(format!("expected field argument in {name}()"));
                }
            }
            Ok(Column {
                kind,
                input,
                unit_ns,
                name: f.alias.clone().unwrap_or_else(|| name.clone()),
            })
        })
        .collect()
}

/// The function named `name` with `args`, and its unit if one is given.
fn kind_of(name: &str, args: &[Expr]) -> Result<(Kind, Option<i64>), StatementError> {
    let exactly = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "invalid number of arguments for {name}, expected {n}, got {}",
                args.len()
            ))
        }
    };
    let unit = || -> Result<Option<i64>, StatementError> {
        match args.len() {
            1 => Ok(None),
            2 => match &args[1] {
                Expr::Duration(d) if *d > 0 => Ok(Some(*d)),
                Expr::Duration(_) => Err(format!("duration argument must be positive, got {}", args[1])),
                other => Err(format!(
                    "second argument to {name} must be a duration, got {}",
                    literal_kind(other)
                )),
            },
            n => Err(format!(
                "invalid number of arguments for {name}, expected at least 1 but no more than 2, got {n}"
            )),
        }
    };
    Ok(match name {
        "derivative" | "non_negative_derivative" => (
            Kind::Derivative {
                non_negative: name.starts_with("non_negative"),
            },
            unit()?,
        ),
        "elapsed" => (Kind::Elapsed, unit()?),
        "difference" | "non_negative_difference" => {
            exactly(1)?;
            (
                Kind::Difference {
                    non_negative: name.starts_with("non_negative"),
                },
                None,
            )
        }
        "cumulative_sum" => {
            exactly(1)?;
            (Kind::CumulativeSum, None)
        }
        "moving_average" => {
            exactly(2)?;
            let n = match &args[1] {
                Expr::Integer(n) => *n,
                other => {
                    return Err(format!(
                        "second argument for moving_average must be an integer, got {}",
                        literal_kind(other)
                    ))
                }
            };
            if n <= 1 {
                return Err(format!(
                    "moving_average window must be greater than 1, got {n}"
                ));
            }
            (
                Kind::MovingAverage(usize::try_from(n).unwrap_or(usize::MAX)),
                None,
            )
        }
        other => return Err(format!("undefined function {other}()")),
    })
}

/// How InfluxDB (Go) names the type of a literal in its errors.
fn literal_kind(e: &Expr) -> &'static str {
    match e {
        Expr::String(_) => "*influxql.StringLiteral",
        Expr::Integer(_) => "*influxql.IntegerLiteral",
        Expr::Float(_) => "*influxql.NumberLiteral",
        Expr::Boolean(_) => "*influxql.BooleanLiteral",
        Expr::Duration(_) => "*influxql.DurationLiteral",
        Expr::VarRef { .. } => "*influxql.VarRef",
        Expr::Call { .. } => "*influxql.Call",
        _ => "*influxql.Expr",
    }
}

/// Column names, made unique as InfluxDB makes them (`difference`, `difference_1`).
fn unique_names(columns: &[Column]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(columns.len());
    for c in columns {
        let mut name = c.name.clone();
        let mut n = 0;
        while out.contains(&name) {
            n += 1;
            name = format!("{}_{n}", c.name);
        }
        out.push(name);
    }
    out
}

/// `cond` with its time bounds replaced by `[lo, hi]` (inclusive).
fn with_time_range(cond: Option<&Expr>, lo: Option<i64>, hi: Option<i64>) -> Option<Expr> {
    let time = || Expr::VarRef {
        name: "time".into(),
        data_type: None,
    };
    let mut parts: Vec<Expr> = cond
        .and_then(influxql::time::strip_time)
        .map(|rest| Expr::Paren(Box::new(rest)))
        .into_iter()
        .collect();
    if let Some(lo) = lo {
        parts.push(Expr::binary(BinaryOp::Gte, time(), Expr::Integer(lo)));
    }
    if let Some(hi) = hi {
        parts.push(Expr::binary(BinaryOp::Lte, time(), Expr::Integer(hi)));
    }
    parts
        .into_iter()
        .reduce(|a, b| Expr::binary(BinaryOp::And, a, b))
}

/// The rows of a series: each time any column has a value at, in output order, within
/// `keep` (inclusive bounds), the columns' values or null.
fn join(
    columns: &[Vec<(i64, Value)>],
    keep: (Option<i64>, Option<i64>),
    ascending: bool,
) -> Vec<Vec<Value>> {
    let mut times: Vec<i64> = columns.iter().flatten().map(|(t, _)| *t).collect();
    times.sort_unstable();
    times.dedup();
    if !ascending {
        times.reverse();
    }
    let inside = |t: i64| keep.0.is_none_or(|lo| t >= lo) && keep.1.is_none_or(|hi| t <= hi);
    // Each column is in output order already: one cursor per column walks it along the
    // times (the first value at a time is the one shown, as before a merge of repeats).
    let before = |a: i64, b: i64| if ascending { a < b } else { a > b };
    let mut cursors = vec![0usize; columns.len()];
    let mut rows = Vec::with_capacity(times.len());
    for t in times {
        let mut row = Vec::with_capacity(columns.len() + 1);
        row.push(Value::Time(t));
        for (c, at) in columns.iter().zip(cursors.iter_mut()) {
            while c.get(*at).is_some_and(|(ct, _)| before(*ct, t)) {
                *at += 1;
            }
            let value = match c.get(*at) {
                Some((ct, v)) if *ct == t => v.clone(),
                _ => Value::Null,
            };
            while c.get(*at).is_some_and(|(ct, _)| *ct == t) {
                *at += 1;
            }
            row.push(value);
        }
        if inside(t) {
            rows.push(row);
        }
    }
    rows
}

/// One function over one column's points (non-null, in output order).
fn apply(kind: Kind, points: &[(i64, &Value)], unit_ns: i64, ascending: bool) -> Vec<(i64, Value)> {
    match kind {
        Kind::Derivative { non_negative } => pairs(points, |prev, curr| {
            let diff = curr.1.as_f64()? - prev.1.as_f64()?;
            let mut elapsed = curr.0 - prev.0;
            if !ascending {
                elapsed = -elapsed;
            }
            if non_negative && diff < 0.0 {
                return None;
            }
            Some(Value::Float(diff / (elapsed as f64 / unit_ns as f64)))
        }),
        Kind::Difference { non_negative } => pairs(points, |prev, curr| {
            let (value, negative) = match (prev.1, curr.1) {
                (Value::Integer(a), Value::Integer(b)) => {
                    let d = b.wrapping_sub(*a);
                    (Value::Integer(d), d < 0)
                }
                (Value::Unsigned(a), Value::Unsigned(b)) => {
                    (Value::Unsigned(b.wrapping_sub(*a)), b < a)
                }
                (a, b) => {
                    let d = b.as_f64()? - a.as_f64()?;
                    (Value::Float(d), d < 0.0)
                }
            };
            (!(non_negative && negative)).then_some(value)
        }),
        Kind::Elapsed => pairs(points, |prev, curr| {
            Some(Value::Integer((curr.0 - prev.0) / unit_ns))
        }),
        Kind::MovingAverage(n) => moving_average(points, n),
        Kind::CumulativeSum => cumulative_sum(points),
    }
}

/// Consecutive pairs of points, a point at the time of the one before it skipped (a
/// merged series may hold several: InfluxDB keeps the first); `f` gives the value at the
/// later point, or nothing.
fn pairs(
    points: &[(i64, &Value)],
    f: impl Fn((i64, &Value), (i64, &Value)) -> Option<Value>,
) -> Vec<(i64, Value)> {
    let mut out = Vec::new();
    let mut prev: Option<(i64, &Value)> = None;
    for &(t, v) in points {
        if let Some(p) = prev {
            if p.0 == t {
                continue;
            }
            if let Some(value) = f(p, (t, v)) {
                out.push((t, value));
            }
        }
        prev = Some((t, v));
    }
    out
}

/// InfluxDB's moving average: a ring of the last `n` values and a running sum (minus the
/// value leaving, plus the one entering), emitted once the ring is full.
fn moving_average(points: &[(i64, &Value)], n: usize) -> Vec<(i64, Value)> {
    let integers = points.iter().all(|(_, v)| matches!(v, Value::Integer(_)));
    let mut out = Vec::new();
    if integers {
        let mut ring: Vec<i64> = Vec::with_capacity(n.min(points.len()));
        let (mut sum, mut pos) = (0i64, 0usize);
        for &(t, v) in points {
            let Value::Integer(x) = v else { continue };
            if ring.len() < n {
                ring.push(*x);
            } else {
                sum = sum.wrapping_sub(ring[pos]);
                ring[pos] = *x;
            }
            sum = sum.wrapping_add(*x);
            pos = (pos + 1) % n;
            if ring.len() == n {
                out.push((t, Value::Float(sum as f64 / n as f64)));
            }
        }
        return out;
    }
    let mut ring: Vec<f64> = Vec::with_capacity(n.min(points.len()));
    let (mut sum, mut pos) = (0f64, 0usize);
    for &(t, v) in points {
        let Some(x) = v.as_f64() else { continue };
        if ring.len() < n {
            ring.push(x);
        } else {
            sum -= ring[pos];
            ring[pos] = x;
        }
        sum += x;
        pos = (pos + 1) % n;
        if ring.len() == n {
            out.push((t, Value::Float(sum / n as f64)));
        }
    }
    out
}

/// A running sum, in the values' type.
fn cumulative_sum(points: &[(i64, &Value)]) -> Vec<(i64, Value)> {
    let mut out = Vec::with_capacity(points.len());
    let mut sum: Option<Value> = None;
    for &(t, v) in points {
        let next = match (&sum, v) {
            (None, v) => v.clone(),
            (Some(Value::Integer(a)), Value::Integer(b)) => Value::Integer(a.wrapping_add(*b)),
            (Some(Value::Unsigned(a)), Value::Unsigned(b)) => Value::Unsigned(a.wrapping_add(*b)),
            (Some(a), b) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => Value::Float(a + b),
                _ => continue,
            },
        };
        out.push((t, next.clone()));
        sum = Some(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, Value)]) -> Vec<(i64, &Value)> {
        v.iter().map(|(t, v)| (*t, v)).collect()
    }

    #[test]
    fn derivative_divides_by_the_elapsed_time_in_the_unit_and_skips_repeated_times() {
        let v = [
            (0, Value::Integer(100)),
            (10, Value::Integer(160)),
            (10, Value::Integer(999)),
            (30, Value::Integer(50)),
        ];
        let d = apply(
            Kind::Derivative {
                non_negative: false,
            },
            &pts(&v),
            10,
            true,
        );
        assert_eq!(d, vec![(10, Value::Float(60.0)), (30, Value::Float(-55.0))]);
        let nn = apply(Kind::Derivative { non_negative: true }, &pts(&v), 10, true);
        assert_eq!(nn, vec![(10, Value::Float(60.0))]);
    }

    #[test]
    fn columns_join_on_their_times_in_either_order_within_the_range() {
        let a = vec![
            (10, Value::Integer(1)),
            (20, Value::Integer(2)),
            (20, Value::Integer(9)),
        ];
        let b = vec![(20, Value::Integer(5)), (30, Value::Integer(6))];
        let rows = join(&[a.clone(), b.clone()], (Some(15), None), true);
        assert_eq!(
            rows,
            vec![
                vec![Value::Time(20), Value::Integer(2), Value::Integer(5)],
                vec![Value::Time(30), Value::Null, Value::Integer(6)],
            ]
        );
        let rev = |c: &[(i64, Value)]| c.iter().rev().cloned().collect::<Vec<_>>();
        let rows = join(&[rev(&a), rev(&b)], (None, None), false);
        let times: Vec<&Value> = rows.iter().map(|r| &r[0]).collect();
        assert_eq!(
            times,
            [&Value::Time(30), &Value::Time(20), &Value::Time(10)]
        );
        assert_eq!(
            rows[1],
            vec![Value::Time(20), Value::Integer(9), Value::Integer(5)]
        );
    }

    #[test]
    fn the_moving_average_keeps_a_running_sum_as_influxdb_does() {
        let v = [
            (1, Value::Float(0.1)),
            (2, Value::Float(0.2)),
            (3, Value::Float(0.3)),
        ];
        let m = apply(Kind::MovingAverage(2), &pts(&v), 1, true);
        // (0.1 + 0.2 - 0.1 + 0.3) / 2, not (0.2 + 0.3) / 2.
        let running = ((0.1f64 + 0.2) - 0.1 + 0.3) / 2.0;
        assert_eq!(
            m,
            vec![
                (2, Value::Float(0.15000000000000002)),
                (3, Value::Float(running))
            ]
        );
    }

    #[test]
    fn difference_and_cumulative_sum_keep_integers_and_elapsed_counts_in_the_unit() {
        let v = [(0, Value::Integer(5)), (20, Value::Integer(3))];
        assert_eq!(
            apply(
                Kind::Difference {
                    non_negative: false
                },
                &pts(&v),
                1,
                true
            ),
            vec![(20, Value::Integer(-2))]
        );
        assert!(apply(Kind::Difference { non_negative: true }, &pts(&v), 1, true).is_empty());
        assert_eq!(
            apply(Kind::CumulativeSum, &pts(&v), 1, true),
            vec![(0, Value::Integer(5)), (20, Value::Integer(8))]
        );
        assert_eq!(
            apply(Kind::Elapsed, &pts(&v), 7, true),
            vec![(20, Value::Integer(2))]
        );
    }
}
