//! TLS for the listeners: the server certificate and key, and for mTLS the client CA
//! bundle and revocation lists, loaded from PEM files, checked before the gateway starts,
//! and swapped live when the files change.
//!
//! Loading is ours, not Pingora's: Pingora's `TlsSettings::build` panics on a bad file,
//! while an operator should read which file is wrong and why (`gateway check` reports
//! the same). rustls gets the certificate through [`CertStore`] (a `ResolvesServerCert`)
//! and checks client certificates through [`ClientVerifier`] (a `ClientCertVerifier`), both
//! holding what they serve in an `ArcSwap`: a reload ([`ListenerTls::reload`], run by
//! [`watch`] when a file changes) affects new handshakes only; open connections live on. A
//! file that does not load leaves the old material in service and says why in the log.

use crate::config::{ClientAuth, TlsFiles};
use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a listener's certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read a PEM certificate chain: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    #[error("{}: holds no certificate", path.display())]
    NoCert { path: PathBuf },
    #[error("{}: cannot read a PEM private key: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("{}: the key does not belong to the certificate in {}: {reason}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{}: cannot read the client CA bundle: {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
    #[error("{}: holds no CA certificate", path.display())]
    NoCa { path: PathBuf },
    #[error("{}: cannot read a revocation list: {reason}", path.display())]
    Crl { path: PathBuf, reason: String },
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// Reads a certificate chain (leaf first) and its private key, and checks they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_path_buf(),
        });
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let signing = any_supported_type(&der).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(certified)
}

/// The server certificate a TLS listener presents; replaceable while the listener runs.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("chain_len", &self.current.load().cert.len())
            .finish()
    }
}

impl CertStore {
    pub fn new(key: CertifiedKey) -> Self {
        CertStore {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// Serves `key` to every handshake from now on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The CA bundle of `files.ca`, and its revocation lists, as a rustls verifier that
/// requires (or, when `optional`, allows) a client certificate.
pub fn load_client_verifier(files: &ClientAuth) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Ca {
            path: files.ca.clone(),
            reason: e.to_string(),
        })?;
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| TlsError::Ca {
            path: files.ca.clone(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCa {
            path: files.ca.clone(),
        });
    }
    let mut builder = WebPkiClientVerifier::builder(Arc::new(roots))
        // CAs without a CRL are fine: revocation is checked where a list exists.
        .allow_unknown_revocation_status();
    if let Some(crl) = &files.crl {
        builder = builder.with_crls(load_crls(crl)?);
    }
    if !files.required {
        builder = builder.allow_unauthenticated();
    }
    builder
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))
}

/// CRLs from a PEM file (one or more `X509 CRL` blocks) or a DER file.
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Crl {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let pem: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&bytes).collect();
    match pem {
        Ok(list) if !list.is_empty() => Ok(list),
        _ if bytes.first() == Some(&0x30) => Ok(vec![CertificateRevocationListDer::from(bytes)]),
        Ok(_) => Err(TlsError::Crl {
            path: path.to_path_buf(),
            reason: "no X509 CRL in it".into(),
        }),
        Err(e) => Err(TlsError::Crl {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// The client-certificate check a listener hands to rustls, replaceable while it runs.
///
/// It sends no CA names in its certificate request (`root_hint_subjects` is empty): the
/// hints would have to outlive every swap of the bundle, and clients with one certificate
/// send it whatever the hints say.
pub struct ClientVerifier {
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    required: bool,
}

impl fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientVerifier")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl ClientVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, required: bool) -> Self {
        ClientVerifier {
            current: ArcSwap::from_pointee(inner),
            required,
        }
    }

    /// Checks handshakes from now on with `inner`.
    pub fn replace(&self, inner: Arc<dyn ClientCertVerifier>) {
        self.current.store(Arc::new(inner));
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// Everything TLS of one listener that can change on disk while it serves.
#[derive(Debug)]
pub struct ListenerTls {
    pub name: String,
    pub files: TlsFiles,
    pub certs: Arc<CertStore>,
    pub client: Option<Arc<ClientVerifier>>,
}

impl ListenerTls {
    /// Loads the listener's files; any error stops the start (and fails `gateway check`).
    pub fn load(name: &str, files: &TlsFiles) -> Result<ListenerTls, TlsError> {
        let certs = Arc::new(CertStore::new(load_certified_key(&files.cert, &files.key)?));
        let client = match &files.client {
            Some(c) => Some(Arc::new(ClientVerifier::new(
                load_client_verifier(c)?,
                c.required,
            ))),
            None => None,
        };
        Ok(ListenerTls {
            name: name.to_string(),
            files: files.clone(),
            certs,
            client,
        })
    }

    /// Reads the files again and swaps in what loads; what does not keeps its old version.
    /// Returns the errors, if any.
    pub fn reload(&self) -> Vec<TlsError> {
        let mut errors = Vec::new();
        match load_certified_key(&self.files.cert, &self.files.key) {
            Ok(k) => self.certs.replace(k),
            Err(e) => errors.push(e),
        }
        if let (Some(v), Some(c)) = (&self.client, &self.files.client) {
            match load_client_verifier(c) {
                Ok(inner) => v.replace(inner),
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Every file this listener reads.
    fn paths(&self) -> Vec<PathBuf> {
        let mut p = vec![self.files.cert.clone(), self.files.key.clone()];
        if let Some(c) = &self.files.client {
            p.push(c.ca.clone());
            p.extend(c.crl.clone());
        }
        p
    }
}

/// How long file events must stop before a reload runs (a certificate and its key are
/// usually written one after the other).
const QUIET: std::time::Duration = std::time::Duration::from_millis(200);

/// Watches the folders of the listeners' TLS files; when one of the files changes, reloads
/// that listener (new handshakes get the new material; a half-written pair is refused and
/// the next event tries again).
pub fn watch(listeners: Vec<Arc<ListenerTls>>) -> notify::Result<()> {
    use notify::{RecursiveMode, Watcher};
    if listeners.is_empty() {
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel::<Vec<PathBuf>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(e) = event {
            if !e.kind.is_access() {
                let _ = tx.send(e.paths);
            }
        }
    })?;
    let mut dirs: Vec<PathBuf> = listeners
        .iter()
        .flat_map(|l| l.paths())
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }
    std::thread::Builder::new()
        .name("tls-watch".into())
        .spawn(move || {
            let _watcher = watcher;
            let same = |a: &Path, b: &Path| {
                a == b || a.file_name() == b.file_name() && a.canonicalize().ok() == b.canonicalize().ok()
            };
            while let Ok(first) = rx.recv() {
                let mut touched = first;
                while let Ok(more) = rx.recv_timeout(QUIET) {
                    touched.extend(more);
                }
                for l in &listeners {
                    let ours = l.paths();
                    if !touched.iter().any(|t| ours.iter().any(|p| same(t, p))) {
                        continue;
                    }
                    let errors = l.reload();
                    if errors.is_empty() {
                        tracing::info!(listener = %l.name, "TLS files reloaded");
                    }
                    for e in errors {
                        tracing::error!(listener = %l.name, error = %e, "TLS reload refused; the old certificate or CA stays in service");
                    }
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_matching_certificate_and_key_load() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        let ck = load_certified_key(&c, &k).unwrap();
        assert_eq!(ck.cert.len(), 1);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = write_pair(dir.path(), "a");
        let (_, other_key) = write_pair(dir.path(), "b");
        let e = load_certified_key(&c, &other_key).unwrap_err().to_string();
        assert!(e.contains("b.key") && e.contains("a.pem"), "{e}");
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_, k) = write_pair(dir.path(), "a");
        let missing = dir.path().join("missing.pem");
        let e = load_certified_key(&missing, &k).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_certified_key(&empty, &k).unwrap_err();
        assert!(matches!(e, TlsError::NoCert { .. }), "{e}");
    }
}
