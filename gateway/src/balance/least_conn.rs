//! Weighted least connections: each pick takes the candidate with the fewest requests in
//! flight per unit of weight, counting the request being placed, so the load compared is
//! `(in_flight + 1) / weight`. Counting the new request makes weights matter even when
//! every backend is idle (weight 3 idle, `1/3`, beats weight 1 idle, `1/1`). The ratios
//! are compared by cross-multiplication in integers, so there is no rounding and no float.
//!
//! Ties are broken uniformly at random (reservoir sampling in the same pass): always
//! taking the first of the tied would send every burst that arrives while backends are
//! equally loaded (at start, after a lull) to the pool's first backend. One exception: of
//! two equally loaded backends whose latency was measured, one [`MARKEDLY_SLOWER`] than
//! the other loses the tie. At low concurrency every backend is often at the same count
//! (0 or 1), and a pure random tie-break would then hand a backend that answers in 150 ms
//! as many requests as one that answers in 2 ms; backends of comparable speed still
//! share ties evenly, so a small difference in estimates does not herd traffic.

use std::cmp::Ordering;

use rand::Rng;

use super::Candidate;

/// The weighted least-connections chooser. Stateless: the load it compares is the
/// candidates' `in_flight`, which the caller keeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastConnections;

impl LeastConnections {
    /// The `index` of the candidate with the least `(in_flight + 1) / weight`, ties broken
    /// uniformly at random; `None` when there are no candidates.
    #[must_use]
    pub fn pick(&self, candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
        least_by(candidates, rng, cmp_load_then_speed).map(|c| c.index)
    }
}

/// How many times slower than another (by peak-EWMA cost) a backend must be to lose a tie
/// of load to it.
pub const MARKEDLY_SLOWER: f64 = 2.0;

/// [`cmp_load`], and on a tie the markedly slower of two measured backends is the more
/// loaded; otherwise still a tie.
#[must_use]
pub(crate) fn cmp_load_then_speed(a: &Candidate, b: &Candidate) -> Ordering {
    match cmp_load(a, b) {
        Ordering::Equal => cmp_speed(a.ewma_cost, b.ewma_cost),
        other => other,
    }
}

/// `Greater` when cost `a` is markedly above `b` (both measured), `Less` the other way
/// round, `Equal` otherwise.
fn cmp_speed(a: f64, b: f64) -> Ordering {
    let measured = a > 0.0 && b > 0.0;
    if measured && a > b * MARKEDLY_SLOWER {
        Ordering::Greater
    } else if measured && b > a * MARKEDLY_SLOWER {
        Ordering::Less
    } else {
        Ordering::Equal
    }
}

/// How `a`'s load `(in_flight + 1) / weight` compares with `b`'s, exactly:
/// `(a.in_flight + 1) * b.weight` against `(b.in_flight + 1) * a.weight`, in `u128` so
/// the products cannot overflow. A weight of 0 (not expected: weights are at least 1)
/// makes a load larger than any other, equal only to another weight 0's.
#[must_use]
pub(crate) fn cmp_load(a: &Candidate, b: &Candidate) -> Ordering {
    let a_side = (u128::from(a.in_flight) + 1) * u128::from(b.weight);
    let b_side = (u128::from(b.in_flight) + 1) * u128::from(a.weight);
    a_side.cmp(&b_side)
}

/// The least of `candidates` by `cmp`, the tied ones each taken with equal probability.
/// One pass of reservoir sampling: the k-th candidate found equal to the least so far
/// replaces it with probability 1/k, which leaves each of the k tied with 1/k. The RNG
/// is consulted only on ties, so a clear winner costs no random draw.
pub(crate) fn least_by<'a>(
    candidates: &'a [Candidate],
    rng: &mut impl Rng,
    cmp: impl Fn(&Candidate, &Candidate) -> Ordering,
) -> Option<&'a Candidate> {
    let mut best: Option<&Candidate> = None;
    let mut tied: u64 = 0;
    for c in candidates {
        match best.map(|b| cmp(c, b)) {
            None | Some(Ordering::Less) => {
                best = Some(c);
                tied = 1;
            }
            Some(Ordering::Equal) => {
                tied += 1;
                if rng.random_range(0..tied) == 0 {
                    best = Some(c);
                }
            }
            Some(Ordering::Greater) => {}
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn a_tie_goes_to_the_faster_only_when_the_other_is_markedly_slower() {
        let mut rng = SmallRng::seed_from_u64(7);
        let with_cost = |index, cost| Candidate {
            ewma_cost: cost,
            ..cand(index, 1, 1)
        };
        let slow = [with_cost(0, 0.150), with_cost(1, 0.002)];
        for _ in 0..1000 {
            assert_eq!(LeastConnections.pick(&slow, &mut rng), Some(1));
        }
        // Exactly twice as slow is still a tie; so is a backend never measured.
        for pair in [
            [with_cost(0, 0.004), with_cost(1, 0.002)],
            [with_cost(0, 0.0), with_cost(1, 0.002)],
        ] {
            let first = (0..1000)
                .filter(|_| LeastConnections.pick(&pair, &mut rng) == Some(0))
                .count();
            assert!((400..600).contains(&first), "{first}");
        }
        // Load still comes first: the slow one with fewer requests in flight wins.
        let lighter = [
            Candidate {
                in_flight: 0,
                ..with_cost(0, 0.150)
            },
            with_cost(1, 0.002),
        ];
        assert_eq!(LeastConnections.pick(&lighter, &mut rng), Some(0));
    }

    fn cand(index: usize, weight: u32, in_flight: u64) -> Candidate {
        Candidate {
            index,
            weight,
            in_flight,
            ewma_cost: 0.0,
        }
    }

    #[test]
    fn the_least_loaded_wins() {
        let mut rng = SmallRng::seed_from_u64(1);
        let cs = [cand(0, 1, 4), cand(1, 1, 2), cand(2, 1, 7), cand(3, 1, 3)];
        for _ in 0..100 {
            assert_eq!(LeastConnections.pick(&cs, &mut rng), Some(1));
        }
    }

    #[test]
    fn weights_divide_the_load() {
        // Weight 3 with 5 in flight: (5 + 1) / 3 = 2; weight 1 with 2 in flight:
        // (2 + 1) / 1 = 3. The heavier backend wins although it has more in flight.
        let mut rng = SmallRng::seed_from_u64(2);
        let cs = [cand(0, 1, 2), cand(1, 3, 5)];
        assert_eq!(cmp_load(&cs[1], &cs[0]), Ordering::Less);
        for _ in 0..100 {
            assert_eq!(LeastConnections.pick(&cs, &mut rng), Some(1));
        }
        // Idle, the heavier one wins too: 1/3 < 1/1.
        let idle = [cand(0, 1, 0), cand(1, 3, 0)];
        assert_eq!(LeastConnections.pick(&idle, &mut rng), Some(1));
    }

    #[test]
    fn equal_ratios_with_different_weights_are_a_tie() {
        // (3 + 1) / 2 = 2 = (1 + 1) / 1: each gets about half.
        let mut rng = SmallRng::seed_from_u64(3);
        let cs = [cand(0, 2, 3), cand(1, 1, 1)];
        assert_eq!(cmp_load(&cs[0], &cs[1]), Ordering::Equal);
        let mut counts = [0u32; 2];
        for _ in 0..100_000 {
            if let Some(i) = LeastConnections.pick(&cs, &mut rng) {
                counts[i] += 1;
            }
        }
        for &n in &counts {
            let share = f64::from(n) / 100_000.0;
            assert!((share - 0.5).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn ties_spread_evenly_over_four_idle_backends() {
        let mut rng = SmallRng::seed_from_u64(4);
        let cs = [cand(0, 1, 0), cand(1, 1, 0), cand(2, 1, 0), cand(3, 1, 0)];
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            if let Some(i) = LeastConnections.pick(&cs, &mut rng) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts.iter().sum::<u32>(), 100_000);
        for &n in &counts {
            let share = f64::from(n) / 100_000.0;
            assert!((share - 0.25).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn the_chosen_index_is_the_candidates_not_its_position() {
        let mut rng = SmallRng::seed_from_u64(5);
        let cs = [cand(7, 1, 3), cand(4, 1, 0)];
        assert_eq!(LeastConnections.pick(&cs, &mut rng), Some(4));
    }

    #[test]
    fn a_single_candidate_is_picked_whatever_its_load() {
        let mut rng = SmallRng::seed_from_u64(6);
        assert_eq!(
            LeastConnections.pick(&[cand(3, 1, 1_000)], &mut rng),
            Some(3)
        );
    }

    #[test]
    fn no_candidates_is_none() {
        let mut rng = SmallRng::seed_from_u64(7);
        assert_eq!(LeastConnections.pick(&[], &mut rng), None);
    }

    #[test]
    fn huge_loads_do_not_overflow_and_weight_zero_never_wins() {
        let mut rng = SmallRng::seed_from_u64(8);
        let cs = [cand(0, u32::MAX, u64::MAX), cand(1, 1, u64::MAX - 1)];
        assert_eq!(LeastConnections.pick(&cs, &mut rng), Some(0));
        let zero = [cand(0, 0, 0), cand(1, 1, 1_000)];
        assert_eq!(LeastConnections.pick(&zero, &mut rng), Some(1));
    }
}
