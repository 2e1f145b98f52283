//! What the proxy reads on every request: the compiled policy and each pool's live state,
//! swapped as one snapshot (arc-swap) so a request sees one consistent version.

use crate::balance::{Chooser, RoundRobin, WeightedRoundRobin};
use crate::config::policy::Algorithm;
use crate::config::policy::Pool;
use crate::config::Policy;
use crate::health::{BackendHealth, Registry};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A pool's backends, their health and its chooser.
#[derive(Debug)]
pub struct PoolState {
    pub pool: Pool,
    /// Aligned with `pool.backends`.
    pub health: Vec<Arc<BackendHealth>>,
    pub chooser: Chooser,
}

impl PoolState {
    /// The next healthy backend not in `tried`.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let b = &self.pool.backends;
        self.chooser
            .pick(b.len(), |i| {
                self.health[i].is_healthy() && !tried.contains(&b[i].address)
            })
            .map(|i| b[i].address)
    }

    pub fn healthy_count(&self) -> usize {
        self.health.iter().filter(|h| h.is_healthy()).count()
    }
}

/// One version of everything the data plane reads.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Policy,
    pub pools: BTreeMap<String, PoolState>,
}

impl Snapshot {
    /// A snapshot of `policy`, with each backend's health taken from (or added to) the
    /// registry, so it carries over from the previous snapshot.
    pub fn new(policy: Policy, registry: &Registry) -> Arc<Snapshot> {
        let pools = policy
            .pools
            .values()
            .map(|p| {
                let health = p
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
                        health,
                        chooser,
                    },
                )
            })
            .collect();
        Arc::new(Snapshot { policy, pools })
    }

    /// Ready: every pool has at least one healthy backend.
    pub fn ready(&self) -> bool {
        self.pools.values().all(|p| p.healthy_count() > 0)
    }
}
