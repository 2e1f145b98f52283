//! HTTP/2 and TLS clients (reqwest over rustls) for the gateway's TLS and h2c listeners.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::time::Duration;

/// Which protocol a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// ALPN `h2` only.
    Http2,
    /// ALPN `http/1.1` only.
    Http1,
}

/// reqwest is built without a crypto provider of its own: it uses ring, as the gateway does.
fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client that trusts only the CA in `ca_pem` and offers `protocol` by ALPN.
pub fn tls_client(ca_pem: &Path, protocol: Protocol) -> anyhow::Result<reqwest::blocking::Client> {
    install_provider();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)
        .with_context(|| format!("reading {}", ca_pem.display()))?
    {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = match protocol {
        Protocol::Http2 => vec![b"h2".to_vec()],
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    let builder = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(30));
    // No prior knowledge over TLS: the version must come from the ALPN the server picked.
    let builder = match protocol {
        Protocol::Http2 => builder,
        Protocol::Http1 => builder.http1_only(),
    };
    Ok(builder.build()?)
}

/// A plaintext client that speaks HTTP/2 by prior knowledge (h2c).
pub fn h2c_client() -> anyhow::Result<reqwest::blocking::Client> {
    install_provider();
    Ok(reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()?)
}
