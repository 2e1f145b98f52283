//! Development certificates: a private CA and a server certificate it signed, so the TLS
//! listener of the example configuration works on a fresh checkout (`gateway dev-certs`).
//!
//! Clients trust the CA (`curl --cacert ca.pem`); the server certificate names
//! `localhost`, `127.0.0.1` and `::1`; a device certificate (`device.pem`, SAN URI
//! [`DEVICE_ID`]) is there to try mTLS with. A development API key (`api-key`) and its
//! entry (`api-keys.yaml`, the key's SHA-256 only) serve the example policy's API-key
//! route. Nothing here is meant for production: the CA key sits next to its certificate.

use crate::config::api_keys::{random_key, sha256_hex};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The files `dev-certs` writes, by name inside its output folder.
pub const FILES: [&str; 6] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "device.pem",
    "device.key",
];

/// The identity (SAN URI) of the development device certificate.
pub const DEVICE_ID: &str = "spiffe://gateway.dev/device/1";

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every file was there already; nothing was written (clients keep trusting the CA).
    Kept,
    Created(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum DevCertError {
    #[error("generating the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes a new CA and server certificate into `dir` unless all of [`FILES`] exist there.
pub fn ensure(dir: &Path) -> Result<Outcome, DevCertError> {
    if FILES.iter().all(|f| dir.join(f).is_file()) {
        return Ok(Outcome::Kept);
    }
    let files = generate()?;
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, text) in FILES.iter().zip(files) {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| DevCertError::Write { path, source })?;
    }
    Ok(Outcome::Created(dir.to_path_buf()))
}

/// The development API key's files: the key itself (readable by its owner only), and the
/// key file of the example policy's `api_keys` authenticator, which holds its SHA-256.
pub const API_KEY_FILES: [&str; 2] = ["api-key", "api-keys.yaml"];

/// Writes a new random API key and its entry into `dir` unless both of [`API_KEY_FILES`]
/// exist there (a kept key keeps working for the clients that were given it).
pub fn ensure_api_key(dir: &Path) -> Result<Outcome, DevCertError> {
    if API_KEY_FILES.iter().all(|f| dir.join(f).is_file()) {
        return Ok(Outcome::Kept);
    }
    let key = random_key();
    let entry = format!(
        "# The development key `gateway dev-certs` made: the key itself is in api-key.\n\
         keys:\n  - {{ sha256: {}, identity: dev, tenant: dev, roles: [writer] }}\n",
        sha256_hex(key.as_bytes())
    );
    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| DevCertError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write(API_KEY_FILES[0], &format!("{key}\n"), 0o600)?;
    write(API_KEY_FILES[1], &entry, 0o644)?;
    Ok(Outcome::Created(dir.to_path_buf()))
}

/// PEM texts in the order of [`FILES`].
fn generate() -> Result<[String; 6], rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "gateway development CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let device_key = KeyPair::generate()?;
    let mut device = CertificateParams::new(Vec::<String>::new())?;
    device.subject_alt_names = vec![SanType::URI(DEVICE_ID.try_into()?)];
    device
        .distinguished_name
        .push(DnType::CommonName, "gateway development device");
    device.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    device.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let device_cert = device.signed_by(&device_key, &issuer)?;
    Ok([
        ca_pem,
        ca_key_pem,
        server_cert.pem(),
        server_key.serialize_pem(),
        device_cert.pem(),
        device_key.serialize_pem(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_loads_and_existing_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        assert_eq!(ensure(&out).unwrap(), Outcome::Created(out.clone()));
        let ca = std::fs::read(out.join("ca.pem")).unwrap();
        crate::tls::load_certified_key(&out.join("server.pem"), &out.join("server.key")).unwrap();
        assert_eq!(ensure(&out).unwrap(), Outcome::Kept);
        assert_eq!(
            std::fs::read(out.join("ca.pem")).unwrap(),
            ca,
            "CA unchanged"
        );
    }

    #[test]
    fn the_api_key_file_holds_the_hash_of_the_key_and_a_made_key_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        assert_eq!(ensure_api_key(&out).unwrap(), Outcome::Created(out.clone()));
        let key = std::fs::read_to_string(out.join("api-key")).unwrap();
        let key = key.trim_end();
        assert_eq!(key.len(), 64);
        let file = std::fs::read_to_string(out.join("api-keys.yaml")).unwrap();
        assert!(file.contains(&sha256_hex(key.as_bytes())), "{file}");
        assert!(!file.contains(key), "the key itself is not in the key file");
        let entries = crate::config::api_keys::parse_key_file(&file, &out.join("api-keys.yaml"));
        assert!(entries.is_ok(), "{entries:?}");
        assert_eq!(ensure_api_key(&out).unwrap(), Outcome::Kept);
        assert_eq!(
            std::fs::read_to_string(out.join("api-key"))
                .unwrap()
                .trim_end(),
            key
        );
    }
}
