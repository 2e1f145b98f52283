//! The keys that sign the tokens we accept: a JWKS document (RFC 7517) read from a file, an
//! `http://` or `https://` URL, or where OpenID discovery says (`fetch.rs`), kept current by
//! periodic and on-demand refreshes.
//!
//! ```text
//! Jwks            the live holder: source, refresh schedule, current set (ArcSwap)
//!  └─ KeySet      one parsed document, immutable, with a version number
//!      └─ Key     one usable key: kid, allowed algorithms, jsonwebtoken DecodingKey
//! ```
//!
//! Parsing is per key: a key that cannot be used (unknown `kty`, wrong curve, missing
//! component, private material, weak secret...) is reported as a [`RejectedKey`] and the
//! others are kept; a document with no usable key at all is an error. A failed refresh
//! keeps the previous set. Time is passed in by the caller (`now: Instant`), never read
//! here, so the schedule is driven exactly in tests.

pub mod fetch;

pub use crate::config::auth::{JwksSource, TrustRoots};
use fetch::Fetcher;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// At most one refetch for an unknown `kid` in this interval, so a flood of made-up key
/// ids cannot hammer the JWKS endpoint.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Timeout of one HTTP fetch of the JWKS document.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest JWKS document we read; real ones are a few KiB.
pub const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// Longest `kid` we accept, in a JWKS or a token header.
pub const MAX_KID_BYTES: usize = 128;

/// Smallest RSA modulus we accept (NIST SP 800-131A: 2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 2048 / 8;

/// Why a key set could not be loaded or refreshed.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("reading jwks file {path}: {source}", path = path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fetching jwks {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("jwks url {0} is not http:// or https://")]
    UnsupportedUrl(String),
    #[error("ca file {path}: {reason}", path = path.display())]
    Ca { path: PathBuf, reason: String },
    #[error("openid discovery {url}: {reason}")]
    Discovery { url: String, reason: String },
    #[error("jwks document is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("jwks document is not a JSON key set: {0}")]
    Json(#[from] serde_json::Error),
    /// A build problem, not a data one: jsonwebtoken needs exactly one of its crypto
    /// features, or it panics at the first verification (see PITFALLS).
    #[error("jsonwebtoken has no crypto provider: enable exactly one of rust_crypto, aws_lc_rs")]
    NoCryptoProvider,
    #[error("jwks has no usable key{}", rejected_suffix(.rejected))]
    NoUsableKeys { rejected: Vec<RejectedKey> },
}

fn rejected_suffix(rejected: &[RejectedKey]) -> String {
    if rejected.is_empty() {
        return String::new();
    }
    let list: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    format!(" ({})", list.join("; "))
}

/// A key of the document that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedKey {
    /// Position in the document's `keys` array (0-based).
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

impl fmt::Display for RejectedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key {} (kid {kid:?}): {}", self.index, self.reason),
            None => write!(f, "key {} (no kid): {}", self.index, self.reason),
        }
    }
}

/// Whether `kid` is one we are willing to look up: `[A-Za-z0-9._-]`, 1 to
/// [`MAX_KID_BYTES`] bytes. Anything else (path separators, quotes, spaces) is refused
/// before it reaches a map, a log line or a URL.
pub fn kid_is_acceptable(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_BYTES
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

// === impl Key ===

/// One usable verification key.
#[derive(Debug, Clone)]
pub struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    decoding: DecodingKey,
}

impl Key {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key may verify: its family, or only its JWK `alg`.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Whether a token signed with `alg` may be checked with this key. This is what stops
    /// key confusion: an RSA or EC public key never verifies an HMAC token.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

// === impl KeySet ===

/// One parsed JWKS document.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
    rejected: Vec<RejectedKey>,
    /// SHA-256 over the usable keys, so a refresh that brings the same keys (reordered or
    /// reformatted) is not a change.
    fingerprint: [u8; 32],
    version: u64,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`), keeping every usable key.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, JwksError> {
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            return Err(JwksError::NoCryptoProvider);
        }
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document = serde_json::from_slice(bytes)?;
        let mut keys = Vec::with_capacity(doc.keys.len());
        let mut by_kid = HashMap::new();
        let mut rejected = Vec::new();
        for (index, value) in doc.keys.into_iter().enumerate() {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let parsed = parse_key(value).and_then(|key| match &key.kid {
                Some(kid) if by_kid.contains_key(kid) => {
                    Err("duplicate kid; the first key with it is kept".to_owned())
                }
                _ => Ok(key),
            });
            match parsed {
                Ok(key) => {
                    if let Some(kid) = &key.kid {
                        by_kid.insert(kid.clone(), keys.len());
                    }
                    keys.push(key);
                }
                Err(reason) => rejected.push(RejectedKey { index, kid, reason }),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys { rejected });
        }
        let fingerprint = fingerprint(&keys);
        Ok(KeySet {
            keys,
            by_kid,
            rejected,
            fingerprint,
            version: 0,
        })
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.by_kid.get(kid).and_then(|&i| self.keys.get(i))
    }

    /// The key a token without `kid` may use: the only one, if there is exactly one.
    pub fn only(&self) -> Option<&Key> {
        match self.keys.as_slice() {
            [key] => Some(key),
            _ => None,
        }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false for a set built by [`KeySet::from_json`], which refuses an empty set.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, in document order (keys without `kid` are not listed).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(Key::kid)
    }

    /// The keys of the document that were left out.
    pub fn rejected(&self) -> &[RejectedKey] {
        &self.rejected
    }

    /// Changes whenever the [`Jwks`] holding this set swaps in different keys; 0 for a set
    /// parsed on its own.
    pub fn version(&self) -> u64 {
        self.version
    }
}

fn fingerprint(keys: &[Key]) -> [u8; 32] {
    let mut parts: Vec<Vec<u8>> = keys
        .iter()
        .map(|key| {
            let mut part = Vec::new();
            let kid = key.kid.as_deref().unwrap_or("");
            part.extend_from_slice(&(kid.len() as u64).to_be_bytes());
            part.extend_from_slice(kid.as_bytes());
            for alg in &key.algorithms {
                part.extend_from_slice(format!("{alg:?},").as_bytes());
            }
            match key.decoding.kind() {
                jsonwebtoken::DecodingKeyKind::SecretOrDer(bytes) => {
                    part.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                    part.extend_from_slice(bytes);
                }
                jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => {
                    part.extend_from_slice(&(n.len() as u64).to_be_bytes());
                    part.extend_from_slice(n);
                    part.extend_from_slice(&(e.len() as u64).to_be_bytes());
                    part.extend_from_slice(e);
                }
            }
            part
        })
        .collect();
    // Order does not matter to lookups, so it must not matter to the fingerprint.
    parts.sort();
    let mut hasher = Sha256::new();
    for part in &parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The members of a JWK we read; anything else is ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
    d: Option<serde_json::Value>,
}

/// Base64url as JWKs carry it; padding is tolerated since some publishers add it.
const JWK_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn component(value: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    let text = value.as_deref().ok_or_else(|| format!("missing {name}"))?;
    let bytes = JWK_B64
        .decode(text)
        .map_err(|_| format!("{name} is not base64url"))?;
    if bytes.is_empty() {
        return Err(format!("{name} is empty"));
    }
    Ok(bytes)
}

/// Turns one JWK into a usable key, or says why not.
fn parse_key(value: serde_json::Value) -> Result<Key, String> {
    let jwk: RawJwk =
        serde_json::from_value(value).map_err(|e| format!("not a usable JWK: {e}"))?;
    if let Some(kid) = &jwk.kid {
        if !kid_is_acceptable(kid) {
            return Err(format!(
                "kid must be 1 to {MAX_KID_BYTES} characters of [A-Za-z0-9._-]"
            ));
        }
    }
    if let Some(use_) = &jwk.use_ {
        if use_ != "sig" {
            return Err(format!("use is {use_:?}, not \"sig\""));
        }
    }
    if let Some(ops) = &jwk.key_ops {
        if !ops.iter().any(|op| op == "verify") {
            return Err("key_ops does not include \"verify\"".to_owned());
        }
    }
    if jwk.kty != "oct" && jwk.d.is_some() {
        // A published private key means anyone can sign; refuse rather than trust it.
        return Err("contains private key material (d)".to_owned());
    }

    let (family, decoding): (&[Algorithm], DecodingKey) = match jwk.kty.as_str() {
        "RSA" => {
            let n = component(&jwk.n, "n")?;
            let e = component(&jwk.e, "e")?;
            let significant = n.iter().skip_while(|&&b| b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!(
                    "RSA modulus is shorter than {} bits",
                    MIN_RSA_MODULUS_BYTES * 8
                ));
            }
            // jsonwebtoken builds the RSA key only inside each verification, so a bad one
            // would fail every token as a bad signature; check it the same way once here.
            rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(&n),
                rsa::BoxedUint::from_be_slice_vartime(&e),
            )
            .map_err(|e| format!("not a valid RSA public key: {e}"))?;
            (
                &[
                    Algorithm::RS256,
                    Algorithm::RS384,
                    Algorithm::RS512,
                    Algorithm::PS256,
                    Algorithm::PS384,
                    Algorithm::PS512,
                ],
                DecodingKey::from_rsa_raw_components(&n, &e),
            )
        }
        "EC" => {
            let (alg, len) = match jwk.crv.as_deref() {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                Some(other) => return Err(format!("unsupported EC curve {other:?}")),
                None => return Err("missing crv".to_owned()),
            };
            let x = component(&jwk.x, "x")?;
            let y = component(&jwk.y, "y")?;
            if x.len() != len || y.len() != len {
                return Err(format!("x and y must be {len} bytes for this curve"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let family: &[Algorithm] = match alg {
                Algorithm::ES256 => &[Algorithm::ES256],
                _ => &[Algorithm::ES384],
            };
            (family, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            match jwk.crv.as_deref() {
                Some("Ed25519") => {}
                Some(other) => return Err(format!("unsupported OKP curve {other:?}")),
                None => return Err("missing crv".to_owned()),
            }
            let x = component(&jwk.x, "x")?;
            if x.len() != 32 {
                // Checked here: the verifier slices the first 32 bytes without a check.
                return Err("Ed25519 x must be 32 bytes".to_owned());
            }
            (&[Algorithm::EdDSA], DecodingKey::from_ed_der(&x))
        }
        "oct" => {
            let k = component(&jwk.k, "k")?;
            // RFC 7518 §3.2: the secret must be at least as long as the hash output.
            let family: &[Algorithm] = match k.len() {
                0..=31 => return Err("HMAC secret is shorter than 32 bytes".to_owned()),
                32..=47 => &[Algorithm::HS256],
                48..=63 => &[Algorithm::HS256, Algorithm::HS384],
                _ => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            };
            let decoding = DecodingKey::from_secret(&k).map_err(|e| e.to_string())?;
            (family, decoding)
        }
        other => return Err(format!("unsupported kty {other:?}")),
    };

    let algorithms = match &jwk.alg {
        None => family.to_vec(),
        Some(name) => {
            let alg: Algorithm = name
                .parse()
                .map_err(|_| format!("alg {name:?} is not a supported signature algorithm"))?;
            if !family.contains(&alg) {
                return Err(format!("alg {name:?} does not fit kty {:?}", jwk.kty));
            }
            vec![alg]
        }
    };

    // jsonwebtoken parses EC and Ed keys when it builds a verifier; a trial verification
    // builds one now, so a bad point is reported at load and not at the first request.
    for &alg in &algorithms {
        if jsonwebtoken::crypto::verify("AA", b"probe", &decoding, alg).is_err() {
            return Err(format!("key material is not a valid {alg:?} public key"));
        }
    }

    Ok(Key {
        kid: jwk.kid,
        algorithms,
        decoding,
    })
}

// === impl Jwks ===

impl fmt::Display for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksSource::File(path) => write!(f, "{}", path.display()),
            JwksSource::Url(url) => f.write_str(url),
            JwksSource::Discovery(issuer) => write!(f, "discovery from {issuer}"),
        }
    }
}

/// When the last refreshes happened, as told by the callers.
#[derive(Debug, Default)]
struct Schedule {
    last_refresh: Option<Instant>,
    last_refetch: Option<Instant>,
}

/// A live key set: read lock-free by every verification, replaced whole on refresh.
pub struct Jwks {
    fetcher: Fetcher,
    refresh: Duration,
    current: ArcSwap<KeySet>,
    next_version: AtomicU64,
    schedule: Mutex<Schedule>,
    /// One fetch at a time, so two refreshes cannot swap in their sets out of order.
    fetching: Mutex<()>,
    /// Why the last refresh failed; cleared by a good one (shown in `/admin/status`).
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("Jwks")
            .field("source", self.source())
            .field("refresh", &self.refresh)
            .field("version", &current.version)
            .field("kids", &current.kids().collect::<Vec<_>>())
            .finish()
    }
}

impl Jwks {
    /// Loads the key set once; this first load must succeed. `refresh` is the interval
    /// [`Jwks::refresh_if_due`] keeps. An https source is verified against the built-in
    /// roots.
    pub fn load(source: JwksSource, refresh: Duration) -> Result<Jwks, JwksError> {
        Jwks::load_trusting(source, TrustRoots::WebPki, refresh)
    }

    /// [`Jwks::load`], an https source verified against `trust`.
    pub fn load_trusting(
        source: JwksSource,
        trust: TrustRoots,
        refresh: Duration,
    ) -> Result<Jwks, JwksError> {
        let fetcher = Fetcher::new(source, trust)?;
        let bytes = fetcher.fetch()?;
        Jwks::with_fetcher(fetcher, refresh, &bytes)
    }

    /// A key set from a document already read, as [`Jwks::load`] would build it from the
    /// same bytes; refreshes read `source` again. For tests and the `jwt` fuzz target,
    /// which verify against a fixed set without a file.
    pub fn from_json(
        source: JwksSource,
        refresh: Duration,
        bytes: &[u8],
    ) -> Result<Jwks, JwksError> {
        Jwks::with_fetcher(Fetcher::new(source, TrustRoots::WebPki)?, refresh, bytes)
    }

    fn with_fetcher(fetcher: Fetcher, refresh: Duration, bytes: &[u8]) -> Result<Jwks, JwksError> {
        let mut set = KeySet::from_json(bytes)?;
        set.version = 1;
        log_rejected(fetcher.source(), &set);
        Ok(Jwks {
            fetcher,
            refresh,
            current: ArcSwap::from_pointee(set),
            next_version: AtomicU64::new(2),
            schedule: Mutex::new(Schedule::default()),
            fetching: Mutex::new(()),
            last_error: Mutex::new(None),
        })
    }

    pub fn source(&self) -> &JwksSource {
        self.fetcher.source()
    }

    /// The key set in force; cheap and lock-free.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// The version of the key set in force; changes whenever its keys change.
    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    /// Reads the source now and swaps in its keys if they differ. Returns whether they
    /// did. On error the current set stays in force. Blocks for up to [`FETCH_TIMEOUT`]
    /// on a URL source: call it off the request path.
    pub fn refresh_now(&self) -> Result<bool, JwksError> {
        let _one_at_a_time = self.fetching.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = self.fetcher.fetch()?;
        let mut set = KeySet::from_json(&bytes)?;
        let old = self.current.load();
        if set.fingerprint == old.fingerprint {
            return Ok(false);
        }
        set.version = self.next_version.fetch_add(1, Ordering::Relaxed);
        log_rejected(self.source(), &set);
        tracing::info!(
            source = %self.source(),
            version = set.version,
            kids = ?set.kids().collect::<Vec<_>>(),
            "jwks: new key set"
        );
        self.current.store(Arc::new(set));
        Ok(true)
    }

    /// Refreshes if the interval has passed since the last refresh; returns whether the
    /// keys changed. The first call only starts the schedule (the load just happened). A
    /// failed refresh is logged, keeps the old set, and is retried one interval later.
    pub fn refresh_if_due(&self, now: Instant) -> bool {
        let due = {
            let mut schedule = self.schedule.lock().unwrap_or_else(PoisonError::into_inner);
            match schedule.last_refresh {
                Some(last) if now.saturating_duration_since(last) < self.refresh => false,
                Some(_) => {
                    schedule.last_refresh = Some(now);
                    true
                }
                None => {
                    schedule.last_refresh = Some(now);
                    false
                }
            }
        };
        due && self.refresh_logged("scheduled")
    }

    /// A token named a `kid` we do not know: refresh now, unless a refetch already happened
    /// within [`MIN_REFETCH`]. Returns whether the keys changed (so a retry can succeed).
    pub fn refetch_for_unknown_kid(&self, now: Instant) -> bool {
        {
            let mut schedule = self.schedule.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(last) = schedule.last_refetch {
                if now.saturating_duration_since(last) < MIN_REFETCH {
                    return false;
                }
            }
            schedule.last_refetch = Some(now);
            // The set is as fresh as a scheduled refresh would make it.
            schedule.last_refresh = Some(now);
        }
        self.refresh_logged("unknown kid")
    }

    /// Why the last refresh failed, until one succeeds.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn refresh_logged(&self, why: &str) -> bool {
        let result = self.refresh_now();
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            result.as_ref().err().map(ToString::to_string);
        match result {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(
                    source = %self.source(),
                    reason = why,
                    error = %e,
                    "jwks refresh failed; keeping the current keys"
                );
                false
            }
        }
    }
}

fn log_rejected(source: &JwksSource, set: &KeySet) {
    for rejected in set.rejected() {
        tracing::warn!(source = %source, "jwks: {rejected}; key ignored");
    }
}

#[cfg(test)]
pub(crate) mod test_keys;
#[cfg(test)]
mod tests;
