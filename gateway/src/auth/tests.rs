//! The auth stage: credentials read from a request, the order of a route's authenticators,
//! roles, and the RFC 6750 answers.

use super::*;
use crate::auth::jwks::test_keys::{write_jwks, TestKey};
use crate::auth::jwks::JwksSource;
use crate::auth::jwt::JwtConfig;
use crate::clock::Clock;
use jsonwebtoken::Algorithm;
use serde_json::json;
use sha2::Digest as _;

const NOW: u64 = 1_800_000_000;

fn request(authorization: &[&str]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/q", None).unwrap();
    for a in authorization {
        req.append_header("authorization", *a).unwrap();
    }
    req
}

fn rule(any_of: &[&str], roles: &[&str]) -> RouteAuth {
    RouteAuth {
        any_of: any_of.iter().map(|s| s.to_string()).collect(),
        roles: roles.iter().map(|s| s.to_string()).collect(),
    }
}

/// A JWT authenticator "services" over an HS256 key in a temp JWKS file, and an mTLS one
/// "devices" reading SAN URIs and granting `writer`.
fn authenticators(dir: &std::path::Path, key: &TestKey) -> Authenticators {
    let jwks = write_jwks(dir, &[key]);
    let config = JwtConfig::new(JwksSource::File(jwks), vec![Algorithm::HS256]);
    let verifier = Arc::new(JwtVerifier::load("services", config).unwrap());
    let mut by_name = BTreeMap::new();
    by_name.insert("services".to_string(), Checker::Jwt(verifier));
    by_name.insert(
        "devices".to_string(),
        Checker::Mtls {
            source: IdentitySource::SanUri,
            roles: vec!["writer".into()],
        },
    );
    Authenticators { by_name }
}

fn token(key: &TestKey, roles: &[&str]) -> String {
    key.sign(&json!({ "sub": "svc-1", "roles": roles, "exp": NOW + 300 }))
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn only_one_bearer_authorization_counts_as_a_token() {
    let req = request(&["Bearer abc"]);
    assert_eq!(credentials(&req, None).bearer, Ok(Some("abc")));
    let req = request(&["bearer   abc  "]);
    assert_eq!(
        credentials(&req, None).bearer,
        Ok(Some("abc")),
        "scheme case-insensitive"
    );
    let req = request(&["Basic dXNlcjpwdw=="]);
    assert_eq!(
        credentials(&req, None).bearer,
        Ok(None),
        "another scheme is no token"
    );
    let req = request(&[]);
    assert_eq!(credentials(&req, None).bearer, Ok(None));
    let req = request(&["Bearer a", "Bearer b"]);
    assert!(
        credentials(&req, None).bearer.is_err(),
        "two headers are refused"
    );
    let req = request(&["Bearer "]);
    assert!(credentials(&req, None).bearer.is_err());
}

#[test]
fn answers_follow_rfc_6750() {
    let missing = AuthError::Missing {
        schemes: vec![Scheme::Bearer],
    };
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.challenges(), ["Bearer realm=\"gateway\""]);
    let invalid = AuthError::Invalid {
        description: "token expired",
        scheme: Scheme::Bearer,
    };
    assert_eq!(invalid.status(), 401);
    assert_eq!(
        invalid.challenges(),
        ["Bearer realm=\"gateway\", error=\"invalid_token\", error_description=\"token expired\""]
    );
    let forbidden = AuthError::Forbidden {
        required: vec!["writer".into(), "admin".into()],
    };
    assert_eq!(forbidden.status(), 403);
    let h = &forbidden.challenges()[0];
    assert!(
        h.ends_with("error=\"insufficient_scope\", scope=\"writer admin\""),
        "{h}"
    );
}

#[test]
fn a_valid_token_is_the_identity_and_every_required_role_must_be_held() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::hmac("k1", Algorithm::HS256, &[7u8; 32]);
    let auths = authenticators(dir.path(), &key);
    let t = token(&key, &["reader", "writer"]);
    let req = request(&[&format!("Bearer {t}")]);
    let now = crate::clock::SystemClock.now();
    let id = run(check(
        &rule(&["services"], &["reader"]),
        &auths,
        credentials(&req, None),
        NOW,
        now,
    ))
    .unwrap();
    assert_eq!(id.subject, "svc-1");
    assert_eq!(id.method, AuthMethod::Jwt);
    let denied = run(check(
        &rule(&["services"], &["reader", "admin"]),
        &auths,
        credentials(&req, None),
        NOW,
        now,
    ));
    assert_eq!(
        denied,
        Err(AuthError::Forbidden {
            required: vec!["reader".into(), "admin".into()]
        })
    );
}

#[test]
fn no_credentials_is_missing_and_a_bad_token_is_invalid_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::hmac("k1", Algorithm::HS256, &[7u8; 32]);
    let auths = authenticators(dir.path(), &key);
    let now = crate::clock::SystemClock.now();
    let r = rule(&["services"], &[]);
    let none = request(&[]);
    assert_eq!(
        run(check(&r, &auths, credentials(&none, None), NOW, now)),
        Err(AuthError::Missing {
            schemes: vec![Scheme::Bearer]
        })
    );
    let expired = key.sign(&json!({ "sub": "svc-1", "exp": NOW - 3600 }));
    let req = request(&[&format!("Bearer {expired}")]);
    assert_eq!(
        run(check(&r, &auths, credentials(&req, None), NOW, now)),
        Err(AuthError::Invalid {
            description: "token expired",
            scheme: Scheme::Bearer
        })
    );
}

#[test]
fn authenticators_are_tried_in_order_and_a_certificate_can_stand_in_for_a_bad_token() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::hmac("k1", Algorithm::HS256, &[7u8; 32]);
    let auths = authenticators(dir.path(), &key);
    let now = crate::clock::SystemClock.now();
    let peer = PeerCert {
        san_uris: vec!["spiffe://bar/device/1".into()],
        ..PeerCert::default()
    };
    let bad = request(&["Bearer not.a.token"]);
    let id = run(check(
        &rule(&["services", "devices"], &["writer"]),
        &auths,
        credentials(&bad, Some(&peer)),
        NOW,
        now,
    ))
    .unwrap();
    assert_eq!(id.subject, "spiffe://bar/device/1");
    assert_eq!(id.method, AuthMethod::Mtls);
    assert_eq!(id.roles, vec!["writer".to_string()]);
    // Without the certificate the bad token is the answer.
    let r = run(check(
        &rule(&["services", "devices"], &[]),
        &auths,
        credentials(&bad, None),
        NOW,
        now,
    ));
    assert!(matches!(r, Err(AuthError::Invalid { .. })), "{r:?}");
}

#[test]
fn a_client_cannot_send_identity_headers_of_its_own() {
    let mut req = request(&[]);
    req.insert_header("X-Gateway-Identity", "admin").unwrap();
    req.insert_header("x-gateway-tenant", "other").unwrap();
    req.insert_header("X-Gateway-Auth", "mtls").unwrap();
    strip_client_headers(&mut req);
    for h in GATEWAY_HEADERS {
        assert!(req.headers.get(h).is_none(), "{h} left");
    }
}

#[test]
fn an_unchanged_authenticator_keeps_its_verifier_across_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::hmac("k1", Algorithm::HS256, &[7u8; 32]);
    let jwks = write_jwks(dir.path(), &[&key]);
    let text = format!(
        "authenticators:\n  services:\n    jwt: {{ jwks_file: {}, algorithms: [HS256] }}\npools:\n  p:\n    backends: [{{ address: 127.0.0.1:1 }}]\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n    auth: {{ any_of: [services] }}\n",
        jwks.display()
    );
    let policy = crate::config::parse_policy(&text, std::path::Path::new("p.yaml")).unwrap();
    let registry = AuthRegistry::default();
    let first = registry.build(&policy).unwrap();
    let second = registry.build(&policy).unwrap();
    let (Some(Checker::Jwt(a)), Some(Checker::Jwt(b))) =
        (first.get("services"), second.get("services"))
    else {
        panic!("jwt checkers");
    };
    assert!(Arc::ptr_eq(a, b), "same verifier, same cache");
    std::fs::remove_file(&jwks).unwrap();
    let broken = text.replace("algorithms: [HS256]", "algorithms: [HS384]");
    let policy = crate::config::parse_policy(&broken, std::path::Path::new("p.yaml")).unwrap();
    let e = registry.build(&policy).unwrap_err().to_string();
    assert!(e.starts_with("p.yaml:3:"), "{e}");
    assert!(
        e.contains("authenticators.services.jwt: cannot load the key set"),
        "{e}"
    );
}

/// "services" (JWT) and "keys" (API keys, header X-API-Key, the key "k-1" for "dev-1").
fn with_api_keys(dir: &std::path::Path, key: &TestKey) -> Authenticators {
    let mut auths = authenticators(dir, key);
    let file = dir.join("keys.yaml");
    let digest: String = sha2::Sha256::digest(b"k-1")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &file,
        format!("keys:\n  - sha256: {digest}\n    identity: dev-1\n    tenant: t1\n    roles: [writer]\n"),
    )
    .unwrap();
    let config = crate::config::api_keys::ApiKeysConfig {
        file,
        header: Some(http::HeaderName::from_static("x-api-key")),
    };
    let store = ApiKeyStore::load(
        "keys",
        config,
        Arc::new(tokio::sync::Semaphore::new(1)),
        Arc::default(),
    )
    .unwrap();
    auths
        .by_name
        .insert("keys".to_string(), Checker::ApiKeys(Arc::new(store)));
    auths
}

#[test]
fn without_credentials_every_scheme_of_the_rule_is_challenged_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::hmac("k1", Algorithm::HS256, &[7u8; 32]);
    let auths = with_api_keys(dir.path(), &key);
    let now = crate::clock::SystemClock.now();
    let none = request(&[]);
    let r = run(check(
        &rule(&["devices", "services", "keys", "services"], &[]),
        &auths,
        credentials(&none, None),
        NOW,
        now,
    ));
    let Err(e) = r else { panic!("{r:?}") };
    assert_eq!(
        e.challenges(),
        [
            "Bearer realm=\"gateway\"",
            "ApiKey realm=\"gateway\", header=\"x-api-key\"",
            "Token realm=\"gateway\"",
            "Basic realm=\"gateway\", charset=\"UTF-8\"",
        ]
    );
}

#[test]
fn an_api_key_is_an_identity_and_a_wrong_one_is_refused_in_its_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::hmac("k1", Algorithm::HS256, &[7u8; 32]);
    let auths = with_api_keys(dir.path(), &key);
    let now = crate::clock::SystemClock.now();
    let r = rule(&["services", "keys"], &["writer"]);
    let ok = request(&["Token k-1"]);
    let id = run(check(&r, &auths, credentials(&ok, None), NOW, now)).unwrap();
    assert_eq!(
        (id.subject.as_str(), id.method),
        ("dev-1", AuthMethod::ApiKey)
    );
    assert_eq!(id.tenant.as_deref(), Some("t1"));
    let wrong = request(&["Token k-2"]);
    assert_eq!(
        run(check(&r, &auths, credentials(&wrong, None), NOW, now)),
        Err(AuthError::Invalid {
            description: api_keys::UNKNOWN_KEY,
            scheme: Scheme::Token
        })
    );
    let mut wrong_query = RequestHeader::build("GET", b"/q?u=x&p=k-2", None).unwrap();
    let r2 = run(check(&r, &auths, credentials(&wrong_query, None), NOW, now));
    let Err(e) = r2 else { panic!("{r2:?}") };
    assert_eq!(
        e.challenges(),
        ["Basic realm=\"gateway\", charset=\"UTF-8\""]
    );
    assert_eq!(e.message(), "invalid credentials: unknown api key");
    // Accepted by its key in the query, the request goes on without u and p.
    wrong_query.set_raw_path(b"/q?db=a&u=x&p=k-1&q=1").unwrap();
    let id = run(authenticate(&mut wrong_query, None, &r, &auths, NOW, now)).unwrap();
    assert_eq!(id.subject, "dev-1");
    assert_eq!(wrong_query.raw_path(), b"/q?db=a&q=1");
}
