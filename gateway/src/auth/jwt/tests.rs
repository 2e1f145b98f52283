use super::*;
use crate::auth::jwks::test_keys::{b64, rsa_key, write_jwks, TestKey};
use crate::auth::jwks::MIN_REFETCH;
use crate::clock::{Clock, ManualClock};
use jsonwebtoken::Algorithm::*;
use rsa::pkcs8::EncodePublicKey;
use serde_json::json;

/// The wall-clock time of most tests, in seconds since the epoch.
const NOW: u64 = 1_700_000_000;

const ALL: [Algorithm; 12] = [
    HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
];

/// A verifier over a JWKS file of `keys`; the directory lives as long as the fixture.
struct Fixture {
    dir: tempfile::TempDir,
    verifier: JwtVerifier,
}

impl Fixture {
    fn new(keys: &[&TestKey], tweak: impl FnOnce(&mut JwtConfig)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = write_jwks(dir.path(), keys);
        let mut config = JwtConfig::new(JwksSource::File(path), ALL.to_vec());
        tweak(&mut config);
        let verifier = JwtVerifier::load("partners", config).unwrap();
        Fixture { dir, verifier }
    }

    /// Rewrites the JWKS file and refreshes.
    fn rotate_to(&self, keys: &[&TestKey]) {
        write_jwks(self.dir.path(), keys);
        assert!(self.verifier.jwks().refresh_now().unwrap());
    }
}

fn claims() -> serde_json::Value {
    json!({"sub": "alice", "iat": NOW, "exp": NOW + 600})
}

fn with(mut claims: serde_json::Value, patch: serde_json::Value) -> serde_json::Value {
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn alice() -> Identity {
    Identity {
        subject: "alice".to_owned(),
        tenant: None,
        roles: Vec::new(),
        claims: Vec::new(),
        method: AuthMethod::Jwt,
        authenticator: "partners".to_owned(),
    }
}

fn hs() -> TestKey {
    TestKey::hmac(
        "hs",
        HS256,
        b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    )
}

#[test]
fn every_algorithm_family_verifies() {
    let hs = hs();
    let rsa = TestKey::rsa("rsa", RS256);
    let es256 = TestKey::ec_p256("es256");
    let es384 = TestKey::ec_p384("es384");
    let ed = TestKey::ed25519("ed");
    let f = Fixture::new(&[&hs, &rsa, &es256, &es384, &ed], |_| {});
    let cases = [
        (&hs, HS256),
        (&hs, HS384),
        (&hs, HS512),
        (&rsa, RS256),
        (&rsa, RS384),
        (&rsa, RS512),
        (&rsa, PS256),
        (&rsa, PS384),
        (&rsa, PS512),
        (&es256, ES256),
        (&es384, ES384),
        (&ed, EdDSA),
    ];
    for (key, alg) in cases {
        let token = key.sign_as(alg, &claims());
        assert_eq!(
            f.verifier.verify_uncached(&token, NOW),
            Ok(alice()),
            "{alg:?}"
        );
    }
}

#[test]
fn the_identity_carries_roles_from_an_array_or_a_scope_string_and_the_tenant() {
    let key = TestKey::ec_p256("k");
    let f = Fixture::new(&[&key], |c| {
        c.roles_claim = "scope".to_owned();
        c.tenant_claim = Some("org".to_owned());
        c.identity_claim = "email".to_owned();
    });
    let base = json!({"email": "bob@example.com", "sub": "ignored", "exp": NOW + 60});

    let token = key.sign(&with(
        base.clone(),
        json!({"scope": "read  write admin", "org": "acme"}),
    ));
    let identity = f.verifier.verify(&token, NOW).unwrap();
    assert_eq!(identity.subject, "bob@example.com");
    assert_eq!(identity.roles, ["read", "write", "admin"]);
    assert_eq!(identity.tenant.as_deref(), Some("acme"));
    assert_eq!(identity.method, AuthMethod::Jwt);
    assert_eq!(identity.authenticator, "partners");

    let token = key.sign(&with(base.clone(), json!({"scope": ["ops", "read"]})));
    let identity = f.verifier.verify(&token, NOW).unwrap();
    assert_eq!(identity.roles, ["ops", "read"]);
    assert_eq!(identity.tenant, None, "no tenant claim: no tenant");

    let identity = f.verifier.verify(&key.sign(&base), NOW).unwrap();
    assert!(identity.roles.is_empty(), "no roles claim: no roles");
}

#[test]
fn the_identity_keeps_the_scalar_claims_rate_limit_keys_name_and_no_others() {
    let key = TestKey::ec_p256("k");
    let f = Fixture::new(&[&key], |c| {
        c.kept_claims = vec!["org".into(), "plan".into(), "shard".into(), "tags".into()];
    });
    let token = key.sign(&with(
        claims(),
        json!({"org": "acme", "shard": 7, "tags": ["a"], "secret": "x"}),
    ));
    let identity = f.verifier.verify(&token, NOW).unwrap();
    assert_eq!(
        identity.claims,
        [
            ("org".to_owned(), "acme".to_owned()),
            ("shard".to_owned(), "7".to_owned())
        ],
        "absent plan and the array tags are left out, as is the unnamed secret"
    );
}

#[test]
fn a_token_without_kid_uses_the_only_key_and_needs_one_when_there_are_several() {
    let key = TestKey::ed25519("only");
    let f = Fixture::new(&[&key], |_| {});
    let header = serde_json::to_vec(&json!({"alg": "EdDSA", "typ": "JWT"})).unwrap();
    let payload = serde_json::to_vec(&claims()).unwrap();
    let token = key.sign_raw(EdDSA, &header, &payload);
    assert_eq!(f.verifier.verify(&token, NOW), Ok(alice()));

    let other = TestKey::ed25519("other");
    f.rotate_to(&[&key, &other]);
    assert_eq!(f.verifier.verify(&token, NOW), Err(JwtError::MissingKid));
}

/// Every refusal, each with its own error, against one verifier allowing HS256, RS256
/// and ES256 only.
#[test]
fn each_refusal_has_its_own_error() {
    let hs = hs();
    let rsa = TestKey::rsa("rsa", RS256);
    let es = TestKey::ec_p256("es");
    let f = Fixture::new(&[&hs, &rsa, &es], |c| {
        c.algorithms = vec![HS256, RS256, ES256]
    });
    let good = hs.sign(&claims());
    assert_eq!(f.verifier.verify_uncached(&good, NOW), Ok(alice()));
    let [good_header, good_payload, good_signature]: [&str; 3] =
        good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let payload = serde_json::to_vec(&claims()).unwrap();
    let raw = |header: serde_json::Value| serde_json::to_vec(&header).unwrap();
    let hs_with_header = |header: serde_json::Value| hs.sign_raw(HS256, &raw(header), &payload);
    let unsigned = |header: serde_json::Value| format!("{}.{}.", b64(&raw(header)), b64(&payload));

    // The RSA public key as an attacker has it, used as an HMAC secret.
    let public = rsa_key().to_public_key();
    let spki_der = public.to_public_key_der().unwrap().into_vec();
    let spki_pem = public
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .unwrap()
        .into_bytes();
    let confused = |secret: &[u8]| TestKey::hmac("rsa", HS256, secret).sign(&claims());

    let forged = TestKey::ec_p256("es"); // same kid, another key
    let tampered_payload = format!(
        "{good_header}.{}.{good_signature}",
        b64(&serde_json::to_vec(&with(claims(), json!({"sub": "mallory"}))).unwrap())
    );
    let flipped = match good_signature.as_bytes()[0] {
        b'A' => format!("B{}", &good_signature[1..]),
        _ => format!("A{}", &good_signature[1..]),
    };
    let tampered_signature = format!("{good_header}.{good_payload}.{flipped}");
    let oversized = hs.sign(&with(claims(), json!({"pad": "x".repeat(8192)})));

    let cases: Vec<(&str, String, JwtError)> = vec![
        (
            "over the size limit",
            oversized,
            JwtError::TooLarge { limit: 8192 },
        ),
        (
            "empty",
            String::new(),
            JwtError::Malformed("not three dot-separated segments"),
        ),
        (
            "two segments",
            format!("{good_header}.{good_payload}"),
            JwtError::Malformed("not three dot-separated segments"),
        ),
        (
            "four segments",
            format!("{good}.x"),
            JwtError::Malformed("not three dot-separated segments"),
        ),
        (
            "header not base64url",
            format!("!!.{good_payload}.{good_signature}"),
            JwtError::Malformed("header is not base64url"),
        ),
        (
            "header with padding",
            format!("{good_header}=.{good_payload}.{good_signature}"),
            JwtError::Malformed("header is not base64url"),
        ),
        (
            "payload not base64url",
            format!("{good_header}.a+b/.{good_signature}"),
            JwtError::Malformed("payload is not base64url"),
        ),
        (
            "signature not base64url",
            format!("{good_header}.{good_payload}.***"),
            JwtError::Malformed("signature is not base64url"),
        ),
        (
            "header not JSON",
            format!("{}.{good_payload}.{good_signature}", b64(b"{\"alg\":")),
            JwtError::Malformed("header is not a JSON object with alg"),
        ),
        (
            "header without alg",
            hs_with_header(json!({"kid": "hs"})),
            JwtError::Malformed("header is not a JSON object with alg"),
        ),
        (
            "payload not JSON (validly signed)",
            hs.sign_raw(
                HS256,
                &raw(json!({"alg": "HS256", "kid": "hs"})),
                b"{\"sub\"",
            ),
            JwtError::Malformed("payload is not a JSON object"),
        ),
        (
            "payload a JSON array (validly signed)",
            hs.sign_raw(HS256, &raw(json!({"alg": "HS256", "kid": "hs"})), b"[1]"),
            JwtError::Malformed("payload is not a JSON object"),
        ),
        (
            "header member of the wrong type",
            hs_with_header(json!({"alg": "HS256", "kid": "hs", "typ": 5})),
            JwtError::Malformed("header is not a valid JOSE header"),
        ),
        (
            "unsupported crit header",
            hs_with_header(json!({"alg": "HS256", "kid": "hs", "crit": ["exp"]})),
            JwtError::Malformed("header is not supported"),
        ),
        (
            "alg none",
            unsigned(json!({"alg": "none", "kid": "hs"})),
            JwtError::AlgorithmNotAllowed,
        ),
        (
            "alg NONE",
            unsigned(json!({"alg": "NONE"})),
            JwtError::AlgorithmNotAllowed,
        ),
        (
            "alg outside the allow-list",
            hs.sign_as(HS384, &claims()),
            JwtError::AlgorithmNotAllowed,
        ),
        (
            "alg unknown",
            hs_with_header(json!({"alg": "HS1024", "kid": "hs"})),
            JwtError::AlgorithmNotAllowed,
        ),
        (
            "no kid, several keys",
            hs_with_header(json!({"alg": "HS256"})),
            JwtError::MissingKid,
        ),
        (
            "kid with ../",
            hs_with_header(json!({"alg": "HS256", "kid": "../../etc/passwd"})),
            JwtError::InvalidKid,
        ),
        (
            "kid with SQL",
            hs_with_header(json!({"alg": "HS256", "kid": "' OR 1=1 --"})),
            JwtError::InvalidKid,
        ),
        (
            "kid empty",
            hs_with_header(json!({"alg": "HS256", "kid": ""})),
            JwtError::InvalidKid,
        ),
        (
            "kid too long",
            hs_with_header(json!({"alg": "HS256", "kid": "k".repeat(129)})),
            JwtError::InvalidKid,
        ),
        (
            "kid unknown",
            hs_with_header(json!({"alg": "HS256", "kid": "nope"})),
            JwtError::UnknownKid,
        ),
        (
            "RS256 key as HS256 secret (SPKI DER)",
            confused(&spki_der),
            JwtError::KeyAlgorithmMismatch,
        ),
        (
            "RS256 key as HS256 secret (PEM)",
            confused(&spki_pem),
            JwtError::KeyAlgorithmMismatch,
        ),
        (
            "ES256 token naming the RSA key",
            es.sign_raw(ES256, &raw(json!({"alg": "ES256", "kid": "rsa"})), &payload),
            JwtError::KeyAlgorithmMismatch,
        ),
        ("tampered payload", tampered_payload, JwtError::BadSignature),
        (
            "tampered signature",
            tampered_signature,
            JwtError::BadSignature,
        ),
        (
            "signed by another key",
            forged.sign(&claims()),
            JwtError::BadSignature,
        ),
        (
            "no exp",
            hs.sign(&with(claims(), json!({"exp": null}))),
            JwtError::NoExpiry,
        ),
        (
            "exp not a number",
            hs.sign(&with(claims(), json!({"exp": "tomorrow"}))),
            JwtError::Malformed("exp is not a number"),
        ),
        (
            "nbf not a number",
            hs.sign(&with(claims(), json!({"nbf": "today"}))),
            JwtError::Malformed("nbf is not a number"),
        ),
        (
            "expired",
            hs.sign(&with(claims(), json!({"exp": NOW - 30}))),
            JwtError::Expired,
        ),
        (
            "not yet valid",
            hs.sign(&with(claims(), json!({"nbf": NOW + 31}))),
            JwtError::NotYetValid,
        ),
        (
            "no sub",
            hs.sign(&with(claims(), json!({"sub": null}))),
            JwtError::MissingIdentity {
                claim: "sub".to_owned(),
            },
        ),
        (
            "sub a number",
            hs.sign(&with(claims(), json!({"sub": 42}))),
            JwtError::MissingIdentity {
                claim: "sub".to_owned(),
            },
        ),
        (
            "sub empty",
            hs.sign(&with(claims(), json!({"sub": ""}))),
            JwtError::MissingIdentity {
                claim: "sub".to_owned(),
            },
        ),
        (
            "roles a number",
            hs.sign(&with(claims(), json!({"roles": 7}))),
            JwtError::InvalidRoles {
                claim: "roles".to_owned(),
            },
        ),
        (
            "roles with a number",
            hs.sign(&with(claims(), json!({"roles": ["a", 7]}))),
            JwtError::InvalidRoles {
                claim: "roles".to_owned(),
            },
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(
            f.verifier.verify_uncached(&token, NOW),
            Err(expected.clone()),
            "{name}"
        );
        // The cached path refuses the same way.
        assert_eq!(
            f.verifier.verify(&token, NOW),
            Err(expected),
            "{name} (cached path)"
        );
    }
}

#[test]
fn a_token_at_the_size_limit_is_read_and_one_byte_more_is_not() {
    let key = hs();
    let token = key.sign(&claims());
    let f = Fixture::new(&[&key], |c| c.max_token_bytes = token.len());
    assert_eq!(f.verifier.verify(&token, NOW), Ok(alice()));
    let f = Fixture::new(&[&key], |c| c.max_token_bytes = token.len() - 1);
    assert_eq!(
        f.verifier.verify(&token, NOW),
        Err(JwtError::TooLarge {
            limit: token.len() - 1
        })
    );
}

/// exp is exclusive: with leeway L, a token is refused from exactly exp + L on. nbf is
/// inclusive: it is accepted from exactly nbf - L on.
#[test]
fn time_boundaries_are_exact_with_and_without_leeway() {
    let key = hs();
    let exp = NOW;
    let nbf = NOW + 1000;
    for leeway in [0, 30] {
        let f = Fixture::new(&[&key], |c| c.leeway = Duration::from_secs(leeway));
        let expiring = key.sign(&with(claims(), json!({"exp": exp})));
        assert_eq!(
            f.verifier.verify_uncached(&expiring, exp + leeway - 1),
            Ok(alice()),
            "leeway {leeway}"
        );
        assert_eq!(
            f.verifier.verify_uncached(&expiring, exp + leeway),
            Err(JwtError::Expired),
            "leeway {leeway}"
        );

        let later = key.sign(&with(claims(), json!({"nbf": nbf, "exp": nbf + 600})));
        assert_eq!(
            f.verifier.verify_uncached(&later, nbf - leeway - 1),
            Err(JwtError::NotYetValid),
            "leeway {leeway}"
        );
        assert_eq!(
            f.verifier.verify_uncached(&later, nbf - leeway),
            Ok(alice()),
            "leeway {leeway}"
        );
    }
}

#[test]
fn fractional_times_are_rounded_towards_refusal() {
    let key = hs();
    let f = Fixture::new(&[&key], |c| c.leeway = Duration::ZERO);
    // exp NOW + 1.5 counts as NOW + 1, nbf NOW - 0.5 as NOW: only NOW itself is valid.
    let token = key.sign(&with(
        claims(),
        json!({"exp": NOW as f64 + 1.5, "nbf": NOW as f64 - 0.5}),
    ));
    assert_eq!(f.verifier.verify_uncached(&token, NOW), Ok(alice()));
    assert_eq!(
        f.verifier.verify_uncached(&token, NOW + 1),
        Err(JwtError::Expired)
    );
    assert_eq!(
        f.verifier.verify_uncached(&token, NOW - 1),
        Err(JwtError::NotYetValid)
    );
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let key = TestKey::ec_p256("k");
    let f = Fixture::new(&[&key], |c| {
        c.issuer = Some("https://idp.example".to_owned());
        c.audience = Some("gateway".to_owned());
    });
    let ok = with(
        claims(),
        json!({"iss": "https://idp.example", "aud": "gateway"}),
    );
    let cases = [
        ("string aud", ok.clone(), Ok(alice())),
        (
            "aud array with ours",
            with(ok.clone(), json!({"aud": ["other", "gateway"]})),
            Ok(alice()),
        ),
        (
            "wrong iss",
            with(ok.clone(), json!({"iss": "https://evil.example"})),
            Err(JwtError::WrongIssuer),
        ),
        (
            "no iss",
            with(ok.clone(), json!({"iss": null})),
            Err(JwtError::WrongIssuer),
        ),
        (
            "iss a number",
            with(ok.clone(), json!({"iss": 1})),
            Err(JwtError::WrongIssuer),
        ),
        (
            "wrong aud",
            with(ok.clone(), json!({"aud": "billing"})),
            Err(JwtError::WrongAudience),
        ),
        (
            "aud array without ours",
            with(ok.clone(), json!({"aud": ["billing", "ops"]})),
            Err(JwtError::WrongAudience),
        ),
        (
            "no aud",
            with(ok.clone(), json!({"aud": null})),
            Err(JwtError::WrongAudience),
        ),
        // Time is checked before iss and aud.
        (
            "expired and wrong iss",
            with(ok.clone(), json!({"iss": "x", "exp": NOW - 60})),
            Err(JwtError::Expired),
        ),
        (
            "no exp and no aud",
            with(ok.clone(), json!({"aud": null, "exp": null})),
            Err(JwtError::NoExpiry),
        ),
        (
            "not yet valid and wrong aud",
            with(ok.clone(), json!({"aud": "x", "nbf": NOW + 60})),
            Err(JwtError::NotYetValid),
        ),
    ];
    for (name, claims, expected) in cases {
        assert_eq!(
            f.verifier.verify_uncached(&key.sign(&claims), NOW),
            expected,
            "{name}"
        );
    }
}

#[test]
fn without_a_configured_audience_aud_is_not_checked() {
    let key = TestKey::ec_p256("k");
    let f = Fixture::new(&[&key], |_| {});
    let token = key.sign(&with(claims(), json!({"aud": "anything", "iss": "anyone"})));
    assert_eq!(f.verifier.verify(&token, NOW), Ok(alice()));
}

#[test]
fn rotation_a_then_a_and_b_then_b_accepts_each_key_while_it_is_published() {
    let a = TestKey::ec_p256("key-a");
    let b = TestKey::ec_p384("key-b");
    let token_a = a.sign(&claims());
    let token_b = b.sign(&claims());
    let f = Fixture::new(&[&a], |_| {});
    assert_eq!(f.verifier.verify(&token_a, NOW), Ok(alice()));
    assert_eq!(f.verifier.verify(&token_b, NOW), Err(JwtError::UnknownKid));

    f.rotate_to(&[&a, &b]);
    assert_eq!(f.verifier.verify(&token_a, NOW), Ok(alice()));
    assert_eq!(f.verifier.verify(&token_b, NOW), Ok(alice()));

    // token_a is cached from the previous key set; its version no longer matches.
    f.rotate_to(&[&b]);
    assert_eq!(f.verifier.verify(&token_a, NOW), Err(JwtError::UnknownKid));
    assert_eq!(f.verifier.verify(&token_b, NOW), Ok(alice()));
}

#[test]
fn an_unknown_kid_refetches_the_key_set_once_per_min_refetch() {
    let clock = ManualClock::new();
    let a = TestKey::ed25519("a");
    let b = TestKey::ed25519("b");
    let c = TestKey::ed25519("c");
    let f = Fixture::new(&[&a], |_| {});
    let jwks = f.verifier.jwks().clone();

    // B is published after the gateway loaded the set: the first token of B refetches.
    write_jwks(f.dir.path(), &[&a, &b]);
    let token_b = b.sign(&claims());
    assert_eq!(
        f.verifier.verify(&token_b, NOW),
        Err(JwtError::UnknownKid),
        "no refetch without asking"
    );
    assert_eq!(
        f.verifier.verify_with_refetch(&token_b, NOW, clock.now()),
        Ok(alice())
    );
    assert_eq!(jwks.version(), 2);

    // Within MIN_REFETCH, neither a real new key nor made-up kids cause another fetch.
    write_jwks(f.dir.path(), &[&a, &b, &c]);
    let token_c = c.sign(&claims());
    let made_up = TestKey::ed25519("made-up-1").sign(&claims());
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        f.verifier.verify_with_refetch(&made_up, NOW, clock.now()),
        Err(JwtError::UnknownKid)
    );
    clock.advance(MIN_REFETCH - Duration::from_secs(2));
    assert_eq!(
        f.verifier.verify_with_refetch(&token_c, NOW, clock.now()),
        Err(JwtError::UnknownKid),
        "t={:?}",
        clock.elapsed()
    );
    assert_eq!(jwks.version(), 2, "no fetch within MIN_REFETCH");

    clock.advance(Duration::from_secs(1));
    assert_eq!(
        f.verifier.verify_with_refetch(&token_c, NOW, clock.now()),
        Ok(alice()),
        "t={:?}",
        clock.elapsed()
    );
    assert_eq!(jwks.version(), 3);
}

#[test]
fn a_second_verification_of_a_token_is_a_cache_hit() {
    let key = TestKey::rsa("rsa", RS256);
    let f = Fixture::new(&[&key], |_| {});
    let token = key.sign(&claims());
    assert_eq!(f.verifier.cache_stats(), (0, 0));
    assert_eq!(f.verifier.verify(&token, NOW), Ok(alice()));
    assert_eq!(f.verifier.cache_stats(), (0, 1));
    assert_eq!(f.verifier.verify(&token, NOW + 1), Ok(alice()));
    assert_eq!(f.verifier.cache_stats(), (1, 1));

    // Refusals are not cached; verify_uncached leaves the counters alone.
    let bad = format!("{token}x");
    assert!(f.verifier.verify(&bad, NOW).is_err());
    assert!(f.verifier.verify(&bad, NOW).is_err());
    assert_eq!(f.verifier.cache_stats(), (1, 3));
    assert_eq!(f.verifier.verify_uncached(&token, NOW), Ok(alice()));
    assert_eq!(f.verifier.cache_stats(), (1, 3));
}

#[test]
fn a_cached_token_is_still_refused_after_its_exp() {
    let key = hs();
    let f = Fixture::new(&[&key], |c| c.leeway = Duration::from_secs(30));
    let token = key.sign(&with(claims(), json!({"exp": NOW + 10})));
    assert_eq!(f.verifier.verify(&token, NOW), Ok(alice()));
    assert_eq!(f.verifier.verify(&token, NOW + 39), Ok(alice()));
    assert_eq!(f.verifier.verify(&token, NOW + 40), Err(JwtError::Expired));
    assert_eq!(
        f.verifier.cache_stats(),
        (2, 1),
        "both later checks were cache hits"
    );
}

#[test]
fn a_cached_token_is_refused_when_time_goes_back_before_its_nbf() {
    let key = hs();
    let f = Fixture::new(&[&key], |c| c.leeway = Duration::ZERO);
    let token = key.sign(&with(claims(), json!({"nbf": NOW})));
    assert_eq!(f.verifier.verify(&token, NOW), Ok(alice()));
    assert_eq!(
        f.verifier.verify(&token, NOW - 1),
        Err(JwtError::NotYetValid)
    );
    assert_eq!(f.verifier.cache_stats(), (1, 1));
}

#[test]
fn verifiers_and_key_sets_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<JwtVerifier>();
    shared::<Jwks>();
    shared::<JwtError>();
}

#[test]
fn descriptions_are_short_lower_case_and_fit_rfc_6750() {
    let claim = || "sub".to_owned();
    let all = [
        JwtError::TooLarge { limit: 1 },
        JwtError::Malformed("x"),
        JwtError::AlgorithmNotAllowed,
        JwtError::MissingKid,
        JwtError::InvalidKid,
        JwtError::UnknownKid,
        JwtError::KeyAlgorithmMismatch,
        JwtError::BadSignature,
        JwtError::NoExpiry,
        JwtError::Expired,
        JwtError::NotYetValid,
        JwtError::WrongIssuer,
        JwtError::WrongAudience,
        JwtError::MissingIdentity { claim: claim() },
        JwtError::InvalidRoles { claim: claim() },
        JwtError::InvalidTenant { claim: claim() },
    ];
    let mut seen = std::collections::HashSet::new();
    for error in &all {
        let d = error.description();
        assert!(seen.insert(d), "{d:?} is used twice");
        assert!(d.len() <= 40, "{d:?}");
        // error_description: %x20-21 / %x23-5B / %x5D-7E, and we keep to lower case.
        assert!(
            d.bytes().all(|b| b == b' ' || b.is_ascii_lowercase()),
            "{d:?}"
        );
    }
}

#[test]
fn error_messages_never_contain_the_token() {
    let key = hs();
    let f = Fixture::new(&[&key], |_| {});
    let token = key.sign(&with(claims(), json!({"exp": NOW - 100})));
    let err = f.verifier.verify(&token, NOW).unwrap_err();
    for part in token.split('.') {
        assert!(!err.to_string().contains(part));
        assert!(!format!("{err:?}").contains(part));
    }
}
