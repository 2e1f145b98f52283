//! The InfluxQL abstract syntax tree, whose `Display` prints canonical InfluxQL.
//!
//! Every node prints the way InfluxDB 1.x's `String()` methods do (identifiers quoted only
//! when needed, floats with three decimals, durations in their largest exact unit, `<>` as
//! `!=`), so `parse_query(text)?[0].to_string()` is what InfluxDB would echo back.
//! Durations and times are `i64` nanoseconds.

use crate::duration::format_duration;
use crate::lexer::{is_ident_char_at, is_ident_first_char, lookup, Token};
use std::fmt;

/// One InfluxQL statement.
///
/// Statements outside the subset the TSDB node executes (user and privilege management,
/// continuous queries, subscriptions, shards, `SHOW QUERIES`, cardinality statements,
/// `KILL`, ...) are recognised by their leading keywords, which are checked like InfluxDB
/// does, and the rest of their text up to `;` is kept unparsed in [`Statement::Unsupported`].
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Select(Box<SelectStatement>),
    /// `EXPLAIN [ANALYZE] SELECT ...`
    Explain(ExplainStatement),
    /// `DELETE [FROM sources] [WHERE cond]`
    Delete(DeleteStatement),
    /// `DROP SERIES [FROM sources] [WHERE cond]`
    DropSeries(DropSeriesStatement),
    ShowDatabases,
    ShowMeasurements(ShowMeasurementsStatement),
    ShowTagKeys(ShowTagKeysStatement),
    ShowTagValues(ShowTagValuesStatement),
    ShowFieldKeys(ShowFieldKeysStatement),
    ShowSeries(ShowSeriesStatement),
    /// `SHOW SERIES | MEASUREMENT | TAG KEY | TAG VALUES | FIELD KEY [EXACT] CARDINALITY`.
    ShowCardinality(ShowCardinalityStatement),
    ShowRetentionPolicies(ShowRetentionPoliciesStatement),
    CreateDatabase(CreateDatabaseStatement),
    DropDatabase(DropDatabaseStatement),
    CreateRetentionPolicy(CreateRetentionPolicyStatement),
    AlterRetentionPolicy(AlterRetentionPolicyStatement),
    DropRetentionPolicy(DropRetentionPolicyStatement),
    DropMeasurement(DropMeasurementStatement),
    /// A statement InfluxDB knows but the TSDB node does not execute: its source text.
    Unsupported(String),
}

/// `SELECT fields [INTO target] FROM sources [WHERE condition] [GROUP BY dimensions]
/// [fill(...)] [ORDER BY time ASC|DESC] [LIMIT n] [OFFSET n] [SLIMIT n] [SOFFSET n]
/// [tz('...')]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SelectStatement {
    pub fields: Vec<Field>,
    /// `INTO` target; the executor may reject it.
    pub into: Option<Target>,
    /// One or more sources (InfluxDB allows a comma-separated list and subqueries).
    pub sources: Vec<Source>,
    pub condition: Option<Expr>,
    pub dimensions: Vec<Dimension>,
    pub fill: Fill,
    /// `ORDER BY`, if given. Only `time` (or no name) parses, as in InfluxDB.
    pub order_by: Option<SortField>,
    /// `LIMIT`; `None` when absent or 0 (InfluxDB treats 0 as "no limit").
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub slimit: Option<u64>,
    pub soffset: Option<u64>,
    /// The `tz('...')` name, unvalidated.
    pub timezone: Option<String>,
}

/// One item of the SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub expr: Expr,
    pub alias: Option<String>,
}

/// `SELECT ... INTO [db.][rp.]measurement` or `INTO [db.][rp.]:MEASUREMENT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    /// `None` for the `:MEASUREMENT` back-reference.
    pub measurement: Option<String>,
}

/// A data source of a SELECT (or of SHOW / DELETE statements, which take measurements only).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Measurement(Measurement),
    SubQuery(Box<SelectStatement>),
}

/// `[db.][rp.]name` or `[db.][rp.]/regex/`; `db..name` leaves the policy out.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub name: MeasurementName,
}

/// A measurement named exactly or matched by a regex.
#[derive(Debug, Clone, PartialEq)]
pub enum MeasurementName {
    Name(String),
    Regex(RegexLit),
}

/// A `GROUP BY` item, classified for the executor.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    /// `time(interval)` or `time(interval, offset)` with duration arguments.
    Time { interval: i64, offset: Option<i64> },
    /// A tag key (a plain identifier).
    Tag(String),
    /// `*`: every tag.
    Wildcard,
    /// `/regex/`: every tag key it matches.
    Regex(RegexLit),
    /// Anything else InfluxDB parses here (e.g. `time(1h, now())`, `host::tag`); the
    /// executor should reject it.
    Expr(Expr),
}

/// How empty `GROUP BY time()` windows are filled.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fill {
    #[default]
    Null,
    None,
    Previous,
    Linear,
    Integer(i64),
    Float(f64),
}

/// An `ORDER BY` item. InfluxDB accepts only `time` or no name at all.
#[derive(Debug, Clone, PartialEq)]
pub struct SortField {
    pub name: Option<String>,
    pub ascending: bool,
}

/// The type named in a `::` cast of a variable reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Float,
    Integer,
    Unsigned,
    String,
    Boolean,
    /// `::field`: any field.
    Field,
    /// `::tag`
    Tag,
}

/// Which columns a `*` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WildcardType {
    Field,
    Tag,
}

/// A regex literal: its source pattern (with `\/` already unescaped), checked when it is
/// parsed and compiled when a statement first uses it ([`RegexLit::regex`]): parsing a
/// query does not pay for compiling its regexes, and text that is only parsed never does.
#[derive(Debug, Clone)]
pub struct RegexLit {
    pub pattern: String,
    compiled: std::sync::OnceLock<regex::Regex>,
}

impl PartialEq for RegexLit {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

/// A binary operator with InfluxDB's precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    And,
    Or,
    Eq,
    Neq,
    EqRegex,
    NeqRegex,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A field or tag reference; segments written `a.b` are joined with `.`.
    VarRef {
        name: String,
        data_type: Option<DataType>,
    },
    /// A function call; the name is lower-cased as InfluxDB does. `now()` is a call.
    Call {
        name: String,
        args: Vec<Expr>,
    },
    /// `DISTINCT field` (as in `count(DISTINCT value)`).
    Distinct(String),
    /// `*`, `*::field` or `*::tag`.
    Wildcard(Option<WildcardType>),
    Integer(i64),
    /// An integer literal too large for `i64`.
    Unsigned(u64),
    Float(f64),
    /// A single-quoted string; time strings like `'2009-11-10T23:00:00Z'` stay strings.
    String(String),
    Boolean(bool),
    /// A duration literal in nanoseconds (`1h`, `-5m`, `1500000000s`).
    Duration(i64),
    Regex(RegexLit),
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Paren(Box<Expr>),
}

/// `EXPLAIN [ANALYZE] SELECT ...`
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainStatement {
    pub analyze: bool,
    pub statement: Box<SelectStatement>,
}

/// `DELETE [FROM measurements] [WHERE condition]` (at least one of the two).
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteStatement {
    pub sources: Vec<Source>,
    pub condition: Option<Expr>,
}

/// `DROP SERIES [FROM measurements] [WHERE condition]` (at least one of the two).
#[derive(Debug, Clone, PartialEq)]
pub struct DropSeriesStatement {
    pub sources: Vec<Source>,
    pub condition: Option<Expr>,
}

/// `SHOW MEASUREMENTS [ON db] [WITH MEASUREMENT = m | =~ /re/] [WHERE ...] [ORDER BY ...]
/// [LIMIT n] [OFFSET n]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowMeasurementsStatement {
    pub database: Option<String>,
    /// The `WITH MEASUREMENT` clause; a regex name prints as `=~` whatever was written.
    pub with_measurement: Option<Measurement>,
    pub condition: Option<Expr>,
    pub order_by: Option<SortField>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// `SHOW TAG KEYS [ON db] [FROM ...] [WHERE ...] [ORDER BY ...] [LIMIT n] [OFFSET n]
/// [SLIMIT n] [SOFFSET n]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowTagKeysStatement {
    pub database: Option<String>,
    pub sources: Vec<Source>,
    pub condition: Option<Expr>,
    pub order_by: Option<SortField>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub slimit: Option<u64>,
    pub soffset: Option<u64>,
}

/// `SHOW TAG VALUES [ON db] [FROM ...] WITH KEY ... [WHERE ...] [ORDER BY ...] [LIMIT n]
/// [OFFSET n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowTagValuesStatement {
    pub database: Option<String>,
    pub sources: Vec<Source>,
    pub key: TagKeyMatch,
    pub condition: Option<Expr>,
    pub order_by: Option<SortField>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// The `WITH KEY` clause of `SHOW TAG VALUES`.
#[derive(Debug, Clone, PartialEq)]
pub enum TagKeyMatch {
    Eq(String),
    Neq(String),
    EqRegex(RegexLit),
    NeqRegex(RegexLit),
    In(Vec<String>),
}

/// `SHOW FIELD KEYS [ON db] [FROM ...] [ORDER BY ...] [LIMIT n] [OFFSET n]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowFieldKeysStatement {
    pub database: Option<String>,
    pub sources: Vec<Source>,
    pub order_by: Option<SortField>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// `SHOW <what> [EXACT] CARDINALITY [ON db] [FROM ...] [WITH KEY ...] [WHERE ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowCardinalityStatement {
    pub of: CardinalityOf,
    /// `EXACT`: counted; otherwise InfluxDB answers an estimate (`cardinality estimation`).
    pub exact: bool,
    pub database: Option<String>,
    pub sources: Vec<Source>,
    /// `WITH KEY ...` of `TAG VALUES`.
    pub key: Option<TagKeyMatch>,
    pub condition: Option<Expr>,
    /// The statement as written, which is how it prints.
    pub text: String,
}

impl fmt::Display for ShowCardinalityStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a cardinality statement counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardinalityOf {
    Series,
    Measurement,
    TagKey,
    TagValues,
    FieldKey,
}

/// `SHOW SERIES [ON db] [FROM ...] [WHERE ...] [ORDER BY ...] [LIMIT n] [OFFSET n]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowSeriesStatement {
    pub database: Option<String>,
    pub sources: Vec<Source>,
    pub condition: Option<Expr>,
    pub order_by: Option<SortField>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

/// `SHOW RETENTION POLICIES [ON db]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShowRetentionPoliciesStatement {
    pub database: Option<String>,
}

/// `CREATE DATABASE name [WITH [DURATION d] [REPLICATION n] [SHARD DURATION d] [NAME rp]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateDatabaseStatement {
    pub name: String,
    /// Present when `WITH` was given.
    pub retention_policy: Option<RetentionPolicySpec>,
}

/// The retention policy options of `CREATE DATABASE ... WITH`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RetentionPolicySpec {
    /// Nanoseconds; `Some(0)` is `INF`.
    pub duration: Option<i64>,
    pub replication: Option<u32>,
    pub shard_duration: Option<i64>,
    pub name: Option<String>,
}

/// `DROP DATABASE name`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropDatabaseStatement {
    pub name: String,
}

/// `CREATE RETENTION POLICY name ON db DURATION d REPLICATION n [SHARD DURATION d] [DEFAULT]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRetentionPolicyStatement {
    pub name: String,
    pub database: String,
    /// Nanoseconds; 0 is `INF`.
    pub duration: i64,
    pub replication: u32,
    pub shard_duration: Option<i64>,
    pub default: bool,
}

/// `ALTER RETENTION POLICY name ON db [DURATION d] [REPLICATION n] [SHARD DURATION d]
/// [DEFAULT]` (at least one option).
#[derive(Debug, Clone, PartialEq)]
pub struct AlterRetentionPolicyStatement {
    pub name: String,
    pub database: String,
    pub duration: Option<i64>,
    pub replication: Option<u32>,
    pub shard_duration: Option<i64>,
    pub default: bool,
}

/// `DROP RETENTION POLICY name ON db`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropRetentionPolicyStatement {
    pub name: String,
    pub database: String,
}

/// `DROP MEASUREMENT name`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropMeasurementStatement {
    pub name: String,
}

// ---------------------------------------------------------------------------------------
// Helpers for the executor.
// ---------------------------------------------------------------------------------------

impl SelectStatement {
    /// The `GROUP BY time(interval[, offset])` window as `(interval, offset)` in
    /// nanoseconds, the offset reduced modulo the interval like InfluxDB's `GroupByOffset`
    /// (so it keeps its sign: `time(10m, -5m)` gives `-5m`).
    pub fn group_by_interval(&self) -> Option<(i64, i64)> {
        self.dimensions.iter().find_map(|d| match d {
            Dimension::Time { interval, offset } => {
                let offset = offset.unwrap_or(0);
                Some((*interval, offset.checked_rem(*interval).unwrap_or(offset)))
            }
            _ => None,
        })
    }

    /// The tag keys named in `GROUP BY`, in order.
    pub fn group_by_tags(&self) -> Vec<&str> {
        self.dimensions
            .iter()
            .filter_map(|d| match d {
                Dimension::Tag(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Whether rows come in ascending time order (no `ORDER BY`, or `ASC`).
    pub fn time_ascending(&self) -> bool {
        self.order_by.as_ref().is_none_or(|s| s.ascending)
    }

    /// Whether this selects raw values: no function call anywhere in the fields
    /// (InfluxDB's `IsRawQuery`).
    pub fn is_raw_query(&self) -> bool {
        let mut has_call = false;
        for field in &self.fields {
            field
                .expr
                .walk(&mut |e| has_call |= matches!(e, Expr::Call { .. }));
        }
        !has_call
    }

    /// Whether a field is or contains `*` or a regex (InfluxDB's `HasFieldWildcard`).
    pub fn has_field_wildcard(&self) -> bool {
        let mut found = false;
        for field in &self.fields {
            field
                .expr
                .walk(&mut |e| found |= matches!(e, Expr::Wildcard(_) | Expr::Regex(_)));
        }
        found
    }

    /// Whether `GROUP BY` has `*` or a regex.
    pub fn has_dimension_wildcard(&self) -> bool {
        self.dimensions
            .iter()
            .any(|d| matches!(d, Dimension::Wildcard | Dimension::Regex(_)))
    }

    /// The single measurement source, if the statement has exactly one and it is not a
    /// subquery.
    pub fn measurement(&self) -> Option<&Measurement> {
        match self.sources.as_slice() {
            [Source::Measurement(m)] => Some(m),
            _ => None,
        }
    }

    /// The output column names, `time` first, named and de-duplicated like InfluxDB's
    /// `ColumnNames`: aliases win, then [`Field::name`], a repeated name gets `_1`, `_2`...
    /// `top()`/`bottom()` add a column for each extra tag argument.
    pub fn column_names(&self) -> Vec<String> {
        let mut columns: Vec<(Option<&str>, String)> = Vec::new();
        for field in &self.fields {
            columns.push((field.alias.as_deref(), field.name()));
            if let Expr::Call { name, args } = &field.expr {
                if self.into.is_none() && (name == "top" || name == "bottom") {
                    for arg in args.iter().skip(1) {
                        if let Expr::VarRef { name, .. } = arg {
                            columns.push((None, name.clone()));
                        }
                    }
                }
            }
        }
        resolve_column_names(&columns)
    }
}

/// Names columns like InfluxDB's `ColumnNames`: `time` first; aliases as given; other
/// names de-duplicated with `_1`, `_2`, ... skipping names already taken. Each entry is
/// `(alias, generated name)`.
pub fn resolve_column_names(columns: &[(Option<&str>, String)]) -> Vec<String> {
    let mut names: Vec<Option<String>> = vec![None; columns.len()];
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for (i, (alias, _)) in columns.iter().enumerate() {
        if let Some(alias) = alias {
            names[i] = Some(alias.to_string());
            seen.insert(alias.to_string(), 1);
        }
    }
    for (i, (_, generated)) in columns.iter().enumerate() {
        if names[i].is_some() {
            continue;
        }
        let mut name = generated.clone();
        if let Some(&start) = seen.get(&name) {
            let mut count = start;
            loop {
                let resolved = format!("{name}_{count}");
                if !seen.contains_key(&resolved) {
                    seen.insert(name.clone(), count + 1);
                    name = resolved;
                    break;
                }
                count += 1;
            }
        }
        *seen.entry(name.clone()).or_insert(0) += 1;
        names[i] = Some(name);
    }
    std::iter::once("time".to_string())
        .chain(names.into_iter().flatten())
        .collect()
}

impl Field {
    /// The output column name as InfluxDB derives it: the alias; else a call's function name
    /// (`mean(value)` → `mean`, `percentile(value, 90)` → `percentile`); else for arithmetic
    /// the referenced fields and calls joined by `_` (`a + b` → `a_b`, `max(x) * 2` → `max`);
    /// else the field name; else empty (a bare literal).
    pub fn name(&self) -> String {
        if let Some(alias) = &self.alias {
            return alias.clone();
        }
        expr_name(&self.expr)
    }
}

fn expr_name(expr: &Expr) -> String {
    match expr {
        Expr::Call { name, .. } => name.clone(),
        Expr::Binary { .. } => {
            let mut names = Vec::new();
            binary_expr_names(expr, &mut names);
            names.join("_")
        }
        Expr::Paren(inner) => expr_name(inner),
        Expr::VarRef { name, .. } => name.clone(),
        _ => String::new(),
    }
}

/// InfluxDB's `BinaryExprName` walk: variable names and call names (not their arguments).
fn binary_expr_names(expr: &Expr, names: &mut Vec<String>) {
    match expr {
        Expr::VarRef { name, .. } => names.push(name.clone()),
        Expr::Call { name, .. } => names.push(name.clone()),
        Expr::Binary { lhs, rhs, .. } => {
            binary_expr_names(lhs, names);
            binary_expr_names(rhs, names);
        }
        Expr::Paren(inner) => binary_expr_names(inner, names),
        _ => {}
    }
}

impl Expr {
    /// Calls `f` on this expression and every sub-expression, parents first, left to right
    /// (call arguments included).
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Call { args, .. } => args.iter().for_each(|a| a.walk(f)),
            Expr::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
            Expr::Paren(inner) => inner.walk(f),
            _ => {}
        }
    }

    /// Whether this is a reference to `time`.
    pub fn is_time_ref(&self) -> bool {
        matches!(self, Expr::VarRef { name, .. } if name == "time")
    }

    /// A binary expression node.
    pub fn binary(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }
    }
}

impl BinaryOp {
    /// InfluxDB's operator precedence: OR 1, AND 2, comparisons 3, `+ - | ^` 4, `* / % &` 5.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::Neq
            | BinaryOp::EqRegex
            | BinaryOp::NeqRegex
            | BinaryOp::Lt
            | BinaryOp::Lte
            | BinaryOp::Gt
            | BinaryOp::Gte => 3,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod | BinaryOp::BitwiseAnd => 5,
        }
    }

    /// The operator for an operator token.
    pub fn from_token(token: Token) -> Option<BinaryOp> {
        Some(match token {
            Token::Add => BinaryOp::Add,
            Token::Sub => BinaryOp::Sub,
            Token::Mul => BinaryOp::Mul,
            Token::Div => BinaryOp::Div,
            Token::Mod => BinaryOp::Mod,
            Token::BitwiseAnd => BinaryOp::BitwiseAnd,
            Token::BitwiseOr => BinaryOp::BitwiseOr,
            Token::BitwiseXor => BinaryOp::BitwiseXor,
            Token::And => BinaryOp::And,
            Token::Or => BinaryOp::Or,
            Token::Eq => BinaryOp::Eq,
            Token::Neq => BinaryOp::Neq,
            Token::EqRegex => BinaryOp::EqRegex,
            Token::NeqRegex => BinaryOp::NeqRegex,
            Token::Lt => BinaryOp::Lt,
            Token::Lte => BinaryOp::Lte,
            Token::Gt => BinaryOp::Gt,
            Token::Gte => BinaryOp::Gte,
            _ => return None,
        })
    }

    /// Whether the operator yields a boolean (comparisons and logic), which InfluxDB
    /// rejects in a SELECT field.
    pub fn is_condition(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq
                | BinaryOp::Neq
                | BinaryOp::EqRegex
                | BinaryOp::NeqRegex
                | BinaryOp::Lt
                | BinaryOp::Lte
                | BinaryOp::Gt
                | BinaryOp::Gte
                | BinaryOp::And
                | BinaryOp::Or
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::BitwiseAnd => "&",
            BinaryOp::BitwiseOr => "|",
            BinaryOp::BitwiseXor => "^",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Eq => "=",
            BinaryOp::Neq => "!=",
            BinaryOp::EqRegex => "=~",
            BinaryOp::NeqRegex => "!~",
            BinaryOp::Lt => "<",
            BinaryOp::Lte => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Gte => ">=",
        }
    }
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Float => "float",
            DataType::Integer => "integer",
            DataType::Unsigned => "unsigned",
            DataType::String => "string",
            DataType::Boolean => "boolean",
            DataType::Field => "field",
            DataType::Tag => "tag",
        }
    }
}

impl RegexLit {
    /// Checks `pattern` (already unescaped) as Go's `regexp` reads it (ASCII `\d`, `\w`, `\s`
    /// and `\b`, see `go_regex.rs`): a syntax error is the parser's.
    pub fn new(pattern: &str) -> Result<RegexLit, String> {
        crate::go_regex::check(pattern)?;
        Ok(RegexLit {
            pattern: pattern.to_string(),
            compiled: std::sync::OnceLock::new(),
        })
    }

    /// The compiled regex, compiled at the first call. A pattern whose syntax is right can
    /// still be too large to compile: that is an error of the statement using it.
    pub fn regex(&self) -> Result<&regex::Regex, String> {
        if let Some(re) = self.compiled.get() {
            return Ok(re);
        }
        let re = crate::go_regex::compile(&self.pattern)
            .map_err(|e| format!("error compiling regexp `{}`: {e}", self.pattern))?;
        Ok(self.compiled.get_or_init(|| re))
    }
}

// ---------------------------------------------------------------------------------------
// Quoting, as InfluxDB's `QuoteIdent` and `QuoteString`.
// ---------------------------------------------------------------------------------------

/// Whether an identifier must be double-quoted: a keyword, empty-safe, or with a
/// character an unquoted identifier cannot hold.
pub fn ident_needs_quotes(ident: &str) -> bool {
    if lookup(ident) != Token::Ident {
        return true;
    }
    ident.chars().enumerate().any(|(i, c)| {
        if i == 0 {
            !is_ident_first_char(c)
        } else {
            !is_ident_char_at(c)
        }
    })
}

fn escape_into(out: &mut String, s: &str, quote: char) {
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// Quotes dot-separated identifier segments like InfluxDB's `QuoteIdent`: a segment is
/// quoted when it needs it, when it is not the last and not empty, or when it is an empty
/// first or last segment.
pub fn quote_ident(segments: &[&str]) -> String {
    let mut out = String::new();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        let quote = ident_needs_quotes(segment)
            || (i < last && !segment.is_empty())
            || ((i == 0 || i == last) && segment.is_empty());
        if quote {
            out.push('"');
        }
        escape_into(&mut out, segment, '"');
        if quote {
            out.push('"');
        }
        if i < last {
            out.push('.');
        }
    }
    out
}

/// One identifier, quoted if needed.
pub fn quote_ident1(ident: &str) -> String {
    quote_ident(&[ident])
}

/// A single-quoted string literal with `\n`, `\\` and `\'` escaped.
pub fn quote_string(s: &str) -> String {
    let mut out = String::from("'");
    escape_into(&mut out, s, '\'');
    out.push('\'');
    out
}

/// A float the way Go's `strconv.FormatFloat(v, 'f', 3, 64)` prints it.
fn format_float_3(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v:.3}")
    }
}

/// A float the way Go's `%v` prints it (InfluxDB prints a `fill()` value so): the shortest
/// round-tripping digits, in exponent form when the decimal exponent is below -4 or at
/// least 6 (`1.5`, `123456`, `1e+06`, `0.0001`, `1e-05`).
pub(crate) fn format_float_go_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, like Go's shortest mode.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest.replace('.', "")),
        None => ("", mantissa.replace('.', "")),
    };
    if !(-4..6).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

// ---------------------------------------------------------------------------------------
// Display: canonical InfluxQL, as InfluxDB's `String()` methods.
// ---------------------------------------------------------------------------------------

fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

fn write_on(f: &mut fmt::Formatter<'_>, database: &Option<String>) -> fmt::Result {
    match database {
        Some(db) => write!(f, " ON {}", quote_ident1(db)),
        None => Ok(()),
    }
}

fn write_from(f: &mut fmt::Formatter<'_>, sources: &[Source]) -> fmt::Result {
    if sources.is_empty() {
        return Ok(());
    }
    f.write_str(" FROM ")?;
    write_list(f, sources)
}

fn write_where(f: &mut fmt::Formatter<'_>, condition: &Option<Expr>) -> fmt::Result {
    match condition {
        Some(c) => write!(f, " WHERE {c}"),
        None => Ok(()),
    }
}

fn write_order_by(f: &mut fmt::Formatter<'_>, order_by: &Option<SortField>) -> fmt::Result {
    match order_by {
        Some(s) => write!(f, " ORDER BY {s}"),
        None => Ok(()),
    }
}

fn write_n(f: &mut fmt::Formatter<'_>, keyword: &str, n: Option<u64>) -> fmt::Result {
    match n {
        Some(n) if n > 0 => write!(f, " {keyword} {n}"),
        _ => Ok(()),
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Select(s) => s.fmt(f),
            Statement::Explain(s) => s.fmt(f),
            Statement::Delete(s) => s.fmt(f),
            Statement::DropSeries(s) => s.fmt(f),
            Statement::ShowDatabases => f.write_str("SHOW DATABASES"),
            Statement::ShowMeasurements(s) => s.fmt(f),
            Statement::ShowTagKeys(s) => s.fmt(f),
            Statement::ShowTagValues(s) => s.fmt(f),
            Statement::ShowFieldKeys(s) => s.fmt(f),
            Statement::ShowSeries(s) => s.fmt(f),
            Statement::ShowCardinality(s) => s.fmt(f),
            Statement::ShowRetentionPolicies(s) => s.fmt(f),
            Statement::CreateDatabase(s) => s.fmt(f),
            Statement::DropDatabase(s) => s.fmt(f),
            Statement::CreateRetentionPolicy(s) => s.fmt(f),
            Statement::AlterRetentionPolicy(s) => s.fmt(f),
            Statement::DropRetentionPolicy(s) => s.fmt(f),
            Statement::DropMeasurement(s) => s.fmt(f),
            Statement::Unsupported(text) => f.write_str(text),
        }
    }
}

impl fmt::Display for SelectStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        write_list(f, &self.fields)?;
        if let Some(into) = &self.into {
            write!(f, " {into}")?;
        }
        write_from(f, &self.sources)?;
        write_where(f, &self.condition)?;
        if !self.dimensions.is_empty() {
            f.write_str(" GROUP BY ")?;
            write_list(f, &self.dimensions)?;
        }
        match self.fill {
            Fill::Null => {}
            Fill::None => f.write_str(" fill(none)")?,
            Fill::Previous => f.write_str(" fill(previous)")?,
            Fill::Linear => f.write_str(" fill(linear)")?,
            Fill::Integer(n) => write!(f, " fill({n})")?,
            Fill::Float(v) => write!(f, " fill({})", format_float_go_v(v))?,
        }
        write_order_by(f, &self.order_by)?;
        write_n(f, "LIMIT", self.limit)?;
        write_n(f, "OFFSET", self.offset)?;
        write_n(f, "SLIMIT", self.slimit)?;
        write_n(f, "SOFFSET", self.soffset)?;
        if let Some(tz) = &self.timezone {
            write!(f, " TZ('{tz}')")?;
        }
        Ok(())
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        if let Some(alias) = &self.alias {
            write!(f, " AS {}", quote_ident1(alias))?;
        }
        Ok(())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("INTO ")?;
        write_qualifiers(f, &self.database, &self.retention_policy)?;
        match &self.measurement {
            Some(name) if !name.is_empty() => f.write_str(&quote_ident1(name)),
            _ => f.write_str(":MEASUREMENT"),
        }
    }
}

fn write_qualifiers(
    f: &mut fmt::Formatter<'_>,
    database: &Option<String>,
    retention_policy: &Option<String>,
) -> fmt::Result {
    if let Some(db) = database {
        write!(f, "{}.", quote_ident1(db))?;
    }
    if let Some(rp) = retention_policy {
        f.write_str(&quote_ident1(rp))?;
    }
    if database.is_some() || retention_policy.is_some() {
        f.write_str(".")?;
    }
    Ok(())
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Measurement(m) => m.fmt(f),
            Source::SubQuery(s) => write!(f, "({s})"),
        }
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_qualifiers(f, &self.database, &self.retention_policy)?;
        match &self.name {
            // InfluxDB prints nothing for an empty name (`FROM db""` reads as the name ""),
            // and its text then no longer parses; the quoted empty name `""` does, so the
            // printed statement parses back to itself (found by fuzzing).
            MeasurementName::Name(name) => f.write_str(&quote_ident1(name)),
            MeasurementName::Regex(re) => re.fmt(f),
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dimension::Time { interval, offset } => {
                write!(f, "time({}", format_duration(*interval))?;
                if let Some(offset) = offset {
                    write!(f, ", {}", format_duration(*offset))?;
                }
                f.write_str(")")
            }
            Dimension::Tag(tag) => f.write_str(&quote_ident1(tag)),
            Dimension::Wildcard => f.write_str("*"),
            Dimension::Regex(re) => re.fmt(f),
            Dimension::Expr(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for SortField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name} ")?;
        }
        f.write_str(if self.ascending { "ASC" } else { "DESC" })
    }
}

impl fmt::Display for RegexLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.pattern.replace('/', "\\/"))
    }
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::VarRef { name, data_type } => {
                f.write_str(&quote_ident1(name))?;
                if let Some(t) = data_type {
                    write!(f, "::{t}")?;
                }
                Ok(())
            }
            Expr::Call { name, args } => {
                write!(f, "{name}(")?;
                write_list(f, args)?;
                f.write_str(")")
            }
            Expr::Distinct(name) => write!(f, "DISTINCT {name}"),
            Expr::Wildcard(None) => f.write_str("*"),
            Expr::Wildcard(Some(WildcardType::Field)) => f.write_str("*::field"),
            Expr::Wildcard(Some(WildcardType::Tag)) => f.write_str("*::tag"),
            Expr::Integer(n) => write!(f, "{n}"),
            Expr::Unsigned(n) => write!(f, "{n}"),
            Expr::Float(v) => f.write_str(&format_float_3(*v)),
            Expr::String(s) => f.write_str(&quote_string(s)),
            Expr::Boolean(b) => write!(f, "{b}"),
            Expr::Duration(d) => f.write_str(&format_duration(*d)),
            Expr::Regex(re) => re.fmt(f),
            Expr::Binary { op, lhs, rhs } => write!(f, "{lhs} {op} {rhs}"),
            Expr::Paren(inner) => write!(f, "({inner})"),
        }
    }
}

impl fmt::Display for ExplainStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EXPLAIN ")?;
        if self.analyze {
            f.write_str("ANALYZE ")?;
        }
        self.statement.fmt(f)
    }
}

impl fmt::Display for DeleteStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DELETE")?;
        write_from(f, &self.sources)?;
        write_where(f, &self.condition)
    }
}

impl fmt::Display for DropSeriesStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DROP SERIES")?;
        write_from(f, &self.sources)?;
        write_where(f, &self.condition)
    }
}

impl fmt::Display for ShowMeasurementsStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHOW MEASUREMENTS")?;
        // InfluxDB prints this database name unquoted.
        if let Some(db) = &self.database {
            write!(f, " ON {db}")?;
        }
        if let Some(m) = &self.with_measurement {
            let op = match m.name {
                MeasurementName::Regex(_) => "=~",
                MeasurementName::Name(_) => "=",
            };
            write!(f, " WITH MEASUREMENT {op} {m}")?;
        }
        write_where(f, &self.condition)?;
        write_order_by(f, &self.order_by)?;
        write_n(f, "LIMIT", self.limit)?;
        write_n(f, "OFFSET", self.offset)
    }
}

impl fmt::Display for ShowTagKeysStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHOW TAG KEYS")?;
        write_on(f, &self.database)?;
        write_from(f, &self.sources)?;
        write_where(f, &self.condition)?;
        write_order_by(f, &self.order_by)?;
        write_n(f, "LIMIT", self.limit)?;
        write_n(f, "OFFSET", self.offset)?;
        write_n(f, "SLIMIT", self.slimit)?;
        write_n(f, "SOFFSET", self.soffset)
    }
}

impl fmt::Display for ShowTagValuesStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHOW TAG VALUES")?;
        write_on(f, &self.database)?;
        write_from(f, &self.sources)?;
        write!(f, " WITH KEY {}", self.key)?;
        write_where(f, &self.condition)?;
        write_order_by(f, &self.order_by)?;
        write_n(f, "LIMIT", self.limit)?;
        write_n(f, "OFFSET", self.offset)
    }
}

impl fmt::Display for TagKeyMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagKeyMatch::Eq(k) => write!(f, "= {}", quote_ident1(k)),
            TagKeyMatch::Neq(k) => write!(f, "!= {}", quote_ident1(k)),
            TagKeyMatch::EqRegex(re) => write!(f, "=~ {re}"),
            TagKeyMatch::NeqRegex(re) => write!(f, "!~ {re}"),
            TagKeyMatch::In(keys) => {
                f.write_str("IN (")?;
                let quoted: Vec<String> = keys.iter().map(|k| quote_ident1(k)).collect();
                f.write_str(&quoted.join(", "))?;
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for ShowFieldKeysStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHOW FIELD KEYS")?;
        write_on(f, &self.database)?;
        write_from(f, &self.sources)?;
        write_order_by(f, &self.order_by)?;
        write_n(f, "LIMIT", self.limit)?;
        write_n(f, "OFFSET", self.offset)
    }
}

impl fmt::Display for ShowSeriesStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHOW SERIES")?;
        write_on(f, &self.database)?;
        write_from(f, &self.sources)?;
        write_where(f, &self.condition)?;
        write_order_by(f, &self.order_by)?;
        write_n(f, "LIMIT", self.limit)?;
        write_n(f, "OFFSET", self.offset)
    }
}

impl fmt::Display for ShowRetentionPoliciesStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SHOW RETENTION POLICIES")?;
        write_on(f, &self.database)
    }
}

impl fmt::Display for CreateDatabaseStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CREATE DATABASE {}", quote_ident1(&self.name))?;
        if let Some(rp) = &self.retention_policy {
            f.write_str(" WITH")?;
            if let Some(d) = rp.duration {
                write!(f, " DURATION {}", format_duration(d))?;
            }
            if let Some(n) = rp.replication {
                write!(f, " REPLICATION {n}")?;
            }
            if let Some(d) = rp.shard_duration.filter(|d| *d > 0) {
                write!(f, " SHARD DURATION {}", format_duration(d))?;
            }
            if let Some(name) = &rp.name {
                write!(f, " NAME {}", quote_ident1(name))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for DropDatabaseStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DROP DATABASE {}", quote_ident1(&self.name))
    }
}

impl fmt::Display for CreateRetentionPolicyStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CREATE RETENTION POLICY {} ON {} DURATION {} REPLICATION {}",
            quote_ident1(&self.name),
            quote_ident1(&self.database),
            format_duration(self.duration),
            self.replication
        )?;
        if let Some(d) = self.shard_duration.filter(|d| *d > 0) {
            write!(f, " SHARD DURATION {}", format_duration(d))?;
        }
        if self.default {
            f.write_str(" DEFAULT")?;
        }
        Ok(())
    }
}

impl fmt::Display for AlterRetentionPolicyStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ALTER RETENTION POLICY {} ON {}",
            quote_ident1(&self.name),
            quote_ident1(&self.database)
        )?;
        if let Some(d) = self.duration {
            write!(f, " DURATION {}", format_duration(d))?;
        }
        if let Some(n) = self.replication {
            write!(f, " REPLICATION {n}")?;
        }
        if let Some(d) = self.shard_duration {
            write!(f, " SHARD DURATION {}", format_duration(d))?;
        }
        if self.default {
            f.write_str(" DEFAULT")?;
        }
        Ok(())
    }
}

impl fmt::Display for DropRetentionPolicyStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DROP RETENTION POLICY {} ON {}",
            quote_ident1(&self.name),
            quote_ident1(&self.database)
        )
    }
}

impl fmt::Display for DropMeasurementStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DROP MEASUREMENT {}", quote_ident1(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(name: &str) -> Expr {
        Expr::VarRef {
            name: name.to_string(),
            data_type: None,
        }
    }

    fn call(name: &str, args: Vec<Expr>) -> Expr {
        Expr::Call {
            name: name.to_string(),
            args,
        }
    }

    #[test]
    fn identifiers_are_quoted_only_when_needed() {
        assert_eq!(quote_ident1("cpu_load"), "cpu_load");
        assert_eq!(quote_ident1("select"), "\"select\"");
        assert_eq!(quote_ident1("My Tag"), "\"My Tag\"");
        assert_eq!(quote_ident1("1abc"), "\"1abc\"");
        assert_eq!(quote_ident1("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote_ident1(""), "\"\"");
        assert_eq!(quote_ident(&["a", "b", "c", "d"]), "\"a\".\"b\".\"c\".d");
        assert_eq!(quote_ident(&["db", "", "m"]), "\"db\"..m");
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_newlines() {
        assert_eq!(quote_string("it's\\\n"), "'it\\'s\\\\\\n'");
    }

    #[test]
    fn floats_print_with_three_decimals_and_fill_values_like_go_percent_v() {
        assert_eq!(Expr::Float(1.5).to_string(), "1.500");
        assert_eq!(Expr::Float(-2.0).to_string(), "-2.000");
        assert_eq!(format_float_go_v(1.5), "1.5");
        assert_eq!(format_float_go_v(100.0), "100");
        assert_eq!(format_float_go_v(123456.0), "123456");
        assert_eq!(format_float_go_v(1_000_000.5), "1.0000005e+06");
        assert_eq!(format_float_go_v(0.0001), "0.0001");
        assert_eq!(format_float_go_v(0.00001), "1e-05");
        assert_eq!(format_float_go_v(-0.25), "-0.25");
    }

    #[test]
    fn field_names_follow_influxdb_rules() {
        let field = |expr, alias: Option<&str>| Field {
            expr,
            alias: alias.map(str::to_string),
        };
        assert_eq!(field(call("mean", vec![var("value")]), None).name(), "mean");
        assert_eq!(
            field(call("percentile", vec![var("v"), Expr::Integer(90)]), None).name(),
            "percentile"
        );
        assert_eq!(
            field(Expr::binary(BinaryOp::Add, var("a"), var("b")), None).name(),
            "a_b"
        );
        assert_eq!(
            field(
                Expr::binary(BinaryOp::Mul, call("max", vec![var("x")]), Expr::Integer(2)),
                None
            )
            .name(),
            "max"
        );
        assert_eq!(field(var("value"), Some("v")).name(), "v");
        assert_eq!(field(Expr::Integer(1), None).name(), "");
    }

    #[test]
    fn column_names_put_time_first_and_number_duplicates() {
        let stmt = SelectStatement {
            fields: vec![
                Field {
                    expr: call("mean", vec![var("a")]),
                    alias: None,
                },
                Field {
                    expr: call("mean", vec![var("b")]),
                    alias: None,
                },
                Field {
                    expr: var("x"),
                    alias: Some("mean_1".to_string()),
                },
            ],
            ..SelectStatement::default()
        };
        assert_eq!(
            stmt.column_names(),
            vec!["time", "mean", "mean_2", "mean_1"]
        );
    }

    #[test]
    fn group_by_interval_reduces_the_offset_modulo_the_interval() {
        let stmt = SelectStatement {
            dimensions: vec![
                Dimension::Tag("host".to_string()),
                Dimension::Time {
                    interval: 600,
                    offset: Some(-1300),
                },
            ],
            ..SelectStatement::default()
        };
        assert_eq!(stmt.group_by_interval(), Some((600, -100)));
        assert_eq!(stmt.group_by_tags(), vec!["host"]);
        assert_eq!(SelectStatement::default().group_by_interval(), None);
    }
}
