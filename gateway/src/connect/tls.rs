//! TLS to upstreams: a pool's CA bundle and client certificate, read from PEM files into
//! the shapes Pingora's connector takes (`HttpPeer::options.ca`, `HttpPeer::client_cert_key`),
//! and read again when the files change, like the listeners' (`tls.rs`).
//!
//! Each pool with `tls` has a [`PoolTls`]: its settings and the [`Material`] in service, in
//! an `ArcSwap`. Every try builds its peer from the material of that moment, so a reload
//! takes effect for new connections without a restart; connections already open live on.
//! A pool's connections are grouped by a hash of its material ([`Material::group`], the
//! peer's `group_key`): Pingora's connection pools key on the peer's hash, which covers the
//! client certificate's serial but not the CA bundle, so without the group a new CA would
//! go on using connections verified by the old one, and two pools with the same backend
//! address and different CAs would share them.
//!
//! A file that does not load is refused with its reason: when the policy goes into service,
//! as an error at the setting's position (the policy is not used; `gateway check` reports
//! it too); on a change seen by the watcher, in the log, the old material staying in
//! service. Pingora's connector would panic on a certificate it cannot parse or a key
//! whose format it cannot tell, so both are checked here first.

use crate::config::policy::Policy;
use crate::config::upstream::{ClientCert, Position, UpstreamTls};
use crate::config::{ConfigError, ConfigErrors};
use crate::tls::{load_certified_key, TlsError};
use arc_swap::ArcSwap;
use pingora::protocols::tls::CaType;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Why a pool's TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("{}: cannot read the CA bundle: {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
    #[error("{}: holds no CA certificate", path.display())]
    NoCa { path: PathBuf },
    #[error("{0}")]
    Client(#[from] TlsError),
    #[error("{}: the key's format is not PKCS#8, PKCS#1 or SEC1", path.display())]
    KeyFormat { path: PathBuf },
}

/// What a pool's connections are made with, as Pingora's peer takes it.
pub struct Material {
    /// The CAs the backends' certificates must chain to; `None`: the system's roots.
    pub ca: Option<Arc<CaType>>,
    /// The gateway's certificate and key for backends that ask for one.
    pub client: Option<Arc<CertKey>>,
    /// A hash of every certificate and key byte above, and of `verify`: the group of the
    /// pool's connections (see the module docs).
    pub group: u64,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("cas", &self.ca.as_ref().map(|c| c.len()))
            .field("client", &self.client.is_some())
            .field("group", &self.group)
            .finish()
    }
}

/// The certificates of a PEM file, each checked the way the connector will use it (a
/// certificate Pingora cannot parse would panic there).
fn read_cas(path: &Path) -> Result<Vec<Vec<u8>>, UpstreamTlsError> {
    let ca_error = |reason: String| UpstreamTlsError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ca_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(UpstreamTlsError::NoCa {
            path: path.to_path_buf(),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &certs {
        x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| ca_error(format!("a certificate does not parse: {e}")))?;
        roots
            .add(c.clone())
            .map_err(|e| ca_error(format!("not a usable trust anchor: {e}")))?;
    }
    Ok(certs.into_iter().map(|c| c.as_ref().to_vec()).collect())
}

/// The client certificate chain and key, checked to belong together.
fn read_client(files: &ClientCert) -> Result<(Vec<Vec<u8>>, Vec<u8>), UpstreamTlsError> {
    // The listener's loader checks the chain, the key and that they match.
    let certified = load_certified_key(&files.cert, &files.key)?;
    let chain: Vec<Vec<u8>> = certified.cert.iter().map(|c| c.as_ref().to_vec()).collect();
    for c in &chain {
        x509_parser::parse_x509_certificate(c).map_err(|e| TlsError::Cert {
            path: files.cert.clone(),
            reason: e.to_string(),
        })?;
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let der = key.secret_der().to_vec();
    // What the connector does with it, unchecked.
    PrivateKeyDer::try_from(der.clone()).map_err(|_| UpstreamTlsError::KeyFormat {
        path: files.key.clone(),
    })?;
    Ok((chain, der))
}

/// Reads a pool's files into [`Material`]; the error says which file and why, and
/// whether it is the CA (`true`) or the client certificate (`false`).
pub fn load(config: &UpstreamTls) -> Result<Material, (bool, UpstreamTlsError)> {
    let mut hash = std::hash::DefaultHasher::new();
    config.verify.hash(&mut hash);
    let ca = match &config.ca {
        Some(path) => {
            let ders = read_cas(path).map_err(|e| (true, e))?;
            ders.hash(&mut hash);
            let wrapped: Vec<WrappedX509> = ders
                .into_iter()
                .map(|der| WrappedX509::new(der, parse_x509))
                .collect();
            Some(Arc::<CaType>::from(wrapped.into_boxed_slice()))
        }
        None => None,
    };
    let client = match &config.client {
        Some(files) => {
            let (chain, key) = read_client(files).map_err(|e| (false, e))?;
            chain.hash(&mut hash);
            key.hash(&mut hash);
            Some(Arc::new(CertKey::new(chain, key)))
        }
        None => None,
    };
    Ok(Material {
        ca,
        client,
        group: hash.finish(),
    })
}

/// One pool's upstream TLS: its settings and the material in service.
#[derive(Debug)]
pub struct PoolTls {
    pub pool: String,
    pub config: UpstreamTls,
    current: ArcSwap<Material>,
}

impl PoolTls {
    /// The material new connections are made with.
    pub fn current(&self) -> Arc<Material> {
        self.current.load_full()
    }

    /// Reads the files again; what loads goes into service, an error leaves the old
    /// material there.
    pub fn reload(&self) -> Result<(), UpstreamTlsError> {
        let m = load(&self.config).map_err(|(_, e)| e)?;
        self.current.store(Arc::new(m));
        Ok(())
    }
}

/// The error of a file named at `at`.
fn error_at(at: &Position, message: String) -> ConfigError {
    ConfigError {
        file: at.file.clone(),
        line: at.line,
        column: at.column,
        field: at.field.clone(),
        message,
    }
}

/// Every pool's upstream TLS, kept across policy versions: a pool whose settings did not
/// change keeps its [`PoolTls`] (and so its connections), and the watcher reloads every one
/// still in use by some snapshot.
#[derive(Debug, Default)]
pub struct TlsRegistry {
    /// Every `PoolTls` handed out that some snapshot still holds.
    made: Mutex<Vec<Weak<PoolTls>>>,
    /// The folders watched so far, and the watcher (once [`TlsRegistry::watch`] ran).
    watch: Mutex<Option<Watching>>,
}

struct Watching {
    watcher: notify::RecommendedWatcher,
    dirs: std::collections::BTreeSet<PathBuf>,
}

impl std::fmt::Debug for Watching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watching")
            .field("dirs", &self.dirs)
            .finish()
    }
}

/// The folder a file is in (watched instead of the file, which may be replaced by a rename).
fn folder(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl TlsRegistry {
    /// The upstream TLS of each of `policy`'s pools that has `tls`, by pool name: the files
    /// are read now (an error is the policy's, at the setting's position), into the
    /// `PoolTls` the pool had if its settings are the same.
    pub fn build(&self, policy: &Policy) -> Result<BTreeMap<String, Arc<PoolTls>>, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut out = BTreeMap::new();
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        made.retain(|w| w.strong_count() > 0);
        for pool in policy.pools.values() {
            let Some(config) = &pool.tls else { continue };
            let material = match load(config) {
                Ok(m) => m,
                Err((is_ca, e)) => {
                    let at = if is_ca {
                        &config.ca_at
                    } else {
                        &config.client_at
                    };
                    errors.push(error_at(at, e.to_string()));
                    continue;
                }
            };
            let same = made
                .iter()
                .filter_map(Weak::upgrade)
                .find(|t| t.pool == pool.name && t.config == *config);
            let tls = match same {
                Some(t) => {
                    t.current.store(Arc::new(material));
                    t
                }
                None => {
                    let t = Arc::new(PoolTls {
                        pool: pool.name.clone(),
                        config: config.clone(),
                        current: ArcSwap::from_pointee(material),
                    });
                    made.push(Arc::downgrade(&t));
                    t
                }
            };
            out.insert(pool.name.clone(), tls);
        }
        drop(made);
        if !errors.is_empty() {
            return Err(errors);
        }
        self.watch_folders(out.values());
        Ok(out)
    }

    /// Adds the folders of these pools' files to the watcher, if it runs.
    fn watch_folders<'a>(&self, pools: impl Iterator<Item = &'a Arc<PoolTls>>) {
        use notify::{RecursiveMode, Watcher};
        let mut guard = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(w) = guard.as_mut() else { return };
        for dir in pools.flat_map(|t| t.config.files()).map(|f| folder(&f)) {
            if w.dirs.contains(&dir) {
                continue;
            }
            match w.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    w.dirs.insert(dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the upstream TLS files' folder; they are read at each policy load only")
                }
            }
        }
    }

    /// The pools' TLS still in use.
    fn live(&self) -> Vec<Arc<PoolTls>> {
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Reloads the pools that read any of `touched`; logs what it did.
    pub fn reload_touched(&self, touched: &[PathBuf]) {
        let same = |a: &Path, b: &Path| {
            a == b
                || a.file_name() == b.file_name() && a.canonicalize().ok() == b.canonicalize().ok()
        };
        for t in self.live() {
            let files = t.config.files();
            if !touched.iter().any(|x| files.iter().any(|f| same(x, f))) {
                continue;
            }
            match t.reload() {
                Ok(()) => tracing::info!(pool = %t.pool, "upstream TLS files reloaded"),
                Err(e) => {
                    tracing::error!(pool = %t.pool, error = %e, "upstream TLS reload refused; the old CA or client certificate stays in service")
                }
            }
        }
    }

    /// Watches the folders of every pool's TLS files for the life of the process (and of
    /// those of later policies, as they come); when a file changes, the pools that read it
    /// reload (new connections get the new material).
    pub fn watch(self: &Arc<Self>) -> notify::Result<()> {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<PathBuf>>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(e) = event {
                if !e.kind.is_access() {
                    let _ = tx.send(e.paths);
                }
            }
        })?;
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) = Some(Watching {
            watcher,
            dirs: Default::default(),
        });
        let live = self.live();
        self.watch_folders(live.iter());
        let registry = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("upstream-tls-watch".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut touched = first;
                    while let Ok(more) = rx.recv_timeout(QUIET) {
                        touched.extend(more);
                    }
                    match registry.upgrade() {
                        Some(r) => r.reload_touched(&touched),
                        None => return,
                    }
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(())
    }
}

/// How long file events must stop before a reload runs (a certificate and its key are
/// usually written one after the other).
const QUIET: std::time::Duration = std::time::Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_policy;

    struct Files {
        dir: tempfile::TempDir,
    }

    fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        rcgen::CertifiedIssuer::self_signed(params, key).unwrap()
    }

    impl Files {
        fn new() -> Files {
            Files {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        }

        fn policy(&self, tls: &str) -> Policy {
            let text = format!(
                "pools:\n  p:\n    backends:\n      - {{ address: 127.0.0.1:1 }}\n    tls: {tls}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n"
            );
            parse_policy(&text, &self.dir.path().join("p.yaml")).unwrap()
        }
    }

    #[test]
    fn a_ca_bundle_and_a_client_certificate_load_into_the_peer_shapes() {
        let f = Files::new();
        let issuer = ca("upstream ca");
        f.write("ca.pem", &issuer.pem());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gateway".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        f.write("gw.pem", &cert.pem());
        f.write("gw.key", &key.serialize_pem());
        let registry = TlsRegistry::default();
        let policy = f.policy("{ ca: ca.pem, client_cert: gw.pem, client_key: gw.key }");
        let built = registry.build(&policy).unwrap();
        let m = built["p"].current();
        assert_eq!(m.ca.as_ref().map(|c| c.len()), Some(1));
        assert!(m.client.is_some());
        let again = registry.build(&policy).unwrap();
        assert!(
            Arc::ptr_eq(&built["p"], &again["p"]),
            "unchanged settings keep their PoolTls"
        );
        assert_eq!(
            again["p"].current().group,
            m.group,
            "same files, same group"
        );
    }

    #[test]
    fn a_file_that_does_not_load_is_an_error_at_its_setting() {
        let f = Files::new();
        f.write("ca.pem", "not a certificate\n");
        let e = TlsRegistry::default()
            .build(&f.policy("{ ca: ca.pem }"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.yaml:5:16: pools.p.tls.ca: "), "{e}");
        assert!(e.contains("holds no CA certificate"), "{e}");
        f.write("gw.pem", &ca("other").pem());
        let e = TlsRegistry::default()
            .build(&f.policy("{ client_cert: gw.pem, client_key: missing.key }"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pools.p.tls.client_cert: "), "{e}");
        assert!(e.contains("missing.key"), "{e}");
    }

    #[test]
    fn a_changed_file_reloads_and_a_broken_one_keeps_the_old_material() {
        let f = Files::new();
        let first = ca("first").pem();
        let path = f.write("ca.pem", &first);
        let registry = TlsRegistry::default();
        let built = registry.build(&f.policy("{ ca: ca.pem }")).unwrap();
        let before = built["p"].current().group;
        let second = ca("second").pem();
        f.write("ca.pem", &format!("{first}{second}"));
        registry.reload_touched(std::slice::from_ref(&path));
        let after = built["p"].current();
        assert_eq!(after.ca.as_ref().map(|c| c.len()), Some(2));
        assert_ne!(after.group, before, "new connections for the new bundle");
        f.write("ca.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
        registry.reload_touched(&[path]);
        assert_eq!(
            built["p"].current().group,
            after.group,
            "the old bundle stays"
        );
    }
}
