//! Duration literals: parsing `1h30m`-style text to nanoseconds and printing them back.
//!
//! Both mirror InfluxDB's `influxql.ParseDuration` and `influxql.FormatDuration`, including
//! Go's wrapping integer arithmetic and the overflow check that only notices a sign flip.

const NS: i64 = 1;
const US: i64 = 1_000 * NS;
const MS: i64 = 1_000 * US;
const SECOND: i64 = 1_000 * MS;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;

/// InfluxDB's message for a malformed duration.
pub const INVALID_DURATION: &str = "invalid duration";

/// Parses a duration such as `10s`, `1h30m`, `100ms`, `10u`, `10µ`, `1000ns`, `1d`, `2w`
/// (optionally with a leading `-`) to nanoseconds. Units: `ns`, `u`/`µ`, `ms`, `s`, `m`,
/// `h`, `d`, `w`; a bare number is not a duration.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    // InfluxDB rejects anything shorter than two bytes up front.
    if s.len() < 2 {
        return Err(INVALID_DURATION.to_string());
    }
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let negative = chars[0] == '-';
    if negative {
        i += 1;
    }
    let mut total: i64 = 0;
    let mut measure: i64 = 0;
    let mut unit = String::new();
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if i >= chars.len() || i == start {
            return Err(INVALID_DURATION.to_string());
        }
        let digits: String = chars[start..i].iter().collect();
        let n: i64 = digits.parse().map_err(|_| INVALID_DURATION.to_string())?;
        measure = n;
        let next_is_s = chars.get(i + 1) == Some(&'s');
        let (scale, width) = match chars[i] {
            'n' if next_is_s => (NS, 2),
            'u' | 'µ' => (US, 1),
            'm' if next_is_s => (MS, 2),
            'm' => (MINUTE, 1),
            's' => (SECOND, 1),
            'h' => (HOUR, 1),
            'd' => (DAY, 1),
            'w' => (WEEK, 1),
            _ => return Err(INVALID_DURATION.to_string()),
        };
        unit = chars[i..i + width].iter().collect();
        // Go's time.Duration arithmetic wraps silently on overflow.
        total = total.wrapping_add(n.wrapping_mul(scale));
        i += width;
    }
    if total < 0 && !negative {
        return Err(format!(
            "overflowed duration {measure}{unit}: choose a smaller duration or INF"
        ));
    }
    Ok(if negative {
        total.wrapping_neg()
    } else {
        total
    })
}

/// Prints nanoseconds in the largest unit that divides them exactly: `1h`, `90m`,
/// `1500ms`, `10u`, `7ns`, `0s`.
pub fn format_duration(d: i64) -> String {
    let units: [(i64, &str); 7] = [
        (WEEK, "w"),
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
        (MS, "ms"),
        (US, "u"),
    ];
    if d == 0 {
        return "0s".to_string();
    }
    for (scale, suffix) in units {
        if d % scale == 0 {
            return format!("{}{suffix}", d / scale);
        }
    }
    format!("{d}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_every_unit_and_compound_forms() {
        assert_eq!(parse_duration("1000ns"), Ok(1000));
        assert_eq!(parse_duration("10u"), Ok(10 * US));
        assert_eq!(parse_duration("10µ"), Ok(10 * US));
        assert_eq!(parse_duration("100ms"), Ok(100 * MS));
        assert_eq!(parse_duration("30s"), Ok(30 * SECOND));
        assert_eq!(parse_duration("5m"), Ok(5 * MINUTE));
        assert_eq!(parse_duration("1h30m"), Ok(90 * MINUTE));
        assert_eq!(parse_duration("1d"), Ok(DAY));
        assert_eq!(parse_duration("2w"), Ok(2 * WEEK));
        assert_eq!(parse_duration("-5m"), Ok(-5 * MINUTE));
    }

    #[test]
    fn malformed_durations_are_invalid() {
        for text in ["1", "1n", "1x", "1e3", "h1", "1hh", "99999999999999999999h"] {
            assert_eq!(
                parse_duration(text),
                Err(INVALID_DURATION.to_string()),
                "{text}"
            );
        }
    }

    #[test]
    fn overflowing_durations_name_the_last_term() {
        assert_eq!(
            parse_duration("106752d"),
            Err("overflowed duration 106752d: choose a smaller duration or INF".into())
        );
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(90 * MINUTE), "90m");
        assert_eq!(format_duration(HOUR), "1h");
        assert_eq!(format_duration(14 * DAY), "2w");
        assert_eq!(format_duration(1_500_000_000 * SECOND), "25000000m");
        assert_eq!(format_duration(1500 * MS), "1500ms");
        assert_eq!(format_duration(1000), "1u");
        assert_eq!(format_duration(7), "7ns");
        assert_eq!(format_duration(-30 * SECOND), "-30s");
    }
}
