//! InfluxQL's math functions (`abs`, `round`, `sqrt`, `pow`, `log`, `sin`, ...), applied
//! to a value per row: on raw fields, or around aggregates (`round(mean(f) * 10) / 10`).
//!
//! As in InfluxDB 1.x: `abs`, `round`, `floor` and `ceil` of an integer stay integers, every
//! other result is a float; `round` rounds halves away from zero (Go's `math.Round`); null
//! gives null, and so does a value that is not a number.

use super::eval::V;

/// The math functions and how many arguments each takes.
const FUNCTIONS: [(&str, usize); 20] = [
    ("abs", 1),
    ("round", 1),
    ("floor", 1),
    ("ceil", 1),
    ("sqrt", 1),
    ("pow", 2),
    ("log", 2),
    ("log2", 1),
    ("log10", 1),
    ("ln", 1),
    ("exp", 1),
    ("sin", 1),
    ("cos", 1),
    ("tan", 1),
    ("asin", 1),
    ("acos", 1),
    ("atan", 1),
    ("atan2", 2),
    ("sinh", 1),
    ("cosh", 1),
];

/// Whether `name` is a math function.
pub fn is_math(name: &str) -> bool {
    FUNCTIONS.iter().any(|(n, _)| *n == name)
}

/// The function's name as a `'static` string (what compiled expressions hold).
pub fn canonical(name: &str) -> &'static str {
    FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(n, _)| n)
}

/// Checks the number of arguments, with InfluxDB's wording.
pub fn check_arity(name: &str, got: usize) -> Result<(), String> {
    match FUNCTIONS.iter().find(|(n, _)| *n == name) {
        Some((_, n)) if *n == got => Ok(()),
        Some((_, n)) => Err(format!(
            "invalid number of arguments for {name}, expected {n}, got {got}"
        )),
        None => Err(format!("undefined function {name}()")),
    }
}

fn number(v: V<'_>) -> Option<f64> {
    match v {
        V::Float(f) => Some(f),
        V::Int(i) => Some(i as f64),
        V::UInt(u) => Some(u as f64),
        _ => None,
    }
}

/// `name` applied to `args` (already evaluated).
pub fn apply<'a>(name: &str, args: &[V<'a>]) -> V<'a> {
    let first = args.first().copied().unwrap_or(V::Null);
    // Integers keep their type through the functions that cannot leave them.
    match (name, first) {
        ("abs", V::Int(i)) => return V::Int(i.wrapping_abs()),
        ("round" | "floor" | "ceil", V::Int(i)) => return V::Int(i),
        ("abs" | "round" | "floor" | "ceil", V::UInt(u)) => return V::UInt(u),
        _ => {}
    }
    let Some(x) = number(first) else {
        return V::Null;
    };
    let second = || args.get(1).copied().and_then(number);
    let y = match name {
        "abs" => x.abs(),
        "round" => x.round(),
        "floor" => x.floor(),
        "ceil" => x.ceil(),
        "sqrt" => x.sqrt(),
        "pow" => match second() {
            Some(p) => x.powf(p),
            None => return V::Null,
        },
        // Go: math.Log(x) / math.Log(base).
        "log" => match second() {
            Some(b) => x.ln() / b.ln(),
            None => return V::Null,
        },
        "log2" => x.log2(),
        "log10" => x.log10(),
        "ln" => x.ln(),
        "exp" => x.exp(),
        "sin" => x.sin(),
        "cos" => x.cos(),
        "tan" => x.tan(),
        "asin" => x.asin(),
        "acos" => x.acos(),
        "atan" => x.atan(),
        "atan2" => match second() {
            Some(b) => x.atan2(b),
            None => return V::Null,
        },
        "sinh" => x.sinh(),
        "cosh" => x.cosh(),
        _ => return V::Null,
    };
    V::Float(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_stay_integers_where_influxdb_keeps_them() {
        assert!(matches!(apply("abs", &[V::Int(-3)]), V::Int(3)));
        assert!(matches!(apply("round", &[V::Int(7)]), V::Int(7)));
        assert!(matches!(apply("sqrt", &[V::Int(16)]), V::Float(f) if f == 4.0));
        assert!(matches!(apply("round", &[V::Float(2.5)]), V::Float(f) if f == 3.0));
        assert!(matches!(apply("round", &[V::Float(-2.5)]), V::Float(f) if f == -3.0));
        assert!(matches!(apply("sqrt", &[V::Str("x")]), V::Null));
        assert!(matches!(apply("log", &[V::Float(8.0), V::Null]), V::Null));
    }

    #[test]
    fn arity_errors_read_as_influxdb_writes_them() {
        assert_eq!(
            check_arity("abs", 2),
            Err("invalid number of arguments for abs, expected 1, got 2".into())
        );
        assert_eq!(check_arity("pow", 2), Ok(()));
    }
}
