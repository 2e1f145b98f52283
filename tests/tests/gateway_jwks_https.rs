//! Identity providers over https, end to end: the real gateway fetches its JWKS from a TLS
//! server on loopback whose certificate a generated CA signed (trusted through the `jwt`
//! block's `ca`), follows a key rotation there, finds the key set by OpenID discovery, and
//! refuses a server of another CA (at start, in `gateway check`, and when the `ca` file is
//! replaced while it runs).

// The helpers below set up test fixtures: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use tests::gateway::{GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::{request, Response};
use tests::jwks_server::JwksServer;
use tests::jwt::{self, Key};
use tests::pki::Ca;
use tests::upstream::FakeUpstream;
use tests::wait::eventually;

const AUD: &str = "gateway";

/// Two CAs, a certificate of the first for `localhost` and `127.0.0.1`, and `ca.pem`, the
/// file the gateway is told to trust (a copy of the first CA).
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    other: Ca,
    server: tests::pki::Issued,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "idp-ca").unwrap();
        let other = Ca::new(dir.path(), "other-ca").unwrap();
        let server = ca
            .issue_server(dir.path(), "idp", &["localhost", "127.0.0.1"])
            .unwrap();
        let pki = Pki {
            dir,
            ca,
            other,
            server,
        };
        pki.trust(&pki.ca);
        pki
    }

    /// The file the `jwt` block names as its `ca`.
    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Makes `ca.pem` hold `ca`'s certificate (written whole, then renamed into place).
    fn trust(&self, ca: &Ca) {
        let tmp = self.dir.path().join("ca.pem.tmp");
        std::fs::copy(&ca.cert, &tmp).unwrap();
        std::fs::rename(&tmp, self.ca_file()).unwrap();
    }
}

fn claims(iss: &str, sub: &str) -> Value {
    let mut c = jwt::claims(iss, AUD, sub, 300);
    c["roles"] = json!(["reader"]);
    c
}

/// The outside check's form: `jwt: { jwks_url: https://..., ca: ..., algorithms: [ES256],
/// issuer: ..., audience: ... }`, and one route `/q` behind it.
fn policy(source: &str, ca: &Path, iss: &str, refresh: &str, up: &FakeUpstream) -> String {
    format!(
        "authenticators:
  sso:
    jwt: {{ {source}, ca: {}, algorithms: [ES256], issuer: \"{iss}\", audience: {AUD}, refresh: {refresh} }}
pools:
  up:
    backends:
      - {{ address: {} }}
    {QUIET_HEALTH_CHECK}
routes:
  - name: query
    match: {{ path_prefix: /q }}
    pool: up
    auth: {{ any_of: [sso], roles: [reader] }}
",
        ca.display(),
        up.addr
    )
}

fn get(gw: &GatewayProcess, token: &str) -> Response {
    request(
        "GET",
        &format!("{}/q/echo", gw.url()),
        &[("authorization", &format!("Bearer {token}"))],
        None,
    )
    .unwrap()
}

const ISS: &str = "https://idp.test";

#[test]
fn a_token_is_verified_against_an_https_jwks_and_a_rotation_there_is_followed() {
    let pki = Pki::new();
    let up = FakeUpstream::new().start().unwrap();
    let a = Key::es256("key-a").unwrap();
    let b = Key::es256("key-b").unwrap();
    let server = JwksServer::start_tls(jwt::jwks_json(&[&a]), &pki.server).unwrap();
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    let gw = GatewayProcess::start(&policy(
        &format!("jwks_url: {}", server.url()),
        &pki.ca_file(),
        ISS,
        "1h",
        &up,
    ))
    .unwrap();

    let ok = get(&gw, &a.sign(&claims(ISS, "svc-a")).unwrap());
    assert_eq!(ok.status, 200, "{} {}", ok.body, gw.log());
    let seen: Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(seen["headers"]["x-gateway-identity"], "svc-a", "{seen}");

    // The provider rotates: B is published and signs at once, A is retired. The unknown
    // kid makes the gateway fetch the set again over https.
    server.set_body(jwt::jwks_json(&[&a, &b]));
    let rotated = get(&gw, &b.sign(&claims(ISS, "svc-b")).unwrap());
    assert_eq!(rotated.status, 200, "{} {}", rotated.body, gw.log());
    server.set_body(jwt::jwks_json(&[&b]));
    assert_eq!(
        get(&gw, &b.sign(&claims(ISS, "svc-b")).unwrap()).status,
        200
    );
    let fetches = server.requests();
    assert!((2..=3).contains(&fetches), "{fetches} fetches");

    // A forged key id is not worth another fetch within 10 s.
    let c = Key::es256("key-c").unwrap();
    let forged = get(&gw, &c.sign(&claims(ISS, "svc-c")).unwrap());
    assert_eq!(forged.status, 401);
    assert_eq!(
        forged.header("www-authenticate"),
        Some("Bearer realm=\"gateway\", error=\"invalid_token\", error_description=\"unknown key id\"")
    );
    assert_eq!(server.requests(), fetches, "rate-limited refetch");
}

#[test]
fn the_key_set_is_found_by_openid_discovery_from_the_issuer() {
    let pki = Pki::new();
    let up = FakeUpstream::new().start().unwrap();
    let a = Key::es256("key-a").unwrap();
    let b = Key::es256("key-b").unwrap();
    let server = JwksServer::start_tls(jwt::jwks_json(&[&a]), &pki.server).unwrap();
    let issuer = server.base_url();
    let start = || {
        GatewayProcess::start(&policy(
            "discovery: true",
            &pki.ca_file(),
            &issuer,
            "1h",
            &up,
        ))
    };
    // No document yet, then one of another issuer: each refuses the start, saying why.
    let e = format!("{:#}", start().expect_err("no discovery document"));
    assert!(
        e.contains(&format!(
            "openid discovery {issuer}/.well-known/openid-configuration: status 404"
        )),
        "{e}"
    );
    server.set_discovery(Some(server.discovery_document("https://elsewhere.test")));
    let e = format!("{:#}", start().expect_err("another issuer's document"));
    assert!(
        e.contains("the document names issuer \"https://elsewhere.test\""),
        "{e}"
    );

    server.set_discovery(Some(server.discovery_document(&issuer)));
    let gw = start().unwrap();
    let ok = get(&gw, &a.sign(&claims(&issuer, "svc-a")).unwrap());
    assert_eq!(ok.status, 200, "{} {}", ok.body, gw.log());
    assert!(
        gw.log().contains("openid discovery: key set location"),
        "{}",
        gw.log()
    );
    // Rotation through discovery: the document is read again, then the set.
    server.set_body(jwt::jwks_json(&[&a, &b]));
    let rotated = get(&gw, &b.sign(&claims(&issuer, "svc-b")).unwrap());
    assert_eq!(rotated.status, 200, "{} {}", rotated.body, gw.log());
    // A token of another issuer is refused as before.
    let other = get(&gw, &b.sign(&claims("https://evil.test", "svc-b")).unwrap());
    assert_eq!(other.status, 401);
}

/// `gateway check` of a bootstrap file whose policy is `policy`.
fn check(dir: &Path, policy: &str) -> (i32, String) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/policy.yaml"), policy).unwrap();
    let cfg = dir.join("gateway.yaml");
    std::fs::write(
        &cfg,
        "listeners:\n  - { name: public, address: 127.0.0.1:8080 }\nadmin: { address: 127.0.0.1:9090 }\npolicies: policies/\n",
    )
    .unwrap();
    let out = Command::new(tests::process::gateway_bin().unwrap())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_jwks_server_of_another_ca_is_refused_by_check_and_at_start() {
    let pki = Pki::new();
    let up = FakeUpstream::new().start().unwrap();
    let a = Key::es256("key-a").unwrap();
    let server = JwksServer::start_tls(jwt::jwks_json(&[&a]), &pki.server).unwrap();
    pki.trust(&pki.other);
    let text = policy(
        &format!("jwks_url: {}", server.url()),
        &pki.ca_file(),
        ISS,
        "1h",
        &up,
    );
    let work = tempfile::tempdir().unwrap();
    let (code, out) = check(work.path(), &text);
    assert_eq!(code, 1, "{out}");
    let line = out.lines().next().unwrap_or_default();
    assert!(
        line.contains("policies/policy.yaml:3:5: authenticators.sso.jwt: cannot load the key set: fetching jwks https://127.0.0.1:"),
        "{out}"
    );
    assert!(line.contains("UnknownIssuer"), "{out}");
    assert!(
        line.contains("not signed by a trusted CA: check the authenticator's ca"),
        "{out}"
    );

    let started = GatewayProcess::start(&text);
    let e = format!("{:#}", started.expect_err("the gateway must not start"));
    assert!(e.contains("UnknownIssuer"), "{e}");

    // Nothing was ever served to a client that did not trust the server.
    assert_eq!(server.requests(), 0);

    // With the right CA the same configuration passes.
    pki.trust(&pki.ca);
    let (code, out) = check(work.path(), &text);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_ca_file_replaced_while_running_applies_at_the_next_refresh() {
    let pki = Pki::new();
    let up = FakeUpstream::new().start().unwrap();
    let a = Key::es256("key-a").unwrap();
    let b = Key::es256("key-b").unwrap();
    let server = JwksServer::start_tls(jwt::jwks_json(&[&a]), &pki.server).unwrap();
    // Refreshed every second, so each step is seen without an unknown kid.
    let gw = GatewayProcess::start(&policy(
        &format!("jwks_url: {}", server.url()),
        &pki.ca_file(),
        ISS,
        "1s",
        &up,
    ))
    .unwrap();
    let token_a = a.sign(&claims(ISS, "svc-a")).unwrap();
    let token_b = b.sign(&claims(ISS, "svc-b")).unwrap();
    assert_eq!(get(&gw, &token_a).status, 200);

    // The ca file now names another CA, and the provider moves to key B.
    pki.trust(&pki.other);
    server.set_body(jwt::jwks_json(&[&b]));
    eventually("the gateway to log the refused server", |last| {
        let log = gw.log();
        *last = log.lines().last().unwrap_or_default().to_owned();
        Ok((log.contains("jwks refresh failed") && log.contains("UnknownIssuer")).then_some(()))
    })
    .unwrap();
    // The keys in force stay: A still passes, B is unknown.
    assert_eq!(get(&gw, &token_a).status, 200);
    let refused = get(&gw, &token_b);
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(
        refused.json()["error"],
        "invalid credentials: unknown key id",
        "{}",
        refused.body
    );

    // The right CA again: the next refresh fetches B.
    pki.trust(&pki.ca);
    eventually("B to be accepted", |last| {
        let r = get(&gw, &token_b);
        *last = format!("{} {}", r.status, r.body);
        Ok((r.status == 200).then_some(()))
    })
    .unwrap();
    assert!(gw.log().contains("ca file changed"), "{}", gw.log());
}
