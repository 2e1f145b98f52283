//! Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And
//! Jitter", 2015): the wait before retry `n` is uniform in `[0, min(max, base × 2^(n−1))]`.
//! Spreading each wait over the whole range, rather than around the exponential, stops
//! clients that failed together from retrying together; of the blog's variants it does the
//! least work for the same completion time.
//!
//! The randomness is the caller's (`&mut impl Rng`): a seeded generator in tests, a
//! per-worker one in the gateway.

use rand::Rng;
use std::time::Duration;

/// The wait before retry `attempt` (1 for the first retry): uniform in
/// `[0, min(max, base × 2^(attempt − 1))]`, both ends included, at nanosecond resolution.
/// Attempt 0 is taken as 1 (there is no retry before the first). Large attempts and long
/// durations saturate at `max` instead of overflowing; caps beyond `u64::MAX` nanoseconds
/// (584 years) are taken as that.
pub fn delay(attempt: u32, base: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let top = cap(attempt, base, max);
    let cap_ns = u64::try_from(top.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=cap_ns))
}

/// The top of the range: `min(max, base × 2^(attempt − 1))`, attempt 0 as 1.
pub fn cap(attempt: u32, base: Duration, max: Duration) -> Duration {
    let doublings = attempt.max(1) - 1;
    let exponential = 1u32
        .checked_shl(doublings)
        .and_then(|factor| base.checked_mul(factor))
        .unwrap_or(Duration::MAX);
    exponential.min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    const BASE: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(2);

    #[test]
    fn the_cap_doubles_from_base_until_max() {
        assert_eq!(cap(1, BASE, MAX), BASE);
        assert_eq!(cap(2, BASE, MAX), 2 * BASE);
        assert_eq!(cap(3, BASE, MAX), 4 * BASE);
        assert_eq!(cap(8, BASE, MAX), Duration::from_millis(1280));
        assert_eq!(cap(9, BASE, MAX), MAX, "2560 ms is over the 2 s max");
        assert_eq!(cap(20, BASE, MAX), MAX);
    }

    #[test]
    fn huge_attempts_and_durations_do_not_overflow() {
        assert_eq!(cap(32, BASE, MAX), MAX, "2^31 × base overflows nothing");
        assert_eq!(cap(33, BASE, MAX), MAX, "a shift past 31 saturates");
        assert_eq!(cap(u32::MAX, BASE, MAX), MAX);
        assert_eq!(cap(40, Duration::MAX, Duration::MAX), Duration::MAX);
        let mut rng = SmallRng::seed_from_u64(3);
        assert!(delay(u32::MAX, BASE, MAX, &mut rng) <= MAX);
        let d = delay(64, Duration::MAX, Duration::MAX, &mut rng);
        assert!(d <= Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn attempt_0_is_attempt_1() {
        assert_eq!(cap(0, BASE, MAX), cap(1, BASE, MAX));
        let mut a = SmallRng::seed_from_u64(5);
        let mut b = SmallRng::seed_from_u64(5);
        for _ in 0..1_000 {
            assert_eq!(delay(0, BASE, MAX, &mut a), delay(1, BASE, MAX, &mut b));
        }
    }

    #[test]
    fn delays_stay_within_the_cap_and_the_exponential_for_attempts_1_to_20() {
        let mut rng = SmallRng::seed_from_u64(1);
        for attempt in 1..=20u32 {
            let exponential = BASE.saturating_mul(1 << (attempt - 1));
            let mut longest = Duration::ZERO;
            for _ in 0..5_000 {
                let d = delay(attempt, BASE, MAX, &mut rng);
                assert!(d <= MAX, "attempt {attempt}: {d:?} over the max");
                assert!(
                    d <= exponential,
                    "attempt {attempt}: {d:?} over {exponential:?}"
                );
                longest = longest.max(d);
            }
            // Full jitter uses the whole range: the longest of 5000 is near the top.
            let top = exponential.min(MAX);
            assert!(
                longest >= top.mul_f64(0.99),
                "attempt {attempt}: {longest:?}"
            );
        }
    }

    #[test]
    fn the_mean_is_half_the_cap_within_five_percent() {
        let mut rng = SmallRng::seed_from_u64(2);
        for attempt in [1, 4, 12] {
            let top = cap(attempt, BASE, MAX);
            let draws = 100_000u32;
            let sum: Duration = (0..draws)
                .map(|_| delay(attempt, BASE, MAX, &mut rng))
                .sum();
            let mean = sum / draws;
            let half = top / 2;
            let err = (mean.as_secs_f64() - half.as_secs_f64()).abs() / half.as_secs_f64();
            assert!(err < 0.05, "attempt {attempt}: mean {mean:?} vs {half:?}");
        }
    }

    #[test]
    fn zero_base_or_max_gives_no_wait() {
        let mut rng = SmallRng::seed_from_u64(4);
        assert_eq!(delay(3, Duration::ZERO, MAX, &mut rng), Duration::ZERO);
        assert_eq!(delay(3, BASE, Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let mut a = SmallRng::seed_from_u64(9);
        let mut b = SmallRng::seed_from_u64(9);
        let xs: Vec<_> = (1..=10).map(|n| delay(n, BASE, MAX, &mut a)).collect();
        let ys: Vec<_> = (1..=10).map(|n| delay(n, BASE, MAX, &mut b)).collect();
        assert_eq!(xs, ys);
    }
}
