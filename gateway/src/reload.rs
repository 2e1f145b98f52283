//! Policy reload: validate the files fully, then swap the snapshot whole; a bad file
//! changes nothing. Health checkers follow the backends that come and go. Reloads come from
//! the file watcher (`watch.rs`), SIGHUP and `POST /admin/reload`.

pub mod checkers;
pub mod watch;

use crate::auth::AuthRegistry;
use crate::backend::Registry;
use crate::cache::CacheRegistry;
use crate::config::policy::HealthCheck;
use crate::config::{self, ConfigErrors};
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
}

impl Reloader {
    /// Loads the policies once; an error here stops the start.
    pub fn start(
        policies: PathBuf,
        metrics: Arc<Metrics>,
        limits: LimitRegistry,
    ) -> Result<Arc<Reloader>, ConfigErrors> {
        let policy = config::load_policy(&policies)?;
        let registries = Registries {
            backends: Registry::default(),
            auth: AuthRegistry::default(),
            limits,
            caches: CacheRegistry::default(),
        };
        let snapshot = Arc::new(ArcSwap::new(Snapshot::build(policy, 1, &registries)?));
        let r = Arc::new(Reloader {
            policies,
            snapshot,
            registries,
            checkers: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
            metrics,
            busy: Mutex::new(()),
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
            Ok(snapshot) => {
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

    /// Starts checkers for backends that appeared, stops those of backends that went, and
    /// restarts those whose pool changed its health check.
    fn reconcile_checkers(&self) {
        let snap = self.snapshot.load();
        let mut checkers = self.checkers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wanted = Vec::new();
        for p in snap.pools.values() {
            for (b, live) in p.pool.backends.iter().zip(&p.backends) {
                let key = (p.pool.name.clone(), b.address);
                wanted.push(key.clone());
                match checkers.get(&key) {
                    Some(c) if c.check == p.pool.health_check => continue,
                    Some(c) => c.stop.store(true, Ordering::Relaxed),
                    None => {}
                }
                let stop = Arc::new(AtomicBool::new(false));
                match checkers::spawn(
                    p.pool.name.clone(),
                    b.address,
                    p.pool.health_check.clone(),
                    live.clone(),
                    stop.clone(),
                    self.metrics.clone(),
                ) {
                    Ok(_) => {
                        let check = p.pool.health_check.clone();
                        checkers.insert(key, Checker { stop, check });
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

/// A running health checker: its stop flag and the check it runs.
#[derive(Debug)]
struct Checker {
    stop: Arc<AtomicBool>,
    check: HealthCheck,
}
