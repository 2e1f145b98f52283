//! API keys: a caller presents a key (`credential.rs` says where), and the key file's entry
//! whose digest it matches names the caller, its tenant and its roles.
//!
//! ```text
//! ApiKeyStore      one authenticator: its config, the key set in force (ArcSwap), reloads
//!  └─ KeySet       one reading of the file, immutable
//!      ├─ by_digest   SHA-256 entries: one hash of the key, one map lookup
//!      ├─ argon2      Argon2 entries: each costs a full Argon2 run to check
//!      └─ verified    keys an Argon2 entry accepted, by their SHA-256 (bounded)
//! ```
//!
//! The presented key is hashed with SHA-256 once; the digest is looked up in a map whose
//! keys compare in constant time (`subtle`), so neither the lookup nor the comparison tells
//! how close a guess was (and the digest of a guess says nothing of the key anyway). A key
//! no SHA-256 entry has is checked against the Argon2 entries, off the worker threads and
//! at most [`MAX_SLOW_CHECKS`] at a time: a flood of wrong keys costs at most that many
//! cores, and a request that cannot get a turn within [`SLOW_CHECK_WAIT`] is refused
//! ("key check busy") rather than queued without bound. A key an Argon2 entry accepted is
//! remembered by its SHA-256 (at most [`VERIFIED_CAPACITY`]), so a client pays the cost once
//! per key-file version, not once per request.
//!
//! The file is read at load (errors refuse the policy, at their line and column) and again
//! when it changes ([`ApiKeyStore::reload_if_changed`], polled every second by the
//! refresher): a file that no longer reads keeps the keys in force, is logged, and shows in
//! `/admin/status` and the metrics until a good version is written.

pub mod credential;

use super::challenge::Scheme;
use super::identity::{AuthMethod, Identity};
use crate::config::api_keys::{load_key_file, ApiKeysConfig, KeyEntry, StoredKey};
use crate::config::ConfigErrors;
use arc_swap::ArcSwap;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq;

/// Argon2 checks running at once, over every API-key authenticator's share of the machine.
pub const MAX_SLOW_CHECKS: usize = 2;
/// How long a request waits for a turn at an Argon2 check before it is refused.
pub const SLOW_CHECK_WAIT: Duration = Duration::from_secs(1);
/// Keys accepted by an Argon2 entry remembered per key-file version.
pub const VERIFIED_CAPACITY: u64 = 10_000;

/// A SHA-256 digest that compares in constant time (as a map key too).
#[derive(Debug, Clone, Copy, Eq)]
struct KeyDigest([u8; 32]);

impl PartialEq for KeyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Hash for KeyDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

fn digest(key: &[u8]) -> KeyDigest {
    KeyDigest(Sha256::digest(key).into())
}

/// One reading of the key file.
struct KeySet {
    entries: Vec<KeyEntry>,
    by_digest: HashMap<KeyDigest, usize>,
    /// Indexes of the Argon2 entries.
    argon2: Vec<usize>,
    /// Digests of keys an Argon2 entry accepted, with the entry's index.
    verified: moka::sync::Cache<KeyDigest, usize>,
    /// SHA-256 of the file's bytes: an unchanged file is not read into a new set.
    content: [u8; 32],
}

impl KeySet {
    fn new(entries: Vec<KeyEntry>, content: [u8; 32]) -> KeySet {
        let mut by_digest = HashMap::new();
        let mut argon2 = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match &e.stored {
                StoredKey::Sha256(d) => {
                    by_digest.insert(KeyDigest(*d), i);
                }
                StoredKey::Argon2(_) => argon2.push(i),
            }
        }
        KeySet {
            entries,
            by_digest,
            argon2,
            verified: moka::sync::Cache::new(VERIFIED_CAPACITY),
            content,
        }
    }
}

/// What a quick look at a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Accepted(Identity),
    /// No entry has it.
    Unknown,
    /// No SHA-256 entry has it; the Argon2 entries must be tried ([`ApiKeyStore::check_slow`]).
    Slow,
}

/// Why a key was refused (fixed phrases, for `error_description` and the body).
pub const UNKNOWN_KEY: &str = "unknown api key";
pub const BUSY: &str = "key check busy, retry";

/// The outcomes counted for the metrics.
#[derive(Debug, Default)]
pub struct Counts {
    pub accepted: AtomicU64,
    pub unknown: AtomicU64,
    pub busy: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

/// How the file looked when last read, to notice a change by a `stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp {
        modified: m.modified().ok(),
        len: m.len(),
    })
}

#[derive(Debug, Default)]
struct Watch {
    /// `None`: the file could not be read at the last look.
    last: Option<Option<Stamp>>,
    /// Why the last reading failed; cleared by a good one.
    error: Option<String>,
}

/// The state of one store, for `/admin/status`.
#[derive(Debug, Clone)]
pub struct StoreStatus {
    pub file: String,
    pub keys: usize,
    pub argon2_keys: usize,
    pub last_error: Option<String>,
}

/// One `api_keys` authenticator.
pub struct ApiKeyStore {
    name: String,
    config: ApiKeysConfig,
    current: ArcSwap<KeySet>,
    slow: Arc<tokio::sync::Semaphore>,
    watch: Mutex<Watch>,
    /// Kept by the registry across the stores of one authenticator name, so the metrics
    /// copied from them never go back.
    counts: Arc<Counts>,
}

impl std::fmt::Debug for ApiKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyStore")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("keys", &self.current.load().entries.len())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<KeySet, ConfigErrors> {
    let entries = load_key_file(path)?;
    let content = std::fs::read(path)
        .map(|b| Sha256::digest(&b).into())
        .unwrap_or_default();
    Ok(KeySet::new(entries, content))
}

impl ApiKeyStore {
    /// Reads the key file; this first reading must succeed. `slow` is the turn-taking of
    /// Argon2 checks, shared by every store of the process.
    pub fn load(
        name: &str,
        config: ApiKeysConfig,
        slow: Arc<tokio::sync::Semaphore>,
        counts: Arc<Counts>,
    ) -> Result<ApiKeyStore, ConfigErrors> {
        let before = stamp(&config.file);
        let set = read(&config.file)?;
        if set.entries.is_empty() {
            tracing::warn!(authenticator = name, file = %config.file.display(), "api keys: the key file holds no key; every key is refused");
        }
        Ok(ApiKeyStore {
            name: name.to_owned(),
            config,
            current: ArcSwap::from_pointee(set),
            slow,
            watch: Mutex::new(Watch {
                last: Some(before),
                error: None,
            }),
            counts,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &ApiKeysConfig {
        &self.config
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn status(&self) -> StoreStatus {
        let set = self.current.load();
        StoreStatus {
            file: self.config.file.display().to_string(),
            keys: set.entries.len(),
            argon2_keys: set.argon2.len(),
            last_error: self
                .watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .error
                .clone(),
        }
    }

    /// The schemes this authenticator reads, for the challenges of a request without any.
    pub fn schemes(&self) -> Vec<Scheme> {
        let mut s: Vec<Scheme> = self
            .config
            .header
            .iter()
            .map(|h| Scheme::Header(h.clone()))
            .collect();
        s.extend([Scheme::Token, Scheme::Basic]);
        s
    }

    fn identity(&self, e: &KeyEntry) -> Identity {
        Identity {
            subject: e.identity.clone(),
            tenant: e.tenant.clone(),
            roles: e.roles.clone(),
            claims: Vec::new(),
            method: AuthMethod::ApiKey,
            authenticator: self.name.clone(),
        }
    }

    /// The quick look: SHA-256 entries, then keys Argon2 entries already accepted.
    pub fn lookup(&self, key: &[u8]) -> Lookup {
        let set = self.current.load();
        let d = digest(key);
        let found = set
            .by_digest
            .get(&d)
            .copied()
            .or_else(|| set.verified.get(&d));
        match found.and_then(|i| set.entries.get(i)) {
            Some(e) => {
                self.counts.accepted.fetch_add(1, Ordering::Relaxed);
                Lookup::Accepted(self.identity(e))
            }
            None if set.argon2.is_empty() => {
                self.counts.unknown.fetch_add(1, Ordering::Relaxed);
                Lookup::Unknown
            }
            None => Lookup::Slow,
        }
    }

    /// Tries the Argon2 entries, blocking (call it off the worker threads). A key one
    /// accepts is remembered for [`ApiKeyStore::lookup`].
    pub fn check_argon2(&self, key: &[u8]) -> Option<Identity> {
        let set = self.current.load_full();
        let d = digest(key);
        if let Some(e) = set.verified.get(&d).and_then(|i| set.entries.get(i)) {
            return Some(self.identity(e));
        }
        for &i in &set.argon2 {
            let Some(e) = set.entries.get(i) else {
                continue;
            };
            let StoredKey::Argon2(phc) = &e.stored else {
                continue;
            };
            let Ok(hash) = argon2::PasswordHash::new(phc) else {
                continue;
            };
            // The parameters are the entry's own (checked against the bounds at load).
            if hash
                .verify_password(&[&argon2::Argon2::default()], key)
                .is_ok()
            {
                set.verified.insert(d, i);
                return Some(self.identity(e));
            }
        }
        None
    }

    /// [`ApiKeyStore::check_argon2`] taking its turn: waits at most [`SLOW_CHECK_WAIT`] for
    /// one of the [`MAX_SLOW_CHECKS`] slots, then runs on the blocking pool.
    pub async fn check_slow(self: Arc<Self>, key: Vec<u8>) -> Result<Identity, &'static str> {
        let permit = tokio::time::timeout(SLOW_CHECK_WAIT, self.slow.clone().acquire_owned()).await;
        let Ok(Ok(permit)) = permit else {
            self.counts.busy.fetch_add(1, Ordering::Relaxed);
            return Err(BUSY);
        };
        let store = self.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let _turn = permit;
            store.check_argon2(&key)
        })
        .await;
        match checked {
            Ok(Some(id)) => {
                self.counts.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(id)
            }
            Ok(None) => {
                self.counts.unknown.fetch_add(1, Ordering::Relaxed);
                Err(UNKNOWN_KEY)
            }
            Err(_) => {
                self.counts.busy.fetch_add(1, Ordering::Relaxed);
                Err(BUSY)
            }
        }
    }

    /// Reads the file again if it changed since the last look. `None`: unchanged;
    /// `Some(Ok(keys))`: a new set is in force; `Some(Err)`: the file does not read, the
    /// keys in force stay (logged once per change, and kept for the status).
    pub fn reload_if_changed(&self) -> Option<Result<usize, String>> {
        let now = stamp(&self.config.file);
        {
            let mut w = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
            if w.last.as_ref() == Some(&now) {
                return None;
            }
            w.last = Some(now);
        }
        let result = read(&self.config.file);
        let mut w = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(set) => {
                w.error = None;
                if set.content == self.current.load().content {
                    return None;
                }
                let n = set.entries.len();
                self.current.store(Arc::new(set));
                self.counts.reloads_ok.fetch_add(1, Ordering::Relaxed);
                tracing::info!(authenticator = %self.name, file = %self.config.file.display(), keys = n, "api keys reloaded");
                Some(Ok(n))
            }
            Err(e) => {
                let text = e.to_string();
                self.counts.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(authenticator = %self.name, "api key file refused, the keys in force stay:\n{text}");
                w.error = Some(text.clone());
                Some(Err(text))
            }
        }
    }
}

#[cfg(test)]
mod tests;
