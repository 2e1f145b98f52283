//! Authentication and authorization: who is calling (401) and whether they may (403), as
//! one stage of the pipeline, with the answers RFC 6750 prescribes.
//!
//! ```text
//! identity.rs   Identity, AuthMethod: what later stages and the backend learn
//! jwt.rs        bearer tokens: allow-listed algorithms, kid, claims, verified-token cache
//! jwks.rs       the key sets those tokens are checked against, refreshed and refetched
//!  └─ fetch.rs  a file, an http(s) URL, or OpenID discovery; the CA bundle to trust
//! mtls.rs       names of a client certificate rustls verified, read at handshake end
//! api_keys.rs   hashed keys from a file (Token, Basic, u/p, a header), reloaded on change
//! challenge.rs  the WWW-Authenticate challenge of each scheme
//! ```
//!
//! A route's rule names authenticators in order (`any_of`); the first that recognises the
//! caller decides who it is, then the route's `roles` must all be held. The verifiers
//! (their key sets and caches) live in an [`AuthRegistry`] keyed by authenticator name and
//! configuration, so a policy reload that leaves an authenticator unchanged keeps them.

pub mod api_keys;
pub mod challenge;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod mtls;

use crate::config::policy::{AuthenticatorKind, Policy, RouteAuth};
use crate::config::{ConfigError, ConfigErrors};
use api_keys::{ApiKeyStore, Lookup};
use challenge::Scheme;
use identity::{AuthMethod, Identity};
use jwt::{JwtError, JwtVerifier};
use mtls::{IdentitySource, PeerCert};
use pingora::http::RequestHeader;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The headers the gateway sets for the backend; a client's own are always removed.
pub const IDENTITY_HEADER: &str = "x-gateway-identity";
pub const TENANT_HEADER: &str = "x-gateway-tenant";
pub const AUTH_HEADER: &str = "x-gateway-auth";
pub const GATEWAY_HEADERS: [&str; 3] = [IDENTITY_HEADER, TENANT_HEADER, AUTH_HEADER];

/// An authenticator ready to check callers.
#[derive(Debug, Clone)]
pub enum Checker {
    Jwt(Arc<JwtVerifier>),
    Mtls {
        source: IdentitySource,
        roles: Vec<String>,
    },
    ApiKeys(Arc<ApiKeyStore>),
}

impl Checker {
    /// The schemes of the challenges a request without credentials gets.
    fn schemes(&self) -> Vec<Scheme> {
        match self {
            Checker::Jwt(_) => vec![Scheme::Bearer],
            Checker::Mtls { .. } => Vec::new(),
            Checker::ApiKeys(s) => s.schemes(),
        }
    }
}

/// The authenticators of one policy version, by name.
#[derive(Debug, Clone, Default)]
pub struct Authenticators {
    by_name: BTreeMap<String, Checker>,
}

impl Authenticators {
    pub fn get(&self, name: &str) -> Option<&Checker> {
        self.by_name.get(name)
    }

    /// The JWT verifiers, for the key-set refresher.
    pub fn jwt_verifiers(&self) -> impl Iterator<Item = &Arc<JwtVerifier>> {
        self.by_name.values().filter_map(|c| match c {
            Checker::Jwt(v) => Some(v),
            _ => None,
        })
    }

    /// The API-key stores, for the reload of their files and the status.
    pub fn api_key_stores(&self) -> impl Iterator<Item = &Arc<ApiKeyStore>> {
        self.by_name.values().filter_map(|c| match c {
            Checker::ApiKeys(s) => Some(s),
            _ => None,
        })
    }
}

/// JWT verifiers that outlive policy versions: a reload that keeps an authenticator's
/// configuration keeps its key set and its cache of verified tokens.
#[derive(Debug)]
pub struct AuthRegistry {
    jwt: Mutex<HashMap<String, Arc<JwtVerifier>>>,
    api_keys: Mutex<HashMap<String, Arc<ApiKeyStore>>>,
    /// The turns at Argon2 checks, shared by every API-key store of the process.
    slow_checks: Arc<tokio::sync::Semaphore>,
    /// Each API-key authenticator's counts, by name, kept when its store is replaced.
    api_key_counts: Mutex<HashMap<String, Arc<api_keys::Counts>>>,
}

impl Default for AuthRegistry {
    fn default() -> Self {
        AuthRegistry {
            jwt: Mutex::default(),
            api_keys: Mutex::default(),
            slow_checks: Arc::new(tokio::sync::Semaphore::new(api_keys::MAX_SLOW_CHECKS)),
            api_key_counts: Mutex::default(),
        }
    }
}

impl AuthRegistry {
    /// Reads an API-key authenticator's file. Its errors point into it; the first error
    /// says which authenticator reads it.
    fn load_store(
        &self,
        a: &crate::config::policy::Authenticator,
        config: &crate::config::api_keys::ApiKeysConfig,
    ) -> Result<Arc<ApiKeyStore>, ConfigErrors> {
        let counts = self
            .api_key_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(a.name.clone())
            .or_default()
            .clone();
        ApiKeyStore::load(&a.name, config.clone(), self.slow_checks.clone(), counts)
            .map(Arc::new)
            .map_err(|e| {
                let mut errors = ConfigErrors(vec![ConfigError {
                    file: a.file.clone(),
                    line: a.line,
                    column: a.column,
                    field: format!("authenticators.{}.api_keys.file", a.name),
                    message: format!("cannot load the key file {}", config.file.display()),
                }]);
                errors.0.extend(e.0);
                errors
            })
    }

    /// The checkers of `policy`; loading a key set that fails names the authenticator's
    /// place in its policy file.
    pub fn build(&self, policy: &Policy) -> Result<Authenticators, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut by_name = BTreeMap::new();
        let mut cache = self.jwt.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keep = HashMap::new();
        let mut stores = self.api_keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keep_stores = HashMap::new();
        for (name, a) in &policy.authenticators {
            let checker = match &a.kind {
                AuthenticatorKind::ApiKeys(config) => {
                    let reused = stores.get(name).filter(|s| s.config() == config).cloned();
                    let store = match reused {
                        Some(s) => s,
                        None => match self.load_store(a, config) {
                            Ok(s) => s,
                            Err(e) => {
                                errors.0.extend(e.0);
                                continue;
                            }
                        },
                    };
                    keep_stores.insert(name.clone(), store.clone());
                    Checker::ApiKeys(store)
                }
                AuthenticatorKind::Mtls { source, roles } => Checker::Mtls {
                    source: *source,
                    roles: roles.clone(),
                },
                AuthenticatorKind::Jwt(config) => {
                    let reused = cache
                        .get(name)
                        .filter(|v| v.config() == config.as_ref())
                        .cloned();
                    let verifier = match reused {
                        Some(v) => v,
                        None => match JwtVerifier::load(name, (**config).clone()) {
                            Ok(v) => Arc::new(v),
                            Err(e) => {
                                errors.push(ConfigError {
                                    file: a.file.clone(),
                                    line: a.line,
                                    column: a.column,
                                    field: format!("authenticators.{name}.jwt"),
                                    message: format!("cannot load the key set: {e}"),
                                });
                                continue;
                            }
                        },
                    };
                    keep.insert(name.clone(), verifier.clone());
                    Checker::Jwt(verifier)
                }
            };
            by_name.insert(name.clone(), checker);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        *cache = keep;
        *stores = keep_stores;
        Ok(Authenticators { by_name })
    }
}

/// The authenticators as `/admin/status` shows them: a JWT one's key source, key-set
/// version and last refresh error; an API-key one's file, keys and last reading error.
pub fn status(auths: &Authenticators) -> serde_json::Value {
    let by_name: serde_json::Map<String, serde_json::Value> = auths
        .by_name
        .iter()
        .map(|(name, c)| {
            let v = match c {
                Checker::Jwt(v) => {
                    let jwks = v.jwks();
                    serde_json::json!({
                        "kind": "jwt",
                        "source": jwks.source().to_string(),
                        "key_set_version": jwks.version(),
                        "kids": jwks.current().kids().collect::<Vec<_>>(),
                        "last_error": jwks.last_error(),
                    })
                }
                Checker::Mtls { .. } => serde_json::json!({ "kind": "mtls" }),
                Checker::ApiKeys(s) => {
                    let st = s.status();
                    serde_json::json!({
                        "kind": "api_keys",
                        "file": st.file,
                        "keys": st.keys,
                        "argon2_keys": st.argon2_keys,
                        "last_error": st.last_error,
                    })
                }
            };
            (name.clone(), v)
        })
        .collect();
    serde_json::Value::Object(by_name)
}

/// What a request presents.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// A bearer token, or why the Authorization header cannot be one.
    pub bearer: Result<Option<&'a str>, &'static str>,
    /// The verified client certificate of the connection, if any.
    pub peer: Option<&'a PeerCert>,
    /// The request, where API-key authenticators look for a key (`api_keys/credential.rs`).
    pub request: &'a RequestHeader,
}

/// Reads a request's credentials: at most one `Authorization: Bearer` header (another
/// scheme counts as none), and the connection's client certificate.
pub fn credentials<'a>(req: &'a RequestHeader, peer: Option<&'a PeerCert>) -> Credentials<'a> {
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let bearer = match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err("more than one authorization header"),
        (Some(v), None) => match v.to_str() {
            Err(_) => Err("malformed authorization header"),
            Ok(s) => match s.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    let t = token.trim();
                    if t.is_empty() {
                        Err("empty bearer token")
                    } else {
                        Ok(Some(t))
                    }
                }
                _ => Ok(None),
            },
        },
    };
    Credentials {
        bearer,
        peer,
        request: req,
    }
}

/// Why a request may not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials any of the route's authenticators takes: 401 with a bare challenge of
    /// each scheme they take (in the rule's order; `Bearer` when none has a scheme).
    Missing { schemes: Vec<Scheme> },
    /// Credentials were presented and refused: 401, challenged in their own scheme
    /// (`invalid_token` where the scheme has room for it).
    Invalid {
        description: &'static str,
        scheme: Scheme,
    },
    /// Authenticated, but without every role the route requires: 403 `insufficient_scope`.
    Forbidden { required: Vec<String> },
}

impl AuthError {
    /// The status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing { .. } | AuthError::Invalid { .. } => 401,
            AuthError::Forbidden { .. } => 403,
        }
    }

    /// The `WWW-Authenticate` values, one header each (RFC 6750 section 3 for Bearer,
    /// `challenge.rs` for the others).
    pub fn challenges(&self) -> Vec<String> {
        match self {
            AuthError::Missing { schemes } if schemes.is_empty() => {
                vec![Scheme::Bearer.challenge()]
            }
            AuthError::Missing { schemes } => schemes.iter().map(Scheme::challenge).collect(),
            AuthError::Invalid {
                description,
                scheme,
            } => vec![scheme.refusal(description)],
            AuthError::Forbidden { required } => vec![format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{}\"",
                challenge::REALM,
                required.join(" ")
            )],
        }
    }

    /// The message of the JSON body.
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing { .. } => "authentication required".into(),
            AuthError::Invalid { description, .. } => {
                format!("invalid credentials: {description}")
            }
            AuthError::Forbidden { required } => {
                format!("insufficient role: requires {}", required.join(", "))
            }
        }
    }
}

/// One authenticator's verdict on a request.
enum Verdict {
    Accepted(Identity),
    /// Presented and refused (kept: it becomes the answer if nothing else accepts).
    Refused(&'static str, Scheme),
    /// Nothing for this authenticator (no token, no certificate, no key).
    Absent,
    /// A token with a key id we do not know: worth one refetch of the key set.
    UnknownKid(Arc<JwtVerifier>),
    /// A key no SHA-256 entry has: the Argon2 entries must be tried, off the worker.
    SlowKey(Arc<ApiKeyStore>, Vec<u8>, Scheme),
}

fn judge(name: &str, checker: &Checker, creds: &Credentials<'_>, now_unix: u64) -> Verdict {
    match checker {
        Checker::Mtls { source, roles } => match creds.peer.and_then(|p| source.subject(p)) {
            Some(subject) => Verdict::Accepted(Identity {
                subject: subject.to_string(),
                tenant: None,
                roles: roles.clone(),
                claims: Vec::new(),
                method: AuthMethod::Mtls,
                authenticator: name.to_string(),
            }),
            None => Verdict::Absent,
        },
        Checker::Jwt(v) => match creds.bearer {
            Ok(None) => Verdict::Absent,
            Err(why) => Verdict::Refused(why, Scheme::Bearer),
            Ok(Some(token)) => match v.verify(token, now_unix) {
                Ok(id) => Verdict::Accepted(id),
                Err(JwtError::UnknownKid) => Verdict::UnknownKid(v.clone()),
                Err(e) => Verdict::Refused(e.description(), Scheme::Bearer),
            },
        },
        Checker::ApiKeys(store) => {
            match api_keys::credential::presented(creds.request, store.config().header.as_ref()) {
                Ok(None) => Verdict::Absent,
                Err(bad) => Verdict::Refused(bad.description, bad.scheme),
                Ok(Some(p)) => match store.lookup(&p.key) {
                    Lookup::Accepted(id) => Verdict::Accepted(id),
                    Lookup::Unknown => Verdict::Refused(api_keys::UNKNOWN_KEY, p.scheme),
                    Lookup::Slow => Verdict::SlowKey(store.clone(), p.key.into_owned(), p.scheme),
                },
            }
        }
    }
}

/// How long a request may wait for a key-set refetch (on an unknown `kid`).
pub const REFETCH_WAIT: Duration = Duration::from_secs(3);

/// Authenticates against the route's rule, then authorizes by its roles. An unknown `kid`
/// triggers one rate-limited refetch of that key set, off the worker thread, before the
/// token is judged again (so a rotation's first tokens pass).
pub async fn check(
    rule: &RouteAuth,
    auths: &Authenticators,
    creds: Credentials<'_>,
    now_unix: u64,
    now: Instant,
) -> Result<Identity, AuthError> {
    let mut refused: Option<(&'static str, Scheme)> = None;
    let mut identity = None;
    for name in &rule.any_of {
        let Some(checker) = auths.get(name) else {
            continue;
        };
        match judge(name, checker, &creds, now_unix) {
            Verdict::Accepted(id) => {
                identity = Some(id);
                break;
            }
            Verdict::Refused(why, scheme) => {
                refused.get_or_insert((why, scheme));
            }
            Verdict::SlowKey(store, key, scheme) => match store.check_slow(key).await {
                Ok(id) => {
                    identity = Some(id);
                    break;
                }
                Err(why) => {
                    refused.get_or_insert((why, scheme));
                }
            },
            Verdict::Absent => {}
            Verdict::UnknownKid(v) => {
                let Ok(Some(token)) = creds.bearer else {
                    continue;
                };
                let token = token.to_string();
                let retry = tokio::task::spawn_blocking(move || {
                    v.verify_with_refetch(&token, now_unix, now)
                });
                match tokio::time::timeout(REFETCH_WAIT, retry).await {
                    Ok(Ok(Ok(id))) => {
                        identity = Some(id);
                        break;
                    }
                    Ok(Ok(Err(e))) => {
                        refused.get_or_insert((e.description(), Scheme::Bearer));
                    }
                    _ => {
                        refused.get_or_insert((JwtError::UnknownKid.description(), Scheme::Bearer));
                    }
                }
            }
        }
    }
    let Some(id) = identity else {
        return Err(match refused {
            Some((description, scheme)) => AuthError::Invalid {
                description,
                scheme,
            },
            None => AuthError::Missing {
                schemes: schemes_of(rule, auths),
            },
        });
    };
    // The backend gets the identity as header values: a name with control characters
    // cannot travel, and is not one to let through anyway.
    let fits = |v: &str| http::HeaderValue::from_bytes(v.as_bytes()).is_ok();
    if !fits(&id.subject) || !id.tenant.as_deref().is_none_or(fits) {
        return Err(AuthError::Invalid {
            description: "identity not usable in a header",
            scheme: Scheme::Bearer,
        });
    }
    authorize(rule, id)
}

/// The schemes the rule's authenticators take, in its order, each once.
fn schemes_of(rule: &RouteAuth, auths: &Authenticators) -> Vec<Scheme> {
    let mut out: Vec<Scheme> = Vec::new();
    for s in rule
        .any_of
        .iter()
        .filter_map(|n| auths.get(n))
        .flat_map(Checker::schemes)
    {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Whether the backend should still see the request's `Authorization` header: not after a
/// token was verified, unless its authenticator says `forward_token: true`.
pub fn forwards_token(auths: &Authenticators, id: &Identity) -> bool {
    match auths.get(&id.authenticator) {
        Some(Checker::Jwt(v)) => v.config().forward_token,
        _ => true,
    }
}

/// The authentication step: the request's credentials (its `Authorization` header, the TLS
/// peer's certificate, an API key) checked against the route's rule. A bearer token the
/// authenticator does not forward is removed from the request, and so is every place an
/// API-key authenticator of the rule reads, whoever accepted the caller: a key for the
/// gateway never travels upstream.
pub async fn authenticate(
    req: &mut RequestHeader,
    peer: Option<&PeerCert>,
    rule: &RouteAuth,
    auths: &Authenticators,
    now_unix: u64,
    now: Instant,
) -> Result<Identity, AuthError> {
    let id = check(rule, auths, credentials(req, peer), now_unix, now).await?;
    if !forwards_token(auths, &id) {
        req.remove_header(&http::header::AUTHORIZATION);
    }
    for name in &rule.any_of {
        if let Some(Checker::ApiKeys(store)) = auths.get(name) {
            api_keys::credential::strip(req, store.config().header.as_ref());
        }
    }
    Ok(id)
}

/// Removes the identity headers a client sent (they are the gateway's to set).
pub fn strip_client_headers(req: &mut RequestHeader) {
    for h in GATEWAY_HEADERS {
        req.remove_header(h);
    }
}

/// The identity headers for the backend.
pub fn backend_headers(id: &Identity) -> [(&'static str, Option<&str>); 3] {
    [
        (IDENTITY_HEADER, Some(id.subject.as_str())),
        (TENANT_HEADER, id.tenant.as_deref()),
        (AUTH_HEADER, Some(id.method.as_str())),
    ]
}

/// The route's roles must all be held.
pub fn authorize(rule: &RouteAuth, id: Identity) -> Result<Identity, AuthError> {
    if rule.roles.iter().all(|r| id.roles.contains(r)) {
        Ok(id)
    } else {
        Err(AuthError::Forbidden {
            required: rule.roles.clone(),
        })
    }
}

/// Keeps the key sets fresh: every second, each JWT verifier's set is refreshed if its
/// interval has passed, and a file source also when the file changed; each API-key file is
/// read again when it changed.
pub fn spawn_refresher(
    current: impl Fn() -> Authenticators + Send + 'static,
    clock: Arc<dyn crate::clock::Clock>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("jwks-refresh".into())
        .spawn(move || {
            let mut mtimes: HashMap<String, std::time::SystemTime> = HashMap::new();
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let now = clock.now();
                for v in current().jwt_verifiers() {
                    let jwks = v.jwks();
                    let mut changed_on_disk = false;
                    if let jwks::JwksSource::File(path) = jwks.source() {
                        if let Ok(m) = std::fs::metadata(path).and_then(|m| m.modified()) {
                            let prev = mtimes.insert(v.name().to_string(), m);
                            changed_on_disk = prev.is_some_and(|p| p != m);
                        }
                    }
                    if changed_on_disk {
                        if let Err(e) = jwks.refresh_now() {
                            tracing::warn!(authenticator = v.name(), error = %e, "jwks reload failed; keeping the current keys");
                        }
                    } else {
                        jwks.refresh_if_due(now);
                    }
                }
                for store in current().api_key_stores() {
                    // Logged and kept for the status by the store.
                    let _ = store.reload_if_changed();
                }
            }
        })
}

#[cfg(test)]
mod tests;
