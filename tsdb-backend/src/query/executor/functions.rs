//! InfluxQL aggregate and selector functions over the points of one bucket.
//!
//! Each function takes the bucket's `(time, value)` pairs in time order and returns one
//! value, plus, for selectors, the time of the point it selected. Types follow InfluxDB
//! 1.x: `sum`, `min`, `max`, `spread`, `first`, `last` and `percentile` keep the field's
//! type; `mean`, `median` and `stddev` are floats; `count` is an integer.

use crate::model::FieldValue;
use crate::query::result::Value;

/// An aggregate or selector the engine knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Function {
    Count,
    Sum,
    Mean,
    Median,
    Min,
    Max,
    First,
    Last,
    Spread,
    Stddev,
    /// The value at this percentile (0..=100), nearest-rank as InfluxDB computes it.
    Percentile(f64),
    /// The most frequent value (any type).
    Mode,
    /// The area under the points by trapezoids, per this many nanoseconds.
    Integral(i64),
}

impl Function {
    /// Looks a function up by its InfluxQL name (case-insensitive); `percentile` needs its
    /// argument separately.
    pub fn by_name(name: &str) -> Option<Function> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" => Function::Count,
            "sum" => Function::Sum,
            "mean" => Function::Mean,
            "median" => Function::Median,
            "min" => Function::Min,
            "max" => Function::Max,
            "first" => Function::First,
            "last" => Function::Last,
            "spread" => Function::Spread,
            "stddev" => Function::Stddev,
            "percentile" => Function::Percentile(0.0),
            "mode" => Function::Mode,
            "integral" => Function::Integral(1_000_000_000),
            _ => return None,
        })
    }

    /// Selectors return one of the input points, and with it its time.
    pub fn is_selector(self) -> bool {
        matches!(
            self,
            Function::Min
                | Function::Max
                | Function::First
                | Function::Last
                | Function::Percentile(_)
        )
    }

    /// Whether the function accepts values of this kind (InfluxDB refuses e.g. `mean` of
    /// strings).
    pub fn accepts(self, v: &FieldValue) -> bool {
        match self {
            Function::Count | Function::First | Function::Last | Function::Mode => true,
            Function::Min | Function::Max => !matches!(v, FieldValue::String(_)),
            _ => matches!(
                v,
                FieldValue::Float(_) | FieldValue::Integer(_) | FieldValue::Unsigned(_)
            ),
        }
    }

    /// Computes the function over `points` (time order). `None` when the bucket has no
    /// point; `stddev` of a single point is a null value.
    pub fn apply(self, points: &[(i64, &FieldValue)]) -> Option<(Value, Option<i64>)> {
        if points.is_empty() {
            return None;
        }
        let at = |i: usize| (cell(points[i].1), Some(points[i].0));
        Some(match self {
            Function::Count => (Value::Integer(points.len() as i64), None),
            Function::First => at(at_time_largest(points, false)?),
            Function::Last => at(at_time_largest(points, true)?),
            Function::Min => at(extreme(points, std::cmp::Ordering::Less)?),
            Function::Max => at(extreme(points, std::cmp::Ordering::Greater)?),
            Function::Sum => (sum(points)?, None),
            Function::Mean => {
                let vals = floats(points)?;
                (
                    Value::Float(vals.iter().sum::<f64>() / vals.len() as f64),
                    None,
                )
            }
            Function::Median => {
                let mut vals = floats(points)?;
                vals.sort_by(f64::total_cmp);
                let n = vals.len();
                let m = if n % 2 == 1 {
                    vals[n / 2]
                } else {
                    // InfluxDB averages the two middle values.
                    vals[n / 2 - 1] + (vals[n / 2] - vals[n / 2 - 1]) / 2.0
                };
                (Value::Float(m), None)
            }
            Function::Spread => {
                let lo = extreme(points, std::cmp::Ordering::Less)?;
                let hi = extreme(points, std::cmp::Ordering::Greater)?;
                (difference(points[hi].1, points[lo].1)?, None)
            }
            Function::Stddev => {
                let vals = floats(points)?;
                if vals.len() < 2 {
                    // A point with a null value, not no point: the row is still printed.
                    return Some((Value::Null, None));
                }
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>()
                    / (vals.len() - 1) as f64;
                (Value::Float(var.sqrt()), None)
            }
            Function::Mode => (mode(points)?, None),
            Function::Integral(unit) => (integral(points, unit)?, None),
            Function::Percentile(p) => {
                // Sort by value, stable on time, then nearest rank:
                // i = floor(n * p / 100 + 0.5) - 1 (InfluxDB's percentile reducer).
                let mut idx: Vec<usize> = (0..points.len()).collect();
                idx.sort_by(|&a, &b| {
                    compare(points[a].1, points[b].1).unwrap_or(std::cmp::Ordering::Equal)
                });
                let i = (points.len() as f64 * p / 100.0 + 0.5).floor() as i64 - 1;
                if i < 0 || i as usize >= points.len() {
                    return None;
                }
                at(idx[i as usize])
            }
        })
    }
}

/// Of the points at the time of the first (`from_end`: the last) point, which lie next to
/// it (several series of a group may have one there), the one with the largest value (the
/// earliest among equals): what InfluxDB's first and last reducers keep.
fn at_time_largest(points: &[(i64, &FieldValue)], from_end: bool) -> Option<usize> {
    let edge = if from_end {
        points.len().checked_sub(1)?
    } else {
        0
    };
    let t = points[edge].0;
    let run: Vec<usize> = if from_end {
        let start = points.partition_point(|p| p.0 < t);
        (start..points.len()).collect()
    } else {
        (0..points.partition_point(|p| p.0 <= t)).collect()
    };
    let mut best = *run.first()?;
    for &i in &run[1..] {
        if compare(points[i].1, points[best].1) == Some(std::cmp::Ordering::Greater) {
            best = i;
        }
    }
    Some(best)
}

/// InfluxDB's mode reducer, step for step: the points sorted by value (then time), runs of
/// equal values counted; a run takes over when it is more frequent than the best so far,
/// or as frequent and begun no later than the best's last point (so ties go to later
/// values in sort order, mostly). A run of one never takes over from the first.
fn mode(points: &[(i64, &FieldValue)]) -> Option<Value> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    idx.sort_by(|&a, &b| {
        compare(points[a].1, points[b].1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(points[a].0.cmp(&points[b].0))
    });
    let first = *idx.first()?;
    let same =
        |a: usize, b: usize| compare(points[a].1, points[b].1) == Some(std::cmp::Ordering::Equal);
    let (mut most_freq, mut curr_freq) = (0usize, 0usize);
    let (mut curr, mut most) = (first, first);
    let (mut most_time, mut curr_time) = (points[first].0, points[first].0);
    for &i in &idx {
        if !same(i, curr) {
            curr_freq = 1;
            curr = i;
            curr_time = points[i].0;
            continue;
        }
        curr_freq += 1;
        if most_freq > curr_freq || (most_freq == curr_freq && curr_time > most_time) {
            continue;
        }
        most_freq = curr_freq;
        most = i;
        most_time = points[i].0;
    }
    Some(cell(points[most].1))
}

/// The area under the points by trapezoids, `unit_ns` being one unit of time; points at the
/// time of the one before are skipped (InfluxDB's integral reducer without windows).
fn integral(points: &[(i64, &FieldValue)], unit_ns: i64) -> Option<Value> {
    let mut sum = 0.0;
    let mut prev: Option<(i64, f64)> = None;
    for (t, v) in points {
        let v = as_f64(v)?;
        match prev {
            Some((pt, _)) if pt == *t => {}
            Some((pt, pv)) => {
                let elapsed = (t - pt) as f64 / unit_ns as f64;
                sum += 0.5 * (v + pv) * elapsed;
            }
            None => {}
        }
        prev = Some((*t, v));
    }
    Some(Value::Float(sum))
}

/// A stored value as a result cell.
pub fn cell(v: &FieldValue) -> Value {
    match v {
        FieldValue::Float(f) => Value::Float(*f),
        FieldValue::Integer(i) => Value::Integer(*i),
        FieldValue::Unsigned(u) => Value::Unsigned(*u),
        FieldValue::Boolean(b) => Value::Boolean(*b),
        FieldValue::String(s) => Value::String(s.to_string()),
    }
}

pub(super) fn as_f64(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Float(f) => Some(*f),
        FieldValue::Integer(i) => Some(*i as f64),
        FieldValue::Unsigned(u) => Some(*u as f64),
        _ => None,
    }
}

fn floats(points: &[(i64, &FieldValue)]) -> Option<Vec<f64>> {
    points.iter().map(|(_, v)| as_f64(v)).collect()
}

pub(super) fn compare(a: &FieldValue, b: &FieldValue) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (FieldValue::Integer(x), FieldValue::Integer(y)) => Some(x.cmp(y)),
        (FieldValue::Unsigned(x), FieldValue::Unsigned(y)) => Some(x.cmp(y)),
        (FieldValue::Boolean(x), FieldValue::Boolean(y)) => Some(x.cmp(y)),
        (FieldValue::String(x), FieldValue::String(y)) => Some(x.cmp(y)),
        _ => as_f64(a)?.partial_cmp(&as_f64(b)?),
    }
}

/// The index of the smallest (`Less`) or largest (`Greater`) value; the earliest wins ties,
/// as InfluxDB's min/max selectors keep the first point they saw.
fn extreme(points: &[(i64, &FieldValue)], want: std::cmp::Ordering) -> Option<usize> {
    let mut best = 0;
    for i in 1..points.len() {
        if compare(points[i].1, points[best].1)? == want {
            best = i;
        }
    }
    Some(best)
}

fn sum(points: &[(i64, &FieldValue)]) -> Option<Value> {
    match points[0].1 {
        FieldValue::Integer(_) => {
            let mut s: i64 = 0;
            for (_, v) in points {
                if let FieldValue::Integer(i) = v {
                    s = s.wrapping_add(*i);
                }
            }
            Some(Value::Integer(s))
        }
        FieldValue::Unsigned(_) => {
            let mut s: u64 = 0;
            for (_, v) in points {
                if let FieldValue::Unsigned(u) = v {
                    s = s.wrapping_add(*u);
                }
            }
            Some(Value::Unsigned(s))
        }
        FieldValue::Float(_) => Some(Value::Float(floats(points)?.iter().sum())),
        _ => None,
    }
}

pub(super) fn difference(hi: &FieldValue, lo: &FieldValue) -> Option<Value> {
    Some(match (hi, lo) {
        (FieldValue::Integer(a), FieldValue::Integer(b)) => Value::Integer(a.wrapping_sub(*b)),
        (FieldValue::Unsigned(a), FieldValue::Unsigned(b)) => Value::Unsigned(a.wrapping_sub(*b)),
        _ => Value::Float(as_f64(hi)? - as_f64(lo)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(vals: &[FieldValue]) -> Vec<(i64, &FieldValue)> {
        vals.iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 10, v))
            .collect()
    }

    fn run(f: Function, vals: &[FieldValue]) -> Option<(Value, Option<i64>)> {
        f.apply(&pts(vals))
    }

    use FieldValue::{Float as F, Integer as I};

    #[test]
    fn integer_fields_keep_their_type_in_sum_min_max_and_spread() {
        let v = [I(3), I(-1), I(7)];
        assert_eq!(run(Function::Sum, &v), Some((Value::Integer(9), None)));
        assert_eq!(run(Function::Min, &v), Some((Value::Integer(-1), Some(10))));
        assert_eq!(run(Function::Max, &v), Some((Value::Integer(7), Some(20))));
        assert_eq!(run(Function::Spread, &v), Some((Value::Integer(8), None)));
        assert_eq!(run(Function::Mean, &v), Some((Value::Float(3.0), None)));
    }

    #[test]
    fn median_of_an_even_count_averages_the_middle_pair() {
        let v = [F(1.0), F(4.0), F(2.0), F(10.0)];
        assert_eq!(run(Function::Median, &v), Some((Value::Float(3.0), None)));
    }

    #[test]
    fn stddev_is_the_sample_deviation_and_needs_two_points() {
        let v = [
            F(2.0),
            F(4.0),
            F(4.0),
            F(4.0),
            F(5.0),
            F(5.0),
            F(7.0),
            F(9.0),
        ];
        let Some((Value::Float(s), None)) = run(Function::Stddev, &v) else {
            panic!("no stddev")
        };
        assert!((s - 2.138_089_935_299_395).abs() < 1e-12, "{s}");
        assert_eq!(run(Function::Stddev, &[F(1.0)]), Some((Value::Null, None)));
    }

    #[test]
    fn percentile_uses_nearest_rank_and_returns_the_points_time() {
        let v: Vec<FieldValue> = (1..=10).rev().map(|i| F(i as f64)).collect();
        // n = 10, p = 90: floor(10 * 0.9 + 0.5) - 1 = 8 → the 9th smallest, 9.0, at t = 10.
        assert_eq!(
            run(Function::Percentile(90.0), &v),
            Some((Value::Float(9.0), Some(10)))
        );
        assert_eq!(run(Function::Percentile(0.0), &v), None);
        assert_eq!(
            run(Function::Percentile(100.0), &v),
            Some((Value::Float(10.0), Some(0)))
        );
    }

    #[test]
    fn min_and_max_keep_the_earliest_point_on_ties() {
        let v = [F(1.0), F(1.0), F(5.0), F(5.0)];
        assert_eq!(run(Function::Min, &v), Some((Value::Float(1.0), Some(0))));
        assert_eq!(run(Function::Max, &v), Some((Value::Float(5.0), Some(20))));
    }

    #[test]
    fn first_and_last_keep_the_larger_of_two_points_at_one_time() {
        let (a, b, c, d) = (F(5.0), F(9.0), F(1.0), F(3.0));
        let pts = vec![(0, &a), (0, &b), (10, &c), (10, &d)];
        assert_eq!(
            Function::First.apply(&pts),
            Some((Value::Float(9.0), Some(0)))
        );
        assert_eq!(
            Function::Last.apply(&pts),
            Some((Value::Float(3.0), Some(10)))
        );
    }

    #[test]
    fn mode_breaks_ties_as_influxdbs_reducer_does() {
        // 1.5 and 2.5 twice each: 2.5's run began (at 10) before 1.5's last point (at 30).
        let v = [F(1.5), F(2.5), F(2.5), F(1.5), F(9.0)];
        assert_eq!(run(Function::Mode, &v), Some((Value::Float(2.5), None)));
        assert_eq!(
            run(Function::Mode, &[F(4.0), F(6.0), F(5.0)]),
            Some((Value::Float(4.0), None))
        );
    }

    #[test]
    fn integral_adds_trapezoids_in_the_unit() {
        let v = [F(1.5), F(2.5), F(2.5)];
        // Points 10 ns apart, per 10 ns: (1.5 + 2.5) / 2 + (2.5 + 2.5) / 2.
        assert_eq!(
            run(Function::Integral(10), &v),
            Some((Value::Float(4.5), None))
        );
    }

    #[test]
    fn an_empty_bucket_has_no_value() {
        assert_eq!(run(Function::Count, &[]), None);
        assert_eq!(run(Function::Sum, &[]), None);
    }
}
