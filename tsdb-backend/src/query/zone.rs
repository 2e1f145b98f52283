//! `tz('Europe/Berlin')`: `GROUP BY time()` buckets cut at the zone's wall-clock multiples of
//! the interval, and RFC 3339 times written with the zone's offset. Timestamps stay UTC
//! nanoseconds everywhere else; the zone database is `chrono-tz`'s (IANA, built in).
//!
//! [`window`] is InfluxDB's `IteratorOptions.Window` step for step, daylight-saving
//! corrections included: a day bucket is 23 or 25 hours long on the day of a change, and a
//! bucket shorter than the change (an hour across spring-forward) is not adjusted.

use chrono::{Offset, TimeZone};
use chrono_tz::Tz;

/// The zone named `name`, as InfluxDB would find it.
pub fn lookup(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// The zone's offset from UTC at instant `t_ns`, in nanoseconds.
pub fn offset_ns(zone: Tz, t_ns: i64) -> i64 {
    let at = zone.timestamp_nanos(t_ns);
    i64::from(at.offset().fix().local_minus_utc()) * 1_000_000_000
}

/// The bucket `[start, end)` holding `t` for `GROUP BY time(interval, offset)` in `zone`.
pub fn window(t: i64, interval: i64, offset: i64, zone: Tz) -> (i64, i64) {
    let t = t.saturating_sub(offset);
    let zone_off = offset_ns(zone, t);
    let dt = t.saturating_add(zone_off).rem_euclid(interval);
    let mut start = t - dt;
    // Now near the bucket's start, its own offset: correct by the difference unless the
    // change is as long as the bucket.
    let o = zone_off - offset_ns(zone, start);
    if o != 0 && o.abs() < interval {
        start += o;
    }
    start = start.saturating_add(offset);
    let mut end = t.saturating_add(interval - dt);
    end = end.saturating_add(offset);
    let e = zone_off - offset_ns(zone, end);
    if e != 0 && e.abs() < interval {
        end += e;
    }
    (start, end)
}

/// Buckets `[start, end)` from the one holding `lo` to the one holding `hi`, at most
/// `max` of them (`None` beyond).
pub fn windows(
    lo: i64,
    hi: i64,
    interval: i64,
    offset: i64,
    zone: Tz,
    max: i64,
) -> Option<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    let mut t = lo;
    loop {
        let (start, end) = window(t, interval, offset, zone);
        out.push((start, end));
        if out.len() as i64 > max {
            return None;
        }
        // A window always moves forward; guard against a zone rule that would not.
        let next = if end > t {
            end
        } else {
            t.saturating_add(interval)
        };
        if next > hi || next == i64::MAX {
            return Some(out);
        }
        t = next;
    }
}

/// `t_ns` as Go's RFC 3339 with nanoseconds in `zone`: trailing zeros of the fraction
/// trimmed, the offset as `+hh:mm`, or `Z` where it is zero.
pub fn rfc3339_nano(t_ns: i64, zone: Tz) -> String {
    let at = zone.timestamp_nanos(t_ns);
    let mut out = at.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t_ns.rem_euclid(1_000_000_000);
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    let secs = at.offset().fix().local_minus_utc();
    if secs == 0 {
        out.push('Z');
    } else {
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.abs();
        out.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const H: i64 = 3600 * S;

    fn berlin() -> Tz {
        lookup("Europe/Berlin").unwrap()
    }

    /// 2000-03-26T00:00:00Z: Berlin springs forward at 01:00Z that night.
    const MAR26: i64 = 954_028_800 * S;

    #[test]
    fn a_day_bucket_starts_at_local_midnight_and_the_day_of_the_change_is_23_hours() {
        let (s, e) = window(MAR26 + 12 * H, 24 * H, 0, berlin());
        assert_eq!((s, e), (MAR26 - H, MAR26 + 22 * H));
        let (s, e) = window(MAR26 + 30 * H, 24 * H, 0, berlin());
        assert_eq!((s, e), (MAR26 + 22 * H, MAR26 + 46 * H));
        // Before the change, on the same local day.
        assert_eq!(
            window(MAR26 + H / 2, 24 * H, 0, berlin()),
            (MAR26 - H, MAR26 + 22 * H)
        );
    }

    #[test]
    fn hours_across_spring_forward_follow_the_wall_clock() {
        // 00:00Z = 01:00+01:00, 01:00Z = 03:00+02:00: one bucket each, an hour long.
        assert_eq!(window(MAR26 + H / 2, H, 0, berlin()), (MAR26, MAR26 + H));
        assert_eq!(
            window(MAR26 + 3 * H / 2, H, 0, berlin()),
            (MAR26 + H, MAR26 + 2 * H)
        );
        // Three-hour buckets: 00:00+01:00 lasts two hours, then 03:00+02:00.
        assert_eq!(
            window(MAR26 - H / 2, 3 * H, 0, berlin()),
            (MAR26 - H, MAR26 + H)
        );
    }

    #[test]
    fn times_print_with_the_offset_of_their_instant() {
        assert_eq!(rfc3339_nano(MAR26, berlin()), "2000-03-26T01:00:00+01:00");
        assert_eq!(
            rfc3339_nano(MAR26 + H + 1_500_000, berlin()),
            "2000-03-26T03:00:00.0015+02:00"
        );
        assert_eq!(
            rfc3339_nano(MAR26, lookup("UTC").unwrap()),
            "2000-03-26T00:00:00Z"
        );
        assert_eq!(
            rfc3339_nano(MAR26, lookup("Asia/Kolkata").unwrap()),
            "2000-03-26T05:30:00+05:30"
        );
        assert!(lookup("Mars/Olympus_Mons").is_none());
    }
}
