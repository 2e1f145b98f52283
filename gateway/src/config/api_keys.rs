//! API keys as configuration: the policy's `api_keys` authenticator block, and the key file
//! it names, which holds digests of keys and never a key.
//!
//! ```yaml
//! # policy
//! authenticators:
//!   telegraf:
//!     api_keys: { file: ../config/api-keys.yaml, header: X-API-Key }   # header: optional
//!
//! # ../config/api-keys.yaml
//! keys:
//!   - sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  # printf %s "$KEY" | sha256sum
//!     identity: telegraf-eu
//!     tenant: acme                   # optional
//!     roles: [writer]                # optional
//!   - argon2: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$..."                 # gateway hash-key --argon2
//!     identity: grafana
//!     roles: [reader]
//! ```
//!
//! Every entry is checked and every error reported at its line and column: exactly one of
//! `sha256` (64 hex digits) or `argon2` (a PHC string of Argon2 within [`MAX_ARGON2_MEMORY_KIB`],
//! [`MAX_ARGON2_TIME`] and [`MAX_ARGON2_LANES`], so one check cannot take the machine), a
//! non-empty `identity` and `tenant` that can travel in a header, roles without spaces, no
//! key twice. A plain key (`key:`, or text in `sha256` that is not a digest) is refused. The
//! authenticator (`auth/api_keys.rs`) reads the file at load and again when it changes.

use super::error::{ConfigError, ConfigErrors};
use super::raw::RawApiKeys;
use operator_config::Collector;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

/// How one `api_keys` authenticator is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeysConfig {
    /// The key file (relative paths are taken from the policy file's directory).
    pub file: PathBuf,
    /// A header that carries the key as it is, besides `Authorization: Token`, Basic and
    /// the `u`/`p` query parameters, which are always read.
    pub header: Option<http::HeaderName>,
}

/// The most memory an Argon2 entry may ask for, in KiB (256 MiB; OWASP's minimum is 19 MiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;
/// The most passes an Argon2 entry may ask for.
pub const MAX_ARGON2_TIME: u32 = 16;
/// The most lanes an Argon2 entry may ask for.
pub const MAX_ARGON2_LANES: u32 = 16;
/// Longest identity or tenant, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest key file read.
pub const MAX_KEY_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Compiles an `api_keys` block. Errors go to `e` (the block is still returned, so the
/// routes that name it are not reported as naming nothing).
pub fn compile(
    e: &mut Collector<'_>,
    name: &str,
    raw: &RawApiKeys,
    policy_file: &Path,
) -> ApiKeysConfig {
    let field = |f: &str| format!("authenticators.{name}.api_keys.{f}");
    if raw.file.value.trim().is_empty() {
        e.at(&raw.file, field("file"), "must name the key file");
    }
    let header = raw.header.as_ref().and_then(|h| {
        let parsed = http::HeaderName::from_bytes(h.value.trim().as_bytes());
        match parsed {
            Err(_) => {
                e.at(h, field("header"), format!("{:?} is not a header name", h.value));
                None
            }
            Ok(n) if n == http::header::AUTHORIZATION => {
                e.at(
                    h,
                    field("header"),
                    "Authorization is read anyway (Token and Basic schemes): name another header or leave header out",
                );
                None
            }
            Ok(n) if n.as_str().starts_with("x-gateway-") => {
                e.at(
                    h,
                    field("header"),
                    "the X-Gateway-* headers are the gateway's own",
                );
                None
            }
            Ok(n) => Some(n),
        }
    });
    let base = policy_file.parent().unwrap_or(Path::new("."));
    ApiKeysConfig {
        file: base.join(&raw.file.value),
        header,
    }
}

/// How a key is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// SHA-256 of the key's bytes.
    Sha256([u8; 32]),
    /// An Argon2 PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), checked to parse
    /// and to stay within the cost bounds.
    Argon2(String),
}

/// One key of the file: how it is stored, and who presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub stored: StoredKey,
    pub identity: String,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    /// Where it is in the file (for logs).
    pub line: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyFile {
    #[serde(default)]
    keys: Vec<Spanned<RawKeyEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyEntry {
    #[serde(default)]
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    argon2: Option<Spanned<String>>,
    /// Never accepted: named so that its refusal can say why.
    #[serde(default)]
    key: Option<Spanned<serde_json::Value>>,
    identity: Spanned<String>,
    #[serde(default)]
    tenant: Option<Spanned<String>>,
    #[serde(default)]
    roles: Option<Vec<Spanned<String>>>,
}

const PLAIN: &str = "plain keys are not accepted: store sha256 (printf %s \"$KEY\" | sha256sum) or an argon2 PHC string (gateway hash-key)";

/// Reads and checks a key file.
pub fn load_key_file(path: &Path) -> Result<Vec<KeyEntry>, ConfigErrors> {
    let fail = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message,
        }])
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(format!("cannot read the key file: {e}")))?
        .len();
    if len > MAX_KEY_FILE_BYTES {
        return Err(fail(format!(
            "the key file is larger than {MAX_KEY_FILE_BYTES} bytes"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read the key file: {e}")))?;
    parse_key_file(&text, path)
}

/// Parses and checks a key file's text; `origin` names it in errors.
pub fn parse_key_file(text: &str, origin: &Path) -> Result<Vec<KeyEntry>, ConfigErrors> {
    // An empty file is an empty list (every key revoked), not a syntax error.
    let raw: RawKeyFile = if text.trim().is_empty() {
        RawKeyFile { keys: Vec::new() }
    } else {
        super::parse(text, origin)?
    };
    let mut errors = ConfigErrors::default();
    let mut e = Collector::new(origin, &mut errors);
    let mut entries: Vec<KeyEntry> = Vec::with_capacity(raw.keys.len());
    for (i, k) in raw.keys.iter().enumerate() {
        let field = |f: &str| format!("keys[{i}].{f}");
        if let Some(plain) = &k.value.key {
            e.at(plain, field("key"), PLAIN);
            continue;
        }
        let stored = match (&k.value.sha256, &k.value.argon2) {
            (Some(h), None) => match parse_sha256(&h.value) {
                Ok(d) => Some(StoredKey::Sha256(d)),
                Err(why) => {
                    e.at(h, field("sha256"), why);
                    None
                }
            },
            (None, Some(a)) => match check_argon2(&a.value) {
                Ok(()) => Some(StoredKey::Argon2(a.value.trim().to_owned())),
                Err(why) => {
                    e.at(a, field("argon2"), why);
                    None
                }
            },
            _ => {
                e.at(
                    k,
                    format!("keys[{i}]"),
                    format!("give exactly one of sha256 or argon2 ({PLAIN})"),
                );
                None
            }
        };
        let identity = k.value.identity.value.trim();
        if let Err(why) = check_name(identity) {
            e.at(&k.value.identity, field("identity"), why);
        }
        let tenant = k.value.tenant.as_ref().map(|t| {
            if let Err(why) = check_name(t.value.trim()) {
                e.at(t, field("tenant"), why);
            }
            t.value.trim().to_owned()
        });
        let mut roles = Vec::new();
        for (j, r) in k.value.roles.iter().flatten().enumerate() {
            if r.value.is_empty() || r.value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                e.at(
                    r,
                    field(&format!("roles[{j}]")),
                    "a role is a non-empty word without spaces",
                );
            } else if !roles.contains(&r.value) {
                roles.push(r.value.clone());
            }
        }
        let Some(stored) = stored else { continue };
        if let Some(first) = entries.iter().find(|x| x.stored == stored) {
            let what = k.value.sha256.as_ref().or(k.value.argon2.as_ref());
            if let Some(v) = what {
                e.at(
                    v,
                    field(if k.value.sha256.is_some() {
                        "sha256"
                    } else {
                        "argon2"
                    }),
                    format!("the same key as the entry at line {}", first.line),
                );
            }
            continue;
        }
        entries.push(KeyEntry {
            stored,
            identity: identity.to_owned(),
            tenant,
            roles,
            line: k.referenced.line(),
        });
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

/// A new key: 32 random bytes, in hex (`gateway hash-key --generate`, `gateway dev-certs`).
pub fn random_key() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `sha256` of an entry for `key`: lower-case hex, as `sha256sum` prints it.
pub fn sha256_hex(key: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `argon2` of an entry for `key`: Argon2id with the crate's defaults (OWASP's
/// m=19 MiB, t=2, p=1) and a random 16-byte salt, as a PHC string.
pub fn argon2_phc(key: &[u8]) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(key, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// 64 hex digits, either case.
fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    let bytes = t.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!(
            "not a SHA-256 digest (64 hex digits, {} given); {PLAIN}",
            t.len()
        ));
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16).unwrap_or(0);
        let lo = char::from(pair[1]).to_digit(16).unwrap_or(0);
        *o = u8::try_from(hi * 16 + lo).unwrap_or(0);
    }
    Ok(out)
}

/// An Argon2 PHC string within the cost bounds.
fn check_argon2(text: &str) -> Result<(), String> {
    let hash = argon2::PasswordHash::new(text.trim())
        .map_err(|e| format!("not an Argon2 PHC string ({e}); {PLAIN}"))?;
    if argon2::Algorithm::new(hash.algorithm.as_str()).is_err() {
        return Err(format!(
            "algorithm {:?} is not argon2id, argon2i or argon2d",
            hash.algorithm.as_str()
        ));
    }
    let params = argon2::Params::try_from(&hash).map_err(|e| format!("Argon2 parameters: {e}"))?;
    if hash.hash.is_none() {
        return Err("the PHC string has no hash".to_owned());
    }
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB
        || params.t_cost() > MAX_ARGON2_TIME
        || params.p_cost() > MAX_ARGON2_LANES
    {
        return Err(format!(
            "Argon2 cost m={},t={},p={} is beyond m={MAX_ARGON2_MEMORY_KIB},t={MAX_ARGON2_TIME},p={MAX_ARGON2_LANES}: every unknown key presented would pay it",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

/// An identity or tenant: non-empty, short, and sendable in a header.
fn check_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if text.len() > MAX_NAME_BYTES {
        return Err(format!("is longer than {MAX_NAME_BYTES} bytes"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
