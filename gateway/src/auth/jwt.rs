//! Bearer-token authentication: verifies a JWT against a [`Jwks`] and turns its claims into
//! an [`Identity`].
//!
//! [`JwtVerifier::verify`] checks, in this order, each refusal with its own [`JwtError`]:
//!
//! ```text
//! 1  size         longer than max_token_bytes                     TooLarge
//! 2  shape        three base64url segments, JSON header           Malformed
//! 3  alg          in the allow-list (so never `none`)             AlgorithmNotAllowed
//! 4  kid          needed when the set has several keys;           MissingKid
//!                 [A-Za-z0-9._-]{1,128}, before any lookup        InvalidKid
//! 5  key          kid in the key set                              UnknownKid
//! 6  key family   the key allows the alg (no RS256 -> HS256)      KeyAlgorithmMismatch
//! 7  signature    jsonwebtoken::decode                            BadSignature
//! 8  time         exp required, nbf if present, with leeway       NoExpiry, Expired,
//!                                                                 NotYetValid
//! 9  iss, aud     when configured (aud: string or array)          WrongIssuer, WrongAudience
//! 10 identity     the identity claim, a non-empty string          MissingIdentity
//! 11 roles        string array or space-separated string          InvalidRoles
//! 12 tenant       a string, when configured                       InvalidTenant
//! ```
//!
//! Time boundaries (RFC 7519 §4.1.4, §4.1.5), with `leeway` in whole seconds: a token is
//! refused once `now >= exp + leeway` (so at exactly `exp + leeway` it is expired) and while
//! `now + leeway < nbf` (so at exactly `nbf - leeway` it is valid). Fractional `exp`/`nbf`
//! are rounded towards refusal (exp down, nbf up). jsonwebtoken reads the system clock
//! for its own time checks, so those are off and the caller's `now_unix` is used instead.
//!
//! Verified tokens are cached (keyed by SHA-256 of the token and the key-set version), and
//! a hit is still checked against `now_unix`, so correctness never depends on eviction.

pub use crate::config::auth::JwtConfig;
use crate::config::auth::TrustRoots;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::identity::{AuthMethod, Identity};
use super::jwks::{kid_is_acceptable, Jwks, JwksError, JwksSource, KeySet};

/// Default largest token, in bytes; headers beyond this are refused before any parsing.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Default interval of scheduled JWKS refreshes.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Most verified tokens kept in the cache.
pub const CACHE_CAPACITY: u64 = 100_000;
/// Longest a verified token stays cached (less if it expires sooner).
pub const CACHE_TTL: Duration = Duration::from_secs(300);

impl JwtConfig {
    /// A configuration with the defaults: refresh 5 min, leeway 30 s, identity `sub`,
    /// roles `roles`, no issuer, audience or tenant, 8 KiB tokens.
    pub fn new(source: JwksSource, algorithms: Vec<Algorithm>) -> JwtConfig {
        JwtConfig {
            source,
            trust: TrustRoots::WebPki,
            refresh: DEFAULT_REFRESH,
            algorithms,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            identity_claim: "sub".to_owned(),
            roles_claim: "roles".to_owned(),
            tenant_claim: None,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            forward_token: false,
            kept_claims: Vec::new(),
        }
    }
}

/// Why a token was refused.
///
/// `Display` is for logs; [`JwtError::description`] is for the client (RFC 6750's
/// `error_description`). Neither ever contains the token or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is longer than {limit} bytes")]
    TooLarge { limit: usize },
    /// The reason is a fixed phrase naming the part that is wrong.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("token has no kid and the key set has several keys")]
    MissingKid,
    #[error("token kid is not 1 to 128 characters of [A-Za-z0-9._-]")]
    InvalidKid,
    #[error("token kid is not in the key set")]
    UnknownKid,
    #[error("token algorithm is not allowed for its key")]
    KeyAlgorithmMismatch,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has no exp claim")]
    NoExpiry,
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token has no string {claim} claim")]
    MissingIdentity { claim: String },
    #[error("token {claim} claim is not a string array or a space-separated string")]
    InvalidRoles { claim: String },
    #[error("token {claim} claim is not a string")]
    InvalidTenant { claim: String },
}

impl JwtError {
    /// A short lower-case phrase for `WWW-Authenticate: Bearer error_description="..."`;
    /// fixed text only (no claim names from configuration, nothing from the token), so it
    /// always fits RFC 6750's character set.
    pub fn description(&self) -> &'static str {
        match self {
            JwtError::TooLarge { .. } => "token too large",
            JwtError::Malformed(_) => "malformed token",
            JwtError::AlgorithmNotAllowed => "algorithm not allowed",
            JwtError::MissingKid => "token has no key id",
            JwtError::InvalidKid => "invalid key id",
            JwtError::UnknownKid => "unknown key id",
            JwtError::KeyAlgorithmMismatch => "algorithm not allowed for this key",
            JwtError::BadSignature => "invalid signature",
            JwtError::NoExpiry => "token has no expiry",
            JwtError::Expired => "token expired",
            JwtError::NotYetValid => "token not yet valid",
            JwtError::WrongIssuer => "issuer not accepted",
            JwtError::WrongAudience => "audience not accepted",
            JwtError::MissingIdentity { .. } => "token has no identity claim",
            JwtError::InvalidRoles { .. } => "invalid roles claim",
            JwtError::InvalidTenant { .. } => "invalid tenant claim",
        }
    }
}

/// The verified-token cache's key: the token's digest under one key-set version, so a
/// rotation that drops a key also drops what it vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    digest: [u8; 32],
    key_set_version: u64,
}

#[derive(Debug)]
struct Cached {
    identity: Identity,
    window: TimeWindow,
    /// How long moka keeps the entry: until the token expires, at most [`CACHE_TTL`].
    ttl: Duration,
}

/// Entries live until their token expires (or [`CACHE_TTL`]), whichever comes first.
struct UntilExpiry;

impl moka::Expiry<CacheKey, Arc<Cached>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Cached>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A token's `exp` and `nbf`, as whole seconds rounded towards refusal.
#[derive(Debug, Clone, Copy)]
struct TimeWindow {
    exp: u64,
    nbf: Option<u64>,
}

impl TimeWindow {
    fn from_claims(claims: &Map<String, Value>) -> Result<TimeWindow, JwtError> {
        let exp = match claims.get("exp") {
            None | Some(Value::Null) => return Err(JwtError::NoExpiry),
            Some(value) => {
                numeric_date(value, false).ok_or(JwtError::Malformed("exp is not a number"))?
            }
        };
        let nbf = match claims.get("nbf") {
            None | Some(Value::Null) => None,
            Some(value) => {
                Some(numeric_date(value, true).ok_or(JwtError::Malformed("nbf is not a number"))?)
            }
        };
        Ok(TimeWindow { exp, nbf })
    }

    fn check(&self, now_unix: u64, leeway: u64) -> Result<(), JwtError> {
        if now_unix >= self.exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = self.nbf {
            if now_unix.saturating_add(leeway) < nbf {
                return Err(JwtError::NotYetValid);
            }
        }
        Ok(())
    }
}

/// A NumericDate (RFC 7519 §2) as whole seconds, rounded down or up.
fn numeric_date(value: &Value, round_up: bool) -> Option<u64> {
    if let Some(secs) = value.as_u64() {
        return Some(secs);
    }
    let secs = value.as_f64()?;
    if !secs.is_finite() || secs < 0.0 || secs >= u64::MAX as f64 {
        return None;
    }
    let rounded = if round_up { secs.ceil() } else { secs.floor() };
    // Finite, non-negative, below u64::MAX and integral: the cast is exact.
    Some(rounded as u64)
}

/// The header members we read; jsonwebtoken reads the rest again (and checks `crit`).
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

// === impl JwtVerifier ===

/// Verifies tokens for one authenticator.
pub struct JwtVerifier {
    name: String,
    config: JwtConfig,
    jwks: Arc<Jwks>,
    /// One jsonwebtoken `Validation` per allowed algorithm: its signature check requires
    /// every listed algorithm to be of the key's family, so each call gets exactly one.
    validations: Vec<(Algorithm, Validation)>,
    leeway_secs: u64,
    cache: moka::sync::Cache<CacheKey, Arc<Cached>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier named `name` (the authenticator, reported in [`Identity::authenticator`])
    /// over an already-loaded key set.
    pub fn new(name: &str, config: JwtConfig, jwks: Arc<Jwks>) -> JwtVerifier {
        let validations = config
            .algorithms
            .iter()
            .map(|&alg| (alg, validation_for(alg, &config)))
            .collect();
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .expire_after(UntilExpiry)
            .build();
        JwtVerifier {
            name: name.to_owned(),
            leeway_secs: config.leeway.as_secs(),
            config,
            jwks,
            validations,
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Loads the configured key set, then builds the verifier.
    pub fn load(name: &str, config: JwtConfig) -> Result<JwtVerifier, JwksError> {
        let jwks = Arc::new(Jwks::load_trusting(
            config.source.clone(),
            config.trust.clone(),
            config.refresh,
        )?);
        Ok(JwtVerifier::new(name, config, jwks))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// The key set, for the refresh schedule.
    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    /// Verified-token cache `(hits, misses)` since this verifier was built.
    pub fn cache_stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Verifies `token` (without the `Bearer ` prefix) at wall-clock time `now_unix`
    /// (seconds since the epoch), using the cache.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Identity, JwtError> {
        self.check_size(token)?;
        let keys = self.jwks.current();
        let key = CacheKey {
            digest: Sha256::digest(token.as_bytes()).into(),
            key_set_version: keys.version(),
        };
        if let Some(hit) = self.cache.get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            hit.window.check(now_unix, self.leeway_secs)?;
            return Ok(hit.identity.clone());
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let (identity, window) = self.verify_with_keys(token, now_unix, &keys)?;
        let left = window
            .exp
            .saturating_add(self.leeway_secs)
            .saturating_sub(now_unix);
        self.cache.insert(
            key,
            Arc::new(Cached {
                identity: identity.clone(),
                window,
                ttl: Duration::from_secs(left).min(CACHE_TTL),
            }),
        );
        Ok(identity)
    }

    /// Verifies without the cache: the full cost of one verification (benchmarks, tests).
    pub fn verify_uncached(&self, token: &str, now_unix: u64) -> Result<Identity, JwtError> {
        self.check_size(token)?;
        let keys = self.jwks.current();
        self.verify_with_keys(token, now_unix, &keys)
            .map(|(identity, _)| identity)
    }

    /// [`JwtVerifier::verify`], and on an unknown `kid` one rate-limited refetch of the key
    /// set ([`Jwks::refetch_for_unknown_kid`]) and one retry if the keys changed. `now` is
    /// the monotonic time of the request, for the rate limit. The refetch blocks for up to
    /// the JWKS fetch timeout.
    pub fn verify_with_refetch(
        &self,
        token: &str,
        now_unix: u64,
        now: Instant,
    ) -> Result<Identity, JwtError> {
        match self.verify(token, now_unix) {
            Err(JwtError::UnknownKid) if self.jwks.refetch_for_unknown_kid(now) => {
                self.verify(token, now_unix)
            }
            result => result,
        }
    }

    fn check_size(&self, token: &str) -> Result<(), JwtError> {
        if token.len() > self.config.max_token_bytes {
            return Err(JwtError::TooLarge {
                limit: self.config.max_token_bytes,
            });
        }
        Ok(())
    }

    fn verify_with_keys(
        &self,
        token: &str,
        now_unix: u64,
        keys: &KeySet,
    ) -> Result<(Identity, TimeWindow), JwtError> {
        // 2. Shape: three base64url segments, a JSON header.
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(JwtError::Malformed("not three dot-separated segments"));
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| JwtError::Malformed("header is not base64url"))?;
        if URL_SAFE_NO_PAD.decode(payload_b64).is_err() {
            return Err(JwtError::Malformed("payload is not base64url"));
        }
        if URL_SAFE_NO_PAD.decode(signature_b64).is_err() {
            return Err(JwtError::Malformed("signature is not base64url"));
        }
        let header: RawHeader = serde_json::from_slice(&header_json)
            .map_err(|_| JwtError::Malformed("header is not a JSON object with alg"))?;

        // 3. The algorithm must be allowed here at all; `none` never parses as one.
        let alg: Algorithm = header
            .alg
            .parse()
            .map_err(|_| JwtError::AlgorithmNotAllowed)?;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == alg) else {
            return Err(JwtError::AlgorithmNotAllowed);
        };

        // 4, 5. The key: by a well-formed kid, or the only key when the token names none.
        let key = match header.kid.as_deref() {
            Some(kid) if !kid_is_acceptable(kid) => return Err(JwtError::InvalidKid),
            Some(kid) => keys.get(kid).ok_or(JwtError::UnknownKid)?,
            None => keys.only().ok_or(JwtError::MissingKid)?,
        };

        // 6. The key's family must allow the header's algorithm: this is what keeps a
        // public RSA or EC key from being used as an HMAC secret.
        if !key.allows(alg) {
            return Err(JwtError::KeyAlgorithmMismatch);
        }

        // 7, 9. Signature, then iss/aud (jsonwebtoken), with time checks (8) slotted first.
        let claims =
            match jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding_key(), validation)
            {
                Ok(data) => data.claims,
                Err(e) => {
                    return Err(self.refusal(e.into_kind(), &header_json, payload_b64, now_unix))
                }
            };
        let window = TimeWindow::from_claims(&claims)?;
        window.check(now_unix, self.leeway_secs)?;

        // 10-12. What the claims say about the caller.
        let identity = self.identity(&claims)?;
        Ok((identity, window))
    }

    /// Maps a jsonwebtoken refusal to ours. Its claim checks (required claims, iss, aud)
    /// run after the signature check, so by then the payload is authentic; its time checks
    /// are off, so ours run first here to keep the documented order.
    fn refusal(
        &self,
        kind: ErrorKind,
        header_json: &[u8],
        payload_b64: &str,
        now_unix: u64,
    ) -> JwtError {
        let claim_refusal = match &kind {
            ErrorKind::InvalidIssuer => Some(JwtError::WrongIssuer),
            ErrorKind::InvalidAudience => Some(JwtError::WrongAudience),
            ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
                match claim.as_str() {
                    "exp" => Some(JwtError::NoExpiry),
                    "iss" => Some(JwtError::WrongIssuer),
                    "aud" => Some(JwtError::WrongAudience),
                    _ => Some(JwtError::Malformed("a registered claim has the wrong type")),
                }
            }
            _ => None,
        };
        if let Some(refusal) = claim_refusal {
            let window = URL_SAFE_NO_PAD
                .decode(payload_b64)
                .ok()
                .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok())
                .map(|claims| TimeWindow::from_claims(&claims));
            return match window {
                Some(Err(time_refusal)) => time_refusal,
                Some(Ok(window)) => window
                    .check(now_unix, self.leeway_secs)
                    .err()
                    .unwrap_or(refusal),
                None => JwtError::Malformed("payload is not a JSON object"),
            };
        }
        match kind {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                JwtError::KeyAlgorithmMismatch
            }
            ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::Base64(_) => {
                // jsonwebtoken reads the whole header (typed `typ`, `jwk`, `x5c`...), we only
                // `alg` and `kid`: say which part it could not read.
                if serde_json::from_slice::<jsonwebtoken::Header>(header_json).is_err() {
                    JwtError::Malformed("header is not a valid JOSE header")
                } else {
                    JwtError::Malformed("payload is not a JSON object")
                }
            }
            // An unsupported `crit` header, mostly.
            _ => JwtError::Malformed("header is not supported"),
        }
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, JwtError> {
        let config = &self.config;
        let subject = match claims.get(&config.identity_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(JwtError::MissingIdentity {
                    claim: config.identity_claim.clone(),
                })
            }
        };
        let roles = match claims.get(&config.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| JwtError::InvalidRoles {
                    claim: config.roles_claim.clone(),
                })?,
            Some(_) => {
                return Err(JwtError::InvalidRoles {
                    claim: config.roles_claim.clone(),
                })
            }
        };
        let tenant = match &config.tenant_claim {
            None => None,
            Some(claim) => match claims.get(claim) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(JwtError::InvalidTenant {
                        claim: claim.clone(),
                    })
                }
            },
        };
        let kept = config
            .kept_claims
            .iter()
            .filter_map(|c| {
                let v = match claims.get(c)? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((c.clone(), v))
            })
            .collect();
        Ok(Identity {
            subject,
            tenant,
            roles,
            claims: kept,
            method: AuthMethod::Jwt,
            authenticator: self.name.clone(),
        })
    }
}

/// jsonwebtoken's checks for one algorithm: signature, presence of `exp` (and of `iss` and
/// `aud` when configured), `iss`, `aud`. Its time checks are off (they read the system
/// clock); [`TimeWindow::check`] does them with the caller's time.
fn validation_for(alg: Algorithm, config: &JwtConfig) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = config.leeway.as_secs();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let mut required = vec!["exp"];
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        // Without a configured audience there is nothing to compare `aud` with; by default
        // jsonwebtoken would refuse every token that has one.
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

#[cfg(test)]
mod tests;
