//! What the proxy reads on every request: the compiled policy and each pool's live state,
//! swapped as one snapshot (arc-swap) so a request sees one consistent version.

use crate::backend::{BackendLive, Registry};
use crate::balance::{Chooser, RoundRobin, WeightedRoundRobin};
use crate::clock::wall_now;
use crate::config::policy::Algorithm;
use crate::config::policy::Pool;
use crate::config::Policy;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// A pool's backends, their live state and its chooser.
#[derive(Debug)]
pub struct PoolState {
    pub pool: Pool,
    /// Aligned with `pool.backends`.
    pub backends: Vec<Arc<BackendLive>>,
    pub chooser: Chooser,
}

impl PoolState {
    /// The next healthy backend not in `tried`, with its live state.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<(SocketAddr, &Arc<BackendLive>)> {
        let b = &self.pool.backends;
        self.chooser
            .pick(b.len(), |i| {
                self.backends[i].health.is_healthy() && !tried.contains(&b[i].address)
            })
            .map(|i| (b[i].address, &self.backends[i]))
    }

    /// Whether a healthy backend not in `tried` exists (asks no chooser, moves no state).
    pub fn has_untried(&self, tried: &[SocketAddr]) -> bool {
        self.pool
            .backends
            .iter()
            .zip(&self.backends)
            .any(|(b, live)| live.health.is_healthy() && !tried.contains(&b.address))
    }

    pub fn healthy_count(&self) -> usize {
        self.backends
            .iter()
            .filter(|b| b.health.is_healthy())
            .count()
    }
}

/// One version of everything the data plane reads.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Policy,
    pub pools: BTreeMap<String, PoolState>,
    /// 1 for the policy loaded at start, one more for each reload swapped in.
    pub version: u64,
    pub loaded_at: SystemTime,
}

impl Snapshot {
    /// A snapshot of `policy`, with each backend's live state taken from (or added to) the
    /// registry, so it carries over from the previous snapshot.
    pub fn new(policy: Policy, version: u64, registry: &Registry) -> Arc<Snapshot> {
        let pools = policy
            .pools
            .values()
            .map(|p| {
                let backends = p
                    .backends
                    .iter()
                    .map(|b| registry.get(&p.name, b.address))
                    .collect();
                let chooser = match p.algorithm {
                    Algorithm::RoundRobin => Chooser::RoundRobin(RoundRobin::default()),
                    Algorithm::WeightedRoundRobin => {
                        let weights: Vec<u32> = p.backends.iter().map(|b| b.weight.get()).collect();
                        Chooser::Weighted(WeightedRoundRobin::new(&weights))
                    }
                };
                (
                    p.name.clone(),
                    PoolState {
                        pool: p.clone(),
                        backends,
                        chooser,
                    },
                )
            })
            .collect();
        Arc::new(Snapshot {
            policy,
            pools,
            version,
            loaded_at: wall_now(),
        })
    }

    /// A snapshot with no pool and no route (every request is a 404).
    pub fn empty() -> Arc<Snapshot> {
        Snapshot::new(Policy::default(), 0, &Registry::default())
    }

    /// Ready: every pool has at least one healthy backend.
    pub fn ready(&self) -> bool {
        self.pools.values().all(|p| p.healthy_count() > 0)
    }
}
