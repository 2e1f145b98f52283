//! Authentication and authorization: who is calling (401) and whether they may (403), as
//! one stage of the pipeline, with the answers RFC 6750 prescribes.
//!
//! ```text
//! identity.rs  Identity, AuthMethod: what later stages and the backend learn
//! jwt.rs       bearer tokens: allow-listed algorithms, kid, claims, verified-token cache
//! jwks.rs      the key sets those tokens are checked against, refreshed and refetched
//! mtls.rs      names of a client certificate rustls verified, read at handshake end
//! ```
//!
//! A route's rule names authenticators in order (`any_of`); the first that recognises the
//! caller decides who it is, then the route's `roles` must all be held. The verifiers
//! (their key sets and caches) live in an [`AuthRegistry`] keyed by authenticator name and
//! configuration, so a policy reload that leaves an authenticator unchanged keeps them.

pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod mtls;

use crate::config::policy::{AuthenticatorKind, Policy, RouteAuth};
use crate::config::{ConfigError, ConfigErrors};
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
            Checker::Mtls { .. } => None,
        })
    }
}

/// JWT verifiers that outlive policy versions: a reload that keeps an authenticator's
/// configuration keeps its key set and its cache of verified tokens.
#[derive(Debug, Default)]
pub struct AuthRegistry {
    jwt: Mutex<HashMap<String, Arc<JwtVerifier>>>,
}

impl AuthRegistry {
    /// The checkers of `policy`; loading a key set that fails names the authenticator's
    /// place in its policy file.
    pub fn build(&self, policy: &Policy) -> Result<Authenticators, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut by_name = BTreeMap::new();
        let mut cache = self.jwt.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keep = HashMap::new();
        for (name, a) in &policy.authenticators {
            let checker = match &a.kind {
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
        Ok(Authenticators { by_name })
    }
}

/// What a request presents.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// A bearer token, or why the Authorization header cannot be one.
    pub bearer: Result<Option<&'a str>, &'static str>,
    /// The verified client certificate of the connection, if any.
    pub peer: Option<&'a PeerCert>,
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
    Credentials { bearer, peer }
}

/// Why a request may not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials any of the route's authenticators takes: 401 with a bare challenge.
    Missing,
    /// Credentials were presented and refused: 401 `invalid_token`.
    Invalid { description: &'static str },
    /// Authenticated, but without every role the route requires: 403 `insufficient_scope`.
    Forbidden { required: Vec<String> },
}

impl AuthError {
    /// The status and the `WWW-Authenticate` value (RFC 6750 section 3).
    pub fn challenge(&self) -> (u16, String) {
        match self {
            AuthError::Missing => (401, "Bearer realm=\"gateway\"".into()),
            AuthError::Invalid { description } => (
                401,
                format!(
                    "Bearer realm=\"gateway\", error=\"invalid_token\", error_description=\"{description}\""
                ),
            ),
            AuthError::Forbidden { required } => (
                403,
                format!(
                    "Bearer realm=\"gateway\", error=\"insufficient_scope\", scope=\"{}\"",
                    required.join(" ")
                ),
            ),
        }
    }

    /// The message of the JSON body.
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => "authentication required".into(),
            AuthError::Invalid { description } => format!("invalid credentials: {description}"),
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
    Refused(&'static str),
    /// Nothing for this authenticator (no token, no certificate).
    Absent,
    /// A token with a key id we do not know: worth one refetch of the key set.
    UnknownKid(Arc<JwtVerifier>),
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
            Err(why) => Verdict::Refused(why),
            Ok(Some(token)) => match v.verify(token, now_unix) {
                Ok(id) => Verdict::Accepted(id),
                Err(JwtError::UnknownKid) => Verdict::UnknownKid(v.clone()),
                Err(e) => Verdict::Refused(e.description()),
            },
        },
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
    let mut refused: Option<&'static str> = None;
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
            Verdict::Refused(why) => {
                refused.get_or_insert(why);
            }
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
                        refused.get_or_insert(e.description());
                    }
                    _ => {
                        refused.get_or_insert(JwtError::UnknownKid.description());
                    }
                }
            }
        }
    }
    let Some(id) = identity else {
        return Err(match refused {
            Some(description) => AuthError::Invalid { description },
            None => AuthError::Missing,
        });
    };
    // The backend gets the identity as header values: a name with control characters
    // cannot travel, and is not one to let through anyway.
    let fits = |v: &str| http::HeaderValue::from_bytes(v.as_bytes()).is_ok();
    if !fits(&id.subject) || !id.tenant.as_deref().is_none_or(fits) {
        return Err(AuthError::Invalid {
            description: "identity not usable in a header",
        });
    }
    authorize(rule, id)
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
/// peer's certificate) checked against the route's rule. A bearer token the authenticator
/// does not forward is removed from the request.
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
/// interval has passed, and a file source also when the file changed.
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
            }
        })
}

#[cfg(test)]
mod tests;
