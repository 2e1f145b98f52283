//! What the proxy reads on every request: the compiled policy and each pool's live state,
//! swapped as one snapshot (arc-swap) so a request sees one consistent version.

use crate::balance::RoundRobin;
use crate::config::policy::Pool;
use crate::config::Policy;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A pool's backends and its chooser.
#[derive(Debug)]
pub struct PoolState {
    pub pool: Pool,
    pub chooser: RoundRobin,
}

impl PoolState {
    /// The next backend not in `tried`.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let b = &self.pool.backends;
        self.chooser
            .pick(b.len(), |i| !tried.contains(&b[i].address))
            .map(|i| b[i].address)
    }
}

/// One version of everything the data plane reads.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Policy,
    pub pools: BTreeMap<String, PoolState>,
}

impl Snapshot {
    pub fn new(policy: Policy) -> Arc<Snapshot> {
        let pools = policy
            .pools
            .values()
            .map(|p| {
                (
                    p.name.clone(),
                    PoolState {
                        pool: p.clone(),
                        chooser: RoundRobin::default(),
                    },
                )
            })
            .collect();
        Arc::new(Snapshot { policy, pools })
    }
}
