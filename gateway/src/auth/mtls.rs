//! mTLS identities: what a client certificate that rustls has verified says about its
//! holder, read once when the handshake completes and kept with the connection.
//!
//! rustls checks the chain against the listener's CA bundle and CRLs; Pingora's digest of
//! the connection carries no subject or SAN, so [`PeerCertCallback`] parses the leaf
//! certificate (x509-parser) and attaches a [`PeerCert`] to the connection's TLS digest,
//! where the request stage finds it (HTTP/1.1 and HTTP/2 alike).

pub use crate::config::auth::IdentitySource;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use std::any::Any;
use std::sync::Arc;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The names a verified client certificate carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    pub san_uris: Vec<String>,
    pub san_dns: Vec<String>,
    pub cn: Option<String>,
}

impl PeerCert {
    /// The names of a DER certificate, or `None` if it does not parse (rustls accepted it,
    /// so that would be a certificate x509-parser cannot read: no identity then).
    pub fn from_der(der: &[u8]) -> Option<PeerCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut out = PeerCert::default();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => out.san_uris.push((*u).to_string()),
                    GeneralName::DNSName(d) => out.san_dns.push((*d).to_string()),
                    _ => {}
                }
            }
        }
        out.cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        Some(out)
    }
}

impl IdentitySource {
    /// The policy's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySource::SanUri => "san_uri",
            IdentitySource::SanDns => "san_dns",
            IdentitySource::Cn => "cn",
        }
    }

    /// The identity this source reads from the certificate, if it has that name.
    pub fn subject(self, cert: &PeerCert) -> Option<&str> {
        match self {
            IdentitySource::SanUri => cert.san_uris.first().map(String::as_str),
            IdentitySource::SanDns => cert.san_dns.first().map(String::as_str),
            IdentitySource::Cn => cert.cn.as_deref(),
        }
    }
}

/// Pingora's end-of-handshake hook: attaches the client certificate's names, if any.
#[derive(Debug, Default)]
pub struct PeerCertCallback;

#[async_trait]
impl TlsAccept for PeerCertCallback {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let der = tls.peer_certificate_der()?;
        let cert = PeerCert::from_der(der)?;
        Some(Arc::new(cert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(sans: Vec<rcgen::SanType>, cn: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn each_identity_source_reads_its_name_from_the_certificate() {
        let der = cert_with(
            vec![
                rcgen::SanType::URI("spiffe://bar/device/1".try_into().unwrap()),
                rcgen::SanType::DnsName("dev1.example".try_into().unwrap()),
            ],
            "device one",
        );
        let cert = PeerCert::from_der(&der).unwrap();
        assert_eq!(
            IdentitySource::SanUri.subject(&cert),
            Some("spiffe://bar/device/1")
        );
        assert_eq!(IdentitySource::SanDns.subject(&cert), Some("dev1.example"));
        assert_eq!(IdentitySource::Cn.subject(&cert), Some("device one"));
    }

    #[test]
    fn a_certificate_without_the_asked_name_has_no_identity() {
        let cert = PeerCert::from_der(&cert_with(vec![], "only a cn")).unwrap();
        assert_eq!(IdentitySource::SanUri.subject(&cert), None);
        assert_eq!(PeerCert::from_der(b"not a certificate"), None);
    }
}
