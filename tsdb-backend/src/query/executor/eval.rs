//! Expressions compiled against one measurement, and their evaluation on a row.
//!
//! A `WHERE` condition or a select-list expression is compiled once per measurement: names
//! are resolved to a field column, a tag key or `time`, time literals are folded to
//! nanoseconds, and regexes are kept compiled. Evaluation then reads a row without looking
//! anything up by name. Semantics follow InfluxDB 1.x: a missing field makes a comparison
//! false, a missing tag compares as the empty string, integers and floats compare as
//! numbers, `/` always divides as floats.

use crate::model::FieldValue;
use crate::query::result::Value;
use crate::storage::series::{Measurement, Row, Series};
use influxql::ast::{BinaryOp, DataType, Expr};
pub use influxql::time::{const_time, strip_time, time_range};
use regex::Regex;
use std::collections::BTreeSet;

/// A value during evaluation, borrowing strings from the row or the expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum V<'a> {
    Null,
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(&'a str),
}

impl<'a> V<'a> {
    pub fn from_field(v: &'a FieldValue) -> V<'a> {
        match v {
            FieldValue::Float(f) => V::Float(*f),
            FieldValue::Integer(i) => V::Int(*i),
            FieldValue::Unsigned(u) => V::UInt(*u),
            FieldValue::Boolean(b) => V::Bool(*b),
            FieldValue::String(s) => V::Str(s),
        }
    }

    pub fn from_value(v: &'a Value) -> V<'a> {
        match v {
            Value::Null => V::Null,
            Value::Float(f) => V::Float(*f),
            Value::Integer(i) | Value::Time(i) => V::Int(*i),
            Value::Unsigned(u) => V::UInt(*u),
            Value::Boolean(b) => V::Bool(*b),
            Value::String(s) => V::Str(s),
        }
    }

    pub fn to_value(self) -> Value {
        match self {
            V::Null => Value::Null,
            V::Float(f) => Value::Float(f),
            V::Int(i) => Value::Integer(i),
            V::UInt(u) => Value::Unsigned(u),
            V::Bool(b) => Value::Boolean(b),
            V::Str(s) => Value::String(s.to_string()),
        }
    }

    fn as_f64(self) -> Option<f64> {
        match self {
            V::Float(f) => Some(f),
            V::Int(i) => Some(i as f64),
            V::UInt(u) => Some(u as f64),
            _ => None,
        }
    }

    pub fn truthy(self) -> bool {
        matches!(self, V::Bool(true))
    }
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum CExpr {
    Field(u32),
    /// A tag; `missing_as_null` for select columns (a tag the series lacks prints null),
    /// not for conditions (where it compares as `''`).
    Tag {
        key: String,
        missing_as_null: bool,
    },
    Time,
    Lit(Value),
    Regex(Regex),
    /// The value of the select list's n-th function call, in aggregate queries.
    Call(usize),
    /// A math function (`math.rs`) of its arguments.
    Math(&'static str, Vec<CExpr>),
    Binary(BinaryOp, Box<CExpr>, Box<CExpr>),
}

/// What a compiled expression reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Reads {
    pub fields: bool,
    pub time: bool,
}

impl CExpr {
    pub fn reads(&self) -> Reads {
        let mut r = Reads::default();
        self.visit(&mut |e| match e {
            CExpr::Field(_) => r.fields = true,
            CExpr::Time => r.time = true,
            _ => {}
        });
        r
    }

    fn visit(&self, f: &mut dyn FnMut(&CExpr)) {
        f(self);
        match self {
            CExpr::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            CExpr::Math(_, args) => args.iter().for_each(|a| a.visit(f)),
            _ => {}
        }
    }

    /// Field ids this expression reads.
    pub fn fields(&self, out: &mut BTreeSet<u32>) {
        self.visit(&mut |e| {
            if let CExpr::Field(id) = e {
                out.insert(*id);
            }
        });
    }
}

/// Where a compiled expression finds its inputs.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub series: &'a Series,
    pub row: Option<&'a Row>,
    pub time: i64,
    pub calls: &'a [Value],
}

/// Evaluates a compiled expression on a row.
pub fn eval<'a>(e: &'a CExpr, r: &RowRef<'a>) -> V<'a> {
    match e {
        CExpr::Field(id) => r
            .row
            .and_then(|row| row.get(*id))
            .map_or(V::Null, V::from_field),
        CExpr::Tag {
            key,
            missing_as_null,
        } => match r.series.tag(key) {
            Some(v) => V::Str(v),
            None if *missing_as_null => V::Null,
            None => V::Str(""),
        },
        CExpr::Time => V::Int(r.time),
        CExpr::Lit(v) => V::from_value(v),
        CExpr::Regex(_) => V::Null,
        CExpr::Call(i) => r.calls.get(*i).map_or(V::Null, V::from_value),
        CExpr::Binary(op, a, b) => binary(*op, a, b, r),
        CExpr::Math(name, args) => {
            let values: Vec<V<'a>> = args.iter().map(|a| eval(a, r)).collect();
            super::math::apply(name, &values)
        }
    }
}

fn binary<'a>(op: BinaryOp, a: &'a CExpr, b: &'a CExpr, r: &RowRef<'a>) -> V<'a> {
    match op {
        BinaryOp::And => V::Bool(eval(a, r).truthy() && eval(b, r).truthy()),
        BinaryOp::Or => V::Bool(eval(a, r).truthy() || eval(b, r).truthy()),
        BinaryOp::EqRegex | BinaryOp::NeqRegex => {
            let ((CExpr::Regex(re), other) | (other, CExpr::Regex(re))) = (a, b) else {
                return V::Bool(false);
            };
            match eval(other, r) {
                V::Str(s) => V::Bool(re.is_match(s) == (op == BinaryOp::EqRegex)),
                _ => V::Bool(false),
            }
        }
        BinaryOp::Eq
        | BinaryOp::Neq
        | BinaryOp::Lt
        | BinaryOp::Lte
        | BinaryOp::Gt
        | BinaryOp::Gte => V::Bool(compare(op, eval(a, r), eval(b, r))),
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
            arithmetic(op, eval(a, r), eval(b, r))
        }
        _ => V::Null,
    }
}

/// A comparison; anything against null is false (a point without the field never matches).
pub fn compare(op: BinaryOp, a: V<'_>, b: V<'_>) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (V::Null, _) | (_, V::Null) => return false,
        (V::Int(x), V::Int(y)) => Some(x.cmp(&y)),
        (V::UInt(x), V::UInt(y)) => Some(x.cmp(&y)),
        (V::Str(x), V::Str(y)) => Some(x.cmp(y)),
        (V::Bool(x), V::Bool(y)) => match op {
            BinaryOp::Eq | BinaryOp::Neq => Some(x.cmp(&y)),
            _ => None,
        },
        (x, y) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    let Some(ord) = ord else { return false };
    match op {
        BinaryOp::Eq => ord == Ordering::Equal,
        BinaryOp::Neq => ord != Ordering::Equal,
        BinaryOp::Lt => ord == Ordering::Less,
        BinaryOp::Lte => ord != Ordering::Greater,
        BinaryOp::Gt => ord == Ordering::Greater,
        BinaryOp::Gte => ord != Ordering::Less,
        _ => false,
    }
}

/// Arithmetic as InfluxDB does it: integer op integer stays integer except `/`, which is
/// always a float division; anything with a float is a float; null propagates.
pub fn arithmetic<'a>(op: BinaryOp, a: V<'a>, b: V<'a>) -> V<'a> {
    match (a, b) {
        (V::Int(x), V::Int(y)) if op != BinaryOp::Div => match op {
            BinaryOp::Add => V::Int(x.wrapping_add(y)),
            BinaryOp::Sub => V::Int(x.wrapping_sub(y)),
            BinaryOp::Mul => V::Int(x.wrapping_mul(y)),
            BinaryOp::Mod if y != 0 => V::Int(x.wrapping_rem(y)),
            _ => V::Null,
        },
        (x, y) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => V::Float(match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div if y == 0.0 => 0.0,
                BinaryOp::Div => x / y,
                BinaryOp::Mod => x % y,
                _ => return V::Null,
            }),
            _ => V::Null,
        },
    }
}

/// How names resolve while compiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Condition,
    Column,
}

/// Errors found while compiling an expression.
pub type CompileError = String;

/// Compiles an expression against a measurement. `calls` gives the index of each function
/// call of an aggregate select list (matched by their printed form).
pub fn compile(
    e: &Expr,
    m: &Measurement,
    tag_keys: &BTreeSet<String>,
    ctx: Context,
    now: i64,
    calls: &[String],
) -> Result<CExpr, CompileError> {
    Ok(match e {
        Expr::VarRef { name, data_type } => {
            if name == "time" && ctx == Context::Condition {
                return Ok(CExpr::Time);
            }
            let as_field = m.field_id(name).map(CExpr::Field);
            let as_tag = || CExpr::Tag {
                key: name.clone(),
                missing_as_null: ctx == Context::Column,
            };
            match data_type {
                Some(DataType::Tag) => as_tag(),
                Some(DataType::Field)
                | Some(DataType::Float)
                | Some(DataType::Integer)
                | Some(DataType::Unsigned)
                | Some(DataType::String)
                | Some(DataType::Boolean) => as_field.unwrap_or(CExpr::Lit(Value::Null)),
                None => match as_field {
                    Some(f) => f,
                    None if ctx == Context::Column && !tag_keys.contains(name) => {
                        CExpr::Lit(Value::Null)
                    }
                    None => as_tag(),
                },
            }
        }
        Expr::Call { name, args } if name == "now" && args.is_empty() => {
            CExpr::Lit(Value::Integer(now))
        }
        Expr::Call { name, args } if super::math::is_math(name) => {
            super::math::check_arity(name, args.len())?;
            let name = super::math::canonical(name);
            let args = args
                .iter()
                .map(|a| compile(a, m, tag_keys, ctx, now, calls))
                .collect::<Result<Vec<_>, _>>()?;
            CExpr::Math(name, args)
        }
        Expr::Call { .. } => {
            let text = e.to_string();
            match calls.iter().position(|c| *c == text) {
                Some(i) => CExpr::Call(i),
                None => return Err(format!("invalid use of function {text}")),
            }
        }
        Expr::Integer(i) => CExpr::Lit(Value::Integer(*i)),
        Expr::Unsigned(u) => CExpr::Lit(Value::Unsigned(*u)),
        Expr::Float(f) => CExpr::Lit(Value::Float(*f)),
        Expr::String(s) => CExpr::Lit(Value::String(s.clone())),
        Expr::Boolean(b) => CExpr::Lit(Value::Boolean(*b)),
        Expr::Duration(d) => CExpr::Lit(Value::Integer(*d)),
        Expr::Regex(re) => CExpr::Regex(re.regex()?.clone()),
        Expr::Paren(inner) => compile(inner, m, tag_keys, ctx, now, calls)?,
        Expr::Binary { op, lhs, rhs } => {
            // A comparison with `time` takes its other side as a time: a time string, an
            // integer in nanoseconds, a duration, now(), or arithmetic of those.
            if ctx == Context::Condition
                && op.is_condition()
                && (lhs.is_time_ref() || rhs.is_time_ref())
            {
                let (other, time_left) = if lhs.is_time_ref() {
                    (rhs, true)
                } else {
                    (lhs, false)
                };
                let t = const_time(other, now)
                    .ok_or_else(|| format!("invalid time comparison: {e}"))?;
                let (a, b) = (
                    Box::new(CExpr::Time),
                    Box::new(CExpr::Lit(Value::Integer(t))),
                );
                return Ok(if time_left {
                    CExpr::Binary(*op, a, b)
                } else {
                    CExpr::Binary(*op, b, a)
                });
            }
            CExpr::Binary(
                *op,
                Box::new(compile(lhs, m, tag_keys, ctx, now, calls)?),
                Box::new(compile(rhs, m, tag_keys, ctx, now, calls)?),
            )
        }
        Expr::Wildcard(_) | Expr::Distinct(_) => {
            return Err(format!("unexpected {e} in an expression"))
        }
    })
}
