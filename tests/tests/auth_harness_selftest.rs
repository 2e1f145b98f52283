//! Self-tests of the authentication harness: `tests::pki`, `tests::jwt`, `tests::jwks_server`.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use tests::jwks_server::JwksServer;
use tests::jwt::{self, Key};
use tests::pki::{self, Ca, ClientId};

const ISS: &str = "https://issuer.test";
const AUD: &str = "api";

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.set_issuer(&[ISS]);
    v.set_audience(&[AUD]);
    v
}

/// Decodes `token` with the key parsed back from `key.jwk()`, as a JWKS consumer would.
fn verify_with_own_jwk(key: &Key, token: &str) -> jsonwebtoken::errors::Result<Value> {
    let jwk: Jwk = serde_json::from_value(key.jwk()).expect("the JWK parses as RFC 7517");
    let decoding = DecodingKey::from_jwk(&jwk)?;
    jsonwebtoken::decode::<Value>(token, &decoding, &validation(key.alg())).map(|d| d.claims)
}

fn error_kind(r: jsonwebtoken::errors::Result<Value>) -> ErrorKind {
    r.expect_err("the token must not verify").into_kind()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Ca) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.der())
        .expect("the CA certificate is a valid anchor");
    Arc::new(roots)
}

fn client_verifier(ca: &Ca, crl: Option<&std::path::Path>) -> Arc<dyn ClientCertVerifier> {
    let builder = WebPkiClientVerifier::builder_with_provider(roots(ca), provider());
    let builder = match crl {
        Some(path) => builder
            .with_crls([pki::read_crl(path).expect("the CRL is PEM")])
            .enforce_revocation_expiration(),
        None => builder,
    };
    builder.build().expect("client verifier")
}

fn verify_client(
    verifier: &dyn ClientCertVerifier,
    cert: &CertificateDer<'_>,
) -> Result<(), rustls::Error> {
    verifier
        .verify_client_cert(cert, &[], UnixTime::now())
        .map(|_| ())
}

fn verify_server(ca: &Ca, cert: &CertificateDer<'_>, name: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .expect("server verifier");
    let name = ServerName::try_from(name.to_owned()).expect("a server name");
    verifier
        .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn cert_error(r: Result<(), rustls::Error>) -> CertificateError {
    match r {
        Err(rustls::Error::InvalidCertificate(e)) => e,
        other => panic!("expected an invalid-certificate error, got {other:?}"),
    }
}

// === jwt ===

#[test]
fn tokens_of_each_ec_okp_and_hmac_key_verify_against_their_own_jwk() {
    let keys = [
        Key::es256("es256-1").unwrap(),
        Key::es384("es384-1").unwrap(),
        Key::eddsa("ed-1").unwrap(),
        Key::hs256("hs-1", b"a shared secret of thirty-two bytes!").unwrap(),
    ];
    for key in &keys {
        let token = key.sign(&jwt::claims(ISS, AUD, "alice", 300)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (key.alg(), Some(key.kid()))
        );
        let claims = verify_with_own_jwk(key, &token)
            .unwrap_or_else(|e| panic!("{:?} token does not verify: {e}", key.alg()));
        assert_eq!(claims["sub"], "alice");
    }
}

#[test]
fn jwks_have_the_rfc_7517_members_of_each_key_type() {
    let es256 = Key::es256("a").unwrap().jwk();
    assert_eq!(
        (&es256["kty"], &es256["crv"], &es256["alg"]),
        (&json!("EC"), &json!("P-256"), &json!("ES256"))
    );
    // 32-byte coordinates: 43 base64url characters, no padding.
    assert_eq!(es256["x"].as_str().map(str::len), Some(43));
    assert_eq!(es256["y"].as_str().map(str::len), Some(43));
    let es384 = Key::es384("b").unwrap().jwk();
    assert_eq!(
        (&es384["crv"], es384["x"].as_str().map(str::len)),
        (&json!("P-384"), Some(64))
    );
    let ed = Key::eddsa("c").unwrap().jwk();
    assert_eq!(
        (&ed["kty"], &ed["crv"], ed["x"].as_str().map(str::len)),
        (&json!("OKP"), &json!("Ed25519"), Some(43))
    );
    let hs = Key::hs256("d", b"secret").unwrap().jwk();
    assert_eq!(
        (&hs["kty"], &hs["k"], &hs["use"]),
        (&json!("oct"), &json!("c2VjcmV0"), &json!("sig"))
    );
    for jwk in [&es256, &es384, &ed, &hs] {
        let text = jwk.to_string();
        assert!(!text.contains('='), "padding in {text}");
    }
    let set: Value = serde_json::from_str(&jwt::jwks_json(&[
        &Key::es256("x").unwrap(),
        &Key::eddsa("y").unwrap(),
    ]))
    .unwrap();
    let kids: Vec<&str> = set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, ["x", "y"]);
}

#[test]
fn rs256_tokens_verify_against_their_jwk_and_slots_are_distinct_keys() {
    let key = Key::rs256("rsa-1").unwrap();
    let jwk = key.jwk();
    assert_eq!(
        (&jwk["kty"], &jwk["e"], &jwk["alg"]),
        (&json!("RSA"), &json!("AQAB"), &json!("RS256"))
    );
    let n = jwk["n"].as_str().unwrap();
    assert_eq!(
        n.len(),
        (jwt::RSA_BITS / 8 * 4).div_ceil(3),
        "modulus of {} bits: {n}",
        jwt::RSA_BITS
    );
    let token = key.sign(&jwt::claims(ISS, AUD, "bob", 300)).unwrap();
    assert_eq!(verify_with_own_jwk(&key, &token).unwrap()["sub"], "bob");

    // Same slot under another kid: the same key, so the same modulus.
    let again = Key::rs256("rsa-again").unwrap();
    assert_eq!(again.jwk()["n"], jwk["n"]);
    let other = Key::rs256_slot("rsa-2", 1).unwrap();
    assert_ne!(other.jwk()["n"], jwk["n"]);
    assert_eq!(
        error_kind(verify_with_own_jwk(&other, &token)),
        ErrorKind::InvalidSignature
    );
    assert!(Key::rs256_slot("nope", jwt::RSA_SLOTS).is_err());

    // Key confusion: HS256 keyed with the RSA public key PEM. The token is a valid HMAC over
    // that secret, and an RS256 verifier must refuse it.
    let pem = key.public_pem().unwrap();
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
            && pem.ends_with("-----END PUBLIC KEY-----\n")
    );
    let confused = jwt::hs256_token_with_secret(
        pem.as_bytes(),
        Some("rsa-1"),
        &jwt::claims(ISS, AUD, "mallory", 300),
    )
    .unwrap();
    let by_secret = jsonwebtoken::decode::<Value>(
        &confused,
        &DecodingKey::from_secret(pem.as_bytes()).unwrap(),
        &validation(Algorithm::HS256),
    );
    assert_eq!(by_secret.unwrap().claims["sub"], "mallory");
    assert_eq!(
        error_kind(verify_with_own_jwk(&key, &confused)),
        ErrorKind::InvalidAlgorithm
    );
}

#[test]
fn sign_with_kid_overrides_or_removes_the_kid() {
    let key = Key::es256("real").unwrap();
    let claims = jwt::claims(ISS, AUD, "alice", 300);
    let other = key.sign_with_kid(&claims, Some("other")).unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&other).unwrap().kid.as_deref(),
        Some("other")
    );
    let none = key.sign_with_kid(&claims, None).unwrap();
    assert_eq!(jsonwebtoken::decode_header(&none).unwrap().kid, None);
    // The signature is still this key's.
    verify_with_own_jwk(&key, &none).unwrap();
}

#[test]
fn forged_tokens_are_refused_by_an_honest_verifier() {
    let key = Key::es256("k").unwrap();
    let token = key.sign(&jwt::claims(ISS, AUD, "alice", 300)).unwrap();

    let unsigned = jwt::unsigned_token(
        &json!({"alg": "none", "kid": "k"}),
        &jwt::claims(ISS, AUD, "admin", 300),
    );
    assert!(
        unsigned.ends_with('.') && unsigned.matches('.').count() == 2,
        "{unsigned}"
    );
    assert!(verify_with_own_jwk(&key, &unsigned).is_err());

    let tampered = jwt::tamper_payload(&token, &jwt::claims(ISS, AUD, "admin", 300)).unwrap();
    assert_eq!(tampered.split('.').next(), token.split('.').next());
    assert_eq!(tampered.rsplit('.').next(), token.rsplit('.').next());
    assert_eq!(
        error_kind(verify_with_own_jwk(&key, &tampered)),
        ErrorKind::InvalidSignature
    );

    let bad_sig = jwt::tamper_signature(&token).unwrap();
    assert_ne!(bad_sig, token);
    assert_eq!(
        error_kind(verify_with_own_jwk(&key, &bad_sig)),
        ErrorKind::InvalidSignature
    );

    assert!(
        jwt::tamper_signature(&unsigned).is_err(),
        "nothing to flip in an empty signature"
    );
    assert!(jwt::tamper_payload("only.two", &json!({})).is_err());
    let raw = jwt::raw_token(r#"{"alg":"ES256","alg":"none"}"#, "{}", b"");
    assert_eq!(
        raw.split('.').next(),
        Some(jwt::b64url(br#"{"alg":"ES256","alg":"none"}"#).as_str())
    );
}

#[test]
fn expired_claims_are_refused() {
    let key = Key::eddsa("k").unwrap();
    let mut claims = jwt::claims(ISS, AUD, "alice", 300);
    claims["exp"] = json!(jwt::unix_now() - 3600);
    let token = key.sign(&claims).unwrap();
    assert_eq!(
        error_kind(verify_with_own_jwk(&key, &token)),
        ErrorKind::ExpiredSignature
    );
}

// === pki ===

#[test]
fn server_certificate_verifies_for_its_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca").unwrap();
    assert!(dir.path().join("ca.pem").exists() && dir.path().join("ca.key").exists());
    let server = ca
        .issue_server(dir.path(), "server", &["localhost", "127.0.0.1"])
        .unwrap();
    assert_eq!(
        (
            server.cert.file_name().unwrap(),
            server.key.file_name().unwrap()
        ),
        ("server.pem".as_ref(), "server.key".as_ref())
    );
    let der = server.der().unwrap();
    verify_server(&ca, &der, "localhost").unwrap();
    verify_server(&ca, &der, "127.0.0.1").unwrap();
    assert!(matches!(
        cert_error(verify_server(&ca, &der, "example.com")),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
    ));
    // ServerAuth only: not usable as a client certificate.
    assert!(matches!(
        cert_error(verify_client(&*client_verifier(&ca, None), &der)),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }
    ));
}

#[test]
fn client_certificates_carry_their_identity_and_verify_against_their_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca").unwrap();
    let verifier = client_verifier(&ca, None);
    let cases = [
        (
            "uri",
            ClientId::SanUri("spiffe://bar/device/1"),
            Some("URI(spiffe://bar/device/1)"),
            "uri",
        ),
        (
            "dns",
            ClientId::SanDns("device.bar"),
            Some("DNSName(device.bar)"),
            "dns",
        ),
        ("cn", ClientId::Cn("device-7"), None, "device-7"),
    ];
    let mut serials = Vec::new();
    for (name, id, san, cn) in cases {
        let issued = ca.issue_client(dir.path(), name, id).unwrap();
        let der = issued.der().unwrap();
        verify_client(&*verifier, &der).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans: Vec<String> = match parsed.subject_alternative_name().unwrap() {
            Some(ext) => ext
                .value
                .general_names
                .iter()
                .map(|g| g.to_string())
                .collect(),
            None => Vec::new(),
        };
        assert_eq!(sans, san.into_iter().collect::<Vec<_>>(), "{name}");
        let cns: Vec<&str> = parsed
            .subject()
            .iter_common_name()
            .filter_map(|c| c.as_str().ok())
            .collect();
        assert_eq!(cns, [cn], "{name}");
        let serial = issued.serial.to_be_bytes();
        let serial = &serial[serial.iter().position(|b| *b != 0).unwrap()..];
        assert_eq!(parsed.raw_serial(), serial, "{name}");
        let eku = parsed
            .extended_key_usage()
            .unwrap()
            .expect("an EKU extension")
            .value;
        assert!(eku.client_auth && !eku.server_auth, "{name}: {eku:?}");
        // ClientAuth only: not usable as a server certificate.
        assert!(verify_server(&ca, &der, "localhost").is_err(), "{name}");
        serials.push(issued.serial);
    }
    serials.dedup();
    assert_eq!(serials.len(), 3, "serials are unique: {serials:?}");
}

#[test]
fn client_certificate_of_another_ca_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca").unwrap();
    let other = Ca::new(dir.path(), "other-ca").unwrap();
    let stranger = other
        .issue_client(
            dir.path(),
            "stranger",
            ClientId::SanUri("spiffe://bar/device/1"),
        )
        .unwrap();
    assert_eq!(
        cert_error(verify_client(
            &*client_verifier(&ca, None),
            &stranger.der().unwrap()
        )),
        CertificateError::UnknownIssuer
    );
}

#[test]
fn expired_client_certificate_does_not_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca").unwrap();
    let old = ca
        .issue_expired_client(dir.path(), "old", ClientId::Cn("old"))
        .unwrap();
    assert!(matches!(
        cert_error(verify_client(
            &*client_verifier(&ca, None),
            &old.der().unwrap()
        )),
        CertificateError::Expired | CertificateError::ExpiredContext { .. }
    ));
}

#[test]
fn crl_revokes_exactly_the_listed_serials() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca").unwrap();
    let revoked = ca
        .issue_client(
            dir.path(),
            "revoked",
            ClientId::SanUri("spiffe://bar/device/1"),
        )
        .unwrap();
    let kept = ca
        .issue_client(
            dir.path(),
            "kept",
            ClientId::SanUri("spiffe://bar/device/2"),
        )
        .unwrap();
    let crl = ca.write_crl(dir.path(), "ca", &[revoked.serial]).unwrap();
    assert_eq!(crl.file_name().unwrap(), "ca.crl.pem");
    // `enforce_revocation_expiration`: a CRL past its next update would fail everything.
    let verifier = client_verifier(&ca, Some(&crl));
    assert_eq!(
        cert_error(verify_client(&*verifier, &revoked.der().unwrap())),
        CertificateError::Revoked
    );
    verify_client(&*verifier, &kept.der().unwrap()).unwrap();

    // An empty CRL revokes nothing.
    let empty = ca.write_crl(dir.path(), "empty", &[]).unwrap();
    verify_client(
        &*client_verifier(&ca, Some(&empty)),
        &revoked.der().unwrap(),
    )
    .unwrap();
}

// === jwks_server ===

#[test]
fn jwks_server_serves_swaps_its_body_and_counts_requests() {
    let jwks = JwksServer::start(r#"{"keys":[]}"#).unwrap();
    assert_eq!(jwks.url(), format!("http://{}/jwks.json", jwks.addr));
    let get = |url: &str| tests::http::request("GET", url, &[], None).unwrap();

    let r = get(&jwks.url());
    assert_eq!(
        (r.status, r.body.as_str(), r.header("content-type")),
        (200, r#"{"keys":[]}"#, Some("application/json"))
    );
    assert_eq!(jwks.requests(), 1);

    let key = Key::es256("k1").unwrap();
    jwks.set_body(jwt::jwks_json(&[&key]));
    let r = get(&format!("{}?fresh=1", jwks.url()));
    assert_eq!(r.json()["keys"][0]["kid"], "k1");
    assert_eq!(jwks.requests(), 2);

    jwks.set_status(503);
    jwks.set_headers(&[("cache-control", "max-age=1")]);
    let r = get(&jwks.url());
    assert_eq!(
        (r.status, r.header("cache-control")),
        (503, Some("max-age=1"))
    );
    assert_eq!(get(&format!("http://{}/other", jwks.addr)).status, 404);
    assert_eq!(jwks.requests(), 4);
}

#[test]
fn jwks_server_keeps_connections_alive_and_drop_closes_them() {
    let jwks = JwksServer::start("{}").unwrap();
    let mut conn = std::net::TcpStream::connect(jwks.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = b"GET /jwks.json HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut seen = Vec::new();
    for _ in 0..2 {
        conn.write_all(request).unwrap();
        // Read until this answer's body ("{}") arrived; bounded by the read timeout and count.
        for _ in 0..100 {
            let mut chunk = [0u8; 1024];
            let n = conn.read(&mut chunk).unwrap();
            assert!(
                n > 0,
                "connection closed early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&chunk[..n]);
            if seen.ends_with(b"{}") {
                break;
            }
        }
        seen.clear();
    }
    assert_eq!(jwks.requests(), 2, "two requests on one connection");

    // The idle keep-alive connection does not hold up the drop, and is closed by it.
    let start = tests::clock::now();
    drop(jwks);
    let took = tests::clock::now().duration_since(start);
    assert!(
        took < tests::jwks_server::DROP_PATIENCE,
        "drop took {took:?}"
    );
    let mut rest = Vec::new();
    assert!(
        matches!(conn.read_to_end(&mut rest), Ok(0) | Err(_)),
        "got {rest:?}"
    );
}
