//! Policy reload: validate the files fully, then swap the snapshot whole; a bad file
//! changes nothing. Health checkers follow the backends that come and go. Reloads come from
//! the file watcher (`watch.rs`), SIGHUP and `POST /admin/reload`.

pub mod watch;

use crate::config::{self, ConfigErrors};
use crate::health::{active, Registry};
use crate::runtime::Snapshot;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Owns the live snapshot, the health registry and the checker threads.
#[derive(Debug)]
pub struct Reloader {
    pub policies: PathBuf,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub registry: Registry,
    /// One stop flag per checked (pool, backend).
    checkers: Mutex<HashMap<(String, SocketAddr), Arc<AtomicBool>>>,
    /// The last reload's errors, empty after a good one.
    pub last_error: Mutex<Option<String>>,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Serialises reloads (file watcher, SIGHUP and admin may ask at once).
    busy: Mutex<()>,
}

impl Reloader {
    /// Loads the policies once; an error here stops the start.
    pub fn start(policies: PathBuf) -> Result<Arc<Reloader>, ConfigErrors> {
        let policy = config::load_policy(&policies)?;
        let registry = Registry::default();
        let snapshot = Arc::new(ArcSwap::new(Snapshot::new(policy, &registry)));
        let r = Arc::new(Reloader {
            policies,
            snapshot,
            registry,
            checkers: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            busy: Mutex::new(()),
        });
        r.reconcile_checkers();
        Ok(r)
    }

    /// Reads the policies again; swaps them in if every file is valid.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let _one_at_a_time = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        match config::load_policy(&self.policies) {
            Ok(policy) => {
                self.snapshot.store(Snapshot::new(policy, &self.registry));
                self.reconcile_checkers();
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(policies = %self.policies.display(), "policy reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!("policy reload refused, the current policy stays:\n{e}");
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Starts checkers for backends that appeared, stops those of backends that went.
    fn reconcile_checkers(&self) {
        let snap = self.snapshot.load();
        let mut checkers = self.checkers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut wanted = Vec::new();
        for p in snap.pools.values() {
            for (b, h) in p.pool.backends.iter().zip(&p.health) {
                let key = (p.pool.name.clone(), b.address);
                wanted.push(key.clone());
                if checkers.contains_key(&key) {
                    continue;
                }
                let stop = Arc::new(AtomicBool::new(false));
                match active::spawn(
                    p.pool.name.clone(),
                    b.address,
                    p.pool.health_check.clone(),
                    h.clone(),
                    stop.clone(),
                ) {
                    Ok(_) => {
                        checkers.insert(key, stop);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, backend = %b.address, "starting a health checker")
                    }
                }
            }
        }
        checkers.retain(|key, stop| {
            let keep = wanted.contains(key);
            if !keep {
                stop.store(true, Ordering::Relaxed);
            }
            keep
        });
    }
}
