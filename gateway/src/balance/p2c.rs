//! Power of two choices: each pick samples two distinct candidates uniformly at random and
//! takes the less loaded of the two. Mitzenmacher's result is that this brings nearly all
//! of the benefit of scanning every backend for the least loaded, in constant time; and
//! because the choice is random it does not herd: when many gateways act on the same
//! stale load figures, least-loaded scanning sends them all to the same backend, while
//! two random choices spread them. The most loaded candidate is never picked (any pair
//! holding it has a less loaded member) unless it ties.
//!
//! The two are drawn without replacement (`i` in `0..n`, `j` in `0..n-1` shifted past
//! `i`), so every ordered pair of distinct candidates is equally likely. On a tie the
//! first drawn wins: it is itself uniformly random, so ties spread evenly at no extra
//! random draw.

use std::cmp::Ordering;

use rand::Rng;

use super::ewma::LeastEwma;
use super::least_conn::cmp_load_then_speed;
use super::Candidate;

/// What "less loaded" means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum By {
    /// Requests in flight per unit of weight, counting the one being placed:
    /// `(in_flight + 1) / weight`, compared exactly as least connections does (a tie
    /// lost by a markedly slower backend, see `least_conn.rs`).
    InFlight,
    /// The expected wait, as `ewma` scores it: peak-EWMA cost × (in flight + 1) per unit
    /// of weight, an unmeasured backend taken at the chooser's default cost (linkerd's
    /// P2C over PeakEWMA). Counting the queue matters: on cost alone, a backend whose
    /// estimate has decayed during a quiet spell (or was never measured) would win every
    /// pair it is drawn in until its first answer came back, however slow it is.
    Ewma(LeastEwma),
}

/// The power-of-two-choices chooser. Stateless apart from what it compares by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerOfTwo {
    pub by: By,
}

impl PowerOfTwo {
    /// The `index` of the less loaded of two distinct candidates drawn at random (the
    /// first drawn on a tie); the only one if there is one; `None` if there are none.
    #[must_use]
    pub fn pick(&self, candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
        if let [only] = candidates {
            return Some(only.index);
        }
        let (i, j) = sample_two(candidates.len(), rng)?;
        let (first, second) = (candidates.get(i)?, candidates.get(j)?);
        if self.cmp(second, first) == Ordering::Less {
            Some(second.index)
        } else {
            Some(first.index)
        }
    }

    /// How `a`'s load compares with `b`'s, by this chooser's measure.
    fn cmp(&self, a: &Candidate, b: &Candidate) -> Ordering {
        match self.by {
            By::InFlight => cmp_load_then_speed(a, b),
            By::Ewma(e) => e.cmp(a, b),
        }
    }
}

/// Two distinct positions in `0..n`, the ordered pair uniformly distributed over the
/// `n * (n - 1)` possible; `None` when `n < 2` (there is no pair to draw).
#[must_use]
pub fn sample_two(n: usize, rng: &mut impl Rng) -> Option<(usize, usize)> {
    if n < 2 {
        return None;
    }
    let i = rng.random_range(0..n);
    let j = rng.random_range(0..n - 1);
    // j ranges over the n - 1 positions other than i: those below i as they are, the
    // rest shifted up by one past it.
    Some((i, if j >= i { j + 1 } else { j }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    const IN_FLIGHT: PowerOfTwo = PowerOfTwo { by: By::InFlight };
    const EWMA: PowerOfTwo = PowerOfTwo {
        by: By::Ewma(LeastEwma {
            default_cost: 0.030,
        }),
    };

    fn cand(index: usize, in_flight: u64) -> Candidate {
        Candidate {
            index,
            weight: 1,
            in_flight,
            ewma_cost: 0.0,
        }
    }

    fn costed(index: usize, ewma_cost: f64) -> Candidate {
        Candidate {
            index,
            weight: 1,
            in_flight: 0,
            ewma_cost,
        }
    }

    #[test]
    fn of_two_candidates_the_idle_one_is_always_picked() {
        let mut rng = SmallRng::seed_from_u64(1);
        let cs = [cand(0, 0), cand(1, 5)];
        for _ in 0..10_000 {
            assert_eq!(IN_FLIGHT.pick(&cs, &mut rng), Some(0));
        }
        let cs = [costed(0, 0.050), costed(1, 0.001)];
        for _ in 0..10_000 {
            assert_eq!(EWMA.pick(&cs, &mut rng), Some(1));
        }
    }

    #[test]
    fn the_most_loaded_of_three_is_never_picked() {
        let mut rng = SmallRng::seed_from_u64(2);
        let cs = [cand(0, 1), cand(1, 100), cand(2, 2)];
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            if let Some(i) = IN_FLIGHT.pick(&cs, &mut rng) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts[1], 0, "{counts:?}");
        // The least loaded wins both pairs it is in (2 of 3); the middle one wins only
        // the pair with the most loaded (1 of 3).
        assert!((f64::from(counts[0]) / 100_000.0 - 2.0 / 3.0).abs() < 0.01);
        assert!((f64::from(counts[2]) / 100_000.0 - 1.0 / 3.0).abs() < 0.01);
    }

    #[test]
    fn the_pick_is_the_lighter_of_exactly_the_two_sampled() {
        // Replays each pick's draws on a clone of the RNG: the pick is the lighter of
        // the two drawn, the first on a tie.
        let mut rng = SmallRng::seed_from_u64(3);
        let cs: Vec<Candidate> = (0..5u64).map(|i| cand(10 + i as usize, i % 3)).collect();
        for _ in 0..10_000 {
            let mut replay = rng.clone();
            let (i, j) = sample_two(cs.len(), &mut replay).unwrap();
            let lighter = if cs[j].in_flight < cs[i].in_flight {
                j
            } else {
                i
            };
            assert_eq!(IN_FLIGHT.pick(&cs, &mut rng), Some(cs[lighter].index));
        }
    }

    #[test]
    fn by_ewma_an_unmeasured_backend_is_taken_at_the_default_cost_and_queues_count() {
        let mut rng = SmallRng::seed_from_u64(9);
        // Never measured (0): 30 ms, so a backend measured at 5 ms beats it...
        let cs = [costed(0, 0.0), costed(1, 0.005)];
        for _ in 0..100 {
            assert_eq!(EWMA.pick(&cs, &mut rng), Some(1));
        }
        // ...until the fast one has 6 waiting: 5 ms × 7 = 35 ms > 30 ms.
        let busy = Candidate {
            in_flight: 6,
            ..costed(1, 0.005)
        };
        for _ in 0..100 {
            assert_eq!(EWMA.pick(&[costed(0, 0.0), busy], &mut rng), Some(0));
        }
    }

    #[test]
    fn weights_divide_the_in_flight_load() {
        // Weight 3 with 5 in flight: 6/3 = 2 beats weight 1 with 2 in flight: 3/1.
        let mut rng = SmallRng::seed_from_u64(4);
        let heavy = Candidate {
            index: 1,
            weight: 3,
            in_flight: 5,
            ewma_cost: 0.0,
        };
        let cs = [cand(0, 2), heavy];
        for _ in 0..1_000 {
            assert_eq!(IN_FLIGHT.pick(&cs, &mut rng), Some(1));
        }
    }

    #[test]
    fn the_two_sampled_are_never_the_same() {
        let mut rng = SmallRng::seed_from_u64(5);
        for n in 2..10 {
            for _ in 0..10_000 {
                let (i, j) = sample_two(n, &mut rng).unwrap();
                assert_ne!(i, j);
                assert!(i < n && j < n);
            }
        }
        assert_eq!(sample_two(1, &mut rng), None);
        assert_eq!(sample_two(0, &mut rng), None);
    }

    #[test]
    fn every_ordered_pair_of_three_is_equally_likely() {
        let mut rng = SmallRng::seed_from_u64(6);
        let mut counts = [[0u32; 3]; 3];
        for _ in 0..300_000 {
            let (i, j) = sample_two(3, &mut rng).unwrap();
            counts[i][j] += 1;
        }
        for (i, row) in counts.iter().enumerate() {
            for (j, &n) in row.iter().enumerate() {
                if i == j {
                    assert_eq!(n, 0);
                } else {
                    let share = f64::from(n) / 300_000.0;
                    assert!((share - 1.0 / 6.0).abs() < 0.01, "{counts:?}");
                }
            }
        }
    }

    #[test]
    fn equal_loads_spread_evenly() {
        let mut rng = SmallRng::seed_from_u64(7);
        for chooser in [IN_FLIGHT, EWMA] {
            let cs = [costed(0, 0.01), costed(1, 0.01), costed(2, 0.01)];
            let mut counts = [0u32; 3];
            for _ in 0..300_000 {
                if let Some(i) = chooser.pick(&cs, &mut rng) {
                    counts[i] += 1;
                }
            }
            for &n in &counts {
                let share = f64::from(n) / 300_000.0;
                assert!((share - 1.0 / 3.0).abs() < 0.01, "{chooser:?} {counts:?}");
            }
        }
    }

    #[test]
    fn one_candidate_is_it_and_none_is_none() {
        let mut rng = SmallRng::seed_from_u64(8);
        assert_eq!(IN_FLIGHT.pick(&[cand(4, 9)], &mut rng), Some(4));
        assert_eq!(EWMA.pick(&[costed(4, 1.0)], &mut rng), Some(4));
        assert_eq!(IN_FLIGHT.pick(&[], &mut rng), None);
        assert_eq!(EWMA.pick(&[], &mut rng), None);
    }
}
