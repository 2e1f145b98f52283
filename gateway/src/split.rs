//! Which of its pools a request on a route goes to: the first header rule it matches,
//! otherwise the route's weights (`split:`), dealt deterministically.
//!
//! The weights are dealt by a counter, not drawn at random. Request `n` of the route takes
//! position `(n × stride) mod total` in `0..total`, where `total` is the sum of the weights
//! and `stride` is coprime with it (the integer nearest `total × 0.618…` that is); position
//! `p` belongs to the target whose cumulative range holds it. Because `n ↦ n × stride mod
//! total` is a permutation of `0..total` over any `total` consecutive `n`, **every run of
//! `total` consecutive requests splits exactly by weight** (95/5 gives exactly 5 of every
//! 100 to the second pool), and the golden-ratio stride spreads a small share out instead
//! of sending it in a burst (weights 3, 1, 1 deal `a b a c a`, as nginx's smooth weighted
//! round robin does for 5, 1, 1). One atomic add per request, nothing allocated; a route
//! with one weighted target never touches the counter.
//!
//! The counter belongs to the snapshot (a reload starts it again at 0). Header rules need
//! no state: they are read from the request's headers, in the order written.

use crate::config::policy::{HeaderRule, Target};
use http::HeaderMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A route's weights, ready to deal.
#[derive(Debug)]
pub struct Split {
    /// Cumulative weights: target `i` holds positions `bounds[i-1]..bounds[i]`.
    bounds: Box<[u64]>,
    /// The sum of the weights.
    total: u64,
    /// Coprime with `total`.
    stride: u64,
    /// Requests dealt so far.
    next: AtomicU64,
}

impl Split {
    /// The dealer of these weights (a target of weight 0 is never dealt; with no weight
    /// above 0 every request goes to target 0, which compiling a policy refuses).
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Split {
        let mut sum = 0u64;
        let bounds: Box<[u64]> = weights
            .into_iter()
            .map(|w| {
                sum += u64::from(w);
                sum
            })
            .collect();
        Split {
            bounds,
            total: sum,
            stride: stride(sum),
            next: AtomicU64::new(0),
        }
    }

    /// The dealer of a route's targets' weights.
    pub fn of(targets: &[Target]) -> Split {
        Split::new(targets.iter().map(|t| t.weight))
    }

    /// The target of the next request.
    pub fn pick(&self) -> usize {
        if self.bounds.len() < 2 {
            return 0;
        }
        self.at(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The target of request number `n` (0-based): what [`Split::pick`] deals, as a pure
    /// function.
    pub fn at(&self, n: u64) -> usize {
        if self.total == 0 {
            return 0;
        }
        let p = (u128::from(n % self.total) * u128::from(self.stride)) % u128::from(self.total);
        // `p < total`, so it fits, and the last bound (`total`) is above it.
        let p = u64::try_from(p).unwrap_or(0);
        self.bounds.iter().position(|&b| p < b).unwrap_or(0)
    }
}

/// The stride of `total` positions: the integer nearest `total / φ` that is coprime with
/// `total` (1 for a total of 0 or 1).
fn stride(total: u64) -> u64 {
    if total <= 1 {
        return 1;
    }
    // total × (φ − 1), in fixed point: 0x9E37_79B9_7F4A_7C15 / 2^64 = 0.6180339887…
    let golden = ((u128::from(total) * 0x9E37_79B9_7F4A_7C15_u128) >> 64) as u64;
    // A number coprime with `total` lies within a few steps of any start (Jacobsthal's
    // function stays small); 1 always is.
    (0..total)
        .map(|k| (golden + k) % total)
        .take(1024)
        .find(|&s| s != 0 && gcd(s, total) == 1)
        .unwrap_or(1)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The target of the first rule the request matches: it carries the rule's header, with
/// exactly the rule's value when it names one (any of the header's values, if repeated).
pub fn by_header(rules: &[HeaderRule], headers: &HeaderMap) -> Option<usize> {
    rules
        .iter()
        .find(|r| {
            let mut values = headers.get_all(&r.header).iter();
            match &r.value {
                None => values.next().is_some(),
                Some(want) => values.any(|v| v == want),
            }
        })
        .map(|r| r.target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn deal(split: &Split, n: usize) -> Vec<usize> {
        (0..n).map(|_| split.pick()).collect()
    }

    fn counts(picks: &[usize], targets: usize) -> Vec<usize> {
        (0..targets)
            .map(|t| picks.iter().filter(|&&p| p == t).count())
            .collect()
    }

    #[test]
    fn ninety_five_to_five_sends_exactly_five_of_every_hundred_to_the_canary() {
        let split = Split::new([95, 5]);
        let picks = deal(&split, 1_000);
        assert_eq!(counts(&picks, 2), [950, 50]);
        // Any hundred in a row, not only aligned ones.
        for start in [0, 1, 37, 250, 899] {
            let window = &picks[start..start + 100];
            assert_eq!(
                counts(window, 2),
                [95, 5],
                "requests {start}..{}",
                start + 100
            );
        }
    }

    #[test]
    fn a_small_share_is_spread_out_not_sent_in_a_burst() {
        let split = Split::new([95, 5]);
        let canary: Vec<u64> = (0..100).filter(|&n| split.at(n) == 1).collect();
        // Positions 95..100 of the stride 61: requests 18, 36, 59, 77 and 95.
        assert_eq!(canary, [18, 36, 59, 77, 95]);
    }

    #[test]
    fn three_one_one_deals_as_smooth_weighted_round_robin() {
        // total 5, stride 3: positions 0 3 1 4 2 → a b a c a
        let split = Split::new([3, 1, 1]);
        assert_eq!(deal(&split, 10), [0, 1, 0, 2, 0, 0, 1, 0, 2, 0]);
    }

    #[test]
    fn a_weight_of_zero_is_never_dealt_and_one_pool_takes_everything() {
        let split = Split::new([0, 7, 0]);
        assert!(deal(&split, 50).iter().all(|&t| t == 1));
        let all_to_new = Split::new([0, 100]);
        assert!(deal(&all_to_new, 200).iter().all(|&t| t == 1));
        let single = Split::new([1]);
        assert_eq!(deal(&single, 3), [0, 0, 0]);
        assert_eq!(
            single.next.load(Ordering::Relaxed),
            0,
            "one target: no count"
        );
    }

    #[test]
    fn uneven_weights_split_exactly_over_their_total() {
        for weights in [vec![1, 2], vec![50, 25, 25], vec![1, 99], vec![7, 11, 13]] {
            let split = Split::new(weights.iter().copied());
            let total: u32 = weights.iter().sum();
            let picks = deal(&split, 3 * total as usize);
            let want: Vec<usize> = weights.iter().map(|&w| 3 * w as usize).collect();
            assert_eq!(counts(&picks, weights.len()), want, "{weights:?}");
        }
    }

    #[test]
    fn the_stride_is_coprime_with_the_total() {
        for total in 1..2_000u64 {
            let s = stride(total);
            assert_eq!(gcd(s, total), 1, "total {total}, stride {s}");
        }
        assert_eq!(stride(100), 61);
        assert_eq!(stride(5), 3);
        // Large weights do not overflow.
        let split = Split::new([u32::MAX, u32::MAX, 1]);
        assert_eq!(split.at(u64::MAX), split.at(u64::MAX % split.total));
    }

    fn rule(header: &str, value: Option<&str>, target: usize) -> HeaderRule {
        HeaderRule {
            header: HeaderName::from_bytes(header.as_bytes()).unwrap(),
            value: value.map(|v| HeaderValue::from_str(v).unwrap()),
            target,
        }
    }

    #[test]
    fn the_first_header_rule_that_matches_picks_the_target() {
        let rules = [rule("x-canary", Some("1"), 1), rule("x-debug", None, 2)];
        let mut h = HeaderMap::new();
        assert_eq!(by_header(&rules, &h), None, "no header: the weights decide");
        h.insert("x-canary", HeaderValue::from_static("0"));
        assert_eq!(by_header(&rules, &h), None, "another value");
        h.append("x-canary", HeaderValue::from_static("1"));
        assert_eq!(by_header(&rules, &h), Some(1), "one of its values");
        h.insert("x-debug", HeaderValue::from_static(""));
        assert_eq!(by_header(&rules, &h), Some(1), "rules in order");
        h.remove("x-canary");
        assert_eq!(by_header(&rules, &h), Some(2), "any value, even empty");
        let mut upper = HeaderMap::new();
        upper.insert("X-Canary", HeaderValue::from_static("1"));
        assert_eq!(by_header(&rules, &upper), Some(1), "names without case");
    }
}
