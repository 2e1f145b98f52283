//! Reading a key set's document: a file, an `http://` or `https://` URL, or the URL an
//! OpenID provider's discovery document names (`jwks_uri`, OpenID Connect Discovery 1.0
//! §4); https is verified by rustls (ring) against the built-in Mozilla roots or the
//! authenticator's `ca` file.
//!
//! The CA file is read again at every fetch (the load, each refresh, an unknown-`kid`
//! refetch: seconds apart at the most) and the HTTP client rebuilt only when its bytes
//! changed, so a replaced file applies from the next fetch on, without a watcher. Discovery
//! is done at every fetch too, so a provider that moves its key set is followed. A failed
//! fetch (the CA file, TLS, the discovery document, the key set) is an error to the caller,
//! which keeps the keys in force.

use super::{JwksError, JwksSource, FETCH_TIMEOUT, MAX_JWKS_BYTES};
use crate::config::auth::TrustRoots;
use crate::config::jwks_source::{check_url, read_ca};
use serde::Deserialize;
use std::sync::{Arc, Mutex, PoisonError};
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

/// Largest discovery document read (real ones are a few KiB).
pub const MAX_DISCOVERY_BYTES: u64 = 256 * 1024;

/// Where the discovery document of `issuer` is: `/.well-known/openid-configuration`
/// appended after any terminating `/` is removed (Discovery §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The members of a discovery document we read.
#[derive(Deserialize)]
struct OpenIdConfiguration {
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// The key set's URL a discovery document names, after the checks of Discovery §4.3: the
/// document's `issuer` is exactly the one configured, and an https issuer's key set is
/// https too (no downgrade).
pub fn jwks_uri_of(document: &[u8], issuer: &str) -> Result<String, String> {
    let doc: OpenIdConfiguration = serde_json::from_slice(document)
        .map_err(|e| format!("not an OpenID configuration (JSON object): {e}"))?;
    match doc.issuer.as_deref() {
        None => return Err("the document has no issuer".to_owned()),
        Some(named) if named != issuer => {
            return Err(format!(
                "the document names issuer {named:?}, not {issuer:?} (they must be identical)"
            ))
        }
        Some(_) => {}
    }
    let uri = doc
        .jwks_uri
        .ok_or_else(|| "the document has no jwks_uri".to_owned())?;
    check_url(&uri).map_err(|e| format!("jwks_uri {e}"))?;
    if is_https(issuer) && !is_https(&uri) {
        return Err(format!(
            "jwks_uri {uri:?} is not https:// although the issuer is"
        ));
    }
    Ok(uri)
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
}

/// An HTTP client and the CA bytes it trusts.
struct Client {
    agent: ureq::Agent,
    /// The CA file's content the agent was built with; `None`: built-in roots.
    ca: Option<Vec<u8>>,
}

/// Reads one key set's document from its source.
pub struct Fetcher {
    source: JwksSource,
    trust: TrustRoots,
    client: Mutex<Option<Client>>,
    /// The key set's URL the last discovery found (logged when it changes).
    discovered: Mutex<Option<String>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("source", &self.source)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher for `source`; a URL must be `http://` or `https://`.
    pub fn new(source: JwksSource, trust: TrustRoots) -> Result<Fetcher, JwksError> {
        if let JwksSource::Url(url) | JwksSource::Discovery(url) = &source {
            check_url(url).map_err(|_| JwksError::UnsupportedUrl(url.clone()))?;
        }
        Ok(Fetcher {
            source,
            trust,
            client: Mutex::new(None),
            discovered: Mutex::new(None),
        })
    }

    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// The document's bytes, read now. Blocks for up to [`FETCH_TIMEOUT`] per HTTP request
    /// (two with discovery): call it off the request path.
    pub fn fetch(&self) -> Result<Vec<u8>, JwksError> {
        match &self.source {
            JwksSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| JwksError::Read {
                    path: path.clone(),
                    source,
                })?;
                if bytes.len() as u64 > MAX_JWKS_BYTES {
                    return Err(JwksError::TooLarge);
                }
                Ok(bytes)
            }
            JwksSource::Url(url) => {
                let agent = self.agent()?;
                get(&agent, url, MAX_JWKS_BYTES).map_err(|reason| JwksError::Fetch {
                    url: url.clone(),
                    reason,
                })
            }
            JwksSource::Discovery(issuer) => {
                let agent = self.agent()?;
                let at = discovery_url(issuer);
                let uri = get(&agent, &at, MAX_DISCOVERY_BYTES)
                    .and_then(|doc| jwks_uri_of(&doc, issuer))
                    .map_err(|reason| JwksError::Discovery {
                        url: at.clone(),
                        reason,
                    })?;
                self.note_discovered(issuer, &uri);
                get(&agent, &uri, MAX_JWKS_BYTES)
                    .map_err(|reason| JwksError::Fetch { url: uri, reason })
            }
        }
    }

    fn note_discovered(&self, issuer: &str, uri: &str) {
        let mut last = self
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() != Some(uri) {
            tracing::info!(issuer, jwks_uri = uri, "openid discovery: key set location");
            *last = Some(uri.to_owned());
        }
    }

    /// The HTTP client, built again when the CA file's content changed since the last
    /// fetch. An unreadable CA file fails the fetch (the old client is not used: the file
    /// says whom to trust, and it cannot be read).
    fn agent(&self) -> Result<ureq::Agent, JwksError> {
        let ca = match &self.trust {
            TrustRoots::WebPki => None,
            TrustRoots::CaFile(path) => {
                let bytes = std::fs::read(path).map_err(|e| JwksError::Ca {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Some(bytes)
            }
        };
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = client.as_ref().filter(|c| c.ca == ca) {
            return Ok(c.agent.clone());
        }
        let roots = match &self.trust {
            TrustRoots::WebPki => RootCerts::WebPki,
            TrustRoots::CaFile(path) => {
                let certs = read_ca(path).map_err(|reason| JwksError::Ca {
                    path: path.clone(),
                    reason,
                })?;
                if client.is_some() {
                    tracing::info!(ca = %path.display(), "jwks: ca file changed; trusting its certificates from now on");
                }
                RootCerts::new_with_certs(
                    &certs
                        .iter()
                        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                        .collect::<Vec<_>>(),
                )
            }
        };
        let agent = build_agent(roots, self.https_only());
        *client = Some(Client {
            agent: agent.clone(),
            ca,
        });
        Ok(agent)
    }

    /// An https source is never followed to plain http by a redirect.
    fn https_only(&self) -> bool {
        match &self.source {
            JwksSource::File(_) => false,
            JwksSource::Url(u) | JwksSource::Discovery(u) => is_https(u),
        }
    }
}

fn build_agent(roots: RootCerts, https_only: bool) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        // Pingora's provider, stated here rather than taken from the process default.
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(FETCH_TIMEOUT))
        .https_only(https_only)
        .tls_config(tls)
        .build()
        .new_agent()
}

/// GETs `url` and reads at most `limit` bytes of a 2xx answer; why not, as a short phrase.
fn get(agent: &ureq::Agent, url: &str, limit: u64) -> Result<Vec<u8>, String> {
    let response = agent.get(url).call().map_err(|e| describe(&e))?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    response
        .into_body()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| describe(&e))
}

/// A transport error, with a hint when the server's certificate was not trusted.
fn describe(e: &ureq::Error) -> String {
    let text = e.to_string();
    if text.contains("UnknownIssuer") {
        format!("{text} (the server's certificate is not signed by a trusted CA: check the authenticator's ca)")
    } else if text.contains("NotValidForName") {
        format!("{text} (the server's certificate does not name the URL's host)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_discovery_document_is_under_the_issuer_without_its_trailing_slash() {
        assert_eq!(
            discovery_url("https://idp.example"),
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example/realms/acme/"),
            "https://idp.example/realms/acme/.well-known/openid-configuration"
        );
    }

    #[test]
    fn a_discovery_document_must_name_its_issuer_exactly_and_an_https_key_set() {
        let iss = "https://idp.example/";
        let doc = |issuer: &str, jwks: &str| {
            serde_json::json!({ "issuer": issuer, "jwks_uri": jwks, "token_endpoint": "x" })
                .to_string()
        };
        assert_eq!(
            jwks_uri_of(doc(iss, "https://idp.example/keys").as_bytes(), iss),
            Ok("https://idp.example/keys".to_owned())
        );
        let e = jwks_uri_of(doc("https://idp.example", "https://k").as_bytes(), iss).unwrap_err();
        assert!(e.contains("must be identical"), "{e}");
        let e = jwks_uri_of(doc(iss, "http://idp.example/keys").as_bytes(), iss).unwrap_err();
        assert!(e.contains("is not https://"), "{e}");
        let e = jwks_uri_of(doc(iss, "keys.json").as_bytes(), iss).unwrap_err();
        assert!(e.starts_with("jwks_uri "), "{e}");
        let e = jwks_uri_of(br#"{"issuer":"https://idp.example/"}"#, iss).unwrap_err();
        assert_eq!(e, "the document has no jwks_uri");
        let e = jwks_uri_of(br#"{"jwks_uri":"https://k/"}"#, iss).unwrap_err();
        assert_eq!(e, "the document has no issuer");
        let e = jwks_uri_of(b"<html>", iss).unwrap_err();
        assert!(e.starts_with("not an OpenID configuration"), "{e}");
        // A plain-http issuer (a local provider) may name a plain-http key set.
        assert_eq!(
            jwks_uri_of(
                doc("http://127.0.0.1:1", "http://127.0.0.1:1/k").as_bytes(),
                "http://127.0.0.1:1"
            ),
            Ok("http://127.0.0.1:1/k".to_owned())
        );
    }

    #[test]
    fn an_unreadable_ca_file_fails_the_fetch_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let f = Fetcher::new(
            JwksSource::Url("https://127.0.0.1:1/jwks.json".into()),
            TrustRoots::CaFile(ca.clone()),
        )
        .unwrap();
        let e = f.fetch().unwrap_err();
        assert!(matches!(e, JwksError::Ca { .. }), "{e}");
        assert!(e.to_string().contains(&ca.display().to_string()), "{e}");
    }

    #[test]
    fn only_http_and_https_urls_make_a_fetcher() {
        let e = Fetcher::new(
            JwksSource::Url("ftp://idp.example/jwks".into()),
            TrustRoots::WebPki,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "jwks url ftp://idp.example/jwks is not http:// or https://"
        );
    }
}
