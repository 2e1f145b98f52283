//! What the proxy reads on every request: the compiled policy and each pool's live state,
//! swapped as one snapshot (arc-swap) so a request sees one consistent version.

use crate::auth::Authenticators;
use crate::backend::{BackendLive, Registry};
use crate::balance::{
    By, Candidate, Chooser, LeastConnections, LeastEwma, PowerOfTwo, RoundRobin, WeightedRoundRobin,
};
use crate::clock::wall_now;
use crate::config::policy::Algorithm;
use crate::config::policy::Pool;
use crate::config::Policy;
use crate::ratelimit::Limits;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;
use std::time::{Duration, Instant};

/// A pool's backends, their live state and its chooser.
#[derive(Debug)]
pub struct PoolState {
    pub pool: Pool,
    /// Aligned with `pool.backends`.
    pub backends: Vec<Arc<BackendLive>>,
    pub chooser: Chooser,
}

/// What `ewma` scores a backend with no latency measured yet (linkerd's default): tried,
/// but not flooded before its first answer.
pub const UNMEASURED_LATENCY: Duration = Duration::from_millis(30);

/// A pool's chooser as its policy names it, with its own seeded RNG.
pub fn chooser(pool: &Pool, seed: u64) -> Chooser {
    let rng = || Mutex::new(SmallRng::seed_from_u64(seed));
    match pool.algorithm {
        Algorithm::RoundRobin => Chooser::RoundRobin(RoundRobin::default()),
        Algorithm::WeightedRoundRobin => {
            let weights: Vec<u32> = pool.backends.iter().map(|b| b.weight.get()).collect();
            Chooser::Weighted(WeightedRoundRobin::new(&weights))
        }
        Algorithm::LeastConnections => Chooser::LeastConnections(LeastConnections, rng()),
        Algorithm::P2c { by_ewma } => Chooser::PowerOfTwo(
            PowerOfTwo {
                by: if by_ewma { By::Ewma } else { By::InFlight },
            },
            rng(),
        ),
        Algorithm::Ewma => Chooser::LeastEwma(LeastEwma::new(UNMEASURED_LATENCY), rng()),
    }
}

impl PoolState {
    /// The next healthy backend not in `tried`, with its live state; `now` dates the
    /// latency estimates of the load-aware choosers.
    pub fn pick(
        &self,
        tried: &[SocketAddr],
        now: Instant,
    ) -> Option<(SocketAddr, &Arc<BackendLive>)> {
        let b = &self.pool.backends;
        let allowed =
            |i: usize| self.backends[i].health.is_healthy() && !tried.contains(&b[i].address);
        let chosen = if self.chooser.reads_load() {
            let candidates: Vec<Candidate> = (0..b.len())
                .filter(|&i| allowed(i))
                .map(|i| Candidate {
                    index: i,
                    weight: b[i].weight.get(),
                    in_flight: self.backends[i].in_flight(),
                    ewma_cost: if self.pool.algorithm.uses_ewma() {
                        self.backends[i].latency.cost(now)
                    } else {
                        0.0
                    },
                })
                .collect();
            self.chooser.pick_loaded(&candidates)
        } else {
            self.chooser.pick(b.len(), allowed)
        };
        chosen.map(|i| (b[i].address, &self.backends[i]))
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
                let backends: Vec<Arc<BackendLive>> = p
                    .backends
                    .iter()
                    .map(|b| registry.get(&p.name, b.address))
                    .collect();
                for live in &backends {
                    live.latency.set_decay(p.ewma_decay);
                }
                let chooser = chooser(p, rand::random());
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
    use crate::clock::{Clock, SystemClock};
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
        let in_flight = first.pools["p"].backends[1].start_request(SystemClock.now());
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
        assert_eq!(
            p.pick(&[], SystemClock.now()).map(|(a, _)| a.port()),
            Some(3)
        );
        drop(in_flight);
        assert_eq!(p.backends[1].in_flight(), 0);
    }

    fn pool_with(algorithm: &str, extra: &str, backends: &[&str]) -> Snapshot {
        let list: String = backends
            .iter()
            .map(|b| format!("      - {{ address: {b} }}\n"))
            .collect();
        let text = format!(
            "pools:\n  p:\n    algorithm: {algorithm}\n{extra}    backends:\n{list}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n"
        );
        let registry = Registry::default();
        let policy = parse_policy(&text, Path::new("p.yaml")).unwrap();
        Arc::into_inner(Snapshot::new(policy, 1, &registry)).unwrap()
    }

    #[test]
    fn least_connections_and_p2c_send_the_next_request_to_the_idle_backend() {
        for (algorithm, extra) in [("least_connections", ""), ("p2c", "")] {
            let snap = pool_with(algorithm, extra, &["127.0.0.1:1", "127.0.0.1:2"]);
            let p = &snap.pools["p"];
            let now = SystemClock.now();
            let _busy: Vec<_> = (0..3).map(|_| p.backends[0].start_request(now)).collect();
            for _ in 0..100 {
                let (addr, _) = p.pick(&[], now).unwrap();
                assert_eq!(addr.port(), 2, "{algorithm}");
            }
            let tried: SocketAddr = "127.0.0.1:2".parse().unwrap();
            assert_eq!(
                p.pick(&[tried], now).map(|(a, _)| a.port()),
                Some(1),
                "{algorithm}: a tried backend is not picked again"
            );
        }
    }

    #[test]
    fn ewma_prefers_the_backend_that_answered_faster_and_the_sample_comes_from_the_guard() {
        for (algorithm, extra) in [("ewma", ""), ("p2c", "    p2c: { by: ewma }\n")] {
            let snap = pool_with(algorithm, extra, &["127.0.0.1:1", "127.0.0.1:2"]);
            let p = &snap.pools["p"];
            let clock = crate::clock::ManualClock::new();
            let mut slow = p.backends[0].start_request(clock.now());
            let mut fast = p.backends[1].start_request(clock.now());
            clock.advance(Duration::from_millis(2));
            fast.observe(clock.now());
            clock.advance(Duration::from_millis(48));
            slow.observe(clock.now());
            slow.observe(clock.now() + Duration::from_secs(1)); // once per try
            drop((slow, fast));
            let cost = p.backends[0].latency.cost(clock.now());
            assert!((cost - 0.05).abs() < 1e-9, "{algorithm}: {cost}");
            for _ in 0..100 {
                let (addr, _) = p.pick(&[], clock.now()).unwrap();
                assert_eq!(addr.port(), 2, "{algorithm}");
            }
        }
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
        assert!(p.pick(&[one], SystemClock.now()).is_none());
        assert!(s.ready(), "one healthy backend is enough to be ready");
    }
}
