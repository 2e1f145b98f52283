//! Which queries the cache can answer bucket by bucket ([`super::buckets`]), and what they
//! are without their time bounds.
//!
//! A dashboard panel's query is one `SELECT` of per-bucket aggregates with `GROUP BY
//! time(step)` and a time range. Its **shape** is the statement with the range taken out
//! (two refreshes of a panel have the same shape); its **grid** cuts time into the step's
//! buckets; its **range** is what this request asks for. The query is read with the
//! workspace's InfluxQL parser and its time bounds with `influxql::time`, as the node reads
//! them.
//!
//! A query is split only when every bucket's answer depends on that bucket's points alone,
//! so that answers for parts of the range put together are the answer for the whole:
//! anything else ([`Unsplittable`]) is cached by its text as before.

use super::buckets::{Grid, Range};
use influxql::ast::{BinaryOp, Dimension, Expr, Fill, SelectStatement, Source, Statement};

/// Aggregates and selectors whose value for a bucket reads that bucket's points only
/// (`integral` is not one: InfluxDB interpolates at the bucket's end from the next point).
const PER_BUCKET: &[&str] = &[
    "count",
    "sum",
    "mean",
    "median",
    "mode",
    "spread",
    "stddev",
    "min",
    "max",
    "first",
    "last",
    "percentile",
];

/// A dashboard query the cache can split into buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The statement without its time bounds, as InfluxQL text.
    pub key: String,
    /// The same, parsed: what a range is asked with ([`Shape::statement_for`]).
    pub statement: SelectStatement,
    /// Whether an empty bucket has a row (`fill(null)`, a number, `previous`) or none
    /// (`fill(none)`).
    pub empty_rows: bool,
    /// What the answer's empty buckets are filled with once put together: buckets are
    /// fetched and kept as `fill(null)` answers them, and a number or `previous` is applied
    /// to the whole range, as the node applies it (`None`: `fill(null)` or `fill(none)`).
    pub fill: Option<Fill>,
    pub grid: Grid,
    pub range: Range,
    /// The aggregate of each column after `time`, in order. A bucket without points is
    /// filled by the node per aggregate: under `fill(null)`, `count` holds 0 and the others
    /// null (`SELECT count(v), mean(v)` answers `[110, 0, null]`).
    pub aggregates: Vec<String>,
}

/// Why a query is cached by its text instead of by bucket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsplittable {
    #[error("not one SELECT statement")]
    NotOneSelect,
    #[error("the query does not parse")]
    Unparsable,
    #[error("SELECT ... INTO writes")]
    Into,
    #[error("a subquery")]
    Subquery,
    #[error("no GROUP BY time()")]
    NoTimeGroup,
    #[error("a GROUP BY that is not a time(), a tag, * or a regex")]
    OtherDimension,
    #[error("tz(): buckets follow a time zone")]
    TimeZone,
    #[error("fill({0}) reads neighbouring buckets")]
    Fill(&'static str),
    #[error("LIMIT, OFFSET, SLIMIT or SOFFSET")]
    Limit,
    #[error("ORDER BY time DESC")]
    Descending,
    #[error("{0}() is not computed per bucket")]
    Function(String),
    #[error("{0}: a field is one aggregate of a field, without arithmetic around it")]
    Field(String),
    #[error("the time range: {0}")]
    TimeRange(String),
}

/// The shape of query `q` asked at `now_ns` (what `now()` in it is).
pub fn shape(q: &str, now_ns: i64) -> Result<Shape, Unsplittable> {
    let statements = influxql::parse_query(q).map_err(|_| Unsplittable::Unparsable)?;
    let [Statement::Select(select)] = statements.as_slice() else {
        return Err(Unsplittable::NotOneSelect);
    };
    if select.into.is_some() {
        return Err(Unsplittable::Into);
    }
    if select
        .sources
        .iter()
        .any(|s| !matches!(s, Source::Measurement(_)))
    {
        return Err(Unsplittable::Subquery);
    }
    let mut grid = None;
    for d in &select.dimensions {
        match d {
            Dimension::Time { interval, offset } if grid.is_none() => {
                grid = Some(
                    Grid::new(*interval, offset.unwrap_or(0)).ok_or(Unsplittable::NoTimeGroup)?,
                );
            }
            Dimension::Tag(_) | Dimension::Wildcard | Dimension::Regex(_) => {}
            _ => return Err(Unsplittable::OtherDimension),
        }
    }
    let grid = grid.ok_or(Unsplittable::NoTimeGroup)?;
    if select.timezone.is_some() {
        return Err(Unsplittable::TimeZone);
    }
    let (empty_rows, fill) = match &select.fill {
        Fill::Null => (true, None),
        Fill::None => (false, None),
        // Applied after the buckets are put together: within the range, as the node does.
        f @ (Fill::Previous | Fill::Integer(_) | Fill::Float(_)) => (true, Some(*f)),
        // Reads the next filled bucket too, which may be another fetch's.
        Fill::Linear => return Err(Unsplittable::Fill("linear")),
    };
    if select.limit.is_some()
        || select.offset.is_some()
        || select.slimit.is_some()
        || select.soffset.is_some()
    {
        return Err(Unsplittable::Limit);
    }
    if select.order_by.as_ref().is_some_and(|o| !o.ascending) {
        return Err(Unsplittable::Descending);
    }
    let aggregates = select
        .fields
        .iter()
        .map(|f| aggregate(&f.expr))
        .collect::<Result<Vec<String>, Unsplittable>>()?;
    let condition = select.condition.as_ref();
    let (lo, hi) =
        influxql::time::time_range(condition, now_ns).map_err(Unsplittable::TimeRange)?;
    let rest = condition.and_then(influxql::time::strip_time);
    if rest.as_ref().is_some_and(mentions_time) {
        return Err(Unsplittable::TimeRange("time compared under OR".into()));
    }
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Err(Unsplittable::TimeRange(
            "a lower and an upper bound are both needed".into(),
        ));
    };
    let mut without_time = select.clone();
    without_time.condition = rest;
    let key = without_time.to_string();
    if fill.is_some() {
        without_time.fill = Fill::Null;
    }
    Ok(Shape {
        key,
        statement: *without_time,
        empty_rows,
        fill,
        grid,
        range: Range {
            start_ns: lo,
            end_ns: hi.saturating_add(1),
        },
        aggregates,
    })
}

impl Shape {
    /// The statement asking for `range` only: the shape's condition and `time >= start AND
    /// time < end`.
    pub fn statement_for(&self, range: Range) -> String {
        let time = || Expr::VarRef {
            name: "time".into(),
            data_type: None,
        };
        let bounds = Expr::binary(
            BinaryOp::And,
            Expr::binary(BinaryOp::Gte, time(), Expr::Integer(range.start_ns)),
            Expr::binary(BinaryOp::Lt, time(), Expr::Integer(range.end_ns)),
        );
        let mut s = self.statement.clone();
        s.condition = Some(match s.condition.take() {
            Some(rest) => Expr::binary(BinaryOp::And, Expr::Paren(Box::new(rest)), bounds),
            None => bounds,
        });
        s.to_string()
    }
}

/// The aggregate a field is: one call of [`PER_BUCKET`] on a field (or tag) with literal
/// arguments (`percentile(v, 95)`). Arithmetic around it is left out: how the node fills an
/// empty bucket of it would have to be worked out, and the text cache answers it exactly.
fn aggregate(e: &Expr) -> Result<String, Unsplittable> {
    match e {
        Expr::Call { name, args } => {
            if !PER_BUCKET.contains(&name.as_str()) {
                return Err(Unsplittable::Function(name.clone()));
            }
            let plain = args.iter().all(|a| {
                matches!(
                    a,
                    Expr::VarRef { .. } | Expr::Integer(_) | Expr::Float(_) | Expr::Duration(_)
                )
            });
            if plain {
                Ok(name.clone())
            } else {
                Err(Unsplittable::Field(e.to_string()))
            }
        }
        Expr::Paren(inner) => aggregate(inner),
        other => Err(Unsplittable::Field(other.to_string())),
    }
}

/// Whether `e` reads `time` anywhere.
fn mentions_time(e: &Expr) -> bool {
    match e {
        _ if e.is_time_ref() => true,
        Expr::Binary { lhs, rhs, .. } => mentions_time(lhs) || mentions_time(rhs),
        Expr::Paren(inner) => mentions_time(inner),
        Expr::Call { args, .. } => args.iter().any(mentions_time),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const NOW: i64 = 1_700_003_600 * S;

    #[test]
    fn a_grafana_panel_query_splits_into_its_shape_grid_and_range() {
        let q = "SELECT mean(\"usage\") FROM \"cpu\" WHERE (\"host\" = 'a') AND time >= 1700000000000ms and time <= 1700003600000ms GROUP BY time(10s), \"host\" fill(null)";
        let s = shape(q, NOW).unwrap();
        assert_eq!(s.grid, Grid::new(10 * S, 0).unwrap());
        assert_eq!(
            s.range,
            Range {
                start_ns: 1_700_000_000 * S,
                end_ns: 1_700_003_600 * S + 1,
            }
        );
        assert_eq!(
            s.key, "SELECT mean(usage) FROM cpu WHERE host = 'a' GROUP BY time(10s), host",
            "printed canonically: fill(null) is the default"
        );
        // The next refresh, five seconds on: the same shape.
        let next = "SELECT mean(\"usage\") FROM \"cpu\" WHERE (\"host\" = 'a') AND time >= 1700000005000ms and time <= 1700003605000ms GROUP BY time(10s), \"host\" fill(null)";
        assert_eq!(shape(next, NOW).unwrap().key, s.key);
    }

    #[test]
    fn bounds_relative_to_now_use_the_time_given_and_offsets_shift_the_grid() {
        let q = "SELECT max(v), count(v) AS n FROM m WHERE time > now() - 1h AND time < now() GROUP BY time(1m, 15s) fill(none)";
        let s = shape(q, NOW).unwrap();
        assert_eq!(s.range.start_ns, NOW - 3600 * S + 1);
        assert_eq!(s.range.end_ns, NOW);
        assert_eq!(s.grid, Grid::new(60 * S, 15 * S).unwrap());
        assert_eq!(
            s.key,
            "SELECT max(v), count(v) AS n FROM m GROUP BY time(1m, 15s) fill(none)"
        );
        assert!(!s.empty_rows);
        assert_eq!(
            s.statement_for(Range {
                start_ns: 60 * S,
                end_ns: 120 * S
            }),
            "SELECT max(v), count(v) AS n FROM m WHERE time >= 60000000000 AND time < 120000000000 GROUP BY time(1m, 15s) fill(none)"
        );
        assert_eq!(s.aggregates, ["max", "count"]);
    }

    #[test]
    fn a_number_or_previous_fill_is_fetched_as_fill_null_and_keyed_as_written() {
        let q = "SELECT count(v) FROM m WHERE time >= 0 AND time < 60000000000 GROUP BY time(10s) fill(0)";
        let s = shape(q, NOW).unwrap();
        assert_eq!(s.fill, Some(Fill::Integer(0)));
        assert!(s.empty_rows);
        assert_eq!(s.key, "SELECT count(v) FROM m GROUP BY time(10s) fill(0)");
        assert_eq!(
            s.statement_for(s.range),
            "SELECT count(v) FROM m WHERE time >= 0 AND time < 60000000000 GROUP BY time(10s)"
        );
        let p = shape(&q.replace("fill(0)", "fill(previous)"), NOW).unwrap();
        assert_eq!(p.fill, Some(Fill::Previous));
        assert_ne!(p.key, s.key, "two fills, two shapes");
    }

    #[test]
    fn what_cannot_be_put_together_from_parts_is_named() {
        let cases: &[(&str, Unsplittable)] = &[
            ("SELECT mean(v) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s); SELECT v FROM m", Unsplittable::NotOneSelect),
            ("SELECT mean(v FROM", Unsplittable::Unparsable),
            ("SHOW DATABASES", Unsplittable::NotOneSelect),
            ("SELECT mean(v) INTO x FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)", Unsplittable::Into),
            ("SELECT mean(v) FROM (SELECT v FROM m) WHERE time > 0 AND time < 10 GROUP BY time(1s)", Unsplittable::Subquery),
            ("SELECT v FROM m WHERE time > 0 AND time < 10", Unsplittable::NoTimeGroup),
            ("SELECT mean(v) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s) tz('Europe/Berlin')", Unsplittable::TimeZone),
            ("SELECT mean(v) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s) fill(linear)", Unsplittable::Fill("linear")),
            ("SELECT mean(v) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s) LIMIT 5", Unsplittable::Limit),
            ("SELECT mean(v) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s) SLIMIT 5", Unsplittable::Limit),
            ("SELECT mean(v) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s) ORDER BY time DESC", Unsplittable::Descending),
            ("SELECT derivative(mean(v), 1s) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)", Unsplittable::Function("derivative".into())),
            ("SELECT moving_average(mean(v), 3) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)", Unsplittable::Function("moving_average".into())),
            ("SELECT top(v, 3) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)", Unsplittable::Function("top".into())),
            ("SELECT mean(v) FROM m WHERE time > 0 GROUP BY time(1s)", Unsplittable::TimeRange("a lower and an upper bound are both needed".into())),
            ("SELECT mean(v) FROM m WHERE (time > 0 OR host = 'a') AND time < 10 GROUP BY time(1s)", Unsplittable::TimeRange("time compared under OR".into())),
        ];
        for (q, why) in cases {
            assert_eq!(shape(q, NOW).as_ref().err(), Some(why), "{q}");
        }
        // Arithmetic around an aggregate, or inside it, is left to the text cache.
        for q in [
            "SELECT mean(v) * 2 FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)",
            "SELECT mean(abs(v)) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)",
            "SELECT mean(*) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)",
        ] {
            assert!(
                matches!(shape(q, NOW), Err(Unsplittable::Field(_))),
                "{q}: {:?}",
                shape(q, NOW)
            );
        }
        assert!(shape(
            "SELECT percentile(v, 95) AS p95, mode(v) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)",
            NOW
        )
        .is_ok());
        assert_eq!(
            shape(
                "SELECT integral(v, 1s) FROM m WHERE time > 0 AND time < 10 GROUP BY time(1s)",
                NOW
            ),
            Err(Unsplittable::Function("integral".into())),
            "InfluxDB's integral reads past the bucket's end"
        );
    }
}
