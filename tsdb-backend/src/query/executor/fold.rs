//! Aggregates folded point by point, so that a query over a long history holds one
//! accumulator per (call, bucket) instead of every point.
//!
//! A group's member series are read one after the other, each in time order, so points do
//! not arrive in the (time, series) order `Function::apply` sees them in. Each accumulator
//! therefore breaks ties by (time, series rank) itself, which gives the answer `apply`
//! gives over the sorted points: `first`/`last` keep the earliest/latest point (of two at
//! one time, the larger value, as InfluxDB), `min`/`max` the extreme value with the
//! earliest point among equals, `spread` the two extremes.
//! Sums and means of floats add in series order rather than time order: equal up to
//! rounding in the last bits, and the same on every node (the member order is the tag
//! order). `median`, `stddev`, `percentile`, `count(distinct)` and the multi-row calls need
//! every point and are not folded.

use super::functions::{as_f64, cell, compare, difference, Function};
use crate::model::FieldValue;
use crate::query::result::Value;
use std::cmp::Ordering;

/// A point's place in the order `apply` sees points in: time, then series rank.
type Place = (i64, usize);

/// Of two points at one time (two series of a group), `first` and `last` keep the larger
/// value, as InfluxDB's reducers do; equal values, the earlier series.
fn wins_tie(v: &FieldValue, best: &FieldValue, place: Place, best_place: Place) -> bool {
    match compare(v, best) {
        Some(Ordering::Greater) => true,
        Some(Ordering::Less) => false,
        _ => place < best_place,
    }
}

/// One call's running state over one bucket.
#[derive(Debug, Clone)]
pub enum Acc {
    Count(i64),
    /// `None` until a point; `Some(None)` after a value `sum` cannot add.
    Sum(Option<Option<FieldValue>>),
    Mean {
        sum: f64,
        n: u64,
        numeric: bool,
    },
    Extreme {
        want: Ordering,
        best: Option<(FieldValue, Place)>,
    },
    First(Option<(FieldValue, Place)>),
    Last(Option<(FieldValue, Place)>),
    Spread {
        lo: Option<FieldValue>,
        hi: Option<FieldValue>,
    },
}

impl Acc {
    /// The accumulator of `f`, or `None` when `f` needs every point.
    pub fn new(f: Function) -> Option<Acc> {
        Some(match f {
            Function::Count => Acc::Count(0),
            Function::Sum => Acc::Sum(None),
            Function::Mean => Acc::Mean {
                sum: 0.0,
                n: 0,
                numeric: true,
            },
            Function::Min => Acc::Extreme {
                want: Ordering::Less,
                best: None,
            },
            Function::Max => Acc::Extreme {
                want: Ordering::Greater,
                best: None,
            },
            Function::First => Acc::First(None),
            Function::Last => Acc::Last(None),
            Function::Spread => Acc::Spread { lo: None, hi: None },
            Function::Median
            | Function::Stddev
            | Function::Percentile(_)
            | Function::Mode
            | Function::Integral(_) => return None,
        })
    }

    /// Whether a point was added.
    pub fn is_empty(&self) -> bool {
        match self {
            Acc::Count(n) => *n == 0,
            Acc::Sum(s) => s.is_none(),
            Acc::Mean { n, .. } => *n == 0,
            Acc::Extreme { best, .. } => best.is_none(),
            Acc::First(p) | Acc::Last(p) => p.is_none(),
            Acc::Spread { lo, .. } => lo.is_none(),
        }
    }

    /// Adds the point of series `rank` at time `t`.
    pub fn add(&mut self, t: i64, rank: usize, v: &FieldValue) {
        let place = (t, rank);
        match self {
            Acc::Count(n) => *n += 1,
            Acc::Sum(s) => {
                *s = Some(match s.take() {
                    None => Some(v.clone()).filter(|v| as_f64(v).is_some()),
                    Some(acc) => acc.and_then(|a| add(&a, v)),
                })
            }
            Acc::Mean { sum, n, numeric } => {
                *n += 1;
                match as_f64(v) {
                    Some(x) => *sum += x,
                    None => *numeric = false,
                }
            }
            Acc::Extreme { want, best } => {
                let better = match best {
                    None => true,
                    Some((b, bp)) => match compare(v, b) {
                        Some(o) if o == *want => true,
                        Some(Ordering::Equal) => place < *bp,
                        _ => false,
                    },
                };
                if better {
                    *best = Some((v.clone(), place));
                }
            }
            Acc::First(p) => {
                if p.as_ref().is_none_or(|(bv, bp)| {
                    place.0 < bp.0 || place.0 == bp.0 && wins_tie(v, bv, place, *bp)
                }) {
                    *p = Some((v.clone(), place));
                }
            }
            Acc::Last(p) => {
                if p.as_ref().is_none_or(|(bv, bp)| {
                    place.0 > bp.0 || place.0 == bp.0 && wins_tie(v, bv, place, *bp)
                }) {
                    *p = Some((v.clone(), place));
                }
            }
            Acc::Spread { lo, hi } => {
                if lo
                    .as_ref()
                    .is_none_or(|l| compare(v, l) == Some(Ordering::Less))
                {
                    *lo = Some(v.clone());
                }
                if hi
                    .as_ref()
                    .is_none_or(|h| compare(v, h) == Some(Ordering::Greater))
                {
                    *hi = Some(v.clone());
                }
            }
        }
    }

    /// The call's value, and for selectors the point it selected; `None` when no point
    /// was added (or, as `apply`, when the values do not suit the function).
    pub fn finish(&self) -> Option<(Value, Option<Place>)> {
        match self {
            Acc::Count(0) => None,
            Acc::Count(n) => Some((Value::Integer(*n), None)),
            Acc::Sum(s) => s.clone().flatten().map(|v| (cell(&v), None)),
            Acc::Mean { n: 0, .. } | Acc::Mean { numeric: false, .. } => None,
            Acc::Mean { sum, n, .. } => Some((Value::Float(*sum / *n as f64), None)),
            Acc::Extreme { best, .. } => best.as_ref().map(|(v, p)| (cell(v), Some(*p))),
            Acc::First(p) | Acc::Last(p) => p.as_ref().map(|(v, p)| (cell(v), Some(*p))),
            Acc::Spread { lo, hi } => {
                let (lo, hi) = (lo.as_ref()?, hi.as_ref()?);
                Some((difference(hi, lo)?, None))
            }
        }
    }
}

/// `a + b` as `sum` adds: integers wrap, within one type.
fn add(a: &FieldValue, b: &FieldValue) -> Option<FieldValue> {
    Some(match (a, b) {
        (FieldValue::Integer(x), FieldValue::Integer(y)) => FieldValue::Integer(x.wrapping_add(*y)),
        (FieldValue::Unsigned(x), FieldValue::Unsigned(y)) => {
            FieldValue::Unsigned(x.wrapping_add(*y))
        }
        (FieldValue::Float(x), _) => FieldValue::Float(x + as_f64(b)?),
        // A field has one type; a mix (only after a dropped and re-created measurement)
        // keeps the first value's type, as `apply` does, skipping the others.
        (FieldValue::Integer(_) | FieldValue::Unsigned(_), _) => a.clone(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Folding points in series-major order gives what `apply` gives over the points
    /// sorted by (time, rank), for every folded function and value type.
    #[test]
    fn folding_in_series_order_answers_as_apply_over_sorted_points() {
        let functions = [
            Function::Count,
            Function::Sum,
            Function::Mean,
            Function::Min,
            Function::Max,
            Function::First,
            Function::Last,
            Function::Spread,
        ];
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let ty = rng.random_range(0..4);
            let value = |rng: &mut StdRng| match ty {
                // Small integers in floats: sums are exact whatever the order.
                0 => FieldValue::Float(rng.random_range(-5i32..5) as f64),
                1 => FieldValue::Integer(rng.random_range(-5..5)),
                2 => FieldValue::Unsigned(rng.random_range(0..5)),
                _ => FieldValue::Boolean(rng.random()),
            };
            // Series by rank, each in time order; times collide across series.
            let series: Vec<Vec<(i64, FieldValue)>> = (0..rng.random_range(1..4))
                .map(|_| {
                    let mut ts: Vec<i64> = (0..rng.random_range(0..6))
                        .map(|_| rng.random_range(0..8))
                        .collect();
                    ts.sort();
                    ts.dedup();
                    ts.into_iter().map(|t| (t, value(&mut rng))).collect()
                })
                .collect();
            let mut sorted: Vec<(i64, usize, &FieldValue)> = series
                .iter()
                .enumerate()
                .flat_map(|(r, s)| s.iter().map(move |(t, v)| (*t, r, v)))
                .collect();
            sorted.sort_by_key(|p| (p.0, p.1));
            let input: Vec<(i64, &FieldValue)> = sorted.iter().map(|p| (p.0, p.2)).collect();
            for f in functions {
                if sorted.first().is_some_and(|p| !f.accepts(p.2)) {
                    continue;
                }
                let mut acc = Acc::new(f).unwrap();
                for (rank, s) in series.iter().enumerate() {
                    for (t, v) in s {
                        acc.add(*t, rank, v);
                    }
                }
                let folded = acc.finish();
                let applied = f.apply(&input);
                assert_eq!(
                    folded.as_ref().map(|(v, p)| (v.clone(), p.map(|p| p.0))),
                    applied,
                    "seed {seed}, {f:?} over {series:?}"
                );
            }
        }
    }
}
