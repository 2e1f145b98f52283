//! Backends addressed by name: each name of a pool is resolved when a snapshot is built
//! (start, reload) and again every `dns_refresh` by the reloader's thread
//! (`reload/names.rs`), never on the request path. Every address a name resolves to is one
//! backend of the pool, with the name's weight, and its own live state in the registry.
//!
//! The last addresses of each (pool, name) are kept here, across snapshots: a name that
//! stops resolving (an error, or no address) keeps them, and is reported stale in
//! `/admin/status` and counted in `gateway_dns_resolution_failures_total{pool,name}`. A
//! name that has never resolved refuses the policy (at start, the gateway does not start;
//! on a reload, the current policy stays).

use crate::clock::{Clock, SystemClock};
use crate::config::policy::{Address, Backend, Pool};
use crate::config::{ConfigError, ConfigErrors, Policy};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Turns a name and a port into addresses.
pub trait Resolve: Send + Sync + fmt::Debug {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system's resolver (`getaddrinfo`, through `ToSocketAddrs`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// A resolver that answers what a test tells it; a name it was told nothing of fails.
#[derive(Debug, Default)]
pub struct ScriptedResolver {
    answers: Mutex<HashMap<String, Result<Vec<SocketAddr>, String>>>,
}

impl ScriptedResolver {
    /// From now on, `host` resolves to `addresses` (with the port asked).
    pub fn answer(&self, host: &str, addresses: &[&str]) {
        let ips = addresses
            .iter()
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 0))
            .collect();
        self.lock().insert(host.into(), Ok(ips));
    }

    /// From now on, resolving `host` fails.
    pub fn fail(&self, host: &str) {
        self.lock()
            .insert(host.into(), Err(format!("no answer for {host}")));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Result<Vec<SocketAddr>, String>>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Resolve for ScriptedResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        match self.lock().get(host) {
            Some(Ok(ips)) => Ok(ips.iter().map(|a| SocketAddr::new(a.ip(), port)).collect()),
            Some(Err(e)) => Err(io::Error::other(e.clone())),
            None => Err(io::Error::new(io::ErrorKind::NotFound, host.to_string())),
        }
    }
}

/// What is known of one name of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameState {
    /// The addresses of its last answer that had any, sorted.
    pub addresses: Vec<SocketAddr>,
    /// Whether the last resolution failed (the addresses are then the older ones).
    pub stale: bool,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Failures so far.
    pub failures: u64,
    /// When it was last resolved (successfully or not).
    pub resolved_at: Instant,
}

/// A name that failed to resolve this time (it keeps its last addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub pool: String,
    /// `host:port`.
    pub name: String,
    pub error: String,
}

/// The names of every pool and their last addresses, kept across snapshots.
#[derive(Debug)]
pub struct Names {
    resolver: Arc<dyn Resolve>,
    /// By (pool, `host:port`).
    last: Mutex<BTreeMap<(String, String), NameState>>,
}

impl Default for Names {
    fn default() -> Self {
        Names::new(Arc::new(SystemResolver))
    }
}

impl Names {
    pub fn new(resolver: Arc<dyn Resolve>) -> Self {
        Names {
            resolver,
            last: Mutex::new(BTreeMap::new()),
        }
    }

    /// Fills each pool's `backends` from its endpoints: IP literals as they are, names
    /// resolved (those of a pool for which `due` says no, and that resolved before, keep
    /// their last addresses without asking). An address already in the pool (listed, or
    /// the answer of an earlier name) is not added twice. A name that never resolved is
    /// an error at its position in the policy; one that resolved before keeps its last
    /// addresses and is returned among the failures.
    pub fn resolve(
        &self,
        policy: &mut Policy,
        due: impl Fn(&Pool) -> bool,
    ) -> Result<Vec<Failure>, ConfigErrors> {
        let now = SystemClock.now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let mut errors = ConfigErrors::default();
        let mut failures = Vec::new();
        let mut named = Vec::new();
        for pool in policy.pools.values_mut() {
            let due = due(pool);
            let mut backends: Vec<Backend> = Vec::with_capacity(pool.endpoints.len());
            for ep in &pool.endpoints {
                let (host, port) = match &ep.address {
                    Address::Ip(a) => {
                        if !backends.iter().any(|b| b.address == *a) {
                            backends.push(Backend {
                                address: *a,
                                weight: ep.weight,
                                host: None,
                            });
                        }
                        continue;
                    }
                    Address::Name { host, port } => (host, *port),
                };
                let key = (pool.name.clone(), ep.address.to_string());
                named.push(key.clone());
                let known = last.get(&key).filter(|_| !due);
                let addresses = match known {
                    Some(s) => s.addresses.clone(),
                    None => {
                        let answer = self.resolver.resolve(host, port).and_then(|mut a| {
                            a.sort();
                            a.dedup();
                            if a.is_empty() {
                                Err(io::Error::new(io::ErrorKind::NotFound, "no address"))
                            } else {
                                Ok(a)
                            }
                        });
                        match (answer, last.get_mut(&key)) {
                            (Ok(a), Some(s)) => {
                                s.addresses = a.clone();
                                s.stale = false;
                                s.resolved_at = now;
                                a
                            }
                            (Ok(a), None) => {
                                last.insert(
                                    key.clone(),
                                    NameState {
                                        addresses: a.clone(),
                                        stale: false,
                                        last_error: None,
                                        failures: 0,
                                        resolved_at: now,
                                    },
                                );
                                a
                            }
                            (Err(e), Some(s)) => {
                                s.stale = true;
                                s.last_error = Some(e.to_string());
                                s.failures += 1;
                                s.resolved_at = now;
                                failures.push(Failure {
                                    pool: key.0.clone(),
                                    name: key.1.clone(),
                                    error: e.to_string(),
                                });
                                s.addresses.clone()
                            }
                            (Err(e), None) => {
                                errors.push(ConfigError {
                                    file: ep.file.clone(),
                                    line: ep.line,
                                    column: ep.column,
                                    field: ep.field.clone(),
                                    message: format!(
                                        "{} does not resolve ({e}); a name must resolve when it is first loaded",
                                        ep.address
                                    ),
                                });
                                Vec::new()
                            }
                        }
                    }
                };
                for a in addresses {
                    if !backends.iter().any(|b| b.address == a) {
                        backends.push(Backend {
                            address: a,
                            weight: ep.weight,
                            host: Some(host.clone()),
                        });
                    }
                }
            }
            pool.backends = backends;
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        last.retain(|k, _| named.contains(k));
        Ok(failures)
    }

    /// Whether a pool with names is due to resolve them again at `now`.
    pub fn due(&self, pool: &Pool, now: Instant) -> bool {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        pool.endpoints.iter().any(|ep| match &ep.address {
            Address::Ip(_) => false,
            Address::Name { .. } => last
                .get(&(pool.name.clone(), ep.address.to_string()))
                .is_none_or(|s| now.saturating_duration_since(s.resolved_at) >= pool.dns_refresh),
        })
    }

    /// Every (pool, `host:port`) and what is known of it, in order.
    pub fn status(&self) -> Vec<((String, String), NameState)> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Registry;
    use crate::config::parse_policy;
    use crate::runtime::Snapshot;
    use std::path::Path;

    fn policy(backends: &[&str]) -> Policy {
        let list: String = backends
            .iter()
            .map(|b| format!("      - {{ address: {b}, weight: 2 }}\n"))
            .collect();
        let text = format!(
            "pools:\n  p:\n    backends:\n{list}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n"
        );
        parse_policy(&text, Path::new("p.yaml")).unwrap()
    }

    fn addresses(p: &Policy) -> Vec<String> {
        p.pools["p"]
            .backends
            .iter()
            .map(|b| b.address.to_string())
            .collect()
    }

    #[test]
    fn a_name_that_resolves_to_two_addresses_is_two_backends_with_its_weight() {
        let resolver = Arc::new(ScriptedResolver::default());
        resolver.answer("tsdb.internal", &["10.0.0.2", "10.0.0.1"]);
        let names = Names::new(resolver);
        let mut p = policy(&["tsdb.internal:8086", "127.0.0.1:9000"]);
        assert_eq!(names.resolve(&mut p, |_| true), Ok(vec![]));
        assert_eq!(
            addresses(&p),
            vec!["10.0.0.1:8086", "10.0.0.2:8086", "127.0.0.1:9000"]
        );
        assert!(p.pools["p"].backends.iter().all(|b| b.weight.get() == 2));
        let snap = Snapshot::new(p, 1, &Registry::default());
        assert_eq!(snap.pools["p"].backends.len(), 3);
    }

    #[test]
    fn a_changed_answer_changes_the_backends_and_the_kept_address_keeps_its_state() {
        let resolver = Arc::new(ScriptedResolver::default());
        resolver.answer("tsdb.internal", &["10.0.0.1", "10.0.0.2"]);
        let names = Names::new(resolver.clone());
        let registry = Registry::default();
        let mut p = policy(&["tsdb.internal:8086"]);
        names.resolve(&mut p, |_| true).unwrap();
        let first = Snapshot::new(p.clone(), 1, &registry);
        let now = SystemClock.now();
        let _busy = first.pools["p"].backends[1].start_request(now);

        resolver.answer("tsdb.internal", &["10.0.0.2", "10.0.0.3"]);
        names.resolve(&mut p, |_| true).unwrap();
        assert_eq!(addresses(&p), vec!["10.0.0.2:8086", "10.0.0.3:8086"]);
        let second = Snapshot::new(p, 2, &registry);
        assert_eq!(
            second.pools["p"].backends[0].in_flight(),
            1,
            "10.0.0.2 kept its live state"
        );
        assert_eq!(second.pools["p"].backends[1].in_flight(), 0);
        assert!(Arc::ptr_eq(
            &first.pools["p"].backends[1],
            &second.pools["p"].backends[0]
        ));
    }

    #[test]
    fn a_failing_name_keeps_its_last_addresses_and_is_reported() {
        let resolver = Arc::new(ScriptedResolver::default());
        resolver.answer("tsdb.internal", &["10.0.0.1"]);
        let names = Names::new(resolver.clone());
        let mut p = policy(&["tsdb.internal:8086"]);
        names.resolve(&mut p, |_| true).unwrap();
        resolver.fail("tsdb.internal");
        let failures = names.resolve(&mut p, |_| true).unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            (failures[0].pool.as_str(), failures[0].name.as_str()),
            ("p", "tsdb.internal:8086")
        );
        assert_eq!(addresses(&p), vec!["10.0.0.1:8086"]);
        let status = names.status();
        assert_eq!(status.len(), 1);
        assert!(status[0].1.stale);
        assert_eq!(status[0].1.failures, 1);
        resolver.answer("tsdb.internal", &["10.0.0.1"]);
        names.resolve(&mut p, |_| true).unwrap();
        assert!(!names.status()[0].1.stale, "fresh again");
    }

    #[test]
    fn a_name_that_never_resolved_refuses_the_policy_at_its_position() {
        let names = Names::new(Arc::new(ScriptedResolver::default()));
        let mut p = policy(&["127.0.0.1:9000", "nowhere.internal:8086"]);
        let err = names.resolve(&mut p, |_| true).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "p.yaml:5:20: pools.p.backends[1].address: nowhere.internal:8086 does not resolve"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_pool_not_due_keeps_its_addresses_without_asking() {
        let resolver = Arc::new(ScriptedResolver::default());
        resolver.answer("tsdb.internal", &["10.0.0.1"]);
        let names = Names::new(resolver.clone());
        let mut p = policy(&["tsdb.internal:8086"]);
        names.resolve(&mut p, |_| true).unwrap();
        assert!(!names.due(&p.pools["p"], SystemClock.now()), "30s not past");
        resolver.answer("tsdb.internal", &["10.0.0.9"]);
        names.resolve(&mut p, |_| false).unwrap();
        assert_eq!(addresses(&p), vec!["10.0.0.1:8086"]);
        let ip_only = policy(&["127.0.0.1:9000"]);
        assert!(!names.due(&ip_only.pools["p"], SystemClock.now()));
    }
}
