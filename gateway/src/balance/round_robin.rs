//! Round robin: each pick takes the next backend in turn, skipping those excluded (tried
//! already by this request, or unhealthy).

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// The index of the next of `len` backends for which `allowed` holds, if any.
    pub fn pick(&self, len: usize, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len).map(|k| (start + k) % len).find(|&i| allowed(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_go_round_in_order() {
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..6).filter_map(|_| rr.pick(3, |_| true)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn excluded_backends_are_skipped_and_none_left_is_none() {
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..4).filter_map(|_| rr.pick(3, |i| i != 1)).collect();
        assert_eq!(picks, vec![0, 2, 2, 0]);
        assert_eq!(rr.pick(3, |_| false), None);
        assert_eq!(rr.pick(0, |_| true), None);
    }
}
