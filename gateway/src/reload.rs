//! Policy reload: validate the files fully, then swap the snapshot whole; a bad file
//! changes nothing. Health checkers follow the backends that come and go. Reloads come from
//! the file watcher (`watch.rs`), SIGHUP and `POST /admin/reload`. Backends' names are
//! resolved again every `dns_refresh` (`names.rs`): the same policy, a new version when an
//! address came or went.

pub mod checkers;
pub mod names;
pub mod watch;

use crate::auth::AuthRegistry;
use crate::backend::Registry;
use crate::cache::CacheRegistry;
use crate::clock::{Clock, SystemClock};
use crate::config::policy::HealthCheck;
use crate::config::{self, ConfigErrors};
use crate::dns::{Failure, Names, Resolve, SystemResolver};
use crate::health::active::{Prober, Target};
use crate::metrics::Metrics;
use crate::ratelimit::LimitRegistry;
use crate::runtime::{Registries, Snapshot};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Owns the live snapshot, the registries it is built from and the checker threads.
#[derive(Debug)]
pub struct Reloader {
    pub policies: PathBuf,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Backends' live state, JWT verifiers kept across reloads of an unchanged
    /// authenticator, rate-limit buckets of an unchanged limit, cache entries of a cache
    /// that keeps its size.
    pub registries: Registries,
    /// One checker per checked (pool, backend).
    checkers: Mutex<HashMap<(String, SocketAddr), Checker>>,
    /// The last reload's errors, empty after a good one.
    pub last_error: Mutex<Option<String>>,
    pub metrics: Arc<Metrics>,
    /// Serialises reloads (file watcher, SIGHUP and admin may ask at once).
    busy: Mutex<()>,
    /// The health checkers' client.
    prober: Arc<Prober>,
}

impl Reloader {
    /// Loads the policies once; an error here stops the start (a backend's name that does
    /// not resolve too).
    pub fn start(
        policies: PathBuf,
        metrics: Arc<Metrics>,
        limits: LimitRegistry,
    ) -> Result<Arc<Reloader>, ConfigErrors> {
        Reloader::start_with(policies, metrics, limits, Arc::new(SystemResolver))
    }

    /// [`Reloader::start`] with the resolver of backends' names given.
    pub fn start_with(
        policies: PathBuf,
        metrics: Arc<Metrics>,
        limits: LimitRegistry,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Arc<Reloader>, ConfigErrors> {
        let policy = config::load_policy(&policies)?;
        let registries = Registries {
            backends: Registry::default(),
            names: Names::new(resolver),
            auth: AuthRegistry::default(),
            limits,
            caches: CacheRegistry::default(),
            upstream_tls: Arc::default(),
        };
        let (first, failures) = Snapshot::build(policy, 1, &registries)?;
        record_failures(&metrics, &failures);
        let snapshot = Arc::new(ArcSwap::new(first));
        let r = Arc::new(Reloader {
            policies,
            snapshot,
            registries,
            checkers: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
            metrics,
            busy: Mutex::new(()),
            prober: Arc::new(Prober::new()),
        });
        r.reconcile_checkers();
        Ok(r)
    }

    /// Reads the policies again; swaps them in if every file is valid.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let version = self.snapshot.load().version + 1;
        let built = config::load_policy(&self.policies)
            .and_then(|p| Snapshot::build(p, version, &self.registries));
        match built {
            Ok((snapshot, failures)) => {
                record_failures(&self.metrics, &failures);
                let digest = snapshot.policy.digest.clone();
                self.snapshot.store(snapshot);
                self.reconcile_checkers();
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                self.metrics.reload(true);
                tracing::info!(policies = %self.policies.display(), version, digest, "policy reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!("policy reload refused, the current policy stays:\n{e}");
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                self.metrics.reload(false);
                Err(e)
            }
        }
    }

    /// Resolves again the names of the pools whose `dns_refresh` has passed; when a pool's
    /// addresses changed, swaps in the same policy with them (a new version) and reconciles
    /// the health checkers. Whether it swapped.
    pub fn refresh_names(&self) -> bool {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot.load_full();
        let now = SystemClock.now();
        let names = &self.registries.names;
        let due: Vec<String> = current
            .policy
            .pools
            .values()
            .filter(|p| names.due(p, now))
            .map(|p| p.name.clone())
            .collect();
        if due.is_empty() {
            return false;
        }
        let mut policy = current.policy.clone();
        let failures = match names.resolve(&mut policy, |p| due.contains(&p.name)) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("resolving backends' names:\n{e}");
                return false;
            }
        };
        record_failures(&self.metrics, &failures);
        let changed = policy.pools.iter().any(|(name, p)| {
            current.policy.pools.get(name).map(|c| &c.backends) != Some(&p.backends)
        });
        if !changed {
            return false;
        }
        let version = current.version + 1;
        match Snapshot::build_resolved(policy, version, &self.registries) {
            Ok(snapshot) => {
                self.snapshot.store(snapshot);
                self.reconcile_checkers();
                tracing::info!(version, "backends' addresses changed: snapshot rebuilt");
                true
            }
            Err(e) => {
                tracing::error!("rebuilding the snapshot with new addresses:\n{e}");
                false
            }
        }
    }

    /// Starts checkers for backends that appeared, stops those of backends that went, and
    /// restarts those whose pool changed its health check, protocol or TLS settings.
    fn reconcile_checkers(&self) {
        let snap = self.snapshot.load();
        let mut checkers = self.checkers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wanted = Vec::new();
        for p in snap.pools.values() {
            for (i, (b, live)) in p.pool.backends.iter().zip(&p.backends).enumerate() {
                let key = (p.pool.name.clone(), b.address);
                wanted.push(key.clone());
                let target = p.health_target(i);
                match checkers.get(&key) {
                    Some(c) if c.check == p.pool.health_check && c.target == target => continue,
                    Some(c) => c.stop.store(true, Ordering::Relaxed),
                    None => {}
                }
                let stop = Arc::new(AtomicBool::new(false));
                match checkers::spawn(
                    p.pool.name.clone(),
                    target.clone(),
                    p.pool.health_check.clone(),
                    live.clone(),
                    stop.clone(),
                    self.metrics.clone(),
                    self.prober.clone(),
                ) {
                    Ok(_) => {
                        let check = p.pool.health_check.clone();
                        checkers.insert(
                            key,
                            Checker {
                                stop,
                                check,
                                target,
                            },
                        );
                    }
                    Err(e) => {
                        checkers.remove(&key);
                        tracing::error!(error = %e, backend = %b.address, "starting a health checker")
                    }
                }
            }
        }
        checkers.retain(|key, c| {
            let keep = wanted.contains(key);
            if !keep {
                c.stop.store(true, Ordering::Relaxed);
            }
            keep
        });
        self.registries.backends.retain(&wanted);
    }
}

/// Counts and logs the names that failed to resolve (they kept their last addresses).
fn record_failures(metrics: &Metrics, failures: &[Failure]) {
    for f in failures {
        metrics.dns_failure(&f.pool, &f.name);
        tracing::warn!(pool = %f.pool, name = %f.name, error = %f.error, "a backend's name did not resolve: its last addresses are kept");
    }
}

/// A running health checker: its stop flag, the check it runs and how it reaches the
/// backend.
#[derive(Debug)]
struct Checker {
    stop: Arc<AtomicBool>,
    check: HealthCheck,
    target: Target,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::dns::ScriptedResolver;

    #[test]
    fn a_changed_answer_swaps_a_new_version_and_a_failed_one_keeps_the_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let policy = "pools:\n  p:\n    dns_refresh: 10ms\n    backends:\n      - { address: tsdb.internal:1 }\n    health_check: { interval: 1h, timeout: 1s }\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    pool: p\n";
        std::fs::write(dir.path().join("p.yaml"), policy).unwrap();
        let resolver = Arc::new(ScriptedResolver::default());
        resolver.answer("tsdb.internal", &["127.0.0.1", "127.0.0.2"]);
        let metrics = Arc::new(Metrics::new().unwrap());
        let r = Reloader::start_with(
            dir.path().to_path_buf(),
            metrics.clone(),
            LimitRegistry::new(None, Arc::new(SystemClock)),
            resolver.clone(),
        )
        .unwrap();
        let addresses = |r: &Reloader| -> Vec<String> {
            r.snapshot.load().pools["p"]
                .pool
                .backends
                .iter()
                .map(|b| b.address.to_string())
                .collect()
        };
        assert_eq!(addresses(&r), vec!["127.0.0.1:1", "127.0.0.2:1"]);
        let kept = r.snapshot.load().pools["p"].backends[1].clone();

        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!r.refresh_names(), "the same answer changes nothing");
        assert_eq!(r.snapshot.load().version, 1);

        resolver.answer("tsdb.internal", &["127.0.0.2", "127.0.0.3"]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(r.refresh_names());
        let snap = r.snapshot.load_full();
        assert_eq!(snap.version, 2);
        assert_eq!(addresses(&r), vec!["127.0.0.2:1", "127.0.0.3:1"]);
        assert!(Arc::ptr_eq(&kept, &snap.pools["p"].backends[0]));
        let checked: Vec<SocketAddr> = {
            let c = r.checkers.lock().unwrap_or_else(PoisonError::into_inner);
            let mut v: Vec<SocketAddr> = c.keys().map(|(_, a)| *a).collect();
            v.sort();
            v
        };
        assert_eq!(
            checked,
            vec![
                "127.0.0.2:1".parse::<SocketAddr>().unwrap(),
                "127.0.0.3:1".parse().unwrap()
            ],
            "the checkers follow"
        );

        resolver.fail("tsdb.internal");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!r.refresh_names());
        assert_eq!(r.snapshot.load().version, 2);
        assert_eq!(addresses(&r), vec!["127.0.0.2:1", "127.0.0.3:1"]);
        assert_eq!(metrics.dns_failures("p", "tsdb.internal:1"), 1);
        assert!(r.registries.names.status()[0].1.stale);
        for c in r
            .checkers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            c.stop.store(true, Ordering::Relaxed);
        }
    }
}
