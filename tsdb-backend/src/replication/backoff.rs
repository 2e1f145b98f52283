//! Exponential backoff with full jitter between attempts to reach a peer.

use rand::Rng;
use std::time::Duration;

/// The wait before retry number `attempt` (0-based): uniform in `[0, min(max, base * 2^attempt)]`
/// ("full jitter"), so that nodes retrying a recovered peer do not arrive together.
pub fn backoff(attempt: u32, base: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = base
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn waits_grow_exponentially_up_to_the_cap_and_stay_below_it() {
        let mut rng = StdRng::seed_from_u64(7);
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..40 {
            let ceiling = (base * 2u32.saturating_pow(attempt.min(20))).min(max);
            for _ in 0..100 {
                let w = backoff(attempt, base, max, &mut rng);
                assert!(w <= ceiling, "attempt {attempt}: {w:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut rng = StdRng::seed_from_u64(1);
        let waits: Vec<Duration> = (0..50)
            .map(|_| {
                backoff(
                    3,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                    &mut rng,
                )
            })
            .collect();
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 40);
        assert!(waits.iter().any(|w| *w < Duration::from_millis(400)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(400)));
    }
}
