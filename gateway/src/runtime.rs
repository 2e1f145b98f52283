//! What the proxy reads on every request: the compiled policy and each pool's live state,
//! swapped as one snapshot (arc-swap) so a request sees one consistent version.

use crate::auth::{AuthRegistry, Authenticators};
use crate::backend::{BackendLive, PoolLive, Registry};
use crate::balance::key::sticky_token;
use crate::balance::{
    By, Candidate, Chooser, LeastConnections, LeastEwma, Maglev, PowerOfTwo, RingHash, RoundRobin,
    WeightedRoundRobin,
};
use crate::cache::{CacheRegistry, Caches, QueryCache};
use crate::clock::{wall_now, Clock, SystemClock};
use crate::config::policy::Algorithm;
use crate::config::policy::Pool;
use crate::config::ConfigErrors;
use crate::config::Policy;
use crate::connect::tls::{PoolTls, TlsRegistry};
use crate::dns::{Failure, Names};
use crate::health::active::Target;
use crate::ratelimit::{LimitRegistry, Limiter, Limits};
use crate::split::Split;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;
use std::time::{Duration, Instant};

/// A pool's backends, their live state and its chooser.
#[derive(Debug)]
pub struct PoolState {
    pub pool: Pool,
    /// Aligned with `pool.backends`.
    pub backends: Vec<Arc<BackendLive>>,
    pub chooser: Chooser,
    /// What the pool as a whole remembers (ejections, retry budget), kept across reloads.
    pub live: Arc<PoolLive>,
    /// Each backend's sticky-cookie token, when the pool is sticky.
    sticky_tokens: Vec<u64>,
    /// Slow start's draws, and the key of a request that has none to hash.
    rng: Mutex<SmallRng>,
    /// TLS to the backends (the pool's `tls`, its files loaded), and each backend's server
    /// name (aligned with `backends`; empty without TLS).
    pub tls: Option<Arc<PoolTls>>,
    server_names: Vec<String>,
}

/// What `ewma` scores a backend with no latency measured yet (linkerd's default): tried,
/// but not flooded before its first answer.
pub const UNMEASURED_LATENCY: Duration = Duration::from_millis(30);

/// The least share of its traffic a backend in slow start is given (Envoy's
/// `min_weight_percent` default), so its first requests come at once.
pub const SLOW_START_FLOOR: f64 = 0.1;

/// A pool's chooser as its policy names it, with its own seeded RNG.
pub fn chooser(pool: &Pool, seed: u64) -> Chooser {
    let rng = || Mutex::new(SmallRng::seed_from_u64(seed));
    let ids = || -> Vec<(String, u32)> {
        pool.backends
            .iter()
            .map(|b| (b.address.to_string(), b.weight.get()))
            .collect()
    };
    match pool.algorithm {
        Algorithm::RoundRobin => Chooser::RoundRobin(RoundRobin::default()),
        Algorithm::WeightedRoundRobin => {
            let weights: Vec<u32> = pool.backends.iter().map(|b| b.weight.get()).collect();
            Chooser::Weighted(WeightedRoundRobin::new(&weights))
        }
        Algorithm::LeastConnections => Chooser::LeastConnections(LeastConnections, rng()),
        Algorithm::P2c { by_ewma } => Chooser::PowerOfTwo(
            PowerOfTwo {
                by: if by_ewma {
                    By::Ewma(LeastEwma::new(UNMEASURED_LATENCY))
                } else {
                    By::InFlight
                },
            },
            rng(),
        ),
        Algorithm::Ewma => Chooser::LeastEwma(LeastEwma::new(UNMEASURED_LATENCY), rng()),
        Algorithm::RingHash => Chooser::RingHash(RingHash::with_default_vnodes(&ids())),
        Algorithm::Maglev => Chooser::Maglev(Maglev::with_default_size(&ids())),
    }
}

/// What a pick knows of the request.
#[derive(Debug, Clone, Copy)]
pub struct PickRequest<'a> {
    /// Backends this request tried already.
    pub tried: &'a [SocketAddr],
    /// Positions passed over this time (their circuit breaker filled as they were taken).
    pub skip: &'a [usize],
    pub now: Instant,
    /// The request's hash key, hashed, for `ring_hash` and `maglev` (`None`: it has none).
    pub key: Option<u64>,
    /// The token of the client's sticky cookie.
    pub sticky: Option<u64>,
}

impl<'a> PickRequest<'a> {
    /// A pick that knows only what was tried.
    pub fn new(tried: &'a [SocketAddr], now: Instant) -> Self {
        PickRequest {
            tried,
            skip: &[],
            now,
            key: None,
            sticky: None,
        }
    }
}

/// Why no backend could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBackend {
    /// None healthy that this request has not tried.
    Unavailable,
    /// Some are, but every one has `max_in_flight_per_backend` requests already.
    Full,
}

/// The backend chosen for a try.
#[derive(Debug, Clone, Copy)]
pub struct Picked<'a> {
    /// Its position in the pool.
    pub index: usize,
    pub address: SocketAddr,
    pub live: &'a Arc<BackendLive>,
}

impl PoolState {
    /// What the health checker of backend `i` probes: the backend reached as requests
    /// reach it (its name, TLS material and protocol).
    pub fn health_target(&self, i: usize) -> Target {
        let b = &self.pool.backends[i];
        Target {
            address: b.address,
            authority: match &b.host {
                Some(h) => format!("{h}:{}", b.address.port()),
                None => b.address.to_string(),
            },
            server_name: self.server_name(i).to_string(),
            protocol: self.pool.protocol,
            tls: self.tls.clone(),
        }
    }
    fn new(
        pool: &Pool,
        registry: &Registry,
        now: Instant,
        seed: u64,
        tls: Option<Arc<PoolTls>>,
    ) -> PoolState {
        let backends = registry.backends(pool, now);
        for live in &backends {
            live.latency.set_decay(pool.ewma_decay);
        }
        let sticky_tokens = match &pool.sticky {
            Some(_) => pool
                .backends
                .iter()
                .map(|b| sticky_token(&pool.name, b.address))
                .collect(),
            None => Vec::new(),
        };
        let server_names = match &tls {
            Some(t) => pool
                .backends
                .iter()
                .map(|b| crate::connect::server_name(&t.config, b))
                .collect(),
            None => Vec::new(),
        };
        PoolState {
            tls,
            server_names,
            pool: pool.clone(),
            backends,
            chooser: chooser(pool, seed),
            live: registry.pool(pool),
            sticky_tokens,
            rng: Mutex::new(SmallRng::seed_from_u64(seed ^ 0x5bd1_e995)),
        }
    }

    /// A backend for the next try: healthy, not tried, not ejected, not at its circuit
    /// breaker's limit; the sticky cookie's if it qualifies, else the algorithm's choice.
    /// When every such backend is ejected, an ejected one rather than none (Envoy routes
    /// to all hosts in the same spot: a possibly bad answer beats a certain 503).
    pub fn pick(&self, req: &PickRequest<'_>) -> Result<Picked<'_>, NoBackend> {
        let usable = |i: usize| self.usable(i, req) && !self.full(i);
        let allowed = |i: usize| usable(i) && !self.live.is_ejected(i, req.now);
        let chosen = self
            .choose(req, &allowed)
            .or_else(|| self.choose(req, &usable));
        match chosen {
            Some(index) => Ok(Picked {
                index,
                address: self.pool.backends[index].address,
                live: &self.backends[index],
            }),
            None if (0..self.backends.len()).any(|i| self.usable(i, req)) => Err(NoBackend::Full),
            None => Err(NoBackend::Unavailable),
        }
    }

    /// In service (healthy, not drained), not tried and not passed over.
    fn usable(&self, i: usize, req: &PickRequest<'_>) -> bool {
        self.serving(i)
            && !req.tried.contains(&self.pool.backends[i].address)
            && !req.skip.contains(&i)
    }

    /// At its circuit breaker's limit.
    fn full(&self, i: usize) -> bool {
        self.pool
            .max_in_flight_per_backend
            .is_some_and(|max| self.backends[i].in_flight() >= u64::from(max.get()))
    }

    fn choose(&self, req: &PickRequest<'_>, allowed: &dyn Fn(usize) -> bool) -> Option<usize> {
        let sticky = req
            .sticky
            .and_then(|t| self.sticky_tokens.iter().position(|x| *x == t));
        if let Some(i) = sticky.filter(|&i| allowed(i)) {
            return Some(i);
        }
        if self.chooser.hashes() {
            let key = req.key.unwrap_or_else(|| self.rng().random());
            return self.chooser.pick_hashed(key, allowed);
        }
        let first = self.by_algorithm(req.now, allowed)?;
        // Slow start: a backend that just came back keeps a pick only with the probability
        // of its ramp; otherwise the pick goes to another backend, if there is one.
        match self.ramp(first, req.now) {
            Some(share) if self.rng().random::<f64>() >= share => Some(
                self.by_algorithm(req.now, &|i| i != first && allowed(i))
                    .unwrap_or(first),
            ),
            _ => Some(first),
        }
    }

    fn by_algorithm(&self, now: Instant, allowed: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.backends.len();
        if !self.chooser.reads_load() {
            return self.chooser.pick(n, allowed);
        }
        let candidates: Vec<Candidate> = (0..n)
            .filter(|&i| allowed(i))
            .map(|i| Candidate {
                index: i,
                weight: self.pool.backends[i].weight.get(),
                in_flight: self.backends[i].awaiting_answer(),
                // Read by every load-aware chooser: ewma scores by it, the others break ties
                // against a markedly slower backend with it.
                ewma_cost: self.backends[i].latency.cost(now),
            })
            .collect();
        self.chooser.pick_loaded(&candidates)
    }

    /// The share of its traffic backend `i` gets while in slow start, from
    /// [`SLOW_START_FLOOR`] up (linearly over the pool's `slow_start`); `None` when it is
    /// not ramping.
    pub fn ramp(&self, i: usize, now: Instant) -> Option<f64> {
        let window = self.pool.slow_start?;
        let back = self.backends[i].available_since();
        let unejected = self
            .live
            .outlier
            .as_ref()
            .and_then(|d| d.ejection_ended(i, now));
        let since = back.max(unejected)?;
        let elapsed = now.saturating_duration_since(since);
        (elapsed < window)
            .then(|| (elapsed.as_secs_f64() / window.as_secs_f64()).max(SLOW_START_FLOOR))
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, SmallRng> {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether backend `i` takes new requests: healthy and not drained by an operator.
    pub fn serving(&self, i: usize) -> bool {
        let live = &self.backends[i];
        live.health.is_healthy() && !live.is_draining()
    }

    /// Whether a backend in service and not in `tried` exists (asks no chooser, moves no
    /// state).
    pub fn has_untried(&self, tried: &[SocketAddr]) -> bool {
        (0..self.backends.len())
            .any(|i| self.serving(i) && !tried.contains(&self.pool.backends[i].address))
    }

    /// The index of the backend an operator names: its address (`10.0.0.1:8086`), or the
    /// name and port it was resolved from (`tsdb-0.internal:8086`, every address of it).
    pub fn backends_named(&self, name: &str) -> Vec<usize> {
        self.pool
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.address.to_string() == name
                    || b.host
                        .as_ref()
                        .is_some_and(|h| format!("{h}:{}", b.address.port()) == name)
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub fn healthy_count(&self) -> usize {
        self.backends
            .iter()
            .filter(|b| b.health.is_healthy())
            .count()
    }

    /// The TLS server name of backend `i` (empty: the pool has no TLS).
    pub fn server_name(&self, i: usize) -> &str {
        self.server_names.get(i).map_or("", String::as_str)
    }

    /// The sticky-cookie token of backend `i` (`None`: the pool is not sticky).
    pub fn sticky_token(&self, i: usize) -> Option<u64> {
        self.sticky_tokens.get(i).copied()
    }
}

/// What a route refers to, resolved when its snapshot is built: a request reads these,
/// never a map by name.
#[derive(Debug)]
pub struct RouteLinks {
    /// Aligned with the route's `targets`; `None` only for a pool the policy lacks
    /// (compiling refuses that).
    pub pools: Vec<Option<Arc<PoolState>>>,
    /// The dealer of the targets' weights (`split.rs`), counting this snapshot's requests.
    pub split: Split,
    /// The route's rate limits, in the order it lists them.
    pub limits: Vec<Arc<Limiter>>,
    /// The cache in front of the route, when it has one.
    pub cache: Option<Arc<QueryCache>>,
}

/// The state that outlives policy versions, from which each snapshot is built: backends'
/// live state, the last addresses of backends' names, JWT verifiers, rate-limit buckets
/// and cache entries.
#[derive(Debug)]
pub struct Registries {
    pub backends: Registry,
    pub names: Names,
    pub auth: AuthRegistry,
    pub limits: LimitRegistry,
    pub caches: CacheRegistry,
    /// Pools' upstream TLS material, reloaded when its files change.
    pub upstream_tls: Arc<TlsRegistry>,
}

/// One version of everything the data plane reads.
#[derive(Debug)]
pub struct Snapshot {
    pub policy: Policy,
    pub pools: BTreeMap<String, Arc<PoolState>>,
    /// Aligned with `policy.routes`.
    pub links: Vec<RouteLinks>,
    /// 1 for the policy loaded at start, one more for each reload swapped in.
    pub version: u64,
    pub loaded_at: SystemTime,
    /// The policy's authenticators, ready to check callers.
    pub auth: Authenticators,
    /// The policy's rate limits, with their buckets.
    pub limits: Limits,
    /// The policy's response caches, with their entries.
    pub caches: Caches,
}

impl Snapshot {
    /// The snapshot of `policy`, number `version`, with its authenticators, rate limits
    /// and caches built from the registries (kept for what the previous version had too),
    /// and every route's references resolved. Start and reload alike; an authenticator
    /// that cannot load its keys, or a limit without its store, refuses the policy.
    ///
    /// Every backend name is resolved first (`dns.rs`): one that never resolved refuses the
    /// policy; one that fails now keeps its last addresses.
    pub fn build(
        mut policy: Policy,
        version: u64,
        registries: &Registries,
    ) -> Result<(Arc<Snapshot>, Vec<Failure>), ConfigErrors> {
        let failures = registries.names.resolve(&mut policy, |_| true)?;
        Ok((
            Snapshot::build_resolved(policy, version, registries)?,
            failures,
        ))
    }

    /// [`Snapshot::build`] of a policy whose pools' backends are resolved already.
    pub fn build_resolved(
        policy: Policy,
        version: u64,
        registries: &Registries,
    ) -> Result<Arc<Snapshot>, ConfigErrors> {
        let auth = registries.auth.build(&policy)?;
        let limits = registries.limits.build(&policy)?;
        let caches = registries.caches.build(&policy);
        let tls = registries.upstream_tls.build(&policy)?;
        Ok(Snapshot::assemble(
            policy,
            version,
            &registries.backends,
            (auth, limits, caches),
            &tls,
        ))
    }

    /// A snapshot of `policy` with its pools only: no authenticator, limit, cache or
    /// upstream TLS (tests, and the empty snapshot).
    pub fn new(policy: Policy, version: u64, registry: &Registry) -> Arc<Snapshot> {
        Snapshot::assemble(
            policy,
            version,
            registry,
            Default::default(),
            &BTreeMap::new(),
        )
    }

    fn assemble(
        policy: Policy,
        version: u64,
        registry: &Registry,
        (auth, limits, caches): (Authenticators, Limits, Caches),
        tls: &BTreeMap<String, Arc<PoolTls>>,
    ) -> Arc<Snapshot> {
        let now = SystemClock.now();
        let pools: BTreeMap<String, Arc<PoolState>> = policy
            .pools
            .values()
            .map(|p| {
                (
                    p.name.clone(),
                    Arc::new(PoolState::new(
                        p,
                        registry,
                        now,
                        rand::random(),
                        tls.get(&p.name).cloned(),
                    )),
                )
            })
            .collect();
        let links = policy
            .routes
            .iter()
            .map(|r| RouteLinks {
                pools: r.pools().map(|p| pools.get(p).cloned()).collect(),
                split: Split::of(&r.targets),
                limits: r
                    .rate_limits
                    .iter()
                    .filter_map(|n| limits.get(n).cloned())
                    .collect(),
                cache: r.cache.as_ref().and_then(|c| caches.get(&c.cache).cloned()),
            })
            .collect();
        Arc::new(Snapshot {
            policy,
            pools,
            links,
            version,
            loaded_at: wall_now(),
            auth,
            limits,
            caches,
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
            p.pick(&PickRequest::new(&[], SystemClock.now()))
                .ok()
                .map(|x| x.address.port()),
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
                let addr = p.pick(&PickRequest::new(&[], now)).unwrap().address;
                assert_eq!(addr.port(), 2, "{algorithm}");
            }
            let tried: SocketAddr = "127.0.0.1:2".parse().unwrap();
            assert_eq!(
                p.pick(&PickRequest::new(&[tried], now))
                    .ok()
                    .map(|x| x.address.port()),
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
                let addr = p.pick(&PickRequest::new(&[], clock.now())).unwrap().address;
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
        assert_eq!(
            p.pick(&PickRequest::new(&[one], SystemClock.now())).err(),
            Some(NoBackend::Unavailable)
        );
        assert!(s.ready(), "one healthy backend is enough to be ready");
    }

    fn req(now: Instant) -> PickRequest<'static> {
        PickRequest::new(&[], now)
    }

    #[test]
    fn an_ejected_backend_is_passed_over_until_its_ejection_ends_and_used_when_it_is_all_there_is()
    {
        let snap = pool_with(
            "round_robin",
            "    outlier_detection: { consecutive_failures: 2, base_ejection: 10s, max_ejected: 50% }\n",
            &["127.0.0.1:1", "127.0.0.1:2"],
        );
        let p = &snap.pools["p"];
        let clock = crate::clock::ManualClock::new();
        let d = p.live.outlier.as_ref().unwrap();
        d.record(0, false, clock.now());
        assert!(
            d.record(0, false, clock.now()).is_some(),
            "ejected on the 2nd failure"
        );
        for _ in 0..10 {
            assert_eq!(p.pick(&req(clock.now())).unwrap().index, 1);
        }
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let only_ejected = PickRequest::new(std::slice::from_ref(&other), clock.now());
        assert_eq!(
            p.pick(&only_ejected).unwrap().index,
            0,
            "better than no backend"
        );
        clock.advance(Duration::from_secs(10) - Duration::from_nanos(1));
        assert!(p.live.is_ejected(0, clock.now()));
        clock.advance(Duration::from_nanos(1));
        assert!(
            !p.live.is_ejected(0, clock.now()),
            "back exactly at base_ejection"
        );
        let back: Vec<usize> = (0..4)
            .map(|_| p.pick(&req(clock.now())).unwrap().index)
            .collect();
        assert!(back.contains(&0), "{back:?}");
    }

    #[test]
    fn a_drained_backend_takes_no_new_request_until_it_is_undrained() {
        let snap = pool_with("round_robin", "", &["127.0.0.1:1", "127.0.0.1:2"]);
        let p = &snap.pools["p"];
        let clock = crate::clock::ManualClock::new();
        assert_eq!(p.backends_named("127.0.0.1:1"), vec![0]);
        assert!(p.backends_named("127.0.0.1:3").is_empty());
        let in_flight = p.backends[0].start_request(clock.now());
        assert!(p.backends[0].set_draining(true, clock.now()));
        assert!(!p.backends[0].set_draining(true, clock.now()), "no change");
        for _ in 0..10 {
            assert_eq!(p.pick(&req(clock.now())).unwrap().index, 1);
        }
        assert_eq!(p.backends[0].in_flight(), 1, "what was in flight goes on");
        drop(in_flight);
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert!(!p.has_untried(std::slice::from_ref(&other)));
        assert!(matches!(
            p.pick(&PickRequest::new(std::slice::from_ref(&other), clock.now())),
            Err(NoBackend::Unavailable)
        ));
        assert!(p.backends[0].set_draining(false, clock.now()));
        let back: Vec<usize> = (0..4)
            .map(|_| p.pick(&req(clock.now())).unwrap().index)
            .collect();
        assert!(back.contains(&0), "{back:?}");
    }

    #[test]
    fn a_pool_whose_backends_are_all_at_their_limit_is_full_not_down() {
        let snap = pool_with(
            "least_connections",
            "    circuit_breaker: { max_in_flight_per_backend: 2 }\n",
            &["127.0.0.1:1", "127.0.0.1:2"],
        );
        let p = &snap.pools["p"];
        let now = SystemClock.now();
        let max = p.pool.max_in_flight_per_backend;
        let mut held = Vec::new();
        for _ in 0..4 {
            let picked = p.pick(&req(now)).unwrap();
            held.push(picked.live.try_start_request(now, max).unwrap());
        }
        assert_eq!(p.pick(&req(now)).err(), Some(NoBackend::Full));
        assert!(
            p.backends[0].try_start_request(now, max).is_none(),
            "the count is the limit"
        );
        held.pop();
        assert!(p.pick(&req(now)).is_ok(), "one left: room again");
    }

    #[test]
    fn slow_start_ramps_a_returning_backend_from_a_tenth_to_all_of_its_share() {
        let snap = pool_with(
            "round_robin",
            "    slow_start: 10s\n",
            &["127.0.0.1:1", "127.0.0.1:2"],
        );
        let p = &snap.pools["p"];
        let clock = crate::clock::ManualClock::new();
        assert_eq!(p.ramp(0, clock.now()), None, "in service from the start");
        p.backends[0].mark_available(clock.now());
        assert_eq!(p.ramp(0, clock.now()), Some(SLOW_START_FLOOR));
        clock.advance(Duration::from_secs(5));
        assert_eq!(p.ramp(0, clock.now()), Some(0.5));
        let picks = 20_000;
        let to_ramping = (0..picks)
            .filter(|_| p.pick(&req(clock.now())).unwrap().index == 0)
            .count();
        // Round robin would give it half. Kept with probability 0.5, and a refused turn
        // moves round robin on to the other backend, so the next pick is its turn again:
        // its share is 1/3 (stationary share of "its turn", 2/3, times 0.5).
        let share = to_ramping as f64 / picks as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.03, "{share}");
        clock.advance(Duration::from_secs(5) - Duration::from_nanos(1));
        assert!(p.ramp(0, clock.now()).is_some_and(|r| r < 1.0));
        clock.advance(Duration::from_nanos(1));
        assert_eq!(
            p.ramp(0, clock.now()),
            None,
            "full share exactly at slow_start"
        );
    }

    #[test]
    fn a_sticky_cookie_keeps_its_backend_while_it_can_take_the_request() {
        let snap = pool_with(
            "round_robin",
            "    sticky: { cookie: gw }\n",
            &["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
        );
        let p = &snap.pools["p"];
        let now = SystemClock.now();
        let token = p.sticky_token(2).unwrap();
        let mut r = req(now);
        r.sticky = Some(token);
        for _ in 0..10 {
            assert_eq!(p.pick(&r).unwrap().index, 2);
        }
        let three: SocketAddr = "127.0.0.1:3".parse().unwrap();
        let tried = [three];
        r.tried = &tried;
        assert_ne!(p.pick(&r).unwrap().index, 2, "tried: another backend");
        r.tried = &[];
        r.sticky = Some(token ^ 1);
        let spread: std::collections::BTreeSet<usize> =
            (0..6).map(|_| p.pick(&r).unwrap().index).collect();
        assert_eq!(spread.len(), 3, "an unknown token is ignored");
    }

    #[test]
    fn hashing_pools_send_a_key_to_one_backend_and_walk_on_when_it_is_tried() {
        for algorithm in ["ring_hash", "maglev"] {
            let snap = pool_with(
                algorithm,
                "",
                &["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"],
            );
            let p = &snap.pools["p"];
            let now = SystemClock.now();
            let mut r = req(now);
            let mut seen = std::collections::BTreeSet::new();
            for k in 0..200u64 {
                r.key = Some(crate::balance::ring_hash::key_hash(&k.to_le_bytes()));
                let first = p.pick(&r).unwrap();
                assert_eq!(
                    p.pick(&r).unwrap().index,
                    first.index,
                    "{algorithm}: stable"
                );
                let tried = [first.address];
                let again = PickRequest { tried: &tried, ..r };
                assert_ne!(p.pick(&again).unwrap().index, first.index, "{algorithm}");
                seen.insert(first.index);
            }
            assert_eq!(seen.len(), 3, "{algorithm}: keys spread over the pool");
        }
    }
}
