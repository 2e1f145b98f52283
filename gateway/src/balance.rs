//! Choosing a backend of a pool. One file per algorithm; the pool's runtime state holds
//! the chooser its policy names.

pub mod round_robin;
pub mod weighted_rr;

pub use round_robin::RoundRobin;
pub use weighted_rr::WeightedRoundRobin;

/// A pool's chooser, as its policy names it.
#[derive(Debug)]
pub enum Chooser {
    RoundRobin(RoundRobin),
    Weighted(WeightedRoundRobin),
}

impl Chooser {
    /// The next of `len` backends for which `allowed` holds.
    pub fn pick(&self, len: usize, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Chooser::RoundRobin(r) => r.pick(len, allowed),
            Chooser::Weighted(w) => w.pick(allowed),
        }
    }
}
