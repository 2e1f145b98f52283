//! `SELECT`: from a statement to result series.
//!
//! The plan, in order: resolve the sources to measurements; expand wildcards into columns
//! (named and de-duplicated like InfluxDB's); decide whether the query is raw, aggregate, or
//! a lone selector with companion fields; take the time range from the condition; then, per
//! measurement, group the series by the `GROUP BY` tags and answer each group: raw rows
//! merged in time order, or one row per `GROUP BY time()` bucket with `fill()` applied.

use super::eval::{self, compile, eval, CExpr, Context, RowRef, V};
use super::fill::{bucket_start, fill_column};
use super::fold::Acc;
use super::functions::{cell, Function};
use crate::model::{FieldType, FieldValue, MAX_NANO_TIME, MIN_NANO_TIME};
use crate::query::result::{ResultSeries, Value};
use crate::query::zone;
use crate::storage::catalog::{read, Catalog, Database};
use crate::storage::read::{newest_time_bound, series_view};
use crate::storage::series::{Measurement, Series};
use influxql::ast::{
    resolve_column_names, DataType, Dimension, Expr, Field, Fill, MeasurementName, SelectStatement,
    Source,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

/// The most `GROUP BY time()` buckets one query may produce, so that `time(1ns)` over a year
/// answers with an error instead of exhausting memory.
pub const MAX_BUCKETS: i64 = 1_000_000;

type StatementError = String;

/// Runs a `SELECT` against the catalog.
pub fn select(
    catalog: &Catalog,
    stmt: &SelectStatement,
    default_db: &str,
    now: i64,
) -> Result<Vec<ResultSeries>, StatementError> {
    if stmt.into.is_some() {
        return Err("SELECT INTO is not supported".into());
    }
    let sources = resolve_sources(catalog, &stmt.sources, default_db)?;
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let guards: Vec<_> = sources.iter().map(|(_, db, m)| (db, read(m))).collect();
    let measurements: Vec<&Measurement> = guards.iter().map(|(_, g)| &**g).collect();

    let schema = Schema::of(&measurements);
    let fields = expand_fields(&stmt.fields, &schema, &stmt.dimensions)?;
    let columns = column_names(&fields);
    let plan = classify(&fields, stmt)?;

    let (lo, hi) = eval::time_range(stmt.condition.as_ref(), now)?;
    let interval = stmt.group_by_interval();
    if matches!(interval, Some((i, _)) if i <= 0) {
        return Ok(Vec::new());
    }
    let row_condition = stmt.condition.as_ref().and_then(eval::strip_time);

    let mut out = Vec::new();
    for (db, guard) in &guards {
        let m: &Measurement = guard;
        let mut ctx = GroupContext::new(m, stmt, &row_condition, now)?;
        ctx.source = Some((catalog, db));
        let groups = ctx.groups()?;
        match &plan {
            Plan::Raw => {
                let range = (lo.unwrap_or(MIN_NANO_TIME), hi.unwrap_or(MAX_NANO_TIME));
                let cols = compile_columns(&fields, m, &ctx.tag_keys, now, &[])?;
                ctx.read_fields(cols.iter(), &[]);
                for (key, members) in groups {
                    let values = raw_group(&ctx, &members, &cols, range, stmt);
                    push_series(&mut out, m, stmt, &ctx, key, &columns, values);
                }
            }
            Plan::Aggregate {
                calls,
                selector_fields,
            } => {
                let texts: Vec<String> = calls.iter().map(|c| c.text.clone()).collect();
                let cols = compile_columns(&fields, m, &ctx.tag_keys, now, &texts)?;
                for c in calls {
                    c.check_type(m)?;
                }
                let called: Vec<&str> = calls.iter().map(|c| c.field.as_str()).collect();
                ctx.read_fields(cols.iter(), &called);
                let spec = AggSpec {
                    calls,
                    cols: &cols,
                    selector_fields: *selector_fields,
                    lo,
                    hi: hi.or(interval.map(|_| now)),
                    interval,
                    zone: stmt.timezone.as_deref().and_then(zone::lookup),
                    fill: &stmt.fill,
                };
                for (key, members) in groups {
                    let values = aggregate_group(&ctx, &members, &spec)?;
                    push_series(&mut out, m, stmt, &ctx, key, &columns, values);
                }
            }
        }
    }
    let soffset = stmt.soffset.unwrap_or(0) as usize;
    let out: Vec<ResultSeries> = out.into_iter().skip(soffset).collect();
    Ok(match stmt.slimit {
        Some(n) => out.into_iter().take(n as usize).collect(),
        None => out,
    })
}

fn push_series(
    out: &mut Vec<ResultSeries>,
    m: &Measurement,
    stmt: &SelectStatement,
    ctx: &GroupContext<'_>,
    key: Vec<(String, String)>,
    columns: &[String],
    mut values: Vec<Vec<Value>>,
) {
    let offset = stmt.offset.unwrap_or(0) as usize;
    if offset > 0 {
        values.drain(..offset.min(values.len()));
    }
    if let Some(limit) = stmt.limit {
        values.truncate(limit as usize);
    }
    if values.is_empty() {
        return;
    }
    out.push(ResultSeries {
        name: m.name.clone(),
        tags: ctx.grouped_by_tags.then_some(key),
        columns: columns.to_vec(),
        values,
    });
}

/// A measurement, its name and its database.
type NamedMeasurement = (String, Arc<Database>, Arc<RwLock<Measurement>>);

/// Series indexes by their `GROUP BY` tag values.
type Groups = BTreeMap<Vec<(String, String)>, Vec<usize>>;

/// Finds the measurements named by the sources, in name order.
fn resolve_sources(
    catalog: &Catalog,
    sources: &[Source],
    default_db: &str,
) -> Result<Vec<NamedMeasurement>, StatementError> {
    let mut found: BTreeMap<String, (Arc<Database>, Arc<RwLock<Measurement>>)> = BTreeMap::new();
    for source in sources {
        let Source::Measurement(m) = source else {
            return Err("subqueries are not supported".into());
        };
        let db_name = m.database.as_deref().unwrap_or(default_db);
        if db_name.is_empty() {
            return Err("database name required".into());
        }
        let db = catalog
            .database(db_name)
            .ok_or_else(|| format!("database not found: {db_name}"))?;
        match &m.name {
            MeasurementName::Name(n) => {
                if let Some(ms) = db.measurement(n) {
                    found.insert(n.clone(), (db.clone(), ms));
                }
            }
            MeasurementName::Regex(re) => {
                let re = re.regex()?;
                for (n, ms) in db.measurements() {
                    if re.is_match(&n) {
                        found.insert(n, (db.clone(), ms));
                    }
                }
            }
        }
    }
    Ok(found.into_iter().map(|(n, (db, m))| (n, db, m)).collect())
}

/// The union of the sources' fields and tags, which `*` expands to.
#[derive(Debug, Default)]
struct Schema {
    fields: BTreeMap<String, FieldType>,
    tags: BTreeSet<String>,
}

impl Schema {
    fn of(ms: &[&Measurement]) -> Schema {
        let mut s = Schema::default();
        for m in ms {
            for f in m.fields() {
                s.fields.entry(f.name.clone()).or_insert(f.ty);
            }
            s.tags.extend(tag_keys(m));
        }
        s
    }
}

fn tag_keys(m: &Measurement) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for s in m.series() {
        for (k, _) in &s.tags {
            if !keys.contains(k) {
                keys.insert(k.clone());
            }
        }
    }
    keys
}

/// A select-list entry after wildcard expansion: its expression and the name it prints as.
#[derive(Debug, Clone)]
struct OutField {
    expr: Expr,
    alias: Option<String>,
    generated: String,
}

fn var(name: &str, ty: DataType) -> Expr {
    Expr::VarRef {
        name: name.to_string(),
        data_type: Some(ty),
    }
}

/// Expands `*`, `*::field`, `/re/` and `fn(*)` into one entry per matching column, in name
/// order; a name that is both a field and a tag yields the field, then the tag. Tags the
/// statement groups by are not columns: they are in the series' `tags`.
fn expand_fields(
    fields: &[Field],
    schema: &Schema,
    dims: &[Dimension],
) -> Result<Vec<OutField>, StatementError> {
    let mut dim_regexes = Vec::new();
    for d in dims {
        if let Dimension::Regex(re) = d {
            dim_regexes.push(re.regex()?);
        }
    }
    let grouped = |tag: &str| {
        dim_regexes.iter().any(|re| re.is_match(tag))
            || dims.iter().any(|d| match d {
                Dimension::Tag(t) => t == tag,
                Dimension::Wildcard => true,
                _ => false,
            })
    };
    let mut out = Vec::new();
    let matching = |pred: &dyn Fn(&str) -> bool, want_fields: bool, want_tags: bool| {
        let mut names: Vec<(String, DataType)> = Vec::new();
        if want_fields {
            names.extend(
                schema
                    .fields
                    .keys()
                    .filter(|n| pred(n))
                    .map(|n| (n.clone(), DataType::Field)),
            );
        }
        if want_tags {
            names.extend(
                schema
                    .tags
                    .iter()
                    .filter(|n| pred(n) && !grouped(n))
                    .map(|n| (n.clone(), DataType::Tag)),
            );
        }
        names.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then((a.1 == DataType::Tag).cmp(&(b.1 == DataType::Tag)))
        });
        names
    };
    for f in fields {
        match &f.expr {
            Expr::Wildcard(kind) => {
                let (wf, wt) = match kind {
                    None => (true, true),
                    Some(influxql::ast::WildcardType::Field) => (true, false),
                    Some(influxql::ast::WildcardType::Tag) => (false, true),
                };
                for (n, ty) in matching(&|_| true, wf, wt) {
                    out.push(OutField {
                        expr: var(&n, ty),
                        alias: None,
                        generated: n,
                    });
                }
            }
            Expr::Regex(re) => {
                let re = re.regex()?;
                for (n, ty) in matching(&|n| re.is_match(n), true, true) {
                    out.push(OutField {
                        expr: var(&n, ty),
                        alias: None,
                        generated: n,
                    });
                }
            }
            Expr::Call { name, args }
                if matches!(args.first(), Some(Expr::Wildcard(_) | Expr::Regex(_))) =>
            {
                let pred: Box<dyn Fn(&str) -> bool> = match &args[0] {
                    Expr::Regex(re) => {
                        let re = re.regex()?.clone();
                        Box::new(move |n: &str| re.is_match(n))
                    }
                    _ => Box::new(|_: &str| true),
                };
                for (n, _) in matching(&*pred, true, false) {
                    // `mean(*)` covers the fields the function can read.
                    let ty = schema.fields.get(&n).copied();
                    let numeric_only =
                        !matches!(name.as_str(), "count" | "first" | "last" | "distinct");
                    if numeric_only && matches!(ty, Some(FieldType::String | FieldType::Boolean)) {
                        continue;
                    }
                    let mut new_args = args.clone();
                    new_args[0] = var(&n, DataType::Field);
                    out.push(OutField {
                        expr: Expr::Call {
                            name: name.clone(),
                            args: new_args,
                        },
                        alias: None,
                        generated: format!("{}_{n}", f.alias.as_deref().unwrap_or(name)),
                    });
                }
            }
            _ => out.push(OutField {
                expr: f.expr.clone(),
                alias: f.alias.clone(),
                generated: f.name(),
            }),
        }
    }
    Ok(out)
}

/// Output column names, named and de-duplicated as InfluxDB does.
fn column_names(fields: &[OutField]) -> Vec<String> {
    let columns: Vec<(Option<&str>, String)> = fields
        .iter()
        .map(|f| (f.alias.as_deref(), f.generated.clone()))
        .collect();
    resolve_column_names(&columns)
}

/// What a function call in the select list computes.
#[derive(Debug, Clone)]
enum CallKind {
    Reduce(Function),
    /// `count(distinct(f))`.
    CountDistinct,
    /// `distinct(f)`: one row per distinct value.
    Distinct,
    /// `top(f, n)` / `bottom(f, n)`: the n largest / smallest points.
    Top {
        n: usize,
        largest: bool,
    },
}

#[derive(Debug, Clone)]
struct Call {
    /// The call's canonical text, which column expressions refer to it by.
    text: String,
    name: String,
    kind: CallKind,
    field: String,
}

impl Call {
    fn is_selector(&self) -> bool {
        match &self.kind {
            CallKind::Reduce(f) => f.is_selector(),
            CallKind::Top { .. } => true,
            _ => false,
        }
    }

    fn is_count(&self) -> bool {
        matches!(
            self.kind,
            CallKind::Reduce(Function::Count) | CallKind::CountDistinct
        )
    }

    /// Refuses e.g. `mean()` of a string field, with InfluxDB's wording.
    fn check_type(&self, m: &Measurement) -> Result<(), StatementError> {
        let Some(ty) = m.field_type(&self.field) else {
            return Ok(());
        };
        let sample = match ty {
            FieldType::Float => FieldValue::Float(0.0),
            FieldType::Integer => FieldValue::Integer(0),
            FieldType::Unsigned => FieldValue::Unsigned(0),
            FieldType::Boolean => FieldValue::Boolean(false),
            FieldType::String => FieldValue::String("".into()),
        };
        let ok = match &self.kind {
            CallKind::Reduce(f) => f.accepts(&sample),
            CallKind::Top { .. } => Function::Max.accepts(&sample) && ty != FieldType::Boolean,
            CallKind::Distinct | CallKind::CountDistinct => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!("unsupported {} iterator type: {ty}", self.name))
        }
    }
}

#[derive(Debug)]
enum Plan {
    Raw,
    Aggregate {
        calls: Vec<Call>,
        /// A lone selector with plain fields beside it (`SELECT max(f), host`): those print
        /// the selected point's values.
        selector_fields: bool,
    },
}

/// Function calls of an expression, outermost first, not descending into their arguments
/// (but into a math function's: `round(mean(f))` calls `mean(f)`).
fn calls_of(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Call { name, args } if super::math::is_math(name) => {
            args.iter().for_each(|a| calls_of(a, out));
        }
        Expr::Call { name, .. } if name != "now" => out.push(e.clone()),
        Expr::Binary { lhs, rhs, .. } => {
            calls_of(lhs, out);
            calls_of(rhs, out);
        }
        Expr::Paren(inner) => calls_of(inner, out),
        _ => {}
    }
}

/// Whether an expression names a field or tag outside any call.
fn has_bare_ref(e: &Expr) -> bool {
    match e {
        Expr::VarRef { .. } => true,
        Expr::Call { name, args } if super::math::is_math(name) => args.iter().any(has_bare_ref),
        Expr::Binary { lhs, rhs, .. } => has_bare_ref(lhs) || has_bare_ref(rhs),
        Expr::Paren(inner) => has_bare_ref(inner),
        _ => false,
    }
}

fn arity_error(name: &str, expected: usize, got: usize) -> StatementError {
    format!("invalid number of arguments for {name}, expected {expected}, got {got}")
}

fn field_arg(name: &str, arg: Option<&Expr>) -> Result<String, StatementError> {
    match arg {
        Some(Expr::VarRef { name, .. }) => Ok(name.clone()),
        _ => Err(format!("expected field argument in {name}()")),
    }
}

fn parse_call(e: &Expr) -> Result<Call, StatementError> {
    let Expr::Call { name, args } = e else {
        return Err("expected a function call".into());
    };
    let text = e.to_string();
    let call = |kind, field| Call {
        text: text.clone(),
        name: name.clone(),
        kind,
        field,
    };
    match name.as_str() {
        "percentile" => {
            if args.len() != 2 {
                return Err(arity_error(name, 2, args.len()));
            }
            let p = match &args[1] {
                Expr::Integer(i) => *i as f64,
                Expr::Float(f) => *f,
                _ => return Err("expected float argument in percentile()".into()),
            };
            Ok(call(
                CallKind::Reduce(Function::Percentile(p)),
                field_arg(name, args.first())?,
            ))
        }
        "top" | "bottom" => {
            if args.len() < 2 {
                return Err(format!(
                    "invalid number of arguments for {name}, expected at least 2, got {}",
                    args.len()
                ));
            }
            let n = match args.last() {
                Some(Expr::Integer(n)) if *n > 0 => *n as usize,
                _ => {
                    return Err(format!(
                        "expected integer as last argument in {name}(), found {}",
                        args[args.len() - 1]
                    ))
                }
            };
            Ok(call(
                CallKind::Top {
                    n,
                    largest: name == "top",
                },
                field_arg(name, args.first())?,
            ))
        }
        "integral" => {
            let unit = match args.get(1) {
                None => 1_000_000_000,
                Some(Expr::Duration(d)) if *d > 0 => *d,
                Some(other) => {
                    return Err(format!("second argument must be a duration, got {other}"))
                }
            };
            if args.len() > 2 {
                return Err(format!(
                    "invalid number of arguments for integral, expected at least 1 but no more than 2, got {}",
                    args.len()
                ));
            }
            Ok(call(
                CallKind::Reduce(Function::Integral(unit)),
                field_arg(name, args.first())?,
            ))
        }
        "distinct" => {
            if args.len() != 1 {
                return Err(arity_error(name, 1, args.len()));
            }
            Ok(call(CallKind::Distinct, field_arg(name, args.first())?))
        }
        _ => {
            let Some(f) = Function::by_name(name) else {
                return Err(format!("undefined function {name}()"));
            };
            if args.len() != 1 {
                return Err(arity_error(name, 1, args.len()));
            }
            match &args[0] {
                Expr::Distinct(field) if f == Function::Count => {
                    Ok(call(CallKind::CountDistinct, field.clone()))
                }
                Expr::Call {
                    name: inner,
                    args: inner_args,
                } if inner == "distinct" && f == Function::Count => Ok(call(
                    CallKind::CountDistinct,
                    field_arg(inner, inner_args.first())?,
                )),
                other => Ok(call(CallKind::Reduce(f), field_arg(name, Some(other))?)),
            }
        }
    }
}

fn classify(fields: &[OutField], stmt: &SelectStatement) -> Result<Plan, StatementError> {
    let mut call_exprs = Vec::new();
    for f in fields {
        calls_of(&f.expr, &mut call_exprs);
    }
    if call_exprs.is_empty() {
        if stmt.group_by_interval().is_some() {
            return Err("GROUP BY requires at least one aggregate function".into());
        }
        return Ok(Plan::Raw);
    }
    let mut calls: Vec<Call> = Vec::new();
    for e in &call_exprs {
        let c = parse_call(e)?;
        if !calls.iter().any(|x| x.text == c.text) {
            calls.push(c);
        }
    }
    if stmt.group_by_interval().is_some()
        && calls
            .iter()
            .any(|c| matches!(c.kind, CallKind::Reduce(Function::Integral(_))))
    {
        // InfluxDB interpolates at window ends and carries area across windows; not done
        // here, so refused rather than answered differently.
        return Err("integral() with GROUP BY time() is not supported by this node".into());
    }
    let bare = fields.iter().any(|f| has_bare_ref(&f.expr));
    let selector_fields = bare && calls.len() == 1 && calls[0].is_selector();
    if bare && !selector_fields {
        return Err("mixing aggregate and non-aggregate queries is not supported".into());
    }
    let multi_row = calls
        .iter()
        .any(|c| matches!(c.kind, CallKind::Distinct | CallKind::Top { .. }));
    if multi_row && calls.len() > 1 {
        return Err(
            "distinct(), top() and bottom() cannot be combined with other functions".into(),
        );
    }
    Ok(Plan::Aggregate {
        calls,
        selector_fields,
    })
}

fn compile_columns(
    fields: &[OutField],
    m: &Measurement,
    tag_keys: &BTreeSet<String>,
    now: i64,
    calls: &[String],
) -> Result<Vec<CExpr>, StatementError> {
    fields
        .iter()
        .map(|f| compile(&f.expr, m, tag_keys, Context::Column, now, calls))
        .collect()
}

/// Per-measurement state shared by the groups of one statement.
struct GroupContext<'a> {
    m: &'a Measurement,
    tag_keys: BTreeSet<String>,
    dims: Vec<String>,
    grouped_by_tags: bool,
    /// The condition without its time bounds, and whether it reads only tags.
    condition: Option<CExpr>,
    series_level: bool,
    ascending: bool,
    /// Where the series' values beyond the head are (blocks), when they are read.
    source: Option<(&'a Catalog, &'a Database)>,
    /// The field ids the statement reads: only their columns are read from blocks.
    needed: BTreeSet<u32>,
}

impl<'a> GroupContext<'a> {
    /// Notes the fields the output columns, the condition and the calls read.
    fn read_fields<'c>(&mut self, cols: impl Iterator<Item = &'c CExpr>, calls: &[&str]) {
        for c in cols {
            c.fields(&mut self.needed);
        }
        if let Some(c) = &self.condition {
            c.fields(&mut self.needed);
        }
        for f in calls {
            if let Some(id) = self.m.field_id(f) {
                self.needed.insert(id);
            }
        }
    }

    /// The member series' rows within `[lo, hi]`: the head's, or the head and the blocks
    /// merged, with only the fields the statement reads. With `newest_only` (every call is
    /// `last()`), each series is read from the newest time of the fields it reads on, not
    /// from `lo`: the history before it cannot change the answer.
    fn views(
        &self,
        members: &[usize],
        (lo, hi): (i64, i64),
        newest_only: bool,
    ) -> Vec<Cow<'a, Series>> {
        let series = self.m.series();
        members
            .iter()
            .map(|&si| match self.source {
                Some((catalog, db)) => {
                    let s = &series[si];
                    let lo = if newest_only && db.deletes.filter(&self.m.name).is_empty() {
                        self.needed
                            .iter()
                            .filter_map(|&id| newest_time_bound(db, self.m, s, (lo, hi), id))
                            .min()
                            .unwrap_or(lo)
                    } else {
                        lo
                    };
                    series_view(catalog, db, self.m, s, (lo, hi), Some(&self.needed))
                }
                None => Cow::Borrowed(&series[si]),
            })
            .collect()
    }

    fn new(
        m: &'a Measurement,
        stmt: &SelectStatement,
        row_condition: &Option<Expr>,
        now: i64,
    ) -> Result<Self, StatementError> {
        let tag_keys = tag_keys(m);
        let mut dims: BTreeSet<String> = BTreeSet::new();
        let mut grouped_by_tags = false;
        for d in &stmt.dimensions {
            match d {
                Dimension::Tag(t) => {
                    dims.insert(t.clone());
                    grouped_by_tags = true;
                }
                Dimension::Wildcard => {
                    dims.extend(tag_keys.iter().cloned());
                    grouped_by_tags = true;
                }
                Dimension::Regex(re) => {
                    let re = re.regex()?;
                    dims.extend(tag_keys.iter().filter(|k| re.is_match(k)).cloned());
                    grouped_by_tags = true;
                }
                Dimension::Time { .. } => {}
                Dimension::Expr(e) => {
                    return Err(format!("only time() calls allowed in dimensions: {e}"))
                }
            }
        }
        let condition = row_condition
            .as_ref()
            .map(|c| compile(c, m, &tag_keys, Context::Condition, now, &[]))
            .transpose()?;
        let series_level = condition.as_ref().is_some_and(|c| {
            let r = c.reads();
            !r.fields && !r.time
        });
        Ok(GroupContext {
            m,
            tag_keys,
            dims: dims.into_iter().collect(),
            grouped_by_tags,
            condition,
            series_level,
            ascending: stmt.time_ascending(),
            source: None,
            needed: BTreeSet::new(),
        })
    }

    /// The series that pass the tag part of the condition, grouped by the `GROUP BY` tag
    /// values (a missing tag groups as `""`), groups and members in tag order.
    fn groups(&self) -> Result<Groups, StatementError> {
        let series = self.m.series();
        let mut order: Vec<usize> = (0..series.len()).collect();
        order.sort_by(|&a, &b| series[a].tags.cmp(&series[b].tags));
        let mut groups: Groups = BTreeMap::new();
        for i in order {
            let s = &series[i];
            if self.series_level {
                if let Some(c) = &self.condition {
                    let r = RowRef {
                        series: s,
                        row: None,
                        time: 0,
                        calls: &[],
                    };
                    if !eval(c, &r).truthy() {
                        continue;
                    }
                }
            }
            let key = self
                .dims
                .iter()
                .map(|k| (k.clone(), s.tag(k).unwrap_or("").to_string()))
                .collect();
            groups.entry(key).or_default().push(i);
        }
        Ok(groups)
    }

    /// Calls `f` for each row of `s` within `[lo, hi]` that passes the condition, in the
    /// statement's time order, until `f` returns false.
    fn rows<'s>(
        &self,
        s: &'s Series,
        (lo, hi): (i64, i64),
        ascending: bool,
        mut f: impl FnMut(i64, &'s crate::storage::series::Row) -> bool,
    ) {
        if lo > hi {
            return;
        }
        let check = !self.series_level && self.condition.is_some();
        let mut visit = |t: i64, row: &'s crate::storage::series::Row| -> bool {
            if check {
                if let Some(c) = &self.condition {
                    let r = RowRef {
                        series: s,
                        row: Some(row),
                        time: t,
                        calls: &[],
                    };
                    if !eval(c, &r).truthy() {
                        return true;
                    }
                }
            }
            f(t, row)
        };
        let range = s.rows.range(lo..=hi);
        if ascending {
            for (t, row) in range {
                if !visit(*t, row) {
                    break;
                }
            }
        } else {
            for (t, row) in range.rev() {
                if !visit(*t, row) {
                    break;
                }
            }
        }
    }
}

/// Raw rows of one group: each member series' matching rows, merged by time (then by
/// series order), keeping rows where at least one field column has a value.
fn raw_group(
    ctx: &GroupContext<'_>,
    members: &[usize],
    cols: &[CExpr],
    (lo, hi): (i64, i64),
    stmt: &SelectStatement,
) -> Vec<Vec<Value>> {
    let field_cols: Vec<bool> = cols.iter().map(|c| c.reads().fields).collect();
    if !field_cols.iter().any(|b| *b) {
        return Vec::new();
    }
    // No series can contribute more rows than OFFSET + LIMIT to the merged answer.
    let per_series = stmt
        .limit
        .map(|l| (l + stmt.offset.unwrap_or(0)) as usize)
        .unwrap_or(usize::MAX);
    let mut rows: Vec<(i64, usize, Vec<Value>)> = Vec::new();
    // Newest first with a limit and no condition on values (TSBS' lastpoint: `ORDER BY time
    // DESC LIMIT 1`): read each series from its newest values on, and from `lo` only if
    // that gave fewer rows than the limit.
    let newest_first =
        !ctx.ascending && per_series < usize::MAX && (ctx.condition.is_none() || ctx.series_level);
    // One member at a time: only one series' merged rows are in memory.
    for (rank, &si) in members.iter().enumerate() {
        for narrow in [true, false] {
            if narrow && !newest_first {
                continue;
            }
            let Some(view) = ctx.views(&[si], (lo, hi), narrow).pop() else {
                break;
            };
            let s: &Series = &view;
            let before = rows.len();
            let mut taken = 0;
            ctx.rows(s, (lo, hi), ctx.ascending, |t, row| {
                let r = RowRef {
                    series: s,
                    row: Some(row),
                    time: t,
                    calls: &[],
                };
                let vals: Vec<V<'_>> = cols.iter().map(|c| eval(c, &r)).collect();
                if vals
                    .iter()
                    .zip(&field_cols)
                    .any(|(v, f)| *f && *v != V::Null)
                {
                    let mut out = Vec::with_capacity(vals.len() + 1);
                    out.push(Value::Time(t));
                    out.extend(vals.into_iter().map(V::to_value));
                    rows.push((t, rank, out));
                    taken += 1;
                }
                taken < per_series
            });
            if !narrow || taken >= per_series {
                break;
            }
            rows.truncate(before);
        }
    }
    if members.len() > 1 {
        if ctx.ascending {
            rows.sort_by_key(|(t, rank, _)| (*t, *rank));
        } else {
            rows.sort_by_key(|(t, rank, _)| (std::cmp::Reverse(*t), *rank));
        }
    }
    rows.into_iter().map(|(_, _, v)| v).collect()
}

struct AggSpec<'a> {
    calls: &'a [Call],
    cols: &'a [CExpr],
    selector_fields: bool,
    lo: Option<i64>,
    hi: Option<i64>,
    interval: Option<(i64, i64)>,
    /// `tz()`: buckets cut at the zone's wall-clock multiples of the interval.
    zone: Option<chrono_tz::Tz>,
    fill: &'a Fill,
}

impl AggSpec<'_> {
    /// The start of the bucket holding `t` (`GROUP BY time()` only).
    fn bucket_of(&self, t: i64, interval: i64, offset: i64) -> i64 {
        match self.zone {
            Some(z) => zone::window(t, interval, offset, z).0,
            None => bucket_start(t, interval, offset),
        }
    }
}

/// A point fed to a function: its time, its series (rank in the group) and its value.
type Fed<'a> = (i64, usize, &'a FieldValue);

/// One row per bucket (or one row without `GROUP BY time()`), `fill()` applied.
fn aggregate_group(
    ctx: &GroupContext<'_>,
    members: &[usize],
    spec: &AggSpec<'_>,
) -> Result<Vec<Vec<Value>>, StatementError> {
    let m = ctx.m;
    let lo = spec.lo.unwrap_or(MIN_NANO_TIME);
    let hi = spec.hi.unwrap_or(MAX_NANO_TIME);
    // `last()` alone, per series, with no condition on values and no time buckets: the
    // newest values decide (TSBS' lastpoint), so history is not read.
    let newest_only = spec.interval.is_none()
        && (ctx.condition.is_none() || ctx.series_level)
        && spec
            .calls
            .iter()
            .all(|c| matches!(c.kind, CallKind::Reduce(Function::Last)));
    if let Some(reduced) = fold_group(ctx, members, spec, newest_only)? {
        // Only the members' tags are read.
        let head = m.series();
        let series: Vec<&Series> = members.iter().map(|&si| &head[si]).collect();
        return Ok(group_rows(ctx, spec, reduced, &series));
    }
    // Gather each referenced field's points once, member by member, so that only one
    // series' merged rows are in memory at a time (a query over a long history would
    // otherwise hold all of them). With companion fields (`SELECT max(f), g`) a selected
    // point's row is read back afterwards: then every member's rows are kept.
    let mut fields: Vec<(&str, u32)> = Vec::new();
    for c in spec.calls {
        if let Some(id) = m.field_id(&c.field) {
            if !fields.iter().any(|(f, _)| *f == c.field) {
                fields.push((&c.field, id));
            }
        }
    }
    let mut owned: BTreeMap<&str, Vec<(i64, usize, FieldValue)>> = BTreeMap::new();
    let mut kept: Vec<Cow<'_, Series>> = Vec::new();
    for (rank, &si) in members.iter().enumerate() {
        let Some(view) = ctx.views(&[si], (lo, hi), newest_only).pop() else {
            continue;
        };
        for (name, id) in &fields {
            let pts = owned.entry(name).or_default();
            // Gathering ignores ORDER BY: buckets are built ascending, then reversed.
            ctx.rows(&view, (lo, hi), true, |t, row| {
                if let Some(v) = row.get(*id) {
                    pts.push((t, rank, v.clone()));
                }
                true
            });
        }
        if spec.selector_fields {
            kept.push(view);
        }
    }
    let head = m.series();
    let series: Vec<&Series> = if spec.selector_fields {
        kept.iter().map(|v| &**v).collect()
    } else {
        // Only their tags are read below.
        members.iter().map(|&si| &head[si]).collect()
    };
    if members.len() > 1 {
        for list in owned.values_mut() {
            list.sort_by_key(|(t, rank, _)| (*t, *rank));
        }
    }
    let mut fed: BTreeMap<&str, Vec<Fed<'_>>> = BTreeMap::new();
    for c in spec.calls {
        let pts: Vec<Fed<'_>> = owned
            .get(c.field.as_str())
            .map(|list| list.iter().map(|(t, r, v)| (*t, *r, v)).collect())
            .unwrap_or_default();
        fed.insert(&c.field, pts);
    }
    if fed.values().all(|p| p.is_empty()) {
        return Ok(Vec::new());
    }

    // Without a lower bound, buckets start at the earliest point of the group.
    let earliest = fed
        .values()
        .filter_map(|p| p.first().map(|x| x.0))
        .min()
        .unwrap_or(lo);
    let buckets = bucket_bounds(spec, earliest, hi)?;

    let multi_row = spec
        .calls
        .first()
        .is_some_and(|c| matches!(c.kind, CallKind::Distinct | CallKind::Top { .. }));
    let mut rows: Vec<Vec<Value>> = Vec::new();
    if multi_row {
        let c = &spec.calls[0];
        let pts = &fed[c.field.as_str()];
        for (b_lo, b_hi) in &buckets {
            let slice = bucket_slice(pts, *b_lo, *b_hi);
            for (t, v) in multi_row_call(c, slice) {
                let time = match (&c.kind, spec.interval) {
                    (CallKind::Distinct, Some(_)) => *b_lo,
                    (CallKind::Distinct, None) => default_time(spec),
                    _ => t,
                };
                rows.push(vec![Value::Time(time), v]);
            }
        }
        if spec.interval.is_some() || matches!(c.kind, CallKind::Top { .. }) {
            rows.sort_by_key(|r| match r[0] {
                Value::Time(t) => t,
                _ => 0,
            });
        }
        if !ctx.ascending {
            rows.reverse();
        }
        return Ok(rows);
    }

    // results[call][bucket]
    let mut results: Vec<Vec<Option<Value>>> = Vec::with_capacity(spec.calls.len());
    let mut selected: Vec<Option<(i64, usize)>> = vec![None; buckets.len()];
    for c in spec.calls {
        let pts = &fed[c.field.as_str()];
        let mut col = Vec::with_capacity(buckets.len());
        for (bi, (b_lo, b_hi)) in buckets.iter().enumerate() {
            let slice = bucket_slice(pts, *b_lo, *b_hi);
            let r = reduce(c, slice);
            if let Some((_, Some((t, rank)))) = &r {
                selected[bi] = Some((*t, *rank));
            }
            col.push(r.map(|(v, _)| v));
        }
        results.push(col);
    }
    let empty: Vec<bool> = buckets
        .iter()
        .map(|(b_lo, b_hi)| bucket_was_empty(&fed, spec.calls, *b_lo, *b_hi))
        .collect();
    let reduced = Reduced {
        buckets,
        results,
        selected,
        empty,
    };
    Ok(group_rows(ctx, spec, reduced, &series))
}

/// What a group's calls gave per bucket, however the points were gathered.
struct Reduced {
    buckets: Vec<(i64, i64)>,
    /// `results[call][bucket]`, before `fill()`.
    results: Vec<Vec<Option<Value>>>,
    /// Per bucket, the point the last selector picked: (time, series rank).
    selected: Vec<Option<(i64, usize)>>,
    /// Per bucket, whether no call had a point in it.
    empty: Vec<bool>,
}

/// The `GROUP BY time()` buckets within `[earliest or the lower bound, hi]`, or the one
/// bucket of an aggregate without it.
fn bucket_bounds(
    spec: &AggSpec<'_>,
    earliest: i64,
    hi: i64,
) -> Result<Vec<(i64, i64)>, StatementError> {
    let lo = spec.lo.unwrap_or(MIN_NANO_TIME);
    let Some((interval, offset)) = spec.interval else {
        return Ok(vec![(lo, hi)]);
    };
    if let Some(z) = spec.zone {
        let from = spec.lo.unwrap_or(earliest);
        return zone::windows(from, hi, interval, offset, z, MAX_BUCKETS)
            .map(|w| w.into_iter().map(|(s, e)| (s, e.saturating_sub(1))).collect())
            .ok_or_else(|| {
                format!(
                    "too many GROUP BY time() buckets: more than {MAX_BUCKETS}; narrow the time range or widen the interval"
                )
            });
    }
    let first = bucket_start(spec.lo.unwrap_or(earliest), interval, offset);
    let last = bucket_start(hi, interval, offset);
    let n = (last - first) / interval + 1;
    if n > MAX_BUCKETS {
        return Err(format!(
            "too many GROUP BY time() buckets: {n} (at most {MAX_BUCKETS}); narrow the time range or widen the interval"
        ));
    }
    Ok((0..n)
        .map(|i| {
            let s = first + i * interval;
            (s, s.saturating_add(interval - 1))
        })
        .collect())
}

/// The group's calls folded point by point (`fold.rs`), when every call can be: memory is
/// one accumulator per call and bucket, not the group's points. `None` otherwise.
fn fold_group(
    ctx: &GroupContext<'_>,
    members: &[usize],
    spec: &AggSpec<'_>,
    newest_only: bool,
) -> Result<Option<Reduced>, StatementError> {
    if spec.selector_fields {
        return Ok(None);
    }
    let mut fresh: Vec<Acc> = Vec::with_capacity(spec.calls.len());
    let mut ids: Vec<Option<u32>> = Vec::with_capacity(spec.calls.len());
    for c in spec.calls {
        let CallKind::Reduce(f) = c.kind else {
            return Ok(None);
        };
        let Some(acc) = Acc::new(f) else {
            return Ok(None);
        };
        fresh.push(acc);
        ids.push(ctx.m.field_id(&c.field));
    }
    let lo = spec.lo.unwrap_or(MIN_NANO_TIME);
    let hi = spec.hi.unwrap_or(MAX_NANO_TIME);
    // Bucket start (or `lo` without buckets) → one accumulator per call.
    let mut accs: BTreeMap<i64, Vec<Acc>> = BTreeMap::new();
    let mut earliest: Option<i64> = None;
    for (rank, &si) in members.iter().enumerate() {
        let Some(view) = ctx.views(&[si], (lo, hi), newest_only).pop() else {
            continue;
        };
        ctx.rows(&view, (lo, hi), true, |t, row| {
            let key = spec
                .interval
                .map_or(lo, |(interval, offset)| spec.bucket_of(t, interval, offset));
            if !ids.iter().any(|id| id.and_then(|id| row.get(id)).is_some()) {
                return true;
            }
            let bucket = accs.entry(key).or_insert_with(|| fresh.clone());
            for (acc, id) in bucket.iter_mut().zip(&ids) {
                if let Some(v) = id.and_then(|id| row.get(id)) {
                    acc.add(t, rank, v);
                }
            }
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
            true
        });
        if accs.len() as i64 > MAX_BUCKETS {
            return Err(format!(
                "too many GROUP BY time() buckets: more than {MAX_BUCKETS}; narrow the time range or widen the interval"
            ));
        }
    }
    let Some(earliest) = earliest else {
        return Ok(Some(Reduced {
            buckets: Vec::new(),
            results: vec![Vec::new(); spec.calls.len()],
            selected: Vec::new(),
            empty: Vec::new(),
        }));
    };
    let buckets = bucket_bounds(spec, earliest, hi)?;
    let mut results: Vec<Vec<Option<Value>>> =
        vec![Vec::with_capacity(buckets.len()); spec.calls.len()];
    let mut selected = Vec::with_capacity(buckets.len());
    let mut empty = Vec::with_capacity(buckets.len());
    for (b_lo, _) in &buckets {
        let bucket = accs.get(b_lo);
        let mut picked = None;
        for (ci, col) in results.iter_mut().enumerate() {
            let r = bucket.and_then(|b| b[ci].finish());
            if let Some((_, Some(p))) = &r {
                picked = Some(*p);
            }
            col.push(r.map(|(v, _)| v));
        }
        selected.push(picked);
        empty.push(bucket.is_none_or(|b| b.iter().all(Acc::is_empty)));
    }
    Ok(Some(Reduced {
        buckets,
        results,
        selected,
        empty,
    }))
}

/// One row per bucket from what the calls gave, `fill()` applied; `series` are the members'
/// rows when plain columns read a selected point's row (`SELECT max(f), g`).
fn group_rows(
    ctx: &GroupContext<'_>,
    spec: &AggSpec<'_>,
    reduced: Reduced,
    series: &[&Series],
) -> Vec<Vec<Value>> {
    let Reduced {
        buckets,
        mut results,
        selected,
        empty,
    } = reduced;
    if empty.iter().all(|e| *e) {
        return Vec::new();
    }
    for (col, c) in results.iter_mut().zip(spec.calls) {
        fill_column_if_grouped(col, spec, c);
    }
    let mut rows: Vec<Vec<Value>> = Vec::new();
    for (bi, (b_lo, _)) in buckets.iter().enumerate() {
        let present = results.iter().any(|col| col[bi].is_some());
        if spec.interval.is_none() && !present {
            continue;
        }
        if spec.interval.is_some() && matches!(spec.fill, Fill::None) && empty[bi] {
            continue;
        }
        let call_values: Vec<Value> = results
            .iter()
            .map(|col| col[bi].clone().unwrap_or(Value::Null))
            .collect();
        let lone_selector =
            spec.calls.len() == 1 && spec.calls[0].is_selector() && spec.interval.is_none();
        let time = match (lone_selector, selected[bi]) {
            (true, Some((t, _))) => t,
            _ => match spec.interval {
                Some(_) => *b_lo,
                None => default_time(spec),
            },
        };
        // For `SELECT max(f), host`, plain columns read the selected point's row.
        let (row_series, row) = match (spec.selector_fields, selected[bi]) {
            (true, Some((t, rank))) => {
                let s = series[rank];
                (s, s.rows.get(&t))
            }
            _ => (series[0], None),
        };
        let r = RowRef {
            series: row_series,
            row,
            time,
            calls: &call_values,
        };
        let mut out = Vec::with_capacity(spec.cols.len() + 1);
        out.push(Value::Time(time));
        for c in spec.cols {
            out.push(eval(c, &r).to_value());
        }
        rows.push(out);
    }
    if !ctx.ascending {
        rows.reverse();
    }
    rows
}

/// The time printed for an aggregate without `GROUP BY time()`: the lower time bound, or
/// the epoch when there is none.
fn default_time(spec: &AggSpec<'_>) -> i64 {
    spec.lo.unwrap_or(0)
}

fn fill_column_if_grouped(col: &mut [Option<Value>], spec: &AggSpec<'_>, c: &Call) {
    if spec.interval.is_some() {
        fill_column(col, spec.fill, c.is_count());
    }
}

fn bucket_was_empty(fed: &BTreeMap<&str, Vec<Fed<'_>>>, calls: &[Call], lo: i64, hi: i64) -> bool {
    calls.iter().all(|c| {
        fed.get(c.field.as_str())
            .is_none_or(|p| bucket_slice(p, lo, hi).is_empty())
    })
}

/// The points of a time-sorted slice within `[lo, hi]`.
fn bucket_slice<'p, 'a>(pts: &'p [Fed<'a>], lo: i64, hi: i64) -> &'p [Fed<'a>] {
    let start = pts.partition_point(|p| p.0 < lo);
    let end = pts.partition_point(|p| p.0 <= hi);
    &pts[start..end.max(start)]
}

/// Applies a reducing call to a bucket: its value and, for selectors, the selected point.
fn reduce(c: &Call, pts: &[Fed<'_>]) -> Option<(Value, Option<(i64, usize)>)> {
    match &c.kind {
        CallKind::Reduce(f) => {
            let input: Vec<(i64, &FieldValue)> = pts.iter().map(|(t, _, v)| (*t, *v)).collect();
            let (v, t) = f.apply(&input)?;
            // A selector names its point by time; several series of the group may have a
            // point at that time, so match the value too.
            let selected = t.and_then(|t| {
                pts.iter()
                    .find(|p| p.0 == t && cell(p.2) == v)
                    .or_else(|| pts.iter().find(|p| p.0 == t))
                    .map(|p| (p.0, p.1))
            });
            Some((v, selected))
        }
        CallKind::CountDistinct => {
            if pts.is_empty() {
                return None;
            }
            let mut seen: Vec<Value> = Vec::new();
            for (_, _, v) in pts {
                let c = cell(v);
                if !seen.contains(&c) {
                    seen.push(c);
                }
            }
            Some((Value::Integer(seen.len() as i64), None))
        }
        CallKind::Distinct | CallKind::Top { .. } => None,
    }
}

/// Rows of `distinct()`, `top()` and `bottom()` for one bucket: `(time, value)`.
fn multi_row_call(c: &Call, pts: &[Fed<'_>]) -> Vec<(i64, Value)> {
    match &c.kind {
        CallKind::Distinct => {
            let mut vals: Vec<Value> = Vec::new();
            for (_, _, v) in pts {
                let c = cell(v);
                if !vals.contains(&c) {
                    vals.push(c);
                }
            }
            vals.sort_by(value_order);
            vals.into_iter().map(|v| (0, v)).collect()
        }
        CallKind::Top { n, largest } => {
            let mut idx: Vec<usize> = (0..pts.len()).collect();
            idx.sort_by(|&a, &b| {
                let o = value_order(&cell(pts[a].2), &cell(pts[b].2));
                let o = if *largest { o.reverse() } else { o };
                o.then(pts[a].0.cmp(&pts[b].0))
            });
            idx.truncate(*n);
            idx.into_iter()
                .map(|i| (pts[i].0, cell(pts[i].2)))
                .collect()
        }
        _ => Vec::new(),
    }
}

fn value_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    let f = |v: &Value| match v {
        Value::Float(f) => Some(*f),
        Value::Integer(i) => Some(*i as f64),
        Value::Unsigned(u) => Some(*u as f64),
        _ => None,
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Boolean(x), Value::Boolean(y)) => x.cmp(y),
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        _ => f(a)
            .zip(f(b))
            .and_then(|(x, y)| x.partial_cmp(&y))
            .unwrap_or(std::cmp::Ordering::Equal),
    }
}
