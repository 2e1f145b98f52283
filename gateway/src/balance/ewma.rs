//! Peak-EWMA latency: a per-backend estimate of response time that rises at once to any
//! slower sample and falls back smoothly, over a time window, as faster ones arrive (the
//! estimator of Finagle's `PeakEwma` and of the tower balancer linkerd2-proxy uses).
//! Peak sensitivity is the point: a backend that starts to stall is penalised on its first
//! slow response, not after a window's worth of them, while one fast response does not
//! wipe out the memory of a slow spell.
//!
//! The decay is by elapsed time, not by sample count, so a busy backend and a quiet one
//! forget at the same rate: a sample `elapsed` after the last update is blended in with
//! weight `1 - w`, `w = exp(-elapsed / decay)`.
//!
//! [`LeastEwma`] then picks the candidate with the lowest expected wait, latency times the
//! requests it would queue behind: `score = cost * (in_flight + 1)`, per unit of weight.

use std::cmp::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;

use super::least_conn::least_by;
use super::Candidate;

/// One backend's peak-EWMA response time estimate, in seconds.
#[derive(Debug)]
pub struct PeakEwma {
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// The time constant: after one `decay` without slower samples, a past estimate
    /// weighs `1/e` of what it did.
    decay: Duration,
    /// The estimate at `last_update`, in seconds.
    cost_secs: f64,
    /// When the last sample was taken; `None` until the first.
    last_update: Option<Instant>,
}

impl PeakEwma {
    /// An estimator with nothing measured yet, forgetting over `decay` (e.g. 10 s).
    pub fn new(decay: Duration) -> Self {
        PeakEwma {
            state: Mutex::new(State {
                decay,
                cost_secs: 0.0,
                last_update: None,
            }),
        }
    }

    /// The window this estimator forgets over.
    #[must_use]
    pub fn decay(&self) -> Duration {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decay
    }

    /// Forgets over `decay` from now on (a pool's `ewma.decay` changed on reload); the
    /// estimate so far is kept.
    pub fn set_decay(&self, decay: Duration) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decay = decay;
    }

    /// Takes in one response time `rtt`, measured at `now`. A sample above the estimate
    /// as of the last update replaces it (peak; as tower does, the comparison is with the
    /// stored figure, not its decayed read); one at or below it is blended in by elapsed
    /// time. The first sample is taken as it is.
    pub fn observe(&self, rtt: Duration, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let rtt = rtt.as_secs_f64();
        state.cost_secs = match state.last_update {
            None => rtt,
            Some(_) if rtt > state.cost_secs => rtt,
            Some(last) => blend(
                state.cost_secs,
                rtt,
                now.saturating_duration_since(last),
                state.decay,
            ),
        };
        // An out-of-order `now` (earlier than the last update) does not move time back.
        state.last_update = Some(state.last_update.map_or(now, |last| last.max(now)));
    }

    /// The estimate as of `now`, in seconds; 0 when nothing was measured yet (the
    /// [`Candidate::ewma_cost`] convention, which [`LeastEwma`] replaces by its default).
    ///
    /// With no sample since the last update, the estimate decays toward zero, as if
    /// instantly fast responses had been arriving (what Finagle and tower do on reads).
    /// The reason: a backend penalised for slowness gets little traffic, so few samples;
    /// without decay it would keep its worst figure forever. Decaying, it is eventually
    /// tried again, and if it is still slow its first response restores the estimate at
    /// once (peak), so the retrial costs a few requests, not a flood. Once fully decayed
    /// (the float underflows to 0, hundreds of windows later) it reads as unmeasured.
    #[must_use]
    pub fn cost(&self, now: Instant) -> f64 {
        let state = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.last_update {
            None => 0.0,
            Some(last) => blend(
                state.cost_secs,
                0.0,
                now.saturating_duration_since(last),
                state.decay,
            ),
        }
    }
}

/// `old * w + sample * (1 - w)` with `w = exp(-elapsed / decay)`: the older the estimate,
/// the less it weighs. A zero `decay` is taken as its limit rather than dividing by zero:
/// nothing is forgotten while no time passes (`w = 1`), everything once any has (`w = 0`).
#[must_use]
fn blend(old: f64, sample: f64, elapsed: Duration, decay: Duration) -> f64 {
    let w = if decay.is_zero() {
        if elapsed.is_zero() {
            1.0
        } else {
            0.0
        }
    } else {
        (-elapsed.as_secs_f64() / decay.as_secs_f64()).exp()
    };
    old * w + sample * (1.0 - w)
}

/// The expected time a new request would take on a backend whose response time is
/// `cost` with `in_flight` requests already there: it queues behind them, so
/// `cost * (in_flight + 1)`.
#[must_use]
pub fn score(cost: f64, in_flight: u64) -> f64 {
    // u64 -> f64 rounds above 2^53 in flight; irrelevant at any real load.
    cost * in_flight.saturating_add(1) as f64
}

/// Picks the candidate with the lowest [`score`] per unit of weight, ties broken
/// uniformly at random.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeastEwma {
    /// The cost, in seconds, assumed for a candidate not measured yet (`ewma_cost` 0).
    /// Zero would flood a new backend (every request would go there until its first
    /// response); a typical response time instead lets it be tried alongside the others,
    /// its `in_flight` raising its score like anyone's until it is measured.
    pub default_cost: f64,
}

impl LeastEwma {
    /// A chooser assuming `default_rtt` for unmeasured backends.
    #[must_use]
    pub fn new(default_rtt: Duration) -> Self {
        LeastEwma {
            default_cost: default_rtt.as_secs_f64(),
        }
    }

    /// The `index` of the candidate with the lowest `score(cost, in_flight) / weight`,
    /// ties broken uniformly at random; `None` when there are no candidates.
    #[must_use]
    pub fn pick(&self, candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
        least_by(candidates, rng, |a, b| self.cmp(a, b)).map(|c| c.index)
    }

    /// The cost used for `c`: its estimate, or the default if it has none (0, or
    /// negative or NaN, which the estimator never produces).
    fn cost_of(&self, c: &Candidate) -> f64 {
        if c.ewma_cost > 0.0 {
            c.ewma_cost
        } else {
            self.default_cost
        }
    }

    /// `a`'s score per weight against `b`'s, cross-multiplied: `score_a * weight_b`
    /// against `score_b * weight_a`. `total_cmp` keeps the order total if a score is NaN.
    pub(crate) fn cmp(&self, a: &Candidate, b: &Candidate) -> Ordering {
        let a_side = score(self.cost_of(a), a.in_flight) * f64::from(b.weight);
        let b_side = score(self.cost_of(b), b.in_flight) * f64::from(a.weight);
        a_side.total_cmp(&b_side)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use rand::rngs::SmallRng;
    use rand::SeedableRng;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    const DECAY: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn cand(index: usize, ewma_cost: f64, in_flight: u64) -> Candidate {
        Candidate {
            index,
            weight: 1,
            in_flight,
            ewma_cost,
        }
    }

    #[test]
    fn nothing_measured_reads_zero_and_the_first_sample_is_taken_as_is() {
        let clock = ManualClock::new();
        let e = PeakEwma::new(DECAY);
        assert_eq!(e.cost(clock.now()), 0.0);
        e.observe(ms(20), clock.now());
        assert!(close(e.cost(clock.now()), 0.020));
    }

    #[test]
    fn a_slow_sample_raises_the_estimate_at_once() {
        let clock = ManualClock::new();
        let e = PeakEwma::new(DECAY);
        e.observe(ms(1), clock.now());
        clock.advance(ms(1));
        e.observe(ms(50), clock.now());
        assert!(close(e.cost(clock.now()), 0.050));
    }

    #[test]
    fn a_fast_sample_is_blended_in_by_elapsed_time() {
        let clock = ManualClock::new();
        let e = PeakEwma::new(DECAY);
        e.observe(ms(50), clock.now());
        clock.advance(Duration::from_secs(2));
        e.observe(ms(10), clock.now());
        let w = (-2.0f64 / 10.0).exp();
        let expected = 0.050 * w + 0.010 * (1.0 - w);
        assert!(
            close(e.cost(clock.now()), expected),
            "{}",
            e.cost(clock.now())
        );
    }

    #[test]
    fn ten_windows_of_fast_samples_bring_it_within_one_percent() {
        let clock = ManualClock::new();
        let e = PeakEwma::new(DECAY);
        e.observe(ms(50), clock.now());
        // One 1 ms sample every 100 ms for 100 s: the weights multiply to exp(-10).
        for _ in 0..1_000 {
            clock.advance(ms(100));
            e.observe(ms(1), clock.now());
        }
        let cost = e.cost(clock.now());
        assert!((cost - 0.001).abs() < 0.001 * 0.01, "{cost}");
        assert!(
            (cost - (0.001 + 0.049 * (-10.0f64).exp())).abs() < 1e-9,
            "{cost}"
        );
    }

    #[test]
    fn a_stale_estimate_decays_toward_zero_on_read() {
        let clock = ManualClock::new();
        let e = PeakEwma::new(DECAY);
        let t0 = clock.now();
        e.observe(ms(50), t0);
        clock.advance(DECAY);
        assert!(close(e.cost(clock.now()), 0.050 * (-1.0f64).exp()));
        // Reading does not update: the estimate as of the sample is still there.
        assert!(close(e.cost(t0), 0.050));
    }

    #[test]
    fn an_earlier_now_neither_decays_nor_moves_time_back() {
        let clock = ManualClock::new();
        let e = PeakEwma::new(DECAY);
        let t0 = clock.now();
        clock.advance(Duration::from_secs(5));
        e.observe(ms(50), clock.now());
        e.observe(ms(10), t0); // out of order: no time elapsed, weight 1
        assert!(close(e.cost(clock.now()), 0.050));
    }

    #[test]
    fn a_zero_window_forgets_all_as_soon_as_time_passes() {
        let clock = ManualClock::new();
        let e = PeakEwma::new(Duration::ZERO);
        e.observe(ms(50), clock.now());
        e.observe(ms(5), clock.now()); // no time passed: nothing forgotten
        assert!(close(e.cost(clock.now()), 0.050));
        clock.advance(Duration::from_micros(1));
        e.observe(ms(5), clock.now());
        assert!(close(e.cost(clock.now()), 0.005));
        clock.advance(Duration::from_micros(1));
        assert_eq!(e.cost(clock.now()), 0.0);
    }

    #[test]
    fn score_is_latency_times_the_queue_including_this_request() {
        assert!(close(score(0.002, 0), 0.002));
        assert!(close(score(0.002, 4), 0.010));
        assert!(score(1.0, u64::MAX).is_finite());
    }

    #[test]
    fn the_chooser_prefers_lower_latency_times_load() {
        let mut rng = SmallRng::seed_from_u64(1);
        let chooser = LeastEwma::new(ms(5));
        // 1 ms with 9 in flight: 10 ms; 4 ms with 1 in flight: 8 ms.
        let cs = [cand(0, 0.001, 9), cand(1, 0.004, 1)];
        assert_eq!(chooser.pick(&cs, &mut rng), Some(1));
        // 1 ms with 2 in flight: 3 ms beats 4 ms idle.
        let cs = [cand(0, 0.001, 2), cand(1, 0.004, 0)];
        assert_eq!(chooser.pick(&cs, &mut rng), Some(0));
        // Weight divides: 4 ms with 1 in flight at weight 4 is 2 ms per weight.
        let heavy = Candidate {
            weight: 4,
            ..cand(1, 0.004, 1)
        };
        assert_eq!(chooser.pick(&[cand(0, 0.001, 2), heavy], &mut rng), Some(1));
        assert_eq!(chooser.pick(&[], &mut rng), None);
        assert_eq!(chooser.pick(&[cand(6, 9.0, 9)], &mut rng), Some(6));
    }

    #[test]
    fn an_unmeasured_backend_costs_the_default_tried_but_not_flooded() {
        let mut rng = SmallRng::seed_from_u64(2);
        let chooser = LeastEwma::new(ms(5));
        // Idle and unmeasured (5 ms) beats a measured 10 ms...
        assert_eq!(
            chooser.pick(&[cand(0, 0.010, 0), cand(1, 0.0, 0)], &mut rng),
            Some(1)
        );
        // ...but not once it has requests of its own: 5 ms * 3 = 15 ms > 10 ms.
        assert_eq!(
            chooser.pick(&[cand(0, 0.010, 0), cand(1, 0.0, 2)], &mut rng),
            Some(0)
        );
        // And a measured 1 ms beats it.
        assert_eq!(
            chooser.pick(&[cand(0, 0.001, 0), cand(1, 0.0, 0)], &mut rng),
            Some(0)
        );
    }

    #[test]
    fn ties_spread_evenly() {
        let mut rng = SmallRng::seed_from_u64(3);
        let chooser = LeastEwma::new(ms(5));
        let cs = [cand(0, 0.002, 1), cand(1, 0.004, 0), cand(2, 0.0, 0)];
        // Scores 4 ms, 4 ms, and the default 5 ms: the first two tie.
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            if let Some(i) = chooser.pick(&cs, &mut rng) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts[2], 0);
        for &n in &counts[..2] {
            assert!((f64::from(n) / 100_000.0 - 0.5).abs() < 0.01, "{counts:?}");
        }
    }

    /// A request every 0.5 ms to a 1 ms backend and a 50 ms one, for 10 s of simulated
    /// time: each pick adds one in flight to the chosen; it completes `rtt` later, when
    /// its backend's estimator observes the rtt and the in flight drops.
    #[test]
    fn a_slow_backend_gets_few_picks_in_a_simulated_run() {
        let clock = ManualClock::new();
        let mut rng = SmallRng::seed_from_u64(4);
        let chooser = LeastEwma::new(ms(10));
        let rtts = [ms(1), ms(50)];
        let estimators = [PeakEwma::new(DECAY), PeakEwma::new(DECAY)];
        let mut in_flight = [0u64; 2];
        let mut picks = [0u32; 2];
        let mut completions: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        let total = 20_000;
        for _ in 0..total {
            clock.advance(Duration::from_micros(500));
            let now = clock.now();
            while let Some(&Reverse((due, b))) = completions.peek() {
                if due > now {
                    break;
                }
                completions.pop();
                estimators[b].observe(rtts[b], due);
                in_flight[b] -= 1;
            }
            let cs: Vec<Candidate> = (0..2)
                .map(|i| Candidate {
                    index: i,
                    weight: 1,
                    in_flight: in_flight[i],
                    ewma_cost: estimators[i].cost(now),
                })
                .collect();
            let b = chooser.pick(&cs, &mut rng).unwrap();
            picks[b] += 1;
            in_flight[b] += 1;
            completions.push(Reverse((now + rtts[b], b)));
        }
        let slow_share = f64::from(picks[1]) / f64::from(total);
        assert!(picks[1] > 0, "the slow backend was never tried: {picks:?}");
        assert!(slow_share < 0.05, "{picks:?}");
    }
}
