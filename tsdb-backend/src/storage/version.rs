//! Versions of stored values: a hybrid logical clock timestamp and the origin node.
//!
//! Every write batch gets the version of the node that accepted it from a client. A stored
//! value (series, field, timestamp) is replaced only by a write with a greater version, so
//! replicas that apply the same writes in any order end with the same values:
//! last-writer-wins by `(hlc, node)`.

use crate::clock::TimeProvider;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// A value's version; ordered by HLC timestamp, then by origin node.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Version {
    /// Hybrid logical clock: milliseconds since the epoch in the high 48 bits, a counter in
    /// the low 16.
    pub hlc: u64,
    /// The origin node, as `node_rank(id)`.
    pub node: u32,
}

/// A node id's rank in version comparisons: FNV-1a (32 bits) of its bytes, a fixed function
/// so that every node orders two versions the same way.
pub fn node_rank(id: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in id.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A hybrid logical clock: never goes backwards, stays close to wall-clock time, and moves
/// past every timestamp it has seen from a peer.
#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

const LOGICAL_BITS: u32 = 16;

impl Hlc {
    /// A timestamp greater than every one issued or observed before.
    pub fn now(&self, time: &dyn TimeProvider) -> u64 {
        let physical = (time.now_ns().max(0) as u64 / 1_000_000) << LOGICAL_BITS;
        let mut prev = self.last.load(Ordering::SeqCst);
        loop {
            let next = physical.max(prev + 1);
            match self
                .last
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(seen) => prev = seen,
            }
        }
    }

    /// Moves the clock past a timestamp seen in a peer's write.
    pub fn observe(&self, remote: u64) {
        self.last.fetch_max(remote, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualTime;

    #[test]
    fn the_clock_never_repeats_even_when_wall_time_stands_still_or_goes_back() {
        let t = ManualTime::new(5_000_000);
        let hlc = Hlc::default();
        let a = hlc.now(&t);
        let b = hlc.now(&t);
        t.set(1_000_000);
        let c = hlc.now(&t);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a, 5 << LOGICAL_BITS);
    }

    #[test]
    fn observing_a_peer_moves_the_clock_past_it() {
        let t = ManualTime::new(0);
        let hlc = Hlc::default();
        hlc.observe(1_000 << LOGICAL_BITS);
        assert!(hlc.now(&t) > 1_000 << LOGICAL_BITS);
    }

    #[test]
    fn versions_order_by_clock_then_node() {
        let a = Version { hlc: 1, node: 9 };
        let b = Version { hlc: 2, node: 1 };
        let c = Version { hlc: 2, node: 3 };
        assert!(a < b && b < c);
        assert_eq!(node_rank("a"), node_rank("a"));
        assert_ne!(node_rank("a"), node_rank("b"));
    }
}
