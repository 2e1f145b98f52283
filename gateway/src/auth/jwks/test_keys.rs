//! Signing keys generated inside the tests (none are committed), their JWKs, and tokens.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One 2048-bit RSA key per test binary: generation takes seconds in a debug build.
pub(crate) fn rsa_key() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
        rsa::PrivateKey::new(&mut rng, 2048).expect("generate RSA key")
    })
}

/// A private key with its public JWK.
pub(crate) struct TestKey {
    pub(crate) kid: String,
    /// The algorithm [`TestKey::sign`] uses.
    pub(crate) alg: Algorithm,
    pub(crate) encoding: EncodingKey,
    pub(crate) jwk: Value,
}

impl TestKey {
    /// An HMAC secret; its JWK has no `alg`, so it allows every HS algorithm its length fits.
    pub(crate) fn hmac(kid: &str, alg: Algorithm, secret: &[u8]) -> TestKey {
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding: EncodingKey::from_secret(secret).expect("HMAC key"),
            jwk: json!({"kty": "oct", "kid": kid, "k": b64(secret)}),
        }
    }

    /// The shared RSA key under `kid`; its JWK has no `alg` (RS* and PS* all allowed).
    pub(crate) fn rsa(kid: &str, alg: Algorithm) -> TestKey {
        let key = rsa_key();
        let der = key.to_pkcs1_der().expect("encode RSA key");
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "kid": kid, "use": "sig",
                "n": b64(&key.n_bytes()), "e": b64(&key.e_bytes()),
            }),
        }
    }

    pub(crate) fn ec_p256(kid: &str) -> TestKey {
        TestKey::ec(
            kid,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES256,
            "P-256",
        )
    }

    pub(crate) fn ec_p384(kid: &str) -> TestKey {
        TestKey::ec(
            kid,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::ES384,
            "P-384",
        )
    }

    fn ec(
        kid: &str,
        curve: &'static rcgen::SignatureAlgorithm,
        alg: Algorithm,
        crv: &str,
    ) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(curve).expect("generate EC key");
        // The raw public key is the uncompressed point: 0x04, x, y.
        let point = pair.public_key_raw();
        let (x, y) = point[1..].split_at((point.len() - 1) / 2);
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding: EncodingKey::from_ec_der(&pair.serialize_der()),
            jwk: json!({"kty": "EC", "kid": kid, "crv": crv, "x": b64(x), "y": b64(y)}),
        }
    }

    pub(crate) fn ed25519(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("generate Ed25519");
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(&pair.serialize_der()),
            jwk: json!({
                "kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(pair.public_key_raw()),
            }),
        }
    }

    /// A token with header `{alg, kid}` over `claims`.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.alg, claims)
    }

    /// A token signed with `alg` (which must suit the key) under this key's kid.
    pub(crate) fn sign_as(&self, alg: Algorithm, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign token")
    }

    /// A token from a raw header and raw payload, signed with this key and `alg`: for
    /// headers and payloads jsonwebtoken would not produce.
    pub(crate) fn sign_raw(&self, alg: Algorithm, header: &[u8], payload: &[u8]) -> String {
        let message = format!("{}.{}", b64(header), b64(payload));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, alg).expect("sign");
        format!("{message}.{signature}")
    }
}

/// A JWKS document of these keys' public JWKs.
pub(crate) fn jwks_json(keys: &[&TestKey]) -> Vec<u8> {
    let keys: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
    serde_json::to_vec(&json!({ "keys": keys })).expect("serialize JWKS")
}

/// Writes a JWKS file into `dir` (atomically, so a concurrent read never sees half).
pub(crate) fn write_jwks(dir: &Path, keys: &[&TestKey]) -> PathBuf {
    let path = dir.join("jwks.json");
    let tmp = dir.join("jwks.json.tmp");
    std::fs::write(&tmp, jwks_json(keys)).expect("write JWKS");
    std::fs::rename(&tmp, &path).expect("rename JWKS");
    path
}
