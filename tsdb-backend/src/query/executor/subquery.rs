//! Subqueries: `SELECT ... FROM (SELECT ...)`, nested as deep as the parser allows.
//!
//! The inner statement runs first (itself through this module, so it may hold a subquery
//! or a transformation); its answer is loaded into a catalog of its own, in memory, for
//! this statement only: each series a measurement's series (its name, its `GROUP BY`
//! tags), each column other than `time` a field, each row a point at its time. The outer
//! statement then runs over that catalog as over any other. As in InfluxDB:
//!
//! - the outer statement's time bounds also bound the inner one;
//! - an outer aggregate without time bounds of its own is timed at the epoch, whatever
//!   the inner range.

use super::transform;
use crate::model::{FieldValue, Point};
use crate::query::result::{ResultSeries, Value};
use crate::storage::catalog::{Catalog, Database};
use crate::storage::version::Version;
use influxql::ast::{BinaryOp, Expr, Measurement, MeasurementName, SelectStatement, Source};
use std::sync::Arc;

type StatementError = String;

/// The catalog's one database, holding the inner answer.
const INNER_DB: &str = "subquery";

/// Runs a `SELECT`, with subqueries here and anything else through `transform.rs`.
pub fn select(
    catalog: &Catalog,
    stmt: &SelectStatement,
    default_db: &str,
    now: i64,
) -> Result<Vec<ResultSeries>, StatementError> {
    let inner = match stmt.sources.as_slice() {
        [Source::SubQuery(inner)] => inner,
        sources if sources.iter().any(|s| matches!(s, Source::SubQuery(_))) => {
            return Err("a subquery beside other sources is not supported by this node".to_string())
        }
        _ => return transform::select(catalog, stmt, default_db, now),
    };
    let (outer_lo, outer_hi) = influxql::time::time_range(stmt.condition.as_ref(), now)?;
    let mut inner = (**inner).clone();
    inner.condition = and(inner.condition.take(), bounds(outer_lo, outer_hi));
    let answer = select(catalog, &inner, default_db, now)?;

    let loaded = Catalog::new(0);
    let db = Database::new(INNER_DB, loaded.default_policies());
    db.apply_points(points(&answer), Version::default());
    loaded.insert_database(db);

    let mut outer = stmt.clone();
    outer.sources = vec![Source::Measurement(Measurement {
        database: Some(INNER_DB.to_string()),
        retention_policy: None,
        name: MeasurementName::Regex(influxql::ast::RegexLit::new(".*")?),
    })];
    transform::select(&loaded, &outer, INNER_DB, now)
}

/// The inner answer as points: per series, per row, the non-null columns as fields.
fn points(answer: &[ResultSeries]) -> Vec<Point> {
    let mut out = Vec::new();
    for s in answer {
        let measurement: Arc<str> = Arc::from(s.name.as_str());
        let mut tags = s.tags.clone().unwrap_or_default();
        tags.sort();
        let tags: Arc<[(String, String)]> = Arc::from(tags);
        let names: Vec<Arc<str>> = s.columns.iter().map(|c| Arc::from(c.as_str())).collect();
        for row in &s.values {
            let Some(Value::Time(t)) = row.first() else {
                continue;
            };
            let fields: Vec<(Arc<str>, FieldValue)> = row
                .iter()
                .zip(&names)
                .skip(1)
                .filter_map(|(v, name)| field_value(v).map(|v| (name.clone(), v)))
                .collect();
            if fields.is_empty() {
                continue;
            }
            out.push(Point {
                measurement: measurement.clone(),
                tags: tags.clone(),
                fields,
                timestamp: *t,
            });
        }
    }
    out
}

fn field_value(v: &Value) -> Option<FieldValue> {
    Some(match v {
        Value::Float(f) => FieldValue::Float(*f),
        Value::Integer(i) => FieldValue::Integer(*i),
        Value::Unsigned(u) => FieldValue::Unsigned(*u),
        Value::Boolean(b) => FieldValue::Boolean(*b),
        Value::String(s) => FieldValue::String(s.as_str().into()),
        Value::Time(t) => FieldValue::Integer(*t),
        Value::Null => return None,
    })
}

/// `time >= lo AND time <= hi`, for the bounds given.
fn bounds(lo: Option<i64>, hi: Option<i64>) -> Option<Expr> {
    let time = || Expr::VarRef {
        name: "time".into(),
        data_type: None,
    };
    let lo = lo.map(|lo| Expr::binary(BinaryOp::Gte, time(), Expr::Integer(lo)));
    let hi = hi.map(|hi| Expr::binary(BinaryOp::Lte, time(), Expr::Integer(hi)));
    and(lo, hi)
}

/// Both conditions (either may be absent).
fn and(a: Option<Expr>, b: Option<Expr>) -> Option<Expr> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Expr::binary(
            BinaryOp::And,
            Expr::Paren(Box::new(a)),
            Expr::Paren(Box::new(b)),
        )),
        (a, b) => a.or(b),
    }
}
