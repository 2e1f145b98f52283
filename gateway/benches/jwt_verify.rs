//! The cost of one JWT verification by algorithm, without the verified-token cache.
//!
//! Each algorithm is timed in 5 runs of enough verifications to take about 0.2 s; the
//! table shows the median run's time per verification, plus a cache hit for comparison.
//! Run with `cargo bench -p gateway --bench jwt_verify`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gateway::auth::jwks::{Jwks, JwksSource};
use gateway::auth::jwt::{JwtConfig, JwtVerifier};
use gateway::clock::{wall_now, Clock, SystemClock};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const RUNS: usize = 5;
const RUN_TARGET: Duration = Duration::from_millis(200);

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key, its public JWK and the algorithm it signs with.
struct BenchKey {
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn keys() -> anyhow::Result<Vec<BenchKey>> {
    let secret = [7u8; 32];
    let hs = BenchKey {
        alg: Algorithm::HS256,
        encoding: EncodingKey::from_secret(&secret)?,
        jwk: json!({"kty": "oct", "kid": "HS256", "k": b64(&secret)}),
    };

    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let point = ec.public_key_raw();
    let (x, y) = point
        .get(1..)
        .context("empty EC point")?
        .split_at((point.len() - 1) / 2);
    let es = BenchKey {
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(&ec.serialize_der()),
        jwk: json!({"kty": "EC", "kid": "ES256", "crv": "P-256", "x": b64(x), "y": b64(y)}),
    };

    let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
    let rsa_key = rsa::PrivateKey::new(&mut rng, 2048)?;
    let rs = BenchKey {
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(rsa_key.to_pkcs1_der()?.as_bytes()),
        jwk: json!({
            "kty": "RSA", "kid": "RS256",
            "n": b64(&rsa_key.n_bytes()), "e": b64(&rsa_key.e_bytes()),
        }),
    };

    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let eddsa = BenchKey {
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(&ed.serialize_der()),
        jwk: json!({"kty": "OKP", "kid": "EdDSA", "crv": "Ed25519", "x": b64(ed.public_key_raw())}),
    };
    Ok(vec![hs, es, rs, eddsa])
}

/// Nanoseconds per call of `f`, median of [`RUNS`] runs.
fn time_per_call(clock: &SystemClock, mut f: impl FnMut()) -> f64 {
    // Calibrate: how many calls fill one run.
    let start = clock.now();
    let mut calls = 0u32;
    while clock.now() - start < RUN_TARGET / 10 {
        f();
        calls += 1;
    }
    let per_run = calls.saturating_mul(10).max(10);
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = clock.now();
            for _ in 0..per_run {
                f();
            }
            (clock.now() - start).as_nanos() as f64 / f64::from(per_run)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn main() -> anyhow::Result<()> {
    let clock = SystemClock;
    let now_unix = wall_now().duration_since(UNIX_EPOCH)?.as_secs();
    let keys = keys()?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("jwks.json");
    let jwks: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
    std::fs::write(&path, serde_json::to_vec(&json!({ "keys": jwks }))?)?;
    let algorithms = keys.iter().map(|k| k.alg).collect();
    let config = JwtConfig::new(JwksSource::File(path.clone()), algorithms);
    let jwks = Arc::new(Jwks::load(JwksSource::File(path), config.refresh)?);
    let verifier = JwtVerifier::new("bench", config, jwks);

    let claims = json!({
        "sub": "user-1234", "iss": "https://idp.example", "aud": "gateway",
        "roles": ["read", "write"], "iat": now_unix, "exp": now_unix + 3600,
    });

    println!("JWT verification, no cache (median of {RUNS} runs of ~{RUN_TARGET:?})");
    println!("{:<10} {:>8} {:>14}", "alg", "bytes", "us/verify");
    let mut hs_token = String::new();
    for key in &keys {
        let mut header = Header::new(key.alg);
        header.kid = Some(format!("{:?}", key.alg));
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)?;
        verifier
            .verify_uncached(&token, now_unix)
            .with_context(|| format!("{:?} token refused", key.alg))?;
        let ns = time_per_call(&clock, || {
            let _ = black_box(verifier.verify_uncached(black_box(&token), now_unix));
        });
        println!(
            "{:<10} {:>8} {:>14.2}",
            format!("{:?}", key.alg),
            token.len(),
            ns / 1000.0
        );
        if key.alg == Algorithm::HS256 {
            hs_token = token;
        }
    }

    verifier.verify(&hs_token, now_unix)?;
    let ns = time_per_call(&clock, || {
        let _ = black_box(verifier.verify(black_box(&hs_token), now_unix));
    });
    println!(
        "{:<10} {:>8} {:>14.2}",
        "cache hit",
        hs_token.len(),
        ns / 1000.0
    );
    Ok(())
}
