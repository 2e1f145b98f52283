//! Choosing a backend of a pool. One file per algorithm; the pool's runtime state holds
//! the chooser its policy names.

pub mod ewma;
pub mod key;
pub mod least_conn;
pub mod maglev;
pub mod p2c;
pub mod ring_hash;
pub mod round_robin;
pub mod weighted_rr;

pub use ewma::LeastEwma;
pub use least_conn::LeastConnections;
pub use maglev::Maglev;
pub use p2c::{By, PowerOfTwo};
pub use ring_hash::RingHash;
pub use round_robin::RoundRobin;
pub use weighted_rr::WeightedRoundRobin;

use rand::rngs::SmallRng;
use std::sync::{Mutex, PoisonError};

/// What a load-aware chooser knows of one backend it may pick (healthy, not tried, not
/// ejected: the caller has filtered already).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Position in the pool's backends.
    pub index: usize,
    /// The backend's weight (at least 1).
    pub weight: u32,
    /// Requests in flight to it now whose answer has not begun (its queue: see
    /// `backend.rs`).
    pub in_flight: u64,
    /// Its peak-EWMA cost estimate (see `ewma.rs`); 0 when nothing was measured yet.
    pub ewma_cost: f64,
}

/// A pool's chooser, as its policy names it.
#[derive(Debug)]
pub enum Chooser {
    RoundRobin(RoundRobin),
    Weighted(WeightedRoundRobin),
    /// The load-aware ones, which read each candidate's load and draw from a seeded RNG.
    LeastConnections(LeastConnections, Mutex<SmallRng>),
    PowerOfTwo(PowerOfTwo, Mutex<SmallRng>),
    LeastEwma(LeastEwma, Mutex<SmallRng>),
    /// The hashing ones, which place a request by its key.
    RingHash(RingHash),
    Maglev(Maglev),
}

impl Chooser {
    /// Whether it needs [`Candidate`]s (the backends' load) rather than indices.
    pub fn reads_load(&self) -> bool {
        matches!(
            self,
            Chooser::LeastConnections(..) | Chooser::PowerOfTwo(..) | Chooser::LeastEwma(..)
        )
    }

    /// Whether it places requests by their key (see [`Chooser::pick_hashed`]).
    pub fn hashes(&self) -> bool {
        matches!(self, Chooser::RingHash(_) | Chooser::Maglev(_))
    }

    /// The backend for a request whose key hashes to `key`, the first allowed one from
    /// there on, for the hashing choosers (the others answer `None`).
    pub fn pick_hashed(&self, key: u64, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Chooser::RingHash(r) => r.pick(key, allowed),
            Chooser::Maglev(m) => m.pick(key, allowed),
            _ => None,
        }
    }

    /// The next of `len` backends for which `allowed` holds, for the choosers that do not
    /// read load (the others answer `None`: use [`Chooser::pick_loaded`]).
    pub fn pick(&self, len: usize, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        match self {
            Chooser::RoundRobin(r) => r.pick(len, allowed),
            Chooser::Weighted(w) => w.pick(allowed),
            // They read load or keys: the pool asks them with the other methods.
            _ => None,
        }
    }

    /// The chosen candidate's `index`, for the choosers that read load (see
    /// [`Chooser::reads_load`]).
    pub fn pick_loaded(&self, candidates: &[Candidate]) -> Option<usize> {
        fn lock(r: &Mutex<SmallRng>) -> std::sync::MutexGuard<'_, SmallRng> {
            r.lock().unwrap_or_else(PoisonError::into_inner)
        }
        match self {
            Chooser::LeastConnections(c, rng) => c.pick(candidates, &mut *lock(rng)),
            Chooser::PowerOfTwo(c, rng) => c.pick(candidates, &mut *lock(rng)),
            Chooser::LeastEwma(c, rng) => c.pick(candidates, &mut *lock(rng)),
            // They do not read load: the pool asks them with the other methods.
            _ => None,
        }
    }
}
