//! Consistent hashing on a ring (Ketama's): each backend puts `weight × vnodes_per_weight`
//! points on a 64-bit ring, at the hashes of `"{id}-0"`, `"{id}-1"`, ...; a key goes to the
//! first point clockwise from its own hash. Adding or removing a backend moves only the
//! keys whose nearest point changed: about `1/N` of them, and all to (or from) that
//! backend. Keys of a backend that is not allowed (unhealthy, tried) walk on to the next
//! point, so only they move, and they spread over the others.
//!
//! The hash is FNV-1a 64 followed by splitmix64's finalizer: seedless and fixed, so every
//! gateway, and every restart, builds the same ring from the same backend ids. FNV-1a alone
//! is fast but mixes short, similar inputs (`"10.0.0.1:8086-7"`, `"...-8"`) poorly into the
//! high bits, which would cluster the points; the finalizer is a bijection that avalanches
//! every bit. (foldhash's `FixedState` is not a choice: foldhash documents that its output
//! may change between versions and platforms.)
//!
//! Evenness: a backend with `k` points gets a share off by about `1/√k` of itself (one
//! standard deviation): at the default 160 points per weight unit, a quarter share is
//! 25% ± 2%. More points per weight unit even it out at the cost of memory; Maglev
//! (`maglev.rs`) is even by construction.
//!
//! Memory: 12 bytes per point (a `u64` hash and a `u32` backend index, kept in two
//! vectors). The default of 160 points per weight unit costs about 1.9 KiB per unit: ten
//! backends of weight 1 take 19 KiB. The ring is capped at [`MAX_POINTS`] (12 MiB); a pool
//! whose total weight would exceed it gets fewer points per weight unit (at least one).

use std::fmt::Write as _;

/// Points per weight unit when the policy does not say (Ketama's 160).
pub const DEFAULT_VNODES_PER_WEIGHT: u32 = 160;

/// The most points one ring holds: 2^20, 12 MiB.
pub const MAX_POINTS: u64 = 1 << 20;

/// A consistent-hash ring over a pool's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingHash {
    /// Point hashes, ascending.
    hashes: Vec<u64>,
    /// The backend (position in the list given to [`RingHash::new`]) of each point.
    owners: Vec<u32>,
    /// How many backends were given (those of weight 0 have no points).
    backends: usize,
    /// How many of them have points.
    with_points: usize,
}

impl RingHash {
    /// The ring of `backends` (stable id, weight), `vnodes_per_weight` points per weight
    /// unit (0 is taken as 1). A backend of weight 0 gets no points and is never picked.
    /// The ring depends on the ids and weights only, not on the order they are listed in
    /// (the index [`RingHash::pick`] returns does).
    pub fn new(backends: &[(String, u32)], vnodes_per_weight: u32) -> Self {
        let per_weight = points_per_weight(backends, vnodes_per_weight);
        let mut points: Vec<(u64, &str, u32)> = Vec::new();
        let mut label = String::new();
        for (index, (id, weight)) in backends.iter().enumerate() {
            let Ok(owner) = u32::try_from(index) else {
                break;
            };
            let count = u64::from(*weight) * per_weight;
            for i in 0..count {
                label.clear();
                // Writing to a String cannot fail.
                let _ = write!(label, "{id}-{i}");
                points.push((key_hash(label.as_bytes()), id.as_str(), owner));
            }
        }
        // Ties (64-bit collisions) are broken by id, so listing order never matters.
        points.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let with_points = backends.iter().filter(|(_, w)| *w > 0).count();
        RingHash {
            hashes: points.iter().map(|p| p.0).collect(),
            owners: points.iter().map(|p| p.2).collect(),
            backends: backends.len(),
            with_points,
        }
    }

    /// The ring with [`DEFAULT_VNODES_PER_WEIGHT`] points per weight unit.
    pub fn with_default_vnodes(backends: &[(String, u32)]) -> Self {
        RingHash::new(backends, DEFAULT_VNODES_PER_WEIGHT)
    }

    /// Points on the ring.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the ring has no points (no backend, or all of weight 0).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The backend of the first point clockwise from `key_hash` (at or after it, wrapping
    /// round) whose backend is allowed; `None` when no backend with points is allowed.
    /// `allowed` is asked at most once per backend.
    pub fn pick(&self, key_hash: u64, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.hashes.len();
        if n == 0 {
            return None;
        }
        let start = self.hashes.partition_point(|&h| h < key_hash) % n;
        let first = self.owner(start);
        if allowed(first) {
            return Some(first);
        }
        // Slow path: walk on, asking about each backend once.
        let mut refused = vec![false; self.backends];
        refused[first] = true;
        let mut refused_count = 1;
        for step in 1..n {
            if refused_count == self.with_points {
                return None;
            }
            let b = self.owner((start + step) % n);
            if refused[b] {
                continue;
            }
            if allowed(b) {
                return Some(b);
            }
            refused[b] = true;
            refused_count += 1;
        }
        None
    }

    fn owner(&self, point: usize) -> usize {
        self.owners[point] as usize
    }
}

/// Points per weight unit after the [`MAX_POINTS`] cap.
fn points_per_weight(backends: &[(String, u32)], vnodes_per_weight: u32) -> u64 {
    let wanted = u64::from(vnodes_per_weight.max(1));
    let total_weight: u64 = backends.iter().map(|(_, w)| u64::from(*w)).sum();
    if total_weight.saturating_mul(wanted) <= MAX_POINTS {
        wanted
    } else {
        (MAX_POINTS / total_weight).max(1)
    }
}

/// The hash of a request's key (a header value, a client address...), the same function the
/// ring's points are placed with: FNV-1a 64, then splitmix64's finalizer.
pub fn key_hash(bytes: &[u8]) -> u64 {
    splitmix64(fnv1a64(bytes))
}

/// FNV-1a, 64 bits.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// splitmix64's output function: a bijection on `u64` in which every input bit flips each
/// output bit with probability about 1/2. Also used by Maglev to derive further hashes.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const KEYS: usize = 100_000;

    fn pool(ids: &[(&str, u32)]) -> Vec<(String, u32)> {
        ids.iter().map(|(id, w)| ((*id).to_string(), *w)).collect()
    }

    /// 100k keys hashed the way requests are: `key_hash` of random bytes.
    fn keys() -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(7);
        (0..KEYS)
            .map(|_| key_hash(&rng.random::<u64>().to_le_bytes()))
            .collect()
    }

    /// The id each key goes to, with `allowed` applied.
    fn owners(
        ring: &RingHash,
        pool: &[(String, u32)],
        keys: &[u64],
        allowed: impl Fn(usize) -> bool + Copy,
    ) -> Vec<String> {
        keys.iter()
            .map(|&k| pool[ring.pick(k, allowed).unwrap()].0.clone())
            .collect()
    }

    #[test]
    fn fnv1a_and_splitmix64_match_their_reference_values() {
        // FNV-1a 64 test vectors (draft-eastlake-fnv), splitmix64 of 0 (Vigna's generator
        // seeded with 0 returns this first).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(key_hash(b"a"), splitmix64(0xaf63_dc4c_8601_ec8c));
    }

    /// Each backend's share of 100k random keys.
    fn shares(ring: &RingHash, n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n];
        for k in keys() {
            counts[ring.pick(k, |_| true).unwrap()] += 1;
        }
        counts.iter().map(|&c| c as f64 / KEYS as f64).collect()
    }

    /// A backend with `k` points has a share whose standard deviation is about
    /// `share / √k`: 2.0 points of percentage for a quarter share at 160 points. The
    /// ids below land about 3 points off (28%), within 3σ; over 500 sets of ids, 18%
    /// have some backend more than 3 points off at 160 points per weight unit.
    #[test]
    fn shares_follow_weights_1_1_2_within_three_sigma_at_the_default_160() {
        let p = pool(&[
            ("10.0.0.1:8086", 1),
            ("10.0.0.2:8086", 1),
            ("10.0.0.3:8086", 2),
        ]);
        let ring = RingHash::with_default_vnodes(&p);
        assert_eq!(ring.len(), 4 * 160);
        let got = shares(&ring, 3);
        for (i, want) in [0.25, 0.25, 0.50].into_iter().enumerate() {
            assert!((got[i] - want).abs() <= 0.06, "backend {i}: {got:?}");
        }
    }

    /// At 1000 points per weight unit σ is 0.8 points: ±3 is 3.8σ (and all of 500 sets of
    /// ids measured were within 2.7 points).
    #[test]
    fn shares_follow_weights_1_1_2_within_three_points_at_1000_per_weight() {
        let p = pool(&[
            ("10.0.0.1:8086", 1),
            ("10.0.0.2:8086", 1),
            ("10.0.0.3:8086", 2),
        ]);
        let ring = RingHash::new(&p, 1000);
        let got = shares(&ring, 3);
        for (i, want) in [0.25, 0.25, 0.50].into_iter().enumerate() {
            assert!((got[i] - want).abs() <= 0.03, "backend {i}: {got:?}");
        }
    }

    #[test]
    fn adding_a_fourth_backend_moves_about_a_quarter_of_keys_all_to_it() {
        let three = pool(&[
            ("10.0.0.1:8086", 1),
            ("10.0.0.2:8086", 1),
            ("10.0.0.3:8086", 1),
        ]);
        let mut four = three.clone();
        four.push(("10.0.0.4:8086".to_string(), 1));
        let keys = keys();
        let before = owners(
            &RingHash::with_default_vnodes(&three),
            &three,
            &keys,
            |_| true,
        );
        let after = owners(&RingHash::with_default_vnodes(&four), &four, &keys, |_| {
            true
        });
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                moved += 1;
                assert_eq!(a, "10.0.0.4:8086", "a key moved between two old backends");
            }
        }
        let fraction = moved as f64 / KEYS as f64;
        assert!(
            (0.20..=0.30).contains(&fraction),
            "moved {fraction}, want 1/4 ± 20%"
        );
    }

    #[test]
    fn removing_a_backend_moves_only_its_keys() {
        let four = pool(&[("a:1", 1), ("b:1", 1), ("c:1", 1), ("d:1", 1)]);
        let three: Vec<_> = four.iter().filter(|(id, _)| id != "c:1").cloned().collect();
        let keys = keys();
        let before = owners(&RingHash::with_default_vnodes(&four), &four, &keys, |_| {
            true
        });
        let after = owners(
            &RingHash::with_default_vnodes(&three),
            &three,
            &keys,
            |_| true,
        );
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b == "c:1" {
                moved += 1;
                assert_ne!(a, "c:1");
            } else {
                assert_eq!(a, b, "a key of a remaining backend moved");
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn excluding_a_backend_moves_only_its_keys_and_spreads_them() {
        let p = pool(&[("a:1", 1), ("b:1", 1), ("c:1", 1), ("d:1", 1)]);
        let ring = RingHash::with_default_vnodes(&p);
        let keys = keys();
        let all = owners(&ring, &p, &keys, |_| true);
        let without_b = owners(&ring, &p, &keys, |i| i != 1);
        let mut went_to = [0usize; 4];
        for (b, a) in all.iter().zip(&without_b) {
            if b == "b:1" {
                let i = p.iter().position(|(id, _)| id == a).unwrap();
                went_to[i] += 1;
            } else {
                assert_eq!(a, b, "a key of an allowed backend moved");
            }
        }
        assert_eq!(went_to[1], 0);
        for i in [0, 2, 3] {
            assert!(
                went_to[i] > 0,
                "b's keys all avoided backend {i}: {went_to:?}"
            );
        }
    }

    #[test]
    fn nothing_allowed_or_nothing_there_picks_none() {
        let p = pool(&[("a:1", 1), ("b:1", 1)]);
        let ring = RingHash::new(&p, 4);
        assert_eq!(ring.pick(123, |_| false), None);
        assert_eq!(RingHash::new(&[], 160).pick(123, |_| true), None);
        let drained = RingHash::new(&pool(&[("a:1", 0)]), 160);
        assert!(drained.is_empty());
        assert_eq!(drained.pick(123, |_| true), None);
    }

    #[test]
    fn allowed_is_asked_once_per_backend_at_most() {
        let p = pool(&[("a:1", 1), ("b:1", 1), ("c:1", 2)]);
        let ring = RingHash::with_default_vnodes(&p);
        for k in keys().into_iter().take(200) {
            let asked = std::cell::RefCell::new(Vec::new());
            let got = ring.pick(k, |i| {
                asked.borrow_mut().push(i);
                i == 2
            });
            assert_eq!(got, Some(2));
            let mut a = asked.into_inner();
            let len = a.len();
            a.sort_unstable();
            a.dedup();
            assert_eq!(a.len(), len, "asked twice about one backend");
        }
        let count = std::cell::Cell::new(0);
        assert_eq!(
            ring.pick(1, |_| {
                count.set(count.get() + 1);
                false
            }),
            None
        );
        assert_eq!(count.get(), 3, "stops once every backend said no");
    }

    #[test]
    fn a_key_past_the_last_point_wraps_to_the_first() {
        let p = pool(&[("a:1", 1), ("b:1", 1)]);
        let ring = RingHash::new(&p, 8);
        let first = ring.owner(0);
        let last = *ring.hashes.last().unwrap();
        assert_eq!(ring.pick(last + 1, |_| true), Some(first));
        assert_eq!(ring.pick(u64::MAX, |_| true), Some(first));
        // Exactly on a point: that point's backend.
        assert_eq!(ring.pick(last, |_| true), Some(ring.owner(ring.len() - 1)));
    }

    #[test]
    fn two_builds_are_identical_and_listing_order_does_not_matter() {
        let p = pool(&[
            ("10.0.0.1:8086", 3),
            ("10.0.0.2:8086", 1),
            ("10.0.0.3:8086", 2),
        ]);
        let a = RingHash::with_default_vnodes(&p);
        let b = RingHash::with_default_vnodes(&p);
        assert_eq!(a, b);
        let mut reversed = p.clone();
        reversed.reverse();
        let r = RingHash::with_default_vnodes(&reversed);
        let keys = keys();
        assert_eq!(
            owners(&a, &p, &keys, |_| true),
            owners(&r, &reversed, &keys, |_| true)
        );
    }

    #[test]
    fn the_ring_is_capped_at_max_points() {
        let p = pool(&[("a:1", 10_000), ("b:1", 10_000)]);
        assert_eq!(points_per_weight(&p, 160), MAX_POINTS / 20_000);
        assert_eq!(points_per_weight(&pool(&[("a:1", u32::MAX)]), 160), 1);
        assert_eq!(
            points_per_weight(&pool(&[("a:1", 2)]), 0),
            1,
            "0 is taken as 1"
        );
        // 6553 weight units × 160 = 1_048_480 points: just under the cap, kept.
        assert_eq!(points_per_weight(&pool(&[("a:1", 6553)]), 160), 160);
        assert_eq!(points_per_weight(&pool(&[("a:1", 6554)]), 160), 159);
    }
}
