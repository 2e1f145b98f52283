//! A split query's buckets kept between requests, and the answer put together from them and
//! from what the backend answered for the missing ranges: what the backend would have
//! answered for the whole range.
//!
//! Answers are InfluxDB 1.x JSON with times in nanoseconds (`epoch=ns`): one `series` array
//! per statement, each series `{name, tags, columns, values}` with one row per bucket (its
//! first column the bucket's start). Put together, each series has, for every bucket of
//! the range in order, the row the cache holds or the backend sent; a bucket where the
//! series had no points gets the row the backend makes for one (`fill(null)`: 0 for
//! `count`, null for the others) or none (`fill(none)`). A series is in the answer when it
//! has points somewhere in the range, and series come in the backend's order (by name, then
//! tags).

use super::buckets::{Grid, Held, Plan, Range};
use super::shape::Shape;
use influxql::ast::Fill;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A series: its measurement and tags (in key order, as the answer lists them).
pub type SeriesId = (String, Vec<(String, String)>);

/// One series' kept buckets.
#[derive(Debug, Clone, Default)]
struct Kept {
    columns: Vec<Value>,
    /// Bucket index -> the row's values after `time`.
    rows: BTreeMap<i64, Vec<Value>>,
    /// Kept buckets where the series had points (not a row made for an empty bucket).
    with_points: BTreeSet<i64>,
}

/// The buckets kept for one shape.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// Settled buckets: kept until the store expires or a write lands in them.
    held: Held,
    /// Young buckets kept briefly: bucket -> the instant (wall clock, ns) they stop being
    /// served.
    brief_until: BTreeMap<i64, i64>,
    series: BTreeMap<SeriesId, Kept>,
    /// Bumped by every invalidation: a fetch planned before one is not absorbed after it.
    generation: u64,
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is not InfluxDB JSON with series: {0}")]
    Shape(&'static str),
}

/// One series as an answer gives it.
struct Read {
    id: SeriesId,
    columns: Vec<Value>,
    /// Bucket index -> values after `time`.
    rows: BTreeMap<i64, Vec<Value>>,
}

fn read_series(grid: Grid, series: &[Value]) -> Result<Vec<Read>, AnswerError> {
    series
        .iter()
        .map(|s| {
            let name = s["name"]
                .as_str()
                .ok_or(AnswerError::Shape("a series without a name"))?
                .to_string();
            let tags = match &s["tags"] {
                Value::Object(t) => t
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
                _ => Vec::new(),
            };
            let columns = s["columns"]
                .as_array()
                .ok_or(AnswerError::Shape("a series without columns"))?
                .clone();
            let mut rows = BTreeMap::new();
            for row in s["values"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let row = row
                    .as_array()
                    .ok_or(AnswerError::Shape("a row that is not an array"))?;
                let t = row
                    .first()
                    .and_then(Value::as_i64)
                    .ok_or(AnswerError::Shape("a row without a time in nanoseconds"))?;
                rows.insert(grid.bucket_of(t), row[1..].to_vec());
            }
            Ok(Read {
                id: (name, tags),
                columns,
                rows,
            })
        })
        .collect()
}

/// Whether a row of a `fill(null)` answer had points: a non-zero count or a non-null
/// value of another aggregate (a made row holds 0 and nulls).
fn has_points(row: &[Value], aggregates: &[String]) -> bool {
    row.iter().zip(aggregates).any(|(v, a)| {
        if a == "count" {
            v.as_i64().is_some_and(|n| n != 0)
        } else {
            !v.is_null()
        }
    })
}

/// The row the backend makes for a bucket where the series had no points (`fill(null)`).
fn empty_row(aggregates: &[String]) -> Vec<Value> {
    aggregates
        .iter()
        .map(|a| {
            if a == "count" {
                Value::from(0)
            } else {
                Value::Null
            }
        })
        .collect()
}

impl Stored {
    /// The settled buckets kept.
    pub fn held(&self) -> &Held {
        &self.held
    }

    /// The buckets that may be served at `now_ns`: the settled ones, and the young ones
    /// whose brief keep has not ended.
    pub fn usable(&self, now_ns: i64) -> Held {
        let mut usable = self.held.clone();
        for (k, until) in &self.brief_until {
            if *until > now_ns {
                usable.insert(*k, *k);
            }
        }
        usable
    }

    /// How many invalidations this store has seen.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Roughly what the kept rows cost in memory, in bytes.
    pub fn weight(&self) -> usize {
        self.series
            .iter()
            .map(|((name, tags), kept)| {
                let tags: usize = tags.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
                let row = 48 + 24 * kept.columns.len();
                128 + name.len() + tags + kept.rows.len() * row
            })
            .sum::<usize>()
            + 32 * self.brief_until.len()
    }

    /// Keeps buckets `keep` (whole, settled) of the backend's answers to a plan's fetches
    /// (`fetched`: each range's `series`) for `shape`, and `keep_briefly` (young) until
    /// `until_ns`.
    pub fn absorb(
        &mut self,
        shape: &Shape,
        fetched: &[Vec<Value>],
        keep: &[(i64, i64)],
        keep_briefly: &[(i64, i64)],
        until_ns: i64,
    ) -> Result<(), AnswerError> {
        let within = |runs: &[(i64, i64)], k: i64| runs.iter().any(|(f, l)| k >= *f && k <= *l);
        let kept = |k: i64| within(keep, k) || within(keep_briefly, k);
        // A bucket fetched afresh may still have rows here (a young one, its keep ended): a
        // series with no points there now must not keep its old row.
        for (f, l) in keep.iter().chain(keep_briefly) {
            self.forget_rows(*f, *l);
        }
        let reads = fetched
            .iter()
            .map(|series| read_series(shape.grid, series))
            .collect::<Result<Vec<_>, _>>()?;
        for read in reads.into_iter().flatten() {
            let entry = self.series.entry(read.id).or_default();
            entry.columns = read.columns;
            for (k, row) in read.rows {
                if kept(k) {
                    if !shape.empty_rows || has_points(&row, &shape.aggregates) {
                        entry.with_points.insert(k);
                    }
                    entry.rows.insert(k, row);
                }
            }
        }
        for (f, l) in keep {
            self.held.insert(*f, *l);
            let settled: Vec<i64> = self.brief_until.range(*f..=*l).map(|(k, _)| *k).collect();
            for k in settled {
                self.brief_until.remove(&k);
            }
        }
        for (f, l) in keep_briefly {
            for k in *f..=*l {
                self.brief_until.insert(k, until_ns);
            }
        }
        Ok(())
    }

    /// A copy holding only the buckets of `runs` (what one answer reads), not the whole
    /// store: taken under the store's lock, so it costs the answer's rows, not the store's.
    pub fn slice(&self, runs: &[(i64, i64)]) -> Stored {
        let mut out = Stored {
            generation: self.generation,
            ..Stored::default()
        };
        for (id, kept) in &self.series {
            let mut part = Kept {
                columns: kept.columns.clone(),
                ..Kept::default()
            };
            for (f, l) in runs {
                part.rows
                    .extend(kept.rows.range(*f..=*l).map(|(k, r)| (*k, r.clone())));
                part.with_points
                    .extend(kept.with_points.range(*f..=*l).copied());
            }
            if !part.rows.is_empty() {
                out.series.insert(id.clone(), part);
            }
        }
        for (f, l) in runs {
            out.held.insert(*f, *l);
        }
        out
    }

    /// Whether any kept bucket in `first..=last` is settled (or, with `young_too`, any kept
    /// bucket at all).
    pub fn touches(&self, first: i64, last: i64, young_too: bool) -> bool {
        let settled = self.held.runs().any(|(f, l)| f <= last && l >= first);
        settled || young_too && self.brief_until.range(first..=last).next().is_some()
    }

    /// Drops the young buckets whose brief keep ended by `now_ns`.
    pub fn prune(&mut self, now_ns: i64) {
        let ended: Vec<i64> = self
            .brief_until
            .iter()
            .filter(|(k, until)| **until <= now_ns && !self.held.contains(**k))
            .map(|(k, _)| *k)
            .collect();
        for k in ended {
            self.brief_until.remove(&k);
            self.forget_rows(k, k);
        }
    }

    /// Forgets buckets `first..=last` (a write landed in their time).
    pub fn invalidate(&mut self, first: i64, last: i64) {
        self.generation += 1;
        self.held.remove(first, last);
        let young: Vec<i64> = self
            .brief_until
            .range(first..=last)
            .map(|(k, _)| *k)
            .collect();
        for k in young {
            self.brief_until.remove(&k);
        }
        self.forget_rows(first, last);
    }

    /// Forgets every bucket (a write whose times could not be read).
    pub fn invalidate_all(&mut self) {
        let generation = self.generation + 1;
        *self = Stored {
            generation,
            ..Stored::default()
        };
    }

    fn forget_rows(&mut self, first: i64, last: i64) {
        for kept in self.series.values_mut() {
            let gone: Vec<i64> = kept.rows.range(first..=last).map(|(k, _)| *k).collect();
            for k in gone {
                kept.rows.remove(&k);
                kept.with_points.remove(&k);
            }
        }
        self.series.retain(|_, kept| !kept.rows.is_empty());
    }
}

/// The answer's `series` for `range` of `shape`, from the kept buckets the plan names and
/// `fetched` (the backend's `series` for each of the plan's ranges, in order).
pub fn assemble(
    shape: &Shape,
    range: Range,
    plan: &Plan,
    stored: &Stored,
    fetched: &[Vec<Value>],
) -> Result<Vec<Value>, AnswerError> {
    let grid = shape.grid;
    let first = grid.bucket_of(range.start_ns);
    let last = grid.bucket_of(range.end_ns - 1);
    let cached = |k: i64| plan.cached.iter().any(|(f, l)| k >= *f && k <= *l);
    // Each series' rows from the backend, all fetched ranges together.
    let mut from_backend: BTreeMap<SeriesId, Kept> = BTreeMap::new();
    for series in fetched {
        for read in read_series(grid, series)? {
            let entry = from_backend.entry(read.id).or_default();
            entry.columns = read.columns;
            entry.rows.extend(read.rows);
        }
    }
    // A series is in the answer when it has points in the range: in a fetched range (the
    // backend sent it), or in a kept bucket the plan uses.
    let mut ids: BTreeSet<&SeriesId> = from_backend.keys().collect();
    for (id, kept) in &stored.series {
        if kept.with_points.iter().any(|k| cached(*k)) {
            ids.insert(id);
        }
    }
    let mut out = Vec::new();
    for id in ids {
        let backend = from_backend.get(id);
        let kept = stored.series.get(id);
        let columns = backend
            .map(|b| b.columns.clone())
            .or_else(|| kept.map(|k| k.columns.clone()))
            .unwrap_or_default();
        let mut values = Vec::new();
        for k in first..=last {
            let row = if cached(k) {
                kept.and_then(|s| s.rows.get(&k))
            } else {
                backend.and_then(|b| b.rows.get(&k))
            };
            let row = match row {
                Some(r) => r.clone(),
                None if shape.empty_rows => empty_row(&shape.aggregates),
                None => continue,
            };
            let mut full = Vec::with_capacity(row.len() + 1);
            full.push(Value::from(grid.start_of(k)));
            full.extend(row);
            values.push(Value::Array(full));
        }
        if values.is_empty() {
            continue;
        }
        let mut series = Map::new();
        series.insert("name".into(), Value::from(id.0.clone()));
        if !id.1.is_empty() {
            let tags: Map<String, Value> =
                id.1.iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                    .collect();
            series.insert("tags".into(), Value::Object(tags));
        }
        series.insert("columns".into(), Value::Array(columns));
        series.insert("values".into(), Value::Array(values));
        out.push(Value::Object(series));
    }
    Ok(out)
}

/// Applies the shape's fill (a number, `previous`) to the assembled `series`, whose empty
/// buckets are as `fill(null)` made them (`count` 0, others null), per column and within
/// each series, as the node fills (`tsdb-backend`'s `executor::fill`).
pub fn apply_fill(series: &mut [Value], shape: &Shape) {
    let Some(fill) = &shape.fill else {
        return;
    };
    let number = match fill {
        Fill::Integer(n) => Some(Value::from(*n)),
        Fill::Float(f) => Some(float(*f)),
        _ => None,
    };
    for s in series {
        let Some(rows) = s.get_mut("values").and_then(Value::as_array_mut) else {
            continue;
        };
        for (col, aggregate) in shape.aggregates.iter().enumerate() {
            let empty = |v: &Value| {
                if aggregate == "count" {
                    v.as_i64() == Some(0)
                } else {
                    v.is_null()
                }
            };
            let mut previous = Value::Null;
            for row in rows.iter_mut() {
                let Some(cell) = row.get_mut(col + 1) else {
                    continue;
                };
                if !empty(cell) {
                    previous = cell.clone();
                    continue;
                }
                *cell = match &number {
                    Some(n) => n.clone(),
                    // Before the first bucket with points there is nothing to carry:
                    // null, for count too.
                    None => previous.clone(),
                };
            }
        }
    }
}

/// A float as InfluxDB writes it: a whole number without a fraction (`1`, not `1.0`).
fn float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

/// Writes each row's time (nanoseconds, as answers are fetched) as the client asked for it:
/// integers in the unit of `epoch` (`ms`, `s`, ...), or RFC 3339 without `epoch`. `false`
/// (nothing changed) for an `epoch` InfluxDB does not know.
pub fn with_times(series: &mut [Value], epoch: Option<&str>) -> bool {
    let unit = match epoch {
        Some(e) => match influxql::time::epoch_unit_ns(e) {
            Some(u) => Some(u),
            None => return false,
        },
        None => None,
    };
    for s in series {
        let Some(rows) = s.get_mut("values").and_then(Value::as_array_mut) else {
            continue;
        };
        for row in rows {
            let Some(t) = row.get_mut(0) else { continue };
            let Some(ns) = t.as_i64() else { continue };
            *t = match unit {
                Some(u) => Value::from(ns / u),
                None => Value::from(influxql::time::rfc3339_nano(ns)),
            };
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_answers_as_the_whole_store_for_the_buckets_it_holds() {
        let q = "SELECT count(v) FROM m WHERE time >= 0 AND time < 100000000000 GROUP BY time(10s), host";
        let shape = super::super::shape::shape(q, 0).unwrap();
        let series = |host: &str, every: i64| {
            let rows: Vec<Value> = (0..10i64)
                .filter(|k| k % every == 0)
                .map(|k| serde_json::json!([k * 10_000_000_000, 1]))
                .collect();
            serde_json::json!({"name": "m", "tags": {"host": host}, "columns": ["time", "count"], "values": rows})
        };
        let mut stored = Stored::default();
        stored
            .absorb(
                &shape,
                &[vec![series("a", 1), series("b", 3)]],
                &[(0, 9)],
                &[],
                0,
            )
            .unwrap();
        let plan = Plan {
            cached: vec![(2, 4), (7, 8)],
            fetch: vec![],
            keep: vec![],
            keep_briefly: vec![],
        };
        let range = Range {
            start_ns: 20_000_000_000,
            end_ns: 90_000_000_000,
        };
        let sliced = stored.slice(&plan.cached);
        assert_eq!(
            assemble(&shape, range, &plan, &sliced, &[]).unwrap(),
            assemble(&shape, range, &plan, &stored, &[]).unwrap()
        );
        assert_eq!(sliced.held().runs().collect::<Vec<_>>(), plan.cached);
        assert!(sliced.weight() < stored.weight());
    }

    #[test]
    fn times_are_written_in_the_unit_asked_for_or_as_rfc3339() {
        let series = || {
            vec![serde_json::json!({
                "name": "cpu",
                "columns": ["time", "mean"],
                "values": [[1_500_000_000_i64, 1.5], [60_000_000_000_i64, null]]
            })]
        };
        let mut ms = series();
        assert!(with_times(&mut ms, Some("ms")));
        assert_eq!(
            ms[0]["values"],
            serde_json::json!([[1500, 1.5], [60000, null]])
        );
        let mut m = series();
        assert!(with_times(&mut m, Some("m")));
        assert_eq!(m[0]["values"], serde_json::json!([[0, 1.5], [1, null]]));
        let mut text = series();
        assert!(with_times(&mut text, None));
        assert_eq!(
            text[0]["values"],
            serde_json::json!([
                ["1970-01-01T00:00:01.5Z", 1.5],
                ["1970-01-01T00:01:00Z", null]
            ])
        );
        let mut unknown = series();
        assert!(!with_times(&mut unknown, Some("fortnight")));
        assert_eq!(unknown, series(), "left as it was");
    }
}
