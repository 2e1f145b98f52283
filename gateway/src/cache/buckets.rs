//! Bucket arithmetic for dashboard queries: which step-aligned buckets of a `GROUP BY
//! time(step)` query can come from the cache and which ranges must be asked of a backend.
//!
//! A dashboard asks the same query every few seconds with bounds that moved
//! (`time >= now-1h and time <= now`): as text it never repeats, but most of its buckets
//! are the ones it had a moment ago. The planner here is pure (time is given, the buckets
//! held are given) so that every boundary is tested exactly:
//!
//! - Bucket `k` covers `[offset + k*step, offset + (k+1)*step)`, as InfluxDB aligns
//!   `GROUP BY time(step, offset)` (to the epoch, shifted by the offset).
//! - Only a **whole** bucket inside the query's range can be shared between two queries: the
//!   first and last buckets of a range that does not start or end on a boundary hold an
//!   aggregate of part of their interval, so they are always asked for and never kept.
//! - Only a **settled** bucket is kept for long: one that ended at least the settle window
//!   before now, since late points can still land in a younger one. A younger whole bucket
//!   is kept **briefly** (the route's ttl, the freshness any cached answer has), and so is
//!   the last bucket of a range that ends at or after now (nothing newer than now exists
//!   yet, so the bucket is as whole as it will be at this instant).
//! - Everything missing is asked for in at most [`MAX_FETCHES`] ranges (the statements of
//!   one request): the usual refresh misses a partial first bucket and the recent tail.

use std::collections::BTreeMap;

/// Ranges asked of the backend for one request at most (statements of one query). With
/// more holes, the closest are fetched together with the cached buckets between them.
pub const MAX_FETCHES: usize = 2;

/// The most buckets a query may span to be planned here (a dashboard's hour at 1 s is
/// 3,600). Wider ones (`GROUP BY time(1ns)` over years) are passed through: planning walks
/// the buckets, and the node bounds them too (a million).
pub const MAX_BUCKETS: i64 = 100_000;

/// How a query's time axis is cut into buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    step_ns: i64,
    offset_ns: i64,
}

impl Grid {
    /// `GROUP BY time(step, offset)`; `None` for a step that is not positive.
    pub fn new(step_ns: i64, offset_ns: i64) -> Option<Grid> {
        (step_ns > 0).then(|| Grid {
            step_ns,
            offset_ns: offset_ns.rem_euclid(step_ns),
        })
    }

    /// The bucket holding instant `t` (worked out in 128 bits, so that no time overflows;
    /// the result always fits, since the offset is below the step).
    pub fn bucket_of(&self, t: i64) -> i64 {
        let k = (i128::from(t) - i128::from(self.offset_ns)).div_euclid(i128::from(self.step_ns));
        i64::try_from(k).unwrap_or(i64::MIN)
    }

    /// Where bucket `k` starts (clamped to the times that exist: the first bucket may start
    /// before the earliest instant an `i64` holds).
    pub fn start_of(&self, k: i64) -> i64 {
        let at = i128::from(self.offset_ns) + i128::from(k) * i128::from(self.step_ns);
        i64::try_from(at.clamp(i128::from(i64::MIN), i128::from(i64::MAX))).unwrap_or(i64::MAX)
    }

    /// Where bucket `k` ends (exclusive): where `k + 1` starts.
    pub fn end_of(&self, k: i64) -> i64 {
        self.start_of(k.saturating_add(1))
    }
}

/// A half-open time range `[start_ns, end_ns)` (a query's `time <= b` is `end_ns = b + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start_ns: i64,
    pub end_ns: i64,
}

/// Bucket indexes held in the cache for one query shape: disjoint inclusive runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// First bucket of a run -> its last.
    runs: BTreeMap<i64, i64>,
}

impl Held {
    /// Whether bucket `k` is held.
    pub fn contains(&self, k: i64) -> bool {
        self.runs
            .range(..=k)
            .next_back()
            .is_some_and(|(_, last)| *last >= k)
    }

    /// Holds buckets `first..=last` as well (merged with the runs they touch).
    pub fn insert(&mut self, first: i64, last: i64) {
        if first > last {
            return;
        }
        let (mut lo, mut hi) = (first, last);
        let touching: Vec<(i64, i64)> = self
            .runs
            .range(..=last.saturating_add(1))
            .filter(|(_, l)| **l >= first.saturating_sub(1))
            .map(|(f, l)| (*f, *l))
            .collect();
        for (f, l) in touching {
            self.runs.remove(&f);
            lo = lo.min(f);
            hi = hi.max(l);
        }
        self.runs.insert(lo, hi);
    }

    /// Stops holding buckets `first..=last` (a write landed in them).
    pub fn remove(&mut self, first: i64, last: i64) {
        if first > last {
            return;
        }
        let overlapping: Vec<(i64, i64)> = self
            .runs
            .range(..=last)
            .filter(|(_, l)| **l >= first)
            .map(|(f, l)| (*f, *l))
            .collect();
        for (f, l) in overlapping {
            self.runs.remove(&f);
            if f < first {
                self.runs.insert(f, first - 1);
            }
            if l > last {
                self.runs.insert(last + 1, l);
            }
        }
    }

    /// The held runs, in order.
    pub fn runs(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.runs.iter().map(|(f, l)| (*f, *l))
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }
}

/// What to do for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Buckets answered from the cache: inclusive runs of indexes.
    pub cached: Vec<(i64, i64)>,
    /// Ranges to ask the backend for (empty: everything is cached), at most
    /// [`MAX_FETCHES`], in time order.
    pub fetch: Vec<Range>,
    /// Buckets of the fetched answers to keep: whole and settled ones (inclusive runs).
    pub keep: Vec<(i64, i64)>,
    /// Buckets of the fetched answers to keep briefly: whole (or the last of a range ending
    /// at or after now) but not settled.
    pub keep_briefly: Vec<(i64, i64)>,
}

impl Plan {
    /// `X-Cache`'s word for it.
    pub fn outcome(&self) -> &'static str {
        match (self.cached.is_empty(), self.fetch.is_empty()) {
            (_, true) => "HIT",
            (true, false) => "MISS",
            (false, false) => "PARTIAL",
        }
    }
}

/// The plan for a query over `range` cut by `grid`, with `held` buckets in the cache (those
/// that may be served now: settled ones, and young ones still within their brief keep), at
/// `now_ns`, keeping buckets that ended at least `settle_ns` before now. `None` for an
/// empty range or one of more than [`MAX_BUCKETS`] (nothing to plan: pass it through).
pub fn plan(grid: Grid, range: Range, held: &Held, now_ns: i64, settle_ns: i64) -> Option<Plan> {
    if range.start_ns >= range.end_ns {
        return None;
    }
    let first = grid.bucket_of(range.start_ns);
    let last = grid.bucket_of(range.end_ns - 1);
    if last.checked_sub(first).is_none_or(|n| n >= MAX_BUCKETS) {
        return None;
    }
    // Whole buckets: the range covers their whole interval.
    let first_whole = if grid.start_of(first) == range.start_ns {
        first
    } else {
        first + 1
    };
    // A range that ends at or after now has its last bucket as whole as it can be yet.
    let last_whole = if grid.end_of(last) == range.end_ns || range.end_ns > now_ns {
        last
    } else {
        last - 1
    };
    // Settled buckets: ended at least the settle window ago.
    let settled_last = grid.bucket_of(now_ns.saturating_sub(settle_ns)) - 1;
    let reusable_last = last_whole.min(settled_last);
    let reusable = |k: i64| k >= first_whole && k <= last_whole;

    // Runs of buckets: cached (reusable and held) or missing.
    let mut cached: Vec<(i64, i64)> = Vec::new();
    let mut missing: Vec<(i64, i64)> = Vec::new();
    let mut k = first;
    while k <= last {
        let is_cached = reusable(k) && held.contains(k);
        // Extend to the end of this kind of run (bounded by the range's buckets).
        let mut end = k;
        while end < last && (reusable(end + 1) && held.contains(end + 1)) == is_cached {
            end += 1;
        }
        if is_cached {
            cached.push((k, end));
        } else {
            missing.push((k, end));
        }
        k = end + 1;
    }
    // Too many holes for one request: the two closest are fetched as one, with the cached
    // buckets between them, until few enough are left (the fewest buckets asked again).
    while missing.len() > MAX_FETCHES {
        let closest = (1..missing.len())
            .min_by_key(|&i| missing[i].0 - missing[i - 1].1)
            .unwrap_or(1);
        let (lo, hi) = (missing[closest - 1].0, missing[closest].1);
        cached.retain(|(f, l)| *l < lo || *f > hi);
        missing.splice(closest - 1..=closest, [(lo, hi)]);
    }
    let fetch = missing
        .iter()
        .map(|(f, l)| Range {
            start_ns: grid.start_of(*f).max(range.start_ns),
            end_ns: grid.end_of(*l).min(range.end_ns),
        })
        .collect();
    let within = |lo: i64, hi: i64| -> Vec<(i64, i64)> {
        missing
            .iter()
            .map(|(f, l)| ((*f).max(lo), (*l).min(hi)))
            .filter(|(f, l)| f <= l)
            .collect()
    };
    let keep = within(first_whole, reusable_last);
    let keep_briefly = within(first_whole.max(reusable_last.saturating_add(1)), last_whole);
    Some(Plan {
        cached,
        fetch,
        keep,
        keep_briefly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    /// 10 s buckets, aligned to the epoch.
    fn grid() -> Grid {
        Grid::new(10 * S, 0).unwrap()
    }

    fn range(start_s: i64, end_s: i64) -> Range {
        Range {
            start_ns: start_s * S,
            end_ns: end_s * S,
        }
    }

    /// Plans, then holds what the plan keeps: what a cache does for one request.
    fn serve(held: &mut Held, r: Range, now_s: i64, settle_s: i64) -> Plan {
        let p = plan(grid(), r, held, now_s * S, settle_s * S).unwrap();
        for (f, l) in &p.keep {
            held.insert(*f, *l);
        }
        p
    }

    #[test]
    fn buckets_align_to_the_epoch_shifted_by_the_offset_and_negative_times_round_down() {
        let g = grid();
        assert_eq!(g.bucket_of(0), 0);
        assert_eq!(g.bucket_of(10 * S - 1), 0);
        assert_eq!(g.bucket_of(10 * S), 1);
        assert_eq!(g.bucket_of(-1), -1);
        let shifted = Grid::new(10 * S, 2 * S).unwrap();
        assert_eq!(shifted.bucket_of(2 * S), 0);
        assert_eq!(shifted.bucket_of(2 * S - 1), -1);
        assert_eq!(shifted.start_of(1), 12 * S);
        assert_eq!(Grid::new(10 * S, 12 * S), Grid::new(10 * S, 2 * S));
        assert_eq!(Grid::new(0, 0), None);
    }

    #[test]
    fn the_first_request_fetches_the_range_and_keeps_its_whole_settled_buckets() {
        let mut held = Held::default();
        // [100, 200) at now = 260 with a 60 s settle window: buckets 10..=19 are whole, and
        // settled up to the one ending at 200 (<= 260 - 60).
        let p = serve(&mut held, range(100, 200), 260, 60);
        assert_eq!(p.outcome(), "MISS");
        assert_eq!(p.fetch, vec![range(100, 200)]);
        assert_eq!(p.keep, vec![(10, 19)]);
        assert!(p.cached.is_empty());
    }

    #[test]
    fn a_shift_of_one_step_asks_only_for_the_new_bucket_and_the_unsettled_ones() {
        let mut held = Held::default();
        serve(&mut held, range(100, 200), 200, 30);
        // At now = 200 only buckets ending by 170 are settled: 10..=16 kept.
        assert_eq!(held.runs().collect::<Vec<_>>(), vec![(10, 16)]);
        let p = serve(&mut held, range(110, 210), 210, 30);
        assert_eq!(p.outcome(), "PARTIAL");
        assert_eq!(p.cached, vec![(11, 16)]);
        assert_eq!(p.fetch, vec![range(170, 210)], "17..=20: young or new");
        assert_eq!(p.keep, vec![(17, 17)], "17 ended at 180, settled at 210");
    }

    #[test]
    fn a_shift_of_half_a_step_fetches_the_partial_first_bucket_and_the_tail_in_one_request() {
        let mut held = Held::default();
        serve(&mut held, range(100, 200), 400, 60);
        assert_eq!(held.runs().collect::<Vec<_>>(), vec![(10, 19)]);
        // [105, 205): bucket 10 partial at the start, 20 partial at the end.
        let p = serve(&mut held, range(105, 205), 400, 60);
        assert_eq!(p.outcome(), "PARTIAL");
        assert_eq!(p.cached, vec![(11, 19)]);
        assert_eq!(p.fetch, vec![range(105, 110), range(200, 205)]);
        assert!(p.keep.is_empty(), "partial buckets are never kept");
    }

    #[test]
    fn a_shift_past_the_whole_window_shares_nothing() {
        let mut held = Held::default();
        serve(&mut held, range(100, 200), 400, 60);
        let p = serve(&mut held, range(300, 400), 1000, 60);
        assert_eq!(p.outcome(), "MISS");
        assert_eq!(p.fetch, vec![range(300, 400)]);
        assert_eq!(p.keep, vec![(30, 39)]);
    }

    #[test]
    fn the_settle_boundary_is_exact() {
        // Bucket 19 ends at 200: settled when now - settle >= 200.
        for (now, kept_last) in [(259, 18), (260, 19), (261, 19)] {
            let mut held = Held::default();
            let p = serve(&mut held, range(100, 200), now, 60);
            assert_eq!(p.keep, vec![(10, kept_last)], "now = {now}");
        }
        // The unsettled bucket 19 is kept briefly instead; served while held (the cache
        // lists it as held only until its brief keep ends).
        let p = plan(grid(), range(100, 200), &Held::default(), 259 * S, 60 * S).unwrap();
        assert_eq!(p.keep_briefly, vec![(19, 19)]);
        let mut held = Held::default();
        held.insert(10, 19);
        let p = plan(grid(), range(100, 200), &held, 250 * S, 60 * S).unwrap();
        assert_eq!(p.cached, vec![(10, 19)]);
        assert!(p.fetch.is_empty());
    }

    #[test]
    fn a_range_ending_after_now_keeps_its_last_partial_bucket_briefly() {
        // [100, 205) at now = 203: bucket 20 holds what exists of it yet.
        let p = plan(grid(), range(100, 205), &Held::default(), 203 * S, 60 * S).unwrap();
        assert_eq!(p.keep, vec![(10, 13)]);
        assert_eq!(p.keep_briefly, vec![(14, 20)]);
        // The same range asked once now has passed its end: bucket 20 is partial, asked for
        // every time and never kept.
        let p = plan(grid(), range(100, 205), &Held::default(), 206 * S, 60 * S).unwrap();
        assert_eq!(p.keep_briefly, vec![(14, 19)]);
        // Held briefly, the young tail is served without a fetch: a dashboard refreshed
        // within the ttl asks only for its partial first bucket.
        let mut held = Held::default();
        held.insert(10, 20);
        let p = plan(grid(), range(105, 206), &held, 204 * S, 60 * S).unwrap();
        assert_eq!(p.cached, vec![(11, 20)]);
        assert_eq!(p.fetch, vec![range(105, 110)]);
    }

    #[test]
    fn everything_held_and_settled_is_a_hit_without_a_fetch() {
        let mut held = Held::default();
        held.insert(10, 19);
        let p = plan(grid(), range(100, 200), &held, 1000 * S, 60 * S).unwrap();
        assert_eq!(p.outcome(), "HIT");
        assert_eq!(p.cached, vec![(10, 19)]);
        assert!(p.fetch.is_empty() && p.keep.is_empty());
    }

    #[test]
    fn more_holes_than_one_request_takes_are_fetched_with_the_closest_merged() {
        let mut held = Held::default();
        held.insert(10, 19);
        // Writes landed in 12 and 15 and 17: three holes.
        held.remove(12, 12);
        held.remove(15, 15);
        held.remove(17, 17);
        assert_eq!(
            held.runs().collect::<Vec<_>>(),
            vec![(10, 11), (13, 14), (16, 16), (18, 19)]
        );
        // 15 and 17 are closest (one bucket between): fetched together with 16.
        let p = plan(grid(), range(100, 200), &held, 1000 * S, 60 * S).unwrap();
        assert_eq!(p.cached, vec![(10, 11), (13, 14), (18, 19)]);
        assert_eq!(p.fetch, vec![range(120, 130), range(150, 180)]);
        assert_eq!(p.keep, vec![(12, 12), (15, 17)]);
        // A dashboard's usual three: a partial first bucket, a late write's bucket, the
        // young tail. The first two are closer.
        let mut held = Held::default();
        held.insert(10, 30);
        held.remove(13, 13);
        let p = plan(grid(), range(95, 305), &held, 1000 * S, 60 * S).unwrap();
        assert_eq!(p.fetch, vec![range(95, 140), range(300, 305)]);
        assert_eq!(p.cached, vec![(14, 29)], "30 is partial: [300, 305)");
        // Two holes: two ranges.
        held.insert(12, 17);
        held.remove(12, 12);
        held.remove(17, 17);
        let p = plan(grid(), range(100, 200), &held, 1000 * S, 60 * S).unwrap();
        assert_eq!(p.fetch, vec![range(120, 130), range(170, 180)]);
        assert_eq!(p.cached, vec![(10, 11), (13, 16), (18, 19)]);
    }

    #[test]
    fn held_runs_merge_when_they_touch_and_split_when_a_write_lands_inside() {
        let mut held = Held::default();
        held.insert(1, 3);
        held.insert(5, 6);
        held.insert(4, 4);
        assert_eq!(held.runs().collect::<Vec<_>>(), vec![(1, 6)]);
        held.insert(0, 0);
        held.insert(7, 9);
        assert_eq!(held.runs().collect::<Vec<_>>(), vec![(0, 9)]);
        held.remove(3, 4);
        assert_eq!(held.runs().collect::<Vec<_>>(), vec![(0, 2), (5, 9)]);
        held.remove(-5, 0);
        held.remove(9, 20);
        assert_eq!(held.runs().collect::<Vec<_>>(), vec![(1, 2), (5, 8)]);
        assert!(held.contains(1) && !held.contains(3) && held.contains(8) && !held.contains(9));
        held.remove(0, 100);
        assert!(held.is_empty());
    }

    #[test]
    fn an_empty_range_is_not_planned() {
        assert_eq!(plan(grid(), range(5, 5), &Held::default(), 0, 0), None);
        assert_eq!(plan(grid(), range(6, 5), &Held::default(), 0, 0), None);
    }

    #[test]
    fn a_range_over_too_many_buckets_or_the_ends_of_time_is_passed_through_at_once() {
        let nanos = Grid::new(1, 0).unwrap();
        let everything = Range {
            start_ns: i64::MIN,
            end_ns: i64::MAX,
        };
        assert_eq!(plan(nanos, everything, &Held::default(), 0, 0), None);
        // The largest plannable range, and one bucket more.
        let r = |buckets: i64| Range {
            start_ns: 0,
            end_ns: buckets * 10 * S,
        };
        assert!(plan(grid(), r(MAX_BUCKETS), &Held::default(), 0, 0).is_some());
        assert_eq!(
            plan(grid(), r(MAX_BUCKETS + 1), &Held::default(), 0, 0),
            None
        );
        // Near the ends of time, with an offset: no overflow.
        let shifted = Grid::new(10 * S, 3 * S).unwrap();
        assert_eq!(
            shifted.bucket_of(i64::MIN),
            (i128::from(i64::MIN) - 3_000_000_000).div_euclid(10_000_000_000) as i64
        );
        // Where saturating first would have named the wrong bucket: 8 s past the smallest
        // time lies before the first boundary with a 9 s offset.
        let late_offset = Grid::new(10 * S, 9 * S).unwrap();
        let t = i64::MIN + 8 * S;
        let k = late_offset.bucket_of(t);
        assert!(late_offset.start_of(k) <= t && t < late_offset.end_of(k));
        let edge = Range {
            start_ns: i64::MIN,
            end_ns: i64::MIN + 5 * S,
        };
        let p = plan(shifted, edge, &Held::default(), i64::MIN, i64::MAX).unwrap();
        assert_eq!(p.fetch, vec![edge]);
        let top = Range {
            start_ns: i64::MAX - 5 * S,
            end_ns: i64::MAX,
        };
        assert_eq!(
            plan(shifted, top, &Held::default(), i64::MAX, 0)
                .unwrap()
                .fetch,
            vec![top]
        );
    }
}
