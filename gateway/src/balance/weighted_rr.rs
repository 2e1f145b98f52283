//! Smooth weighted round robin (nginx's): each pick raises every candidate's current
//! weight by its weight, takes the highest, and lowers that one by the total. Weights
//! 5, 1, 1 give `a a b a c a a`: the heavy backend never gets a burst of five in a row.

use std::sync::{Mutex, PoisonError};

#[derive(Debug)]
pub struct WeightedRoundRobin {
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    pub fn new(weights: &[u32]) -> Self {
        WeightedRoundRobin {
            weights: weights.iter().map(|&w| i64::from(w)).collect(),
            current: Mutex::new(vec![0; weights.len()]),
        }
    }

    /// The index of the next backend for which `allowed` holds, if any. Backends not
    /// allowed this time (unhealthy, tried) neither gain nor lose.
    pub fn pick(&self, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !allowed(i) {
                continue;
            }
            current[i] += self.weights[i];
            total += self.weights[i];
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_5_1_1_give_nginx_smooth_sequence() {
        let w = WeightedRoundRobin::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).filter_map(|_| w.pick(|_| true)).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn shares_follow_weights_within_one_percent_over_many_picks() {
        let w = WeightedRoundRobin::new(&[3, 2, 5]);
        let mut counts = [0u32; 3];
        for _ in 0..100_000 {
            if let Some(i) = w.pick(|_| true) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [30_000, 20_000, 50_000]);
    }

    #[test]
    fn an_excluded_backend_is_skipped() {
        let w = WeightedRoundRobin::new(&[1, 1]);
        let picks: Vec<usize> = (0..4).filter_map(|_| w.pick(|i| i == 1)).collect();
        assert_eq!(picks, vec![1, 1, 1, 1]);
        assert_eq!(w.pick(|_| false), None);
    }
}
