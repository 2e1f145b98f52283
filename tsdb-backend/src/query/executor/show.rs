//! `SHOW DATABASES | MEASUREMENTS | TAG KEYS | TAG VALUES | FIELD KEYS | SERIES | RETENTION
//! POLICIES` and the cardinality statements, in the shapes InfluxDB 1.x answers them.

use super::eval::{compile, eval, CExpr, Context, RowRef};
use crate::query::result::{ResultSeries, Value};
use crate::storage::catalog::{read, Catalog, Database};
use crate::storage::series::{Measurement, Series};
use influxql::ast::{
    CardinalityOf, Expr, MeasurementName, ShowCardinalityStatement, ShowFieldKeysStatement,
    ShowMeasurementsStatement, ShowRetentionPoliciesStatement, ShowSeriesStatement,
    ShowTagKeysStatement, ShowTagValuesStatement, Source, TagKeyMatch,
};
use std::collections::BTreeSet;
use std::sync::Arc;

type StatementError = String;

fn database(
    catalog: &Catalog,
    on: Option<&str>,
    default_db: &str,
) -> Result<Arc<Database>, StatementError> {
    let name = on.unwrap_or(default_db);
    if name.is_empty() {
        return Err("database name required".into());
    }
    catalog
        .database(name)
        .ok_or_else(|| format!("database not found: {name}"))
}

fn page<T>(items: Vec<T>, offset: Option<u64>, limit: Option<u64>) -> Vec<T> {
    let it = items.into_iter().skip(offset.unwrap_or(0) as usize);
    match limit {
        Some(l) => it.take(l as usize).collect(),
        None => it.collect(),
    }
}

fn strings(values: impl IntoIterator<Item = String>) -> Vec<Vec<Value>> {
    values.into_iter().map(|v| vec![Value::String(v)]).collect()
}

/// Whether a `FROM` list (all measurements when empty) names `name`.
fn source_names(sources: &[Source], name: &str) -> Result<bool, StatementError> {
    if sources.is_empty() {
        return Ok(true);
    }
    for s in sources {
        let named = match s {
            Source::Measurement(m) => match &m.name {
                MeasurementName::Name(n) => n == name,
                MeasurementName::Regex(re) => re.regex()?.is_match(name),
            },
            Source::SubQuery(_) => false,
        };
        if named {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A measurement and its name.
type Named = (String, Arc<std::sync::RwLock<Measurement>>);

/// The measurements a `FROM` names (all when there is none) that hold data, in name order.
fn measurements(db: &Database, sources: &[Source]) -> Result<Vec<Named>, StatementError> {
    let mut out = Vec::new();
    for (n, m) in db.measurements() {
        if source_names(sources, &n)? && !read(&m).series().is_empty() {
            out.push((n, m));
        }
    }
    Ok(out)
}

/// The series of `m` that satisfy a tag condition.
fn matching_series<'m>(
    m: &'m Measurement,
    cond: Option<&Expr>,
) -> Result<Vec<&'m Series>, StatementError> {
    let compiled: Option<CExpr> = match cond {
        Some(c) => {
            let keys: BTreeSet<String> = m
                .series()
                .iter()
                .flat_map(|s| s.tags.iter().map(|(k, _)| k.clone()))
                .collect();
            Some(compile(c, m, &keys, Context::Condition, 0, &[])?)
        }
        None => None,
    };
    Ok(m.series()
        .iter()
        .filter(|s| s.has_data())
        .filter(|s| {
            compiled.as_ref().is_none_or(|c| {
                eval(
                    c,
                    &RowRef {
                        series: s,
                        row: None,
                        time: 0,
                        calls: &[],
                    },
                )
                .truthy()
            })
        })
        .collect())
}

pub fn show_databases(catalog: &Catalog) -> Vec<ResultSeries> {
    vec![ResultSeries {
        name: "databases".into(),
        tags: None,
        columns: vec!["name".into()],
        values: strings(catalog.database_names()),
    }]
}

pub fn show_measurements(
    catalog: &Catalog,
    s: &ShowMeasurementsStatement,
    default_db: &str,
) -> Result<Vec<ResultSeries>, StatementError> {
    let db = database(catalog, s.database.as_deref(), default_db)?;
    let mut names = Vec::new();
    for (name, m) in measurements(&db, &[])? {
        if let Some(w) = &s.with_measurement {
            let ok = match &w.name {
                MeasurementName::Name(n) => *n == name,
                MeasurementName::Regex(re) => re.regex()?.is_match(&name),
            };
            if !ok {
                continue;
            }
        }
        let m = read(&m);
        if !matching_series(&m, s.condition.as_ref())?.is_empty() {
            names.push(name);
        }
    }
    let names = page(names, s.offset, s.limit);
    if names.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![ResultSeries {
        name: "measurements".into(),
        tags: None,
        columns: vec!["name".into()],
        values: strings(names),
    }])
}

pub fn show_tag_keys(
    catalog: &Catalog,
    s: &ShowTagKeysStatement,
    default_db: &str,
) -> Result<Vec<ResultSeries>, StatementError> {
    let db = database(catalog, s.database.as_deref(), default_db)?;
    let mut out = Vec::new();
    for (name, m) in measurements(&db, &s.sources)? {
        let m = read(&m);
        let keys: BTreeSet<String> = matching_series(&m, s.condition.as_ref())?
            .iter()
            .flat_map(|se| se.tags.iter().map(|(k, _)| k.clone()))
            .collect();
        let keys = page(keys.into_iter().collect(), s.offset, s.limit);
        if !keys.is_empty() {
            out.push(ResultSeries {
                name,
                tags: None,
                columns: vec!["tagKey".into()],
                values: strings(keys),
            });
        }
    }
    Ok(page(out, s.soffset, s.slimit))
}

pub fn show_tag_values(
    catalog: &Catalog,
    s: &ShowTagValuesStatement,
    default_db: &str,
) -> Result<Vec<ResultSeries>, StatementError> {
    let db = database(catalog, s.database.as_deref(), default_db)?;
    let key_regex = match &s.key {
        TagKeyMatch::EqRegex(re) | TagKeyMatch::NeqRegex(re) => Some(re.regex()?),
        _ => None,
    };
    let key_ok = |k: &str| match &s.key {
        TagKeyMatch::Eq(want) => k == want,
        TagKeyMatch::Neq(want) => k != want,
        TagKeyMatch::EqRegex(_) => key_regex.is_some_and(|re| re.is_match(k)),
        TagKeyMatch::NeqRegex(_) => !key_regex.is_some_and(|re| re.is_match(k)),
        TagKeyMatch::In(list) => list.iter().any(|w| w == k),
    };
    let mut out = Vec::new();
    for (name, m) in measurements(&db, &s.sources)? {
        let m = read(&m);
        let pairs: BTreeSet<(String, String)> = matching_series(&m, s.condition.as_ref())?
            .iter()
            .flat_map(|se| se.tags.iter().filter(|(k, _)| key_ok(k)).cloned())
            .collect();
        let pairs = page(pairs.into_iter().collect(), s.offset, s.limit);
        if !pairs.is_empty() {
            out.push(ResultSeries {
                name,
                tags: None,
                columns: vec!["key".into(), "value".into()],
                values: pairs
                    .into_iter()
                    .map(|(k, v)| vec![Value::String(k), Value::String(v)])
                    .collect(),
            });
        }
    }
    Ok(out)
}

pub fn show_field_keys(
    catalog: &Catalog,
    s: &ShowFieldKeysStatement,
    default_db: &str,
) -> Result<Vec<ResultSeries>, StatementError> {
    let db = database(catalog, s.database.as_deref(), default_db)?;
    let mut out = Vec::new();
    for (name, m) in db.measurements() {
        if !source_names(&s.sources, &name)? {
            continue;
        }
        // A measurement keeps the field types it registered even if no point was stored
        // (as InfluxDB does after a rejected batch).
        let m = read(&m);
        let mut fields: Vec<(String, String)> = m
            .fields()
            .iter()
            .map(|f| (f.name.clone(), f.ty.as_str().to_string()))
            .collect();
        fields.sort();
        let fields = page(fields, s.offset, s.limit);
        if !fields.is_empty() {
            out.push(ResultSeries {
                name,
                tags: None,
                columns: vec!["fieldKey".into(), "fieldType".into()],
                values: fields
                    .into_iter()
                    .map(|(k, t)| vec![Value::String(k), Value::String(t)])
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// `SHOW ... [EXACT] CARDINALITY`: per measurement, how many series, tag keys, tag values
/// or field keys the matching `SHOW` would list (a measurement with none is left out);
/// measurements are counted together. The estimates InfluxDB answers (for series and
/// measurements, under `cardinality estimation`) are exact counts here: the index is in
/// memory, and a count costs what an estimate would.
pub fn show_cardinality(
    catalog: &Catalog,
    s: &ShowCardinalityStatement,
    default_db: &str,
) -> Result<Vec<ResultSeries>, StatementError> {
    let one = |column: &str, n: usize| {
        vec![ResultSeries {
            name: String::new(),
            tags: None,
            columns: vec![column.to_string()],
            values: vec![vec![Value::Integer(n as i64)]],
        }]
    };
    let per_measurement = |series: Vec<ResultSeries>| -> Vec<ResultSeries> {
        series
            .into_iter()
            .filter(|r| !r.values.is_empty())
            .map(|r| ResultSeries {
                name: r.name,
                tags: None,
                columns: vec!["count".to_string()],
                values: vec![vec![Value::Integer(r.values.len() as i64)]],
            })
            .collect()
    };
    let db = database(catalog, s.database.as_deref(), default_db)?;
    match s.of {
        CardinalityOf::Series | CardinalityOf::Measurement => {
            let mut counts = Vec::new();
            for (name, m) in measurements(&db, &s.sources)? {
                let m = read(&m);
                let n = matching_series(&m, s.condition.as_ref())?.len();
                if n > 0 {
                    counts.push((name, n));
                }
            }
            Ok(match (s.of, s.exact) {
                (CardinalityOf::Measurement, exact) => one(
                    if exact {
                        "count"
                    } else {
                        "cardinality estimation"
                    },
                    counts.len(),
                ),
                (_, false) => one(
                    "cardinality estimation",
                    counts.iter().map(|(_, n)| n).sum(),
                ),
                (_, true) => counts
                    .into_iter()
                    .map(|(name, n)| ResultSeries {
                        name,
                        tags: None,
                        columns: vec!["count".to_string()],
                        values: vec![vec![Value::Integer(n as i64)]],
                    })
                    .collect(),
            })
        }
        CardinalityOf::TagKey => Ok(per_measurement(show_tag_keys(
            catalog,
            &ShowTagKeysStatement {
                database: s.database.clone(),
                sources: s.sources.clone(),
                condition: s.condition.clone(),
                ..ShowTagKeysStatement::default()
            },
            default_db,
        )?)),
        CardinalityOf::TagValues => {
            let Some(key) = s.key.clone() else {
                return Err("WITH KEY is required".into());
            };
            Ok(per_measurement(show_tag_values(
                catalog,
                &ShowTagValuesStatement {
                    database: s.database.clone(),
                    sources: s.sources.clone(),
                    key,
                    condition: s.condition.clone(),
                    order_by: None,
                    limit: None,
                    offset: None,
                },
                default_db,
            )?))
        }
        CardinalityOf::FieldKey => Ok(per_measurement(show_field_keys(
            catalog,
            &ShowFieldKeysStatement {
                database: s.database.clone(),
                sources: s.sources.clone(),
                ..ShowFieldKeysStatement::default()
            },
            default_db,
        )?)),
    }
}

/// `measurement,tag=value,...` with line-protocol escaping, as SHOW SERIES prints keys.
pub fn series_key(measurement: &str, tags: &[(String, String)]) -> String {
    let esc = |s: &str, extra_eq: bool| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if c == ',' || c == ' ' || (extra_eq && c == '=') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    let mut key = esc(measurement, false);
    for (k, v) in tags {
        key.push(',');
        key.push_str(&esc(k, true));
        key.push('=');
        key.push_str(&esc(v, true));
    }
    key
}

pub fn show_series(
    catalog: &Catalog,
    s: &ShowSeriesStatement,
    default_db: &str,
) -> Result<Vec<ResultSeries>, StatementError> {
    let db = database(catalog, s.database.as_deref(), default_db)?;
    let mut keys = Vec::new();
    for (name, m) in measurements(&db, &s.sources)? {
        let m = read(&m);
        for se in matching_series(&m, s.condition.as_ref())? {
            keys.push(series_key(&name, &se.tags));
        }
    }
    keys.sort();
    let keys = page(keys, s.offset, s.limit);
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![ResultSeries {
        name: String::new(),
        tags: None,
        columns: vec!["key".into()],
        values: strings(keys),
    }])
}

/// Go's `time.Duration.String()` for whole seconds: `0s`, `1h0m0s`, `168h0m0s`, `1m30s`.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let ns = ns.unsigned_abs();
    let total_s = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (total_s / 3600, (total_s % 3600) / 60, total_s % 60);
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if frac > 0 {
        let f = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    } else {
        out.push_str(&format!("{s}s"));
    }
    out
}

pub fn show_retention_policies(
    catalog: &Catalog,
    s: &ShowRetentionPoliciesStatement,
    default_db: &str,
) -> Result<Vec<ResultSeries>, StatementError> {
    let db = database(catalog, s.database.as_deref(), default_db)?;
    let p = read(&db.policies).clone();
    Ok(vec![ResultSeries {
        name: String::new(),
        tags: None,
        columns: [
            "name",
            "duration",
            "shardGroupDuration",
            "replicaN",
            "default",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect(),
        values: p
            .list
            .iter()
            .map(|rp| {
                vec![
                    Value::String(rp.name.clone()),
                    Value::String(go_duration(rp.duration_ns)),
                    Value::String(go_duration(rp.shard_group_duration())),
                    Value::Integer(1),
                    Value::Boolean(rp.name == p.default),
                ]
            })
            .collect(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(7 * 24 * 3_600_000_000_000), "168h0m0s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
    }

    #[test]
    fn series_keys_escape_like_line_protocol() {
        let tags = vec![
            ("t2".to_string(), "a=b".to_string()),
            ("tag key".to_string(), "tag,value".to_string()),
        ];
        assert_eq!(
            series_key("my meas", &tags),
            "my\\ meas,t2=a\\=b,tag\\ key=tag\\,value"
        );
    }
}
