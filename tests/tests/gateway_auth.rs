//! Authentication end to end, with the real gateway: JWT from JWKS (a file, or a server on
//! loopback rotating its keys), the attack set, mTLS with a generated PKI (foreign CA,
//! revocation by a reloaded CRL, a server certificate swapped on disk).

// The helpers below set up test fixtures: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tests::gateway::{GatewayProcess, TlsSpec, QUIET_HEALTH_CHECK};
use tests::http::{request, Response};
use tests::jwks_server::JwksServer;
use tests::jwt::{self, Key};
use tests::pki::{Ca, ClientId};
use tests::tls_client::TlsConn;
use tests::upstream::FakeUpstream;
use tests::wait::eventually;

const ISS: &str = "https://issuer.test";
const AUD: &str = "gateway";

fn claims(sub: &str, roles: &[&str]) -> Value {
    let mut c = jwt::claims(ISS, AUD, sub, 300);
    c["roles"] = json!(roles);
    c["tenant"] = json!("t1");
    c
}

/// A policy with a JWT authenticator `services` (JWKS at `jwks`, `file` or `url`), an
/// mTLS one `devices` (SAN URI, role `writer`), and routes `/q` (services, role reader),
/// `/w` (devices or services, role writer) and `/open` (no auth), all to `up`.
fn policy(
    jwks_key: &str,
    jwks: &str,
    algorithms: &str,
    refresh: &str,
    up: &FakeUpstream,
) -> String {
    format!(
        "authenticators:
  services:
    jwt:
      {jwks_key}: {jwks}
      refresh: {refresh}
      algorithms: [{algorithms}]
      issuer: {ISS}
      audience: {AUD}
      leeway: 5s
      identity_claim: sub
      roles_claim: roles
      tenant_claim: tenant
      max_token_bytes: 2048
  devices:
    mtls: {{ identity: san_uri, roles: [writer] }}
pools:
  up:
    backends:
      - {{ address: {} }}
    {QUIET_HEALTH_CHECK}
routes:
  - name: query
    match: {{ path_prefix: /q }}
    pool: up
    auth: {{ any_of: [services], roles: [reader] }}
  - name: write
    match: {{ path_prefix: /w }}
    pool: up
    auth: {{ any_of: [devices, services], roles: [writer] }}
  - name: open
    match: {{ path_prefix: /open }}
    pool: up
",
        up.addr
    )
}

fn get(gw: &GatewayProcess, path: &str, headers: &[(&str, &str)]) -> Response {
    request("GET", &format!("{}{path}", gw.url()), headers, None).expect("request")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn echo(res: &Response) -> Value {
    serde_json::from_str(&res.body).unwrap_or(Value::Null)
}

#[test]
fn tokens_are_answered_200_401_or_403_and_the_backend_learns_who_called() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::new().start().unwrap();
    let key = Key::es256("k1").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwt::jwks_json(&[&key])).unwrap();
    let gw = GatewayProcess::start(&policy(
        "jwks_file",
        &jwks.display().to_string(),
        "ES256",
        "5m",
        &up,
    ))
    .unwrap();

    let none = get(&gw, "/q/echo", &[]);
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"gateway\"")
    );
    assert!(none.json()["request_id"].is_string());

    let token = key.sign(&claims("svc-1", &["reader"])).unwrap();
    let auth = bearer(&token);
    // A client cannot make itself someone else.
    let ok = get(
        &gw,
        "/q/echo",
        &[
            ("authorization", &auth),
            ("x-gateway-identity", "admin"),
            ("x-gateway-auth", "mtls"),
        ],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let seen = echo(&ok);
    assert_eq!(seen["headers"]["x-gateway-identity"], "svc-1", "{seen}");
    assert_eq!(seen["headers"]["x-gateway-tenant"], "t1");
    assert_eq!(seen["headers"]["x-gateway-auth"], "jwt");
    assert!(
        seen["headers"]["authorization"].is_null(),
        "a verified token is not passed on: {seen}"
    );

    let wrong_role = get(&gw, "/w/echo", &[("authorization", &auth)]);
    assert_eq!(wrong_role.status, 403, "{}", wrong_role.body);
    let challenge = wrong_role.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"writer\""), "{challenge}");

    // An open route authenticates nobody, and still drops the identity headers.
    let open = get(&gw, "/open/echo", &[("x-gateway-identity", "admin")]);
    assert_eq!(open.status, 200);
    assert!(
        echo(&open)["headers"]["x-gateway-identity"].is_null(),
        "{}",
        open.body
    );
}

#[test]
fn every_token_attack_is_refused_with_401_invalid_token() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::new().start().unwrap();
    let es = Key::es256("k1").unwrap();
    let rsa = Key::rs256("r1").unwrap();
    let es384 = Key::es384("k384").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwt::jwks_json(&[&es, &rsa, &es384])).unwrap();
    // HS256 is allowed, as a careless operator might: key confusion must fail all the same.
    let gw = GatewayProcess::start(&policy(
        "jwks_file",
        &jwks.display().to_string(),
        "ES256, RS256, HS256",
        "5m",
        &up,
    ))
    .unwrap();
    let good = claims("svc-1", &["reader"]);
    let now = jwt::unix_now();
    let mut expired = good.clone();
    expired["exp"] = json!(now - 120);
    let mut future = good.clone();
    future["nbf"] = json!(now + 600);
    let mut aud = good.clone();
    aud["aud"] = json!("another");
    let mut iss = good.clone();
    iss["iss"] = json!("https://evil.test");
    let mut admin = good.clone();
    admin["roles"] = json!(["admin", "reader"]);
    let mut huge = good.clone();
    huge["padding"] = json!("x".repeat(4096));
    let valid = es.sign(&good).unwrap();
    let attacks: Vec<(&str, String)> = vec![
        (
            "alg none",
            jwt::unsigned_token(&json!({"alg": "none", "typ": "JWT", "kid": "k1"}), &good),
        ),
        (
            "algorithm outside the allow-list",
            es384.sign(&good).unwrap(),
        ),
        (
            "RS256 to HS256 key confusion",
            jwt::hs256_token_with_secret(rsa.public_pem().unwrap().as_bytes(), Some("r1"), &good)
                .unwrap(),
        ),
        ("unknown kid", es.sign_with_kid(&good, Some("k9")).unwrap()),
        (
            "kid with a path",
            es.sign_with_kid(&good, Some("../../etc/passwd")).unwrap(),
        ),
        (
            "kid with SQL",
            es.sign_with_kid(&good, Some("k1' OR '1'='1")).unwrap(),
        ),
        (
            "tampered payload",
            jwt::tamper_payload(&valid, &admin).unwrap(),
        ),
        ("tampered signature", jwt::tamper_signature(&valid).unwrap()),
        ("expired", es.sign(&expired).unwrap()),
        ("not yet valid", es.sign(&future).unwrap()),
        ("wrong audience", es.sign(&aud).unwrap()),
        ("wrong issuer", es.sign(&iss).unwrap()),
        (
            "malformed base64",
            "eyJhbGciOiJFUzI1NiJ9.%%%%.AAAA".to_string(),
        ),
        ("malformed JSON", jwt::raw_token("{\"alg\":", "{}", b"sig")),
        ("over the size limit", es.sign(&huge).unwrap()),
        (
            "another key with the same kid",
            Key::es256("k1").unwrap().sign(&good).unwrap(),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, token) in &attacks {
        let res = get(&gw, "/q", &[("authorization", &bearer(token))]);
        let h = res
            .header("www-authenticate")
            .unwrap_or_default()
            .to_string();
        if res.status != 401
            || !h.contains("error=\"invalid_token\"")
            || !h.contains("error_description=")
        {
            wrong.push(format!("{name}: {} {h:?}", res.status));
        }
    }
    let dup = get(
        &gw,
        "/q",
        &[
            ("authorization", &bearer(&valid)),
            ("authorization", &bearer(&valid)),
        ],
    );
    if dup.status != 401 {
        wrong.push(format!("duplicate Authorization headers: {}", dup.status));
    }
    assert!(
        wrong.is_empty(),
        "not refused as they should be:\n{}",
        wrong.join("\n")
    );
    // And the valid token still passes.
    assert_eq!(
        get(&gw, "/q", &[("authorization", &bearer(&valid))]).status,
        200
    );
}

#[test]
fn a_jwks_rotated_on_loopback_while_clients_send_valid_tokens_rejects_none() {
    let up = FakeUpstream::new().start().unwrap();
    let a = Key::es256("key-a").unwrap();
    let b = Key::es256("key-b").unwrap();
    let server = JwksServer::start(jwt::jwks_json(&[&a])).unwrap();
    // Scheduled refreshes far apart: the rotation must work by the unknown-kid refetch.
    let gw = GatewayProcess::start(&policy("jwks_url", &server.url(), "ES256", "1h", &up)).unwrap();
    let token = Arc::new(Mutex::new(a.sign(&claims("svc-1", &["reader"])).unwrap()));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let client = {
        let (token, stop, sent, refused) =
            (token.clone(), stop.clone(), sent.clone(), refused.clone());
        let url = format!("{}/q", gw.url());
        std::thread::spawn(move || {
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let t = token.lock().unwrap().clone();
                let res = request(
                    "GET",
                    &url,
                    &[("authorization", &format!("Bearer {t}"))],
                    None,
                );
                match res {
                    Ok(r) if r.status == 200 => {}
                    other => refused.lock().unwrap().push(format!("{other:?}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let after = |n: u64| {
        let sent = sent.clone();
        eventually("more requests", move |_| {
            Ok((sent.load(Ordering::Relaxed) >= n).then_some(()))
        })
        .unwrap();
    };
    after(50);
    // Step 1: publish A and B; the issuer starts signing with B at once.
    server.set_body(jwt::jwks_json(&[&a, &b]));
    *token.lock().unwrap() = b.sign(&claims("svc-1", &["reader"])).unwrap();
    let n = sent.load(Ordering::Relaxed);
    after(n + 100);
    // Step 2: A is retired.
    server.set_body(jwt::jwks_json(&[&b]));
    let n = sent.load(Ordering::Relaxed);
    after(n + 100);
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let refused = refused.lock().unwrap();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(3)]
    );
    // The gateway fetched the set at start and once for B's unknown kid: no hammering.
    assert!(server.requests() <= 3, "{} fetches", server.requests());
}

/// A CA, a server certificate for localhost, a device certificate and a foreign one.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: tests::pki::Issued,
    device: tests::pki::Issued,
    stranger: tests::pki::Issued,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca").unwrap();
    let server = ca
        .issue_server(dir.path(), "server", &["localhost", "127.0.0.1"])
        .unwrap();
    let device = ca
        .issue_client(
            dir.path(),
            "device1",
            ClientId::SanUri("spiffe://bar/device/1"),
        )
        .unwrap();
    let other = Ca::new(dir.path(), "other-ca").unwrap();
    let stranger = other
        .issue_client(
            dir.path(),
            "stranger",
            ClientId::SanUri("spiffe://bar/device/9"),
        )
        .unwrap();
    Pki {
        dir,
        ca,
        server,
        device,
        stranger,
    }
}

fn mtls_gateway(p: &Pki, up: &FakeUpstream, crl: Option<PathBuf>) -> GatewayProcess {
    let jwks = p.dir.path().join("jwks.json");
    std::fs::write(&jwks, jwt::jwks_json(&[&Key::es256("k1").unwrap()])).unwrap();
    GatewayProcess::builder(&policy(
        "jwks_file",
        &jwks.display().to_string(),
        "ES256",
        "5m",
        up,
    ))
    .tls_files(TlsSpec {
        cert: p.server.cert.clone(),
        key: p.server.key.clone(),
        client_ca: Some(p.ca.cert.clone()),
        client_auth: Some("required".into()),
        crl,
    })
    .start()
    .unwrap()
}

/// A request on a new TLS connection with this client certificate: the status, or the
/// error (a refused handshake shows here, under TLS 1.3 at the first read).
fn write_as(
    gw: &GatewayProcess,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> anyhow::Result<(u16, Value)> {
    let addr = gw
        .tls_addr
        .ok_or_else(|| anyhow::anyhow!("no TLS listener"))?;
    let mut conn = TlsConn::connect(addr, ca, client)?;
    let (status, _, body) = conn.request("POST", "/w/echo", b"dev,id=1 v=1")?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

#[test]
fn a_device_certificate_is_an_identity_and_a_foreign_or_missing_one_is_refused() {
    let p = pki();
    let up = FakeUpstream::new().start().unwrap();
    let gw = mtls_gateway(&p, &up, None);
    let (status, seen) = write_as(&gw, &p.ca.cert, Some((&p.device.cert, &p.device.key))).unwrap();
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["headers"]["x-gateway-identity"],
        "spiffe://bar/device/1"
    );
    assert_eq!(seen["headers"]["x-gateway-auth"], "mtls");
    assert!(seen["headers"]["x-gateway-tenant"].is_null());
    let foreign = write_as(&gw, &p.ca.cert, Some((&p.stranger.cert, &p.stranger.key)));
    assert!(foreign.is_err(), "another CA's certificate: {foreign:?}");
    let none = write_as(&gw, &p.ca.cert, None);
    assert!(none.is_err(), "no certificate: {none:?}");
    assert!(
        gw.log().contains("TLS"),
        "the reason is in the gateway's log"
    );
}

/// Replaces `to` by `from` in one step, as a deployment tool would.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn a_revoked_certificate_is_refused_once_the_crl_is_reloaded() {
    let p = pki();
    let up = FakeUpstream::new().start().unwrap();
    let crl = p.ca.write_crl(p.dir.path(), "ca", &[]).unwrap();
    let gw = mtls_gateway(&p, &up, Some(crl.clone()));
    let device = Some((p.device.cert.as_path(), p.device.key.as_path()));
    assert_eq!(write_as(&gw, &p.ca.cert, device).unwrap().0, 200);
    let revoked =
        p.ca.write_crl(p.dir.path(), "revoked", &[p.device.serial])
            .unwrap();
    install(&revoked, &crl);
    eventually("the revocation to take effect", |last| {
        let r = write_as(&gw, &p.ca.cert, device);
        *last = format!("{r:?}");
        Ok(r.is_err().then_some(()))
    })
    .expect("refused after the CRL reload");
    assert!(gw.log().contains("TLS files reloaded"), "{}", gw.log());
}

#[test]
fn a_server_certificate_swapped_on_disk_goes_to_new_connections_while_old_ones_live_on() {
    let p = pki();
    let up = FakeUpstream::new().start().unwrap();
    let gw = mtls_gateway(&p, &up, None);
    let addr = gw.tls_addr.unwrap();
    let device = Some((p.device.cert.as_path(), p.device.key.as_path()));
    let mut old = TlsConn::connect(addr, &p.ca.cert, device).unwrap();
    assert_eq!(old.request("POST", "/w", b"x").unwrap().0, 200);
    let first = old.server_cert().unwrap();
    let next =
        p.ca.issue_server(p.dir.path(), "server2", &["localhost", "127.0.0.1"])
            .unwrap();
    install(&next.key, &p.server.key);
    install(&next.cert, &p.server.cert);
    eventually("new connections to get the new certificate", |_| {
        let c = TlsConn::connect(addr, &p.ca.cert, device)?;
        Ok((c.server_cert() != Some(first.clone())).then_some(()))
    })
    .expect("the new certificate is served");
    // The connection opened before the swap is still good.
    assert_eq!(old.request("POST", "/w", b"x").unwrap().0, 200);
}
