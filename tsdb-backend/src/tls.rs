//! TLS for the node: HTTPS on `--listen`, and the client side of its `https://` peer links.
//!
//! - Server (`--tls-cert`, `--tls-key`): the node's certificate chain and key; HTTP/2 and
//!   HTTP/1.1 offered by ALPN. With `--peer-ca`, clients are asked for a certificate but
//!   not required to show one (ordinary clients and the gateway connect without); one that
//!   is shown must verify against `--peer-ca`, or the handshake fails. A connection whose
//!   client certificate verified is a peer's (see `listener.rs`, `http/internal.rs`).
//! - Client (peer links): only `--peer-ca` is trusted, never the system's roots; the node
//!   presents its own certificate and key as its client certificate, so it needs the
//!   ClientAuth extended key usage as well as ServerAuth.
//!
//! One crypto provider, ring, as everywhere in this workspace (rustls would default to
//! aws-lc-rs): every config here is built with [`provider`], and nothing relies on a
//! process-wide default.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS file that could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Rustls {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("peer CA {}: {source}", path.display())]
    ClientVerifier {
        path: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
}

/// The one crypto provider of the node: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The node's own certificate chain and private key (`--tls-cert`, `--tls-key`).
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The same key for the peer links' client (ureq takes keys as PEM or typed DER only).
    client_key: ureq::tls::PrivateKey<'static>,
    /// The key file, for errors about the pair.
    key_path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("chain", &self.chain.len())
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub fn load(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let chain = read_certificates(cert)?;
        let pem_err = |source| TlsError::Pem {
            path: key.to_path_buf(),
            source,
        };
        let pem = std::fs::read(key).map_err(|e| pem_err(rustls::pki_types::pem::Error::Io(e)))?;
        let parsed = PrivateKeyDer::from_pem_slice(&pem).map_err(pem_err)?;
        let client_key = ureq::tls::PrivateKey::from_pem(&pem).map_err(|e| TlsError::Key {
            path: key.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Identity {
            chain,
            key: parsed,
            client_key,
            key_path: key.to_path_buf(),
        })
    }
}

/// The CA bundle peers' certificates are verified against (`--peer-ca`).
#[derive(Debug, Clone)]
pub struct PeerCa {
    pub path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

impl PeerCa {
    pub fn load(path: &Path) -> Result<PeerCa, TlsError> {
        Ok(PeerCa {
            path: path.to_path_buf(),
            certs: read_certificates(path)?,
        })
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in &self.certs {
            roots.add(c.clone()).map_err(|source| TlsError::Rustls {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(roots)
    }
}

/// The server side: `identity` on every connection, h2 and HTTP/1.1 by ALPN, and with
/// `peer_ca` an optional client certificate that must verify against it.
pub fn server_config(
    identity: &Identity,
    peer_ca: Option<&PeerCa>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let rustls_err = |source| TlsError::Rustls {
        path: identity.key_path.clone(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?;
    let builder = match peer_ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()?), provider)
                    // Optional: clients and the gateway connect without a certificate and are
                    // refused only on `/internal/*`, where the secret is then required.
                    .allow_unauthenticated()
                    .build()
                    .map_err(|source| TlsError::ClientVerifier {
                        path: ca.path.clone(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(rustls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client side of the peer links: trust `peer_ca` only (nothing without it), present
/// `identity` as the client certificate when the node has one.
pub fn peer_client_config(
    peer_ca: Option<&PeerCa>,
    identity: Option<&Identity>,
) -> ureq::tls::TlsConfig {
    use ureq::tls::{Certificate, ClientCert, RootCerts, TlsConfig};
    let roots: Vec<Certificate<'static>> = peer_ca
        .map(|ca| {
            ca.certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                .collect()
        })
        .unwrap_or_default();
    let client_cert = identity.map(|id| {
        let chain: Vec<Certificate<'static>> = id
            .chain
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        ClientCert::new_with_certs(&chain, id.client_key.to_owned())
    });
    TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .client_cert(client_cert)
        .unversioned_rustls_crypto_provider(provider())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = read_certificates(&path).unwrap_err().to_string();
        assert_eq!(err, format!("{}: no PEM certificate in it", path.display()));
        let err = PeerCa::load(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn a_key_file_without_a_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        // Any DER bytes do for reading; the pair is checked when the config is built.
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "nothing here\n").unwrap();
        let err = Identity::load(&cert, &key).unwrap_err().to_string();
        assert!(err.starts_with(&key.display().to_string()), "{err}");
    }
}
