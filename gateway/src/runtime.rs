//! What the proxy reads on every request: the compiled policy and each pool's live state,
//! swapped as one snapshot (arc-swap) so a request sees one consistent version.

use crate::auth::Authenticators;
use crate::backend::{BackendLive, Registry};
use crate::balance::{Chooser, RoundRobin, WeightedRoundRobin};
use crate::clock::wall_now;
use crate::config::policy::Algorithm;
use crate::config::policy::Pool;
use crate::config::Policy;
use crate::ratelimit::Limits;
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
    /// The policy's authenticators, ready to check callers.
    pub auth: Authenticators,
    /// The policy's rate limits, with their buckets.
    pub limits: Limits,
}

impl Snapshot {
    /// A snapshot of `policy`, with each backend's live state taken from (or added to) the
    /// registry, so it carries over from the previous snapshot.
    pub fn new(policy: Policy, version: u64, registry: &Registry) -> Arc<Snapshot> {
        Snapshot::with_auth(
            policy,
            version,
            registry,
            Authenticators::default(),
            Limits::default(),
        )
    }

    /// [`Snapshot::new`] with the authenticators and rate limits built for `policy` (which
    /// may load key sets, so the reloader builds them first and refuses the policy if they
    /// fail).
    pub fn with_auth(
        policy: Policy,
        version: u64,
        registry: &Registry,
        auth: Authenticators,
        limits: Limits,
    ) -> Arc<Snapshot> {
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
            auth,
            limits,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;
    use std::path::Path;

    fn policy(backends: &[&str]) -> Policy {
        let list: String = backends
            .iter()
            .map(|b| format!("      - {{ address: {b} }}\n"))
            .collect();
        let text = format!(
            "pools:\n  p:\n    backends:\n{list}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n"
        );
        parse_policy(&text, Path::new("p.yaml")).unwrap()
    }

    #[test]
    fn a_backend_that_stays_keeps_its_health_and_load_across_snapshots() {
        let registry = Registry::default();
        let first = Snapshot::new(policy(&["127.0.0.1:1", "127.0.0.1:2"]), 1, &registry);
        let check = first.pools["p"].pool.health_check.clone();
        for _ in 0..check.unhealthy_threshold.get() {
            first.pools["p"].backends[0].health.observe(false, &check);
        }
        let in_flight = first.pools["p"].backends[1].start_request();
        // A reload that keeps both backends (in another order) and adds one.
        let second = Snapshot::new(
            policy(&["127.0.0.1:3", "127.0.0.1:2", "127.0.0.1:1"]),
            2,
            &registry,
        );
        let p = &second.pools["p"];
        assert!(
            !p.backends[2].health.is_healthy(),
            "127.0.0.1:1 is still out"
        );
        assert_eq!(
            p.backends[1].in_flight(),
            1,
            "127.0.0.1:2 still has its request"
        );
        assert!(
            p.backends[0].health.is_healthy(),
            "a new backend starts healthy"
        );
        assert_eq!(p.healthy_count(), 2);
        assert_eq!(p.pick(&[]).map(|(a, _)| a.port()), Some(3));
        drop(in_flight);
        assert_eq!(p.backends[1].in_flight(), 0);
    }

    #[test]
    fn a_pool_whose_backends_are_all_tried_or_down_has_nothing_left() {
        let registry = Registry::default();
        let s = Snapshot::new(policy(&["127.0.0.1:1", "127.0.0.1:2"]), 1, &registry);
        let p = &s.pools["p"];
        let one: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(p.has_untried(&[one]));
        let check = p.pool.health_check.clone();
        for _ in 0..check.unhealthy_threshold.get() {
            p.backends[1].health.observe(false, &check);
        }
        assert!(!p.has_untried(&[one]), "the other one is down");
        assert!(p.pick(&[one]).is_none());
        assert!(s.ready(), "one healthy backend is enough to be ready");
    }
}
