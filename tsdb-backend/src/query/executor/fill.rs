//! `GROUP BY time()` buckets and `fill()`: pure functions over one series of buckets.

use crate::query::result::Value;
use influxql::ast::Fill;

/// The start of the bucket holding `t`, for windows of `interval` shifted by `offset`
/// (InfluxDB aligns windows on the epoch plus the offset).
pub fn bucket_start(t: i64, interval: i64, offset: i64) -> i64 {
    let shifted = t.wrapping_sub(offset);
    shifted
        .wrapping_sub(shifted.rem_euclid(interval))
        .wrapping_add(offset)
}

/// Fills the empty buckets (`None`) of one output column. `is_count` makes `fill(null)`
/// print `0`, as InfluxDB does for `count()`.
pub fn fill_column(values: &mut [Option<Value>], fill: &Fill, is_count: bool) {
    match fill {
        Fill::Null | Fill::None => {
            if is_count {
                for v in values.iter_mut().filter(|v| v.is_none()) {
                    *v = Some(Value::Integer(0));
                }
            }
        }
        Fill::Integer(n) => {
            for v in values.iter_mut().filter(|v| v.is_none()) {
                *v = Some(Value::Integer(*n));
            }
        }
        Fill::Float(f) => {
            for v in values.iter_mut().filter(|v| v.is_none()) {
                *v = Some(Value::Float(*f));
            }
        }
        Fill::Previous => {
            let mut last: Option<Value> = None;
            for v in values.iter_mut() {
                match v {
                    Some(x) => last = Some(x.clone()),
                    None => *v = last.clone(),
                }
            }
        }
        Fill::Linear => linear(values),
    }
}

/// Interpolates each run of empty buckets between two filled ones; runs at either end stay
/// empty. Integers interpolate with integer arithmetic, as InfluxDB's linear fill does.
fn linear(values: &mut [Option<Value>]) {
    let mut prev: Option<usize> = None;
    for i in 0..values.len() {
        if values[i].is_none() {
            continue;
        }
        if let Some(p) = prev {
            if i > p + 1 {
                for j in p + 1..i {
                    values[j] = interpolate(&values[p], &values[i], (j - p) as i64, (i - p) as i64);
                }
            }
        }
        prev = Some(i);
    }
}

fn interpolate(a: &Option<Value>, b: &Option<Value>, step: i64, steps: i64) -> Option<Value> {
    match (a, b) {
        (Some(Value::Integer(x)), Some(Value::Integer(y))) => {
            Some(Value::Integer(x + (y - x) * step / steps))
        }
        (Some(x), Some(y)) => {
            let (x, y) = (x.as_f64()?, y.as_f64()?);
            Some(Value::Float(x + (y - x) * step as f64 / steps as f64))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(x: f64) -> Option<Value> {
        Some(Value::Float(x))
    }

    #[test]
    fn buckets_align_on_the_epoch_plus_offset() {
        let s = 1_000_000_000;
        assert_eq!(bucket_start(17 * s, 10 * s, 0), 10 * s);
        assert_eq!(bucket_start(10 * s, 10 * s, 0), 10 * s);
        assert_eq!(bucket_start(10 * s - 1, 10 * s, 0), 0);
        assert_eq!(bucket_start(-1, 10 * s, 0), -10 * s);
        assert_eq!(bucket_start(20 * s, 60 * s, 15 * s), 15 * s);
        assert_eq!(bucket_start(10 * s, 60 * s, 15 * s), -45 * s);
        assert_eq!(bucket_start(20 * s, 60 * s, -15 * s), -15 * s);
    }

    #[test]
    fn fill_previous_repeats_the_last_value_and_leaves_leading_gaps() {
        let mut v = vec![None, f(1.0), None, f(3.0), None];
        fill_column(&mut v, &Fill::Previous, false);
        assert_eq!(v, vec![None, f(1.0), f(1.0), f(3.0), f(3.0)]);
    }

    #[test]
    fn fill_linear_interpolates_inner_gaps_only() {
        let mut v = vec![None, f(30.0), None, None, None, None, f(40.0), None];
        fill_column(&mut v, &Fill::Linear, false);
        assert_eq!(
            v,
            vec![
                None,
                f(30.0),
                f(32.0),
                f(34.0),
                f(36.0),
                f(38.0),
                f(40.0),
                None
            ]
        );
    }

    #[test]
    fn count_prints_zero_for_empty_buckets_unless_told_otherwise() {
        let mut v = vec![Some(Value::Integer(2)), None];
        fill_column(&mut v, &Fill::Null, true);
        assert_eq!(v[1], Some(Value::Integer(0)));
        let mut v = vec![Some(Value::Integer(2)), None];
        fill_column(&mut v, &Fill::Integer(42), true);
        assert_eq!(v[1], Some(Value::Integer(42)));
    }
}
