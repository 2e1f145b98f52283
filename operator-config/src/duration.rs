//! Durations as operators write them: `500ms`, `1s`, `2m`, `1h`, in policies and scenarios
//! alike.

use std::time::Duration;

/// Parses one whole number with one unit (`ms`, `s`, `m`, `h`). Fractions are not
/// accepted: write `1500ms`, not `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {t:?} needs a unit: ms, s, m or h"))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("duration {t:?} must start with a whole number"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {t:?} is too large"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "duration {t:?} has an unknown unit {unit:?} (ms, s, m or h)"
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("duration {t:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_whole_number_and_one_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("1.5s"),
            Err("duration \"1.5s\" has an unknown unit \".5s\" (ms, s, m or h)".into())
        );
        assert_eq!(
            parse_duration("10"),
            Err("duration \"10\" needs a unit: ms, s, m or h".into())
        );
        assert_eq!(
            parse_duration("s"),
            Err("duration \"s\" must start with a whole number".into())
        );
        assert_eq!(
            parse_duration("5d"),
            Err("duration \"5d\" has an unknown unit \"d\" (ms, s, m or h)".into())
        );
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err("duration \"99999999999999999999s\" is too large".into())
        );
    }
}
