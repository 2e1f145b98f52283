//! A throwaway PKI for mTLS tests: a CA that issues server and client certificates and
//! revocation lists, written as PEM files.
//!
//! [`Ca::new`] makes a self-signed ECDSA P-256 CA (`<name>.pem`, `<name>.key`);
//! [`Ca::issue_server`], [`Ca::issue_client`] and [`Ca::issue_node`] (both usages, for
//! peers that are servers and clients) write `<name>.pem` / `<name>.key` leaf files and
//! return them as an [`Issued`]; [`Ca::write_crl`] writes `<name>.crl.pem`.
//!
//! Invariants: every certificate is valid from one day ago to [`VALIDITY_DAYS`] days from
//! now (wall clock, which is what the verifier under test reads), except those from
//! [`Ca::issue_expired_client`]. Server certificates carry the ServerAuth extended key usage,
//! client certificates ClientAuth; both carry an authority key identifier. Serial numbers
//! are unique within the test process, so a CRL names exactly the certificates it lists.
//!
//! ```
//! use tests::pki::{Ca, ClientId};
//!
//! let dir = tempfile::tempdir()?;
//! let ca = Ca::new(dir.path(), "ca")?;
//! let server = ca.issue_server(dir.path(), "server", &["localhost", "127.0.0.1"])?;
//! let device = ca.issue_client(dir.path(), "device", ClientId::SanUri("spiffe://bar/device/1"))?;
//! let crl = ca.write_crl(dir.path(), "revoked", &[device.serial])?;
//! assert!(server.cert.exists() && device.key.exists() && crl.exists());
//! # Ok::<(), anyhow::Error>(())
//! ```

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long issued certificates (and CRLs, until their next update) stay valid.
pub const VALIDITY_DAYS: u32 = 30;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Serial numbers of this process: unique across all CAs, never 0, below 2^63 (so the DER
/// integer needs no sign byte).
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0x1000);

fn next_serial() -> u64 {
    NEXT_SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// Wall-clock time since the Unix epoch. Certificate validity is checked against wall time
/// by the peer, so the monotonic `crate::clock` cannot serve here.
#[allow(
    clippy::disallowed_methods,
    reason = "certificate validity is wall-clock time, checked by the peer"
)]
fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Sets `params` valid from `ago` before now until `ahead` after now (wall clock).
fn set_validity(params: &mut CertificateParams, ago: Duration, ahead: Duration) {
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch();
    params.not_before = now - ago;
    params.not_after = now + ahead;
}

/// What names a client certificate carries, as an mTLS identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientId<'a> {
    /// A URI subject alternative name (e.g. a SPIFFE ID); the subject CN is the file name.
    SanUri(&'a str),
    /// A DNS subject alternative name; the subject CN is the file name.
    SanDns(&'a str),
    /// No subject alternative name; the subject CN is this value.
    Cn(&'a str),
}

/// A certificate and its key as files, with the certificate's serial number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// PEM certificate (`<dir>/<name>.pem`).
    pub cert: PathBuf,
    /// PEM PKCS#8 private key (`<dir>/<name>.key`).
    pub key: PathBuf,
    /// The certificate's serial number, as [`Ca::write_crl`] takes it.
    pub serial: u64,
}

impl Issued {
    /// The certificate, read back from [`Issued::cert`].
    pub fn der(&self) -> anyhow::Result<CertificateDer<'static>> {
        read_cert(&self.cert)
    }

    /// The serial number as colon-separated lower-case hex bytes (`00:00:00:00:00:00:10:02`),
    /// the way rcgen prints it.
    pub fn serial_hex(&self) -> String {
        SerialNumber::from(self.serial).to_string()
    }
}

/// A self-signed certificate authority whose key stays in memory to issue more.
pub struct Ca {
    /// PEM CA certificate (`<dir>/<name>.pem`): the trust anchor to configure.
    pub cert: PathBuf,
    /// PEM PKCS#8 CA key (`<dir>/<name>.key`).
    pub key: PathBuf,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
    next_crl_number: AtomicU64,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("name", &self.name)
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA with subject CN `name`, written to `<dir>/<name>.pem` and `<dir>/<name>.key`.
    /// Its key usages are certificate signing and CRL signing.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from(next_serial()));
        set_validity(&mut params, DAY, DAY * VALIDITY_DAYS);
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key)
            .with_context(|| format!("self-signing CA {name}"))?;
        let cert = write(dir, &format!("{name}.pem"), &issuer.pem())?;
        let key = write(dir, &format!("{name}.key"), &key_pem)?;
        Ok(Ca {
            cert,
            key,
            name: name.to_owned(),
            issuer,
            next_crl_number: AtomicU64::new(1),
        })
    }

    /// The CA's subject common name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate as DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `names` (DNS names, or IP addresses such as `127.0.0.1`, as
    /// subject alternative names), subject CN `name`, ServerAuth extended key usage.
    pub fn issue_server(&self, dir: &Path, name: &str, names: &[&str]) -> anyhow::Result<Issued> {
        let sans: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans)
            .with_context(|| format!("server certificate {name}: names {names:?}"))?;
        params.distinguished_name = dn(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, DAY, DAY * VALIDITY_DAYS);
        self.issue(dir, name, params)
    }

    /// A certificate for a node that is both a server and, towards its peers, a client
    /// (a TSDB node over mTLS): like [`Ca::issue_server`], with the ServerAuth and ClientAuth
    /// extended key usages.
    pub fn issue_node(&self, dir: &Path, name: &str, names: &[&str]) -> anyhow::Result<Issued> {
        let sans: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans)
            .with_context(|| format!("node certificate {name}: names {names:?}"))?;
        params.distinguished_name = dn(name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        set_validity(&mut params, DAY, DAY * VALIDITY_DAYS);
        self.issue(dir, name, params)
    }

    /// A client certificate carrying `id` (see [`ClientId`]), ClientAuth extended key usage.
    pub fn issue_client(&self, dir: &Path, name: &str, id: ClientId<'_>) -> anyhow::Result<Issued> {
        let mut params = client_params(name, id)?;
        set_validity(&mut params, DAY, DAY * VALIDITY_DAYS);
        self.issue(dir, name, params)
    }

    /// Like [`Ca::issue_client`], but valid only from 3 days ago to 1 day ago.
    pub fn issue_expired_client(
        &self,
        dir: &Path,
        name: &str,
        id: ClientId<'_>,
    ) -> anyhow::Result<Issued> {
        let mut params = client_params(name, id)?;
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch();
        params.not_before = now - DAY * 3;
        params.not_after = now - DAY;
        self.issue(dir, name, params)
    }

    /// A PEM CRL (`<dir>/<name>.crl.pem`) signed by this CA that revokes `serials`; issued an
    /// hour ago, next update in [`VALIDITY_DAYS`] days. Each call gets the next CRL number.
    pub fn write_crl(&self, dir: &Path, name: &str, serials: &[u64]) -> anyhow::Result<PathBuf> {
        let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch();
        let hour_ago = now - Duration::from_secs(60 * 60);
        let params = CertificateRevocationListParams {
            this_update: hour_ago,
            next_update: now + DAY * VALIDITY_DAYS,
            crl_number: SerialNumber::from(self.next_crl_number.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: hour_ago,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .with_context(|| format!("signing CRL {name} with CA {}", self.name))?;
        let pem = crl.pem().context("encoding the CRL as PEM")?;
        write(dir, &format!("{name}.crl.pem"), &pem)
    }

    fn issue(
        &self,
        dir: &Path,
        name: &str,
        mut params: CertificateParams,
    ) -> anyhow::Result<Issued> {
        let serial = next_serial();
        params.serial_number = Some(SerialNumber::from(serial));
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().with_context(|| format!("generating the key of {name}"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing {name} with CA {}", self.name))?;
        Ok(Issued {
            cert: write(dir, &format!("{name}.pem"), &cert.pem())?,
            key: write(dir, &format!("{name}.key"), &key.serialize_pem())?,
            serial,
        })
    }
}

/// Reads the first certificate of a PEM file.
pub fn read_cert(path: &Path) -> anyhow::Result<CertificateDer<'static>> {
    CertificateDer::from_pem_file(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads the first CRL of a PEM file (as [`Ca::write_crl`] writes it).
pub fn read_crl(path: &Path) -> anyhow::Result<CertificateRevocationListDer<'static>> {
    CertificateRevocationListDer::from_pem_file(path)
        .with_context(|| format!("reading {}", path.display()))
}

fn client_params(name: &str, id: ClientId<'_>) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(name);
    let ia5 = |v: &str| {
        rcgen::string::Ia5String::try_from(v)
            .with_context(|| format!("client certificate {name}: {v:?} is not IA5 text"))
    };
    match id {
        ClientId::SanUri(uri) => params.subject_alt_names = vec![SanType::URI(ia5(uri)?)],
        ClientId::SanDns(dns) => params.subject_alt_names = vec![SanType::DnsName(ia5(dns)?)],
        ClientId::Cn(cn) => params.distinguished_name = dn(cn),
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "gateway tests");
    dn
}

fn write(dir: &Path, file: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(file);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
