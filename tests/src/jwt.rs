//! JWT signing keys made at run time, their public JWKs, and hand-made broken tokens for
//! attack tests.
//!
//! A [`Key`] has a `kid` and one algorithm: ES256, ES384 and EdDSA keys come from rcgen (ring),
//! RS256 keys from the `rsa` crate, HS256 keys from the caller's bytes. RSA generation is slow
//! in an unoptimised build, so the RSA private keys are made once per test process (one per
//! slot, see [`Key::rs256_slot`]) and shared; every other key is fresh. [`Key::sign`] signs
//! with `jsonwebtoken`; [`Key::jwk`] exports the public JWK (RFC 7517/7518/8037, base64url
//! without padding) and [`jwks_json`] a whole JWK Set.
//!
//! The free functions build what no honest issuer would: [`unsigned_token`] (`alg: none`),
//! [`hs256_token_with_secret`] (RS256 → HS256 key confusion with [`Key::public_pem`] as the
//! secret), [`tamper_payload`] and [`tamper_signature`].
//!
//! ```
//! use serde_json::json;
//! use tests::jwt::{self, Key};
//!
//! let key = Key::es256("k1")?;
//! let token = key.sign(&jwt::claims("https://issuer", "api", "alice", 300))?;
//! let jwks = jwt::jwks_json(&[&key]);
//! assert!(jwks.contains(r#""kid":"k1""#));
//! let forged = jwt::unsigned_token(&json!({"alg": "none"}), &json!({"sub": "admin"}));
//! assert!(forged.ends_with('.'));
//! # let _ = token;
//! # Ok::<(), anyhow::Error>(())
//! ```

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PublicKeyData};
use serde_json::{json, Value};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// RSA keys kept per process (slots `0..RSA_SLOTS` of [`Key::rs256_slot`]).
pub const RSA_SLOTS: usize = 3;

/// Modulus size of the generated RSA keys (the `rsa` crate's default).
pub const RSA_BITS: usize = rsa::PrivateKey::DEFAULT_BITS;

/// base64url without padding, as JWS and JWK use it (RFC 7515 section 2).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch (wall clock): what `iat`, `nbf` and `exp` are measured
/// against by the verifier under test.
#[allow(
    clippy::disallowed_methods,
    reason = "JWT time claims are wall-clock time, checked by the verifier under test"
)]
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Claims `{iss, aud, sub, iat: now, nbf: now, exp: now + ttl_secs}`; add or remove fields
/// on the returned object as a test needs.
pub fn claims(iss: &str, aud: &str, sub: &str, ttl_secs: u64) -> Value {
    let now = unix_now();
    json!({"iss": iss, "aud": aud, "sub": sub, "iat": now, "nbf": now, "exp": now + ttl_secs})
}

/// The public half of a key, in the form its JWK needs.
enum Public {
    /// Curve name and the raw coordinates.
    Ec {
        crv: &'static str,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// Ed25519 public key bytes.
    Ed { x: Vec<u8> },
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The shared secret itself.
    Oct { k: Vec<u8> },
}

/// A signing key with a `kid`, able to sign tokens and export its public JWK.
pub struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public: Public,
    /// SubjectPublicKeyInfo (DER) of asymmetric keys.
    spki_der: Option<Vec<u8>>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A fresh ECDSA P-256 key (`ES256`).
    pub fn es256(kid: &str) -> anyhow::Result<Key> {
        Key::ec(
            kid,
            Algorithm::ES256,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "P-256",
        )
    }

    /// A fresh ECDSA P-384 key (`ES384`).
    pub fn es384(kid: &str) -> anyhow::Result<Key> {
        Key::ec(
            kid,
            Algorithm::ES384,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            "P-384",
        )
    }

    /// A fresh Ed25519 key (`EdDSA`).
    pub fn eddsa(kid: &str) -> anyhow::Result<Key> {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).context("generating Ed25519")?;
        Ok(Key {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pair.serialized_der()),
            public: Public::Ed {
                x: pair.public_key_raw().to_vec(),
            },
            spki_der: Some(pair.subject_public_key_info()),
        })
    }

    /// The process's RSA key of slot 0 (`RS256`), generated on first use.
    pub fn rs256(kid: &str) -> anyhow::Result<Key> {
        Key::rs256_slot(kid, 0)
    }

    /// The process's RSA key of `slot` (`0..RSA_SLOTS`), generated on first use: distinct slots
    /// are distinct keys, the same slot under two kids is the same key.
    pub fn rs256_slot(kid: &str, slot: usize) -> anyhow::Result<Key> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::EncodePublicKey;
        use rsa::traits::PublicKeyParts;
        let private = rsa_key(slot)?;
        let der = private
            .to_pkcs1_der()
            .context("encoding the RSA key as PKCS#1")?;
        let public = private.to_public_key();
        let spki = public
            .to_public_key_der()
            .context("encoding the RSA public key")?;
        Ok(Key {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            public: Public::Rsa {
                n: public.n_bytes().into_vec(),
                e: public.e_bytes().into_vec(),
            },
            spki_der: Some(spki.as_bytes().to_vec()),
        })
    }

    /// An HMAC key (`HS256`) with this secret (not empty).
    pub fn hs256(kid: &str, secret: &[u8]) -> anyhow::Result<Key> {
        Ok(Key {
            kid: kid.to_owned(),
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret).context("HS256 secret")?,
            public: Public::Oct { k: secret.to_vec() },
            spki_der: None,
        })
    }

    fn ec(
        kid: &str,
        alg: Algorithm,
        rcgen_alg: &'static rcgen::SignatureAlgorithm,
        crv: &'static str,
    ) -> anyhow::Result<Key> {
        let pair = KeyPair::generate_for(rcgen_alg).with_context(|| format!("generating {crv}"))?;
        // Uncompressed SEC1 point: 0x04 || x || y, both coordinates of equal length.
        let point = pair.public_key_raw();
        let coords = point
            .strip_prefix(&[0x04])
            .filter(|c| !c.is_empty() && c.len() % 2 == 0)
            .with_context(|| format!("{crv} public key is not an uncompressed point"))?;
        let (x, y) = coords.split_at(coords.len() / 2);
        Ok(Key {
            kid: kid.to_owned(),
            alg,
            encoding: EncodingKey::from_ec_der(pair.serialized_der()),
            public: Public::Ec {
                crv,
                x: x.to_vec(),
                y: y.to_vec(),
            },
            spki_der: Some(pair.subject_public_key_info()),
        })
    }

    /// The key id put in the tokens' header and the JWK.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The signing algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The header [`Key::sign`] uses: `{"typ":"JWT","alg":..,"kid":..}`. Change fields and
    /// pass it to [`Key::sign_with_header`].
    pub fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header
    }

    /// A token for `claims` with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        self.sign_with_header(&self.header(), claims)
    }

    /// A token whose header has `kid` instead of this key's (`None`: no `kid` at all).
    pub fn sign_with_kid(&self, claims: &Value, kid: Option<&str>) -> anyhow::Result<String> {
        let mut header = self.header();
        header.kid = kid.map(str::to_owned);
        self.sign_with_header(&header, claims)
    }

    /// A token with exactly this header. `header.alg` must be of this key's family
    /// (jsonwebtoken refuses to sign otherwise; use the free functions for lies about `alg`).
    pub fn sign_with_header(&self, header: &Header, claims: &Value) -> anyhow::Result<String> {
        jsonwebtoken::encode(header, claims, &self.encoding)
            .with_context(|| format!("signing a {:?} token with key {}", header.alg, self.kid))
    }

    /// The public JWK: `kty` and the key members, plus `kid`, `alg` and `"use": "sig"`.
    /// For HS256 it holds the secret (`kty: oct`, `k`).
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.public {
            Public::Ec { crv, x, y } => {
                json!({"kty": "EC", "crv": crv, "x": b64url(x), "y": b64url(y)})
            }
            Public::Ed { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(x)}),
            Public::Rsa { n, e } => json!({"kty": "RSA", "n": b64url(n), "e": b64url(e)}),
            Public::Oct { k } => json!({"kty": "oct", "k": b64url(k)}),
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(alg_name(self.alg));
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public key as SubjectPublicKeyInfo DER (asymmetric keys only).
    pub fn public_der(&self) -> anyhow::Result<Vec<u8>> {
        self.spki_der
            .clone()
            .with_context(|| format!("key {} ({:?}) has no public key", self.kid, self.alg))
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`, LF line ends, trailing newline):
    /// the secret a key-confusion attacker feeds to [`hs256_token_with_secret`].
    pub fn public_pem(&self) -> anyhow::Result<String> {
        let der = self.public_der()?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        Ok(pem)
    }
}

/// The JOSE name of an algorithm (`"ES256"`).
pub fn alg_name(alg: Algorithm) -> String {
    match serde_json::to_value(alg) {
        Ok(Value::String(s)) => s,
        _ => format!("{alg:?}"),
    }
}

/// `{"keys": [jwk, ...]}` for these keys, in order.
pub fn jwks_json(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// `b64url(header) . b64url(claims) . b64url(signature)` from raw JSON text: for headers no
/// serializer would write (duplicate members, odd spacing).
pub fn raw_token(header_json: &str, claims_json: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header_json.as_bytes()),
        b64url(claims_json.as_bytes()),
        b64url(signature)
    )
}

/// An unsigned token: this header (pass `{"alg": "none"}` or a variant such as `"None"`)
/// and claims, and an empty signature (the token ends with `.`).
pub fn unsigned_token(header: &Value, claims: &Value) -> String {
    raw_token(&header.to_string(), &claims.to_string(), &[])
}

/// An HS256 token whose HMAC secret is `secret`, e.g. an RSA key's [`Key::public_pem`] or
/// [`Key::public_der`] for the RS256 → HS256 key-confusion attack. `kid`: the header's key id.
pub fn hs256_token_with_secret(
    secret: &[u8],
    kid: Option<&str>,
    claims: &Value,
) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_secret(secret).context("HS256 secret")?;
    jsonwebtoken::encode(&header, claims, &key).context("signing an HS256 token")
}

/// Splits a compact JWS into its three parts.
fn parts(token: &str) -> anyhow::Result<(&str, &str, &str)> {
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) => Ok((h, p, s)),
        _ => anyhow::bail!("not a compact JWS (three dot-separated parts): {token:?}"),
    }
}

/// The same header and signature over new claims: a token whose signature no longer matches.
pub fn tamper_payload(token: &str, new_claims: &Value) -> anyhow::Result<String> {
    let (header, _, signature) = parts(token)?;
    Ok(format!(
        "{header}.{}.{signature}",
        b64url(new_claims.to_string().as_bytes())
    ))
}

/// The same header and claims with one bit of the signature flipped (in the decoded bytes, so
/// the change cannot vanish into base64 padding bits).
pub fn tamper_signature(token: &str) -> anyhow::Result<String> {
    let (header, payload, signature) = parts(token)?;
    let mut sig = URL_SAFE_NO_PAD
        .decode(signature)
        .context("signature is not base64url")?;
    let first = sig.first_mut().context("token has an empty signature")?;
    *first ^= 0x01;
    Ok(format!("{header}.{payload}.{}", b64url(&sig)))
}

/// The RSA private key of `slot`, generated once per process (a failure is kept too, so it
/// is not retried by every test).
fn rsa_key(slot: usize) -> anyhow::Result<Arc<rsa::PrivateKey>> {
    static KEYS: [OnceLock<Result<Arc<rsa::PrivateKey>, String>>; RSA_SLOTS] =
        [const { OnceLock::new() }; RSA_SLOTS];
    let cell = KEYS
        .get(slot)
        .with_context(|| format!("RSA slot {slot} out of range (0..{RSA_SLOTS})"))?;
    cell.get_or_init(|| generate_rsa().map(Arc::new))
        .clone()
        .map_err(|e| anyhow::anyhow!("generating RSA key {slot}: {e}"))
}

fn generate_rsa() -> Result<rsa::PrivateKey, String> {
    use rsa::Generate;
    rsa::PrivateKey::try_generate().map_err(|e| e.to_string())
}
