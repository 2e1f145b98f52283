//! Sampling shares as operators write them elsewhere in the configuration: a percentage,
//! `10%`, `0.5%`, `100%`, or the same number without its sign.

/// A share that is not one.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0:?} is not a sampling share: write a percentage from 0% to 100%, like 10%")]
pub struct RatioError(pub String);

/// The fraction of traces `text` (a percentage) asks for, in `0.0..=1.0`.
pub fn parse_ratio(text: &str) -> Result<f64, RatioError> {
    let t = text.trim();
    let t = t.strip_suffix('%').unwrap_or(t).trim();
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && (0.0..=100.0).contains(v))
        .map(|v| v / 100.0)
        .ok_or_else(|| RatioError(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_read_and_nonsense_refused() {
        assert_eq!(parse_ratio("10%"), Ok(0.1));
        assert_eq!(parse_ratio(" 100 % "), Ok(1.0));
        assert_eq!(parse_ratio("50"), Ok(0.5));
        assert_eq!(parse_ratio("0%"), Ok(0.0));
        assert_eq!(parse_ratio("0.5%"), Ok(0.005));
        for bad in ["", "%", "101%", "-1%", "NaN", "inf%", "ten"] {
            assert!(parse_ratio(bad).is_err(), "{bad}");
        }
    }
}
