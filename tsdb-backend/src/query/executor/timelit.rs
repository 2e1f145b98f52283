//! Time literals in InfluxQL conditions: `'2009-11-10T23:00:00Z'` and friends.
//!
//! InfluxDB 1.x accepts, when a string is compared with `time`, RFC3339 with optional
//! fractional seconds and offset (`2006-01-02T15:04:05.999999999Z07:00`), a date and time
//! separated by a space without offset (`2006-01-02 15:04:05.999999999`, taken as UTC), and
//! a bare date (`2006-01-02`, midnight UTC).

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Nanoseconds since the epoch for a time literal, or `None` if it is not one.
pub fn parse_time_literal(s: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return dt.timestamp_nanos_opt();
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        return dt.and_utc().timestamp_nanos_opt();
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_parses_to_utc_nanoseconds() {
        assert_eq!(
            parse_time_literal("1970-01-01T00:00:01Z"),
            Some(1_000_000_000)
        );
        assert_eq!(
            parse_time_literal("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert_eq!(parse_time_literal("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_time_literal("1970-01-01 00:00:02"),
            Some(2_000_000_000)
        );
        assert_eq!(parse_time_literal("1970-01-02"), Some(86_400_000_000_000));
        assert_eq!(parse_time_literal("yesterday"), None);
    }
}
