//! API keys end to end, with the real gateway in front of a recording upstream: a key given
//! as `Authorization: Token`, as Basic credentials, as InfluxDB 1.x `u`/`p` or in a header
//! of the operator's naming is admitted, and never reaches the backend; a wrong key is
//! answered 401 in the scheme it came in; the key file reloads when it changes (a broken one
//! keeps the keys in force); an Argon2 entry made by `gateway hash-key --argon2` works.

// The helpers below set up test fixtures: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use tests::gateway::{GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::{request, Response};
use tests::upstream::FakeUpstream;
use tests::wait::eventually;

const TELEGRAF: &str = "k-telegraf-6b1f9d";
const GRAFANA: &str = "k-grafana-0c2e77";
const ARGON: &str = "k-argon-a8b3c1";

/// `gateway hash-key [--argon2]` of `key`: the line of its key-file entry.
fn hash_key(key: &str, argon2: bool) -> String {
    tests::process::hash_api_key(key, argon2).unwrap()
}

fn entry(hashed: &str, identity: &str, tenant: &str, roles: &str) -> String {
    format!("  - {hashed}\n    identity: {identity}\n    tenant: {tenant}\n    roles: [{roles}]\n")
}

/// The key file: Telegraf (writer, tenant acme) and Grafana (reader, tenant acme) by
/// SHA-256, and an Argon2 entry (reader, tenant beta).
fn key_file() -> String {
    format!(
        "keys:\n{}{}{}",
        entry(&hash_key(TELEGRAF, false), "telegraf", "acme", "writer"),
        entry(&hash_key(GRAFANA, false), "grafana", "acme", "reader"),
        entry(&hash_key(ARGON, true), "argon-user", "beta", "reader"),
    )
}

/// Writes `text` whole and renames it into place, as a deployment tool would.
fn install(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Routes `/write` (role writer), `/query` (any key) and `/limited` (any key, 3 requests a
/// minute per tenant) behind `keys`, whose file is `file` and header `X-API-Key`.
fn policy(file: &Path, up: &FakeUpstream) -> String {
    format!(
        "authenticators:
  keys:
    api_keys: {{ file: {}, header: X-API-Key }}
rate_limits:
  per-tenant:
    key: [tenant]
    rate: 3/m
    burst: 3
pools:
  up:
    backends:
      - {{ address: {} }}
    {QUIET_HEALTH_CHECK}
routes:
  - name: write
    match: {{ path_prefix: /write }}
    pool: up
    auth: {{ any_of: [keys], roles: [writer] }}
  - name: limited
    match: {{ path_prefix: /limited }}
    pool: up
    auth: {{ any_of: [keys] }}
    rate_limit: [per-tenant]
  - name: query
    match: {{ path_prefix: /query }}
    pool: up
    auth: {{ any_of: [keys] }}
",
        file.display(),
        up.addr
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    file: PathBuf,
    up: FakeUpstream,
    gw: GatewayProcess,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api-keys.yaml");
    install(&file, &key_file());
    let up = FakeUpstream::new().start().unwrap();
    let gw = GatewayProcess::start(&policy(&file, &up)).unwrap();
    Setup {
        _dir: dir,
        file,
        up,
        gw,
    }
}

fn call(s: &Setup, target: &str, headers: &[(&str, &str)]) -> Response {
    request("GET", &format!("{}{target}", s.gw.url()), headers, None).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A request's headers: name, value.
type Headers<'a> = Vec<(&'a str, &'a str)>;
type OwnedHeaders = Vec<(&'static str, String)>;

fn challenges(r: &Response) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn each_client_credential_is_admitted_and_none_reaches_the_backend() {
    let s = setup();
    let target =
        "/query/echo?db=telegraf&u=anyone&q=SELECT%20*%20FROM%20cpu&p=KEY&epoch=ms&u=again";
    let token = format!("Token {TELEGRAF}");
    let basic_auth = basic("whoever", TELEGRAF);
    let cases: Vec<(&str, String, Headers<'_>)> = vec![
        (
            "Token",
            target.replace("KEY", "x"),
            vec![("authorization", token.as_str())],
        ),
        (
            "Basic",
            target.replace("KEY", "x"),
            vec![("authorization", basic_auth.as_str())],
        ),
        ("u/p", target.replace("KEY", TELEGRAF), vec![]),
        (
            "header",
            target.replace("KEY", "x"),
            vec![("x-api-key", TELEGRAF)],
        ),
    ];
    for (how, target, headers) in cases {
        let r = call(&s, &target, &headers);
        assert_eq!(r.status, 200, "{how}: {} {}", r.body, s.gw.log());
        let seen = s.up.last_request().unwrap();
        // Everything else of the query arrives byte for byte, in order.
        assert_eq!(
            seen.path, "/query/echo?db=telegraf&q=SELECT%20*%20FROM%20cpu&epoch=ms",
            "{how}"
        );
        assert_eq!(seen.header("authorization"), None, "{how}");
        assert_eq!(seen.header("x-api-key"), None, "{how}");
        assert_eq!(seen.header("x-gateway-identity"), Some("telegraf"), "{how}");
        assert_eq!(seen.header("x-gateway-tenant"), Some("acme"), "{how}");
        assert_eq!(seen.header("x-gateway-auth"), Some("api_key"), "{how}");
        for (_, v) in &seen.headers {
            assert!(
                !v.contains(TELEGRAF),
                "{how}: the key reached the backend: {seen:?}"
            );
        }
    }
    // The Argon2 entry, as Basic credentials (Grafana's data source sends these).
    let r = call(
        &s,
        "/query/echo?q=1",
        &[("authorization", &basic("grafana", ARGON))],
    );
    assert_eq!(r.status, 200, "{} {}", r.body, s.gw.log());
    assert_eq!(
        s.up.last_request().unwrap().header("x-gateway-identity"),
        Some("argon-user")
    );
    // Once checked, it is remembered: a second call costs no Argon2 run.
    let r = call(
        &s,
        "/query/echo?q=1",
        &[("authorization", &format!("Token {ARGON}"))],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_wrong_key_is_refused_in_the_scheme_it_came_in_and_no_key_gets_every_challenge() {
    let s = setup();
    let cases: Vec<(&str, String, OwnedHeaders, &str)> = vec![
        (
            "Token",
            "/query?q=1".into(),
            vec![("authorization", "Token wrong".into())],
            "Token realm=\"gateway\", error=\"invalid_token\", error_description=\"unknown api key\"",
        ),
        (
            "Basic",
            "/query?q=1".into(),
            vec![("authorization", basic("telegraf", "wrong"))],
            "Basic realm=\"gateway\", charset=\"UTF-8\"",
        ),
        (
            "u/p",
            "/query?q=1&u=telegraf&p=wrong".into(),
            vec![],
            "Basic realm=\"gateway\", charset=\"UTF-8\"",
        ),
        (
            "header",
            "/query?q=1".into(),
            vec![("x-api-key", "wrong".into())],
            "ApiKey realm=\"gateway\", header=\"x-api-key\", error=\"invalid_token\", error_description=\"unknown api key\"",
        ),
    ];
    let before = s.up.requests();
    for (how, target, headers, challenge) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = call(&s, &target, &headers);
        assert_eq!(r.status, 401, "{how}: {}", r.body);
        assert_eq!(challenges(&r), [challenge], "{how}");
        assert_eq!(
            r.json()["error"],
            "invalid credentials: unknown api key",
            "{how}"
        );
    }
    // A wrong key checked against the Argon2 entry too, and still refused.
    assert_eq!(
        s.up.requests(),
        before,
        "nothing refused reached the backend"
    );

    let none = call(&s, "/query?q=1", &[]);
    assert_eq!(none.status, 401);
    assert_eq!(
        challenges(&none),
        [
            "ApiKey realm=\"gateway\", header=\"x-api-key\"",
            "Token realm=\"gateway\"",
            "Basic realm=\"gateway\", charset=\"UTF-8\"",
        ]
    );
    assert_eq!(none.json()["error"], "authentication required");

    // The roles of the file apply: Grafana reads, it does not write.
    let r = call(
        &s,
        "/write?db=a",
        &[("authorization", &format!("Token {GRAFANA}"))],
    );
    assert_eq!(r.status, 403, "{}", r.body);

    let metrics = request("GET", &format!("{}/metrics", s.gw.admin_url()), &[], None).unwrap();
    assert!(
        metrics
            .body
            .contains("gateway_api_key_checks_total{authenticator=\"keys\",result=\"unknown\"} 4"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("gateway_api_keys{authenticator=\"keys\"} 3"),
        "{}",
        metrics.body
    );
}

#[test]
fn callers_of_one_tenant_share_its_rate_limit_whatever_their_key() {
    let s = setup();
    let by = |key: &str| {
        call(
            &s,
            "/limited",
            &[("authorization", &format!("Token {key}"))],
        )
        .status
    };
    assert_eq!(
        [by(TELEGRAF), by(GRAFANA), by(TELEGRAF)],
        [200, 200, 200],
        "three for acme"
    );
    assert_eq!(by(GRAFANA), 429, "acme's fourth, by another key");
    assert_eq!(by(ARGON), 200, "tenant beta has its own bucket");
}

fn status(s: &Setup) -> Value {
    request(
        "GET",
        &format!("{}/admin/status", s.gw.admin_url()),
        &[],
        None,
    )
    .unwrap()
    .json()
}

#[test]
fn the_key_file_reloads_when_it_changes_and_a_broken_one_keeps_the_keys_in_force() {
    let s = setup();
    let token = |key: &str| format!("Token {key}");
    assert_eq!(
        call(&s, "/query?q=1", &[("authorization", &token(TELEGRAF))]).status,
        200
    );
    const NEW: &str = "k-new-77aa01";
    // Telegraf's key is revoked, a new one issued.
    install(
        &s.file,
        &format!(
            "keys:\n{}{}",
            entry(&hash_key(GRAFANA, false), "grafana", "acme", "reader"),
            entry(&hash_key(NEW, false), "new", "acme", "writer"),
        ),
    );
    eventually("the new key to be admitted", |last| {
        let r = call(&s, "/query?q=1", &[("authorization", &token(NEW))]);
        *last = format!("{} {}", r.status, r.body);
        Ok((r.status == 200).then_some(()))
    })
    .unwrap();
    assert_eq!(
        call(&s, "/query?q=1", &[("authorization", &token(TELEGRAF))]).status,
        401
    );

    // A file with a key in clear is refused at its line; the keys in force stay.
    install(&s.file, "keys:\n  - key: hunter2\n    identity: mallory\n");
    let e = eventually("the broken file to be reported", |last| {
        let st = status(&s);
        *last = st["authenticators"]["keys"].to_string();
        Ok(st["authenticators"]["keys"]["last_error"]
            .as_str()
            .map(str::to_owned))
    })
    .unwrap();
    assert!(
        e.contains("api-keys.yaml:2:10: keys[0].key: plain keys are not accepted"),
        "{e}"
    );
    assert!(s
        .gw
        .log()
        .contains("api key file refused, the keys in force stay"));
    assert_eq!(
        call(&s, "/query?q=1", &[("authorization", &token(NEW))]).status,
        200
    );
    assert_eq!(call(&s, "/query?q=1&p=hunter2", &[]).status, 401);
    assert_eq!(status(&s)["authenticators"]["keys"]["keys"], 2);
}

#[test]
fn gateway_check_names_a_plain_key_in_the_key_file_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    std::fs::write(
        &file,
        format!(
            "keys:\n{}  - sha256: hunter2\n    identity: b\n",
            entry(&hash_key("a", false), "a", "t", "r")
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("policies")).unwrap();
    let up = FakeUpstream::new().start().unwrap();
    std::fs::write(dir.path().join("policies/p.yaml"), policy(&file, &up)).unwrap();
    let cfg = dir.path().join("gateway.yaml");
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
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with(&format!(
            "policies/p.yaml:3:5: authenticators.keys.api_keys.file: cannot load the key file {}",
            file.display()
        )),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:6:13: keys[1].sha256: not a SHA-256 digest (64 hex digits, 7 given)",
            file.display()
        )),
        "{text}"
    );
}
