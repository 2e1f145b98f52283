//! Where a JWT authenticator's keys come from, as the policy says it: exactly one of
//! `jwks_file`, `jwks_url` (`http://` or `https://`) or `discovery: true` (OpenID Connect
//! discovery from `issuer`), and for https the CA bundle `ca` to trust instead of the
//! built-in roots.
//!
//! The CA file is read here once to report a missing or unusable file at its own line; the
//! key-set fetcher (`auth/jwks/fetch.rs`) reads it again at every fetch with [`read_ca`].

use super::auth::{JwksSource, TrustRoots};
use super::raw::{RawAuthenticator, RawJwt};
use operator_config::Collector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_saphyr::Spanned;
use std::path::Path;

/// Largest CA bundle read (a system bundle of every public root is about 200 KiB).
pub const MAX_CA_BYTES: u64 = 1024 * 1024;

/// The key source and trust of a `jwt` block. Errors go to `e`; a wrong source still
/// yields a placeholder so the rest of the block is checked too.
pub fn compile(
    e: &mut Collector<'_>,
    name: &str,
    a: &Spanned<RawAuthenticator>,
    j: &RawJwt,
    policy_file: &Path,
) -> (JwksSource, TrustRoots) {
    let field = |f: &str| format!("authenticators.{name}.jwt.{f}");
    let base = policy_file.parent().unwrap_or(Path::new("."));
    let discovery = j.discovery.as_ref().filter(|d| d.value);
    let source = match (&j.jwks_file, &j.jwks_url, discovery) {
        (Some(f), None, None) => JwksSource::File(base.join(&f.value)),
        (None, Some(u), None) => {
            if let Err(why) = check_url(&u.value) {
                e.at(u, field("jwks_url"), why);
            }
            JwksSource::Url(u.value.clone())
        }
        (None, None, Some(d)) => match &j.issuer {
            Some(issuer) => {
                if let Err(why) = check_url(&issuer.value) {
                    e.at(
                        issuer,
                        field("issuer"),
                        format!("{why} (discovery reads it)"),
                    );
                }
                JwksSource::Discovery(issuer.value.clone())
            }
            None => {
                e.at(
                    d,
                    field("discovery"),
                    "needs issuer: the OpenID configuration is read from <issuer>/.well-known/openid-configuration",
                );
                JwksSource::Discovery(String::new())
            }
        },
        _ => {
            e.at(
                a,
                format!("authenticators.{name}.jwt"),
                "give exactly one of jwks_file, jwks_url or discovery: true",
            );
            JwksSource::Url(String::new())
        }
    };
    let trust = match &j.ca {
        None => TrustRoots::WebPki,
        Some(ca) => {
            let path = base.join(&ca.value);
            if !is_https(&source) {
                e.at(
                    ca,
                    field("ca"),
                    "applies to an https:// jwks_url or discovery from an https:// issuer only",
                );
            } else if let Err(why) = read_ca(&path) {
                e.at(ca, field("ca"), why);
            }
            TrustRoots::CaFile(path)
        }
    };
    (source, trust)
}

fn is_https(source: &JwksSource) -> bool {
    match source {
        JwksSource::File(_) => false,
        JwksSource::Url(u) | JwksSource::Discovery(u) => starts_with_ignore_case(u, "https://"),
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// An absolute `http://` or `https://` URL with a host.
pub fn check_url(text: &str) -> Result<(), String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http") => {}
        _ => {
            return Err(format!(
                "{text:?}: only http:// and https:// URLs are supported"
            ))
        }
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(format!("{text:?} has no host")),
    }
}

/// The certificates of a PEM CA bundle, each checked to be a usable trust anchor; why not,
/// naming the file.
pub fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read ca file {shown}: {e}"))?
        .len();
    if len > MAX_CA_BYTES {
        return Err(format!(
            "ca file {shown} is larger than {MAX_CA_BYTES} bytes"
        ));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read ca file {shown}: {e}"))?;
    let mut certs = Vec::new();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| format!("ca file {shown}: PEM block {}: {e}", i + 1))?;
        let mut store = rustls::RootCertStore::empty();
        store.add(cert.clone()).map_err(|e| {
            format!(
                "ca file {shown}: certificate {} is not a usable CA: {e}",
                i + 1
            )
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(format!(
            "ca file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert_eq!(check_url("https://idp.example/jwks.json"), Ok(()));
        assert_eq!(check_url("http://127.0.0.1:8200/jwks.json"), Ok(()));
        assert_eq!(check_url("HTTPS://idp.example"), Ok(()));
        assert!(check_url("ftp://idp.example/jwks.json")
            .unwrap_err()
            .contains("only http:// and https://"));
        assert!(check_url("idp.example/jwks.json").is_err());
        assert!(check_url("https://").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn a_ca_file_must_hold_at_least_one_usable_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = read_ca(&missing).unwrap_err();
        assert!(e.starts_with("cannot read ca file "), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let e = read_ca(&empty).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca(&garbage).unwrap_err();
        assert!(e.contains("certificate 1 is not a usable CA"), "{e}");
        let good = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(&good, cert.pem()).unwrap();
        assert_eq!(read_ca(&good).unwrap().len(), 1);
    }

    fn write_ca(dir: &Path) -> std::path::PathBuf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let path = dir.join("ca.pem");
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        path
    }

    fn jwt(dir: &Path, block: &str) -> Result<crate::config::auth::JwtConfig, String> {
        let text =
            format!("authenticators:\n  sso:\n    jwt: {{ {block}, algorithms: [ES256] }}\n");
        let p = crate::config::parse_policy(&text, &dir.join("p.yaml"))
            .map_err(|e| e.to_string().replace(&format!("{}/", dir.display()), ""))?;
        match &p.authenticators["sso"].kind {
            crate::config::policy::AuthenticatorKind::Jwt(c) => Ok((**c).clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_https_source_trusts_the_built_in_roots_or_the_ca_beside_the_policy() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write_ca(dir.path());
        let c = jwt(dir.path(), "jwks_url: https://idp.example/jwks.json").unwrap();
        assert_eq!(
            c.source,
            JwksSource::Url("https://idp.example/jwks.json".into())
        );
        assert_eq!(c.trust, TrustRoots::WebPki);
        let c = jwt(
            dir.path(),
            "jwks_url: https://127.0.0.1:8443/jwks.json, ca: ca.pem",
        )
        .unwrap();
        assert_eq!(c.trust, TrustRoots::CaFile(ca));
    }

    #[test]
    fn discovery_reads_the_issuer() {
        let dir = tempfile::tempdir().unwrap();
        write_ca(dir.path());
        let c = jwt(
            dir.path(),
            "discovery: true, issuer: https://idp.example/realms/acme, ca: ca.pem",
        )
        .unwrap();
        assert_eq!(
            c.source,
            JwksSource::Discovery("https://idp.example/realms/acme".into())
        );
        assert_eq!(c.issuer.as_deref(), Some("https://idp.example/realms/acme"));
        assert_eq!(
            jwt(dir.path(), "discovery: true"),
            Err("p.yaml:3:23: authenticators.sso.jwt.discovery: needs issuer: the OpenID configuration is read from <issuer>/.well-known/openid-configuration".into())
        );
        assert_eq!(
            jwt(dir.path(), "discovery: true, issuer: idp.example"),
            Err("p.yaml:3:37: authenticators.sso.jwt.issuer: \"idp.example\": only http:// and https:// URLs are supported (discovery reads it)".into())
        );
        // discovery: false is no source.
        assert!(jwt(dir.path(), "discovery: false").unwrap_err().ends_with(
            "authenticators.sso.jwt: give exactly one of jwks_file, jwks_url or discovery: true"
        ));
        assert!(jwt(
            dir.path(),
            "discovery: true, issuer: https://i.example, jwks_url: https://i.example/k"
        )
        .unwrap_err()
        .contains("give exactly one of"));
    }

    #[test]
    fn a_ca_needs_an_https_source_and_a_usable_file_at_its_own_position() {
        let dir = tempfile::tempdir().unwrap();
        write_ca(dir.path());
        assert_eq!(
            jwt(dir.path(), "jwks_url: http://127.0.0.1:1/k, ca: ca.pem"),
            Err("p.yaml:3:48: authenticators.sso.jwt.ca: applies to an https:// jwks_url or discovery from an https:// issuer only".into())
        );
        let e = jwt(
            dir.path(),
            "jwks_url: https://127.0.0.1:1/k, ca: missing.pem",
        )
        .unwrap_err();
        assert!(
            e.starts_with(
                "p.yaml:3:49: authenticators.sso.jwt.ca: cannot read ca file missing.pem:"
            ),
            "{e}"
        );
        assert_eq!(
            jwt(dir.path(), "jwks_url: ftp://127.0.0.1/k"),
            Err("p.yaml:3:22: authenticators.sso.jwt.jwks_url: \"ftp://127.0.0.1/k\": only http:// and https:// URLs are supported".into())
        );
    }
}
