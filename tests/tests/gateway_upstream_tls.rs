//! TLS and HTTP/2 to upstreams (issue 19): a pool's `tls` (its CA, the server name, a
//! client certificate, files reloaded while serving) and `protocol` (`h2` by ALPN over TLS,
//! `h2c` by prior knowledge), against real upstreams on loopback. A refused handshake is a
//! connect failure: answered 502 (or retried on another backend), counted, and the upstream
//! never sees the request.

use std::net::SocketAddr;
use std::path::Path;
use tests::gateway::{GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::request;
use tests::http2_upstream::{Http2Upstream, Seen};
use tests::pki::{Ca, ClientId};
use tests::wait::eventually;

/// A pool `up` of `backends` with the extra pool settings `extra` (indented YAML lines),
/// and a catch-all route to it that retries a failed connect once on another backend.
fn policy(backends: &[String], extra: &str) -> String {
    let list: String = backends
        .iter()
        .map(|b| format!("      - {{ address: {b} }}\n"))
        .collect();
    format!(
        "pools:\n  up:\n    backends:\n{list}{extra}    {QUIET_HEALTH_CHECK}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    pool: up\n    timeouts: {{ connect: 2s, request: 5s }}\n    retries: {{ attempts: 2, on: [connect] }}\n"
    )
}

fn get(gw: &GatewayProcess, path: &str) -> tests::http::Response {
    request("GET", &format!("{}{path}", gw.url()), &[], None).expect("GET through the gateway")
}

fn seen_version(resp: &tests::http::Response) -> String {
    resp.json()["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `gateway_upstream_errors_total{...,kind="connect"}`, summed over backends.
fn connect_errors(gw: &GatewayProcess) -> f64 {
    let r = request("GET", &format!("{}/metrics", gw.admin_url()), &[], None).expect("metrics");
    r.body
        .lines()
        .filter(|l| {
            l.starts_with("gateway_upstream_errors_total{") && l.contains("kind=\"connect\"")
        })
        .filter_map(|l| {
            l.rsplit_once(' ')
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        })
        .sum()
}

/// What the upstream saw of the clients' requests (its health checks, `GET /ping`, apart).
fn requests(up: &Http2Upstream) -> Vec<Seen> {
    up.seen()
        .into_iter()
        .filter(|s| s.path != "/ping")
        .collect()
}

/// The gateway's health checks that reached the upstream (eventually at least `n`).
fn probes(up: &Http2Upstream, n: usize) -> Vec<Seen> {
    eventually("the health checks to arrive", |last| {
        let p: Vec<Seen> = up
            .seen()
            .into_iter()
            .filter(|s| s.path == "/ping")
            .collect();
        *last = format!("{p:?}");
        Ok((p.len() >= n).then_some(p))
    })
    .expect("health checks")
}

fn pem(p: &Path) -> String {
    p.display().to_string()
}

/// An upstream over TLS (HTTP/1.1 and HTTP/2 by ALPN) whose certificate, for `name`, a
/// fresh CA signs; the CA is what the pool's `tls.ca` names.
fn signed_upstream(dir: &Path, name: &str) -> anyhow::Result<(Ca, Http2Upstream)> {
    let ca = Ca::new(dir, "upstream-ca")?;
    let server = ca.issue_server(dir, "backend", &[name])?;
    let up = Http2Upstream::tls(&server.cert, &server.key).start()?;
    Ok((ca, up))
}

#[test]
fn a_tls_upstream_is_served_when_its_certificate_chains_to_the_pool_ca_and_names_its_ip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "upstream-ca").unwrap();
    let server = ca
        .issue_server(dir.path(), "backend", &["127.0.0.1"])
        .unwrap();
    let up = Http2Upstream::tls(&server.cert, &server.key)
        .http1_only()
        .start()
        .unwrap();
    let extra = format!("    tls: {{ ca: {} }}\n", pem(&ca.cert));
    let gw = GatewayProcess::start(&policy(&[up.addr.to_string()], &extra)).unwrap();
    let r = get(&gw, "/over/tls");
    assert_eq!(r.status, 200, "{} {}", r.body, gw.log());
    assert_eq!(seen_version(&r), "HTTP/1.1");
    assert_eq!(
        requests(&up),
        vec![Seen {
            version: "HTTP/1.1".into(),
            path: "/over/tls".into(),
            client_cert: false
        }]
    );
    // The health check goes over TLS with the pool's CA as well.
    assert_eq!(probes(&up, 1)[0].version, "HTTP/1.1");
}

#[test]
fn a_backend_given_by_name_is_verified_against_that_name() {
    let dir = tempfile::tempdir().unwrap();
    // Only the name: by IP the certificate would not match.
    let (ca, up) = signed_upstream(dir.path(), "localhost").unwrap();
    let extra = format!("    tls: {{ ca: {} }}\n", pem(&ca.cert));
    let by_name = format!("localhost:{}", up.addr.port());
    let gw = GatewayProcess::start(&policy(&[by_name], &extra)).unwrap();
    let r = get(&gw, "/by/name");
    assert_eq!(r.status, 200, "{} {}", r.body, gw.log());

    // The same certificate for the backend given by its address: the name does not match.
    let gw = GatewayProcess::start(&policy(&[up.addr.to_string()], &extra)).unwrap();
    let r = get(&gw, "/by/ip");
    assert_eq!(r.status, 502, "{}", r.body);
    // An explicit sni that the certificate does not carry is refused too; one it carries
    // is accepted whatever the address.
    let wrong = format!("    tls: {{ ca: {}, sni: db.example }}\n", pem(&ca.cert));
    let gw_wrong = GatewayProcess::start(&policy(&[up.addr.to_string()], &wrong)).unwrap();
    assert_eq!(get(&gw_wrong, "/wrong/sni").status, 502);
    let right = format!("    tls: {{ ca: {}, sni: localhost }}\n", pem(&ca.cert));
    let gw_right = GatewayProcess::start(&policy(&[up.addr.to_string()], &right)).unwrap();
    assert_eq!(get(&gw_right, "/right/sni").status, 200);
    let paths: Vec<String> = requests(&up).into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        vec!["/by/name", "/right/sni"],
        "refused tries never arrive"
    );
    assert!(
        connect_errors(&gw) >= 1.0,
        "the refused handshake is a connect error"
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused_and_the_try_goes_to_the_next_backend() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "upstream-ca").unwrap();
    let rogue_ca = Ca::new(dir.path(), "rogue-ca").unwrap();
    let good = ca.issue_server(dir.path(), "good", &["127.0.0.1"]).unwrap();
    let rogue = rogue_ca
        .issue_server(dir.path(), "rogue", &["127.0.0.1"])
        .unwrap();
    let good_up = Http2Upstream::tls(&good.cert, &good.key).start().unwrap();
    let rogue_up = Http2Upstream::tls(&rogue.cert, &rogue.key).start().unwrap();
    let extra = format!("    tls: {{ ca: {} }}\n", pem(&ca.cert));
    // Round robin over both: every other request starts at the rogue backend.
    let backends = [rogue_up.addr.to_string(), good_up.addr.to_string()];
    let gw = GatewayProcess::start(&policy(&backends, &extra)).unwrap();
    for i in 0..6 {
        let r = get(&gw, &format!("/r{i}"));
        assert_eq!(r.status, 200, "request {i}: {} {}", r.body, gw.log());
    }
    assert_eq!(requests(&good_up).len(), 6);
    assert!(
        rogue_up.seen().is_empty(),
        "not even a health check: {:?}",
        rogue_up.seen()
    );
    let refused = connect_errors(&gw);
    assert!(refused >= 3.0, "each refusal counted: {refused}");

    // Alone in its pool, the rogue backend's refusal is the client's 502.
    let gw = GatewayProcess::start(&policy(&[rogue_up.addr.to_string()], &extra)).unwrap();
    let r = get(&gw, "/alone");
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(rogue_up.seen().is_empty());
}

#[test]
fn a_backend_that_requires_a_client_certificate_gets_the_pools() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "upstream-ca").unwrap();
    let clients = Ca::new(dir.path(), "client-ca").unwrap();
    let server = ca
        .issue_server(dir.path(), "backend", &["127.0.0.1"])
        .unwrap();
    let gateway_cert = clients
        .issue_client(dir.path(), "gateway", ClientId::SanDns("gateway.internal"))
        .unwrap();
    let up = Http2Upstream::tls(&server.cert, &server.key)
        .client_ca(&clients.cert)
        .start()
        .unwrap();
    let without = format!("    tls: {{ ca: {} }}\n", pem(&ca.cert));
    let gw = GatewayProcess::start(&policy(&[up.addr.to_string()], &without)).unwrap();
    assert_eq!(get(&gw, "/anonymous").status, 502);
    let with = format!(
        "    tls: {{ ca: {}, client_cert: {}, client_key: {} }}\n",
        pem(&ca.cert),
        pem(&gateway_cert.cert),
        pem(&gateway_cert.key)
    );
    let gw = GatewayProcess::start(&policy(&[up.addr.to_string()], &with)).unwrap();
    let r = get(&gw, "/mtls");
    assert_eq!(r.status, 200, "{} {}", r.body, gw.log());
    assert_eq!(r.json()["client_cert"], true);
    let paths: Vec<String> = requests(&up).into_iter().map(|s| s.path).collect();
    assert_eq!(paths, vec!["/mtls"]);
    // Only the health check of the gateway with the certificate got through, with it.
    assert!(probes(&up, 1).iter().all(|p| p.client_cert));
}

#[test]
fn h2_pools_speak_http2_by_alpn_and_h2c_pools_by_prior_knowledge() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "upstream-ca").unwrap();
    let server = ca
        .issue_server(dir.path(), "backend", &["127.0.0.1"])
        .unwrap();
    let tls_up = Http2Upstream::tls(&server.cert, &server.key)
        .start()
        .unwrap();
    let plain_up = Http2Upstream::plain().start().unwrap();
    let h2 = format!("    protocol: h2\n    tls: {{ ca: {} }}\n", pem(&ca.cert));
    let tls_h1 = format!("    tls: {{ ca: {} }}\n", pem(&ca.cert));
    let cases: [(&SocketAddr, &str, &str); 4] = [
        (&tls_up.addr, h2.as_str(), "HTTP/2.0"),
        (&tls_up.addr, tls_h1.as_str(), "HTTP/1.1"),
        (&plain_up.addr, "    protocol: h2c\n", "HTTP/2.0"),
        (&plain_up.addr, "", "HTTP/1.1"),
    ];
    for (addr, extra, version) in cases {
        let gw = GatewayProcess::start(&policy(&[addr.to_string()], extra)).unwrap();
        // Several requests, so pooled HTTP/2 connections are reused too.
        for i in 0..3 {
            let r = get(&gw, &format!("/v{i}"));
            assert_eq!(r.status, 200, "{extra}: {} {}", r.body, gw.log());
            assert_eq!(seen_version(&r), version, "{extra}");
        }
    }
    // A backend that offers only HTTP/1.1 by ALPN fails an h2 pool's handshake: a gRPC
    // call never reaches a backend in HTTP/1.1.
    let h1_up = Http2Upstream::tls(&server.cert, &server.key)
        .http1_only()
        .start()
        .unwrap();
    let gw = GatewayProcess::start(&policy(&[h1_up.addr.to_string()], &h2)).unwrap();
    assert_eq!(get(&gw, "/no/h2").status, 502);
    assert!(h1_up.seen().is_empty(), "{:?}", h1_up.seen());

    let h2 = |seen: Vec<Seen>| seen.iter().filter(|s| s.version == "HTTP/2.0").count();
    assert_eq!(h2(requests(&tls_up)), 3);
    assert_eq!(h2(requests(&plain_up)), 3);
    // Each pool's health check speaks its protocol: HTTP/2 for the h2 and h2c pools.
    assert_eq!(h2(probes(&tls_up, 2)), 1);
    assert_eq!(h2(probes(&plain_up, 2)), 1);
}

#[test]
fn an_http2_client_on_the_tls_listener_reaches_an_h2_pool_in_http2_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, up) = signed_upstream(dir.path(), "127.0.0.1").unwrap();
    let extra = format!("    protocol: h2\n    tls: {{ ca: {} }}\n", pem(&ca.cert));
    let gw = GatewayProcess::builder(&policy(&[up.addr.to_string()], &extra))
        .tls()
        .start()
        .unwrap();
    let tls_addr = gw.tls_addr.unwrap();
    let client = tests::h2::tls_client(&gw.ca_path(), tests::h2::Protocol::Http2).unwrap();
    let r = client
        .post(format!(
            "https://localhost:{}/h2/both/ways",
            tls_addr.port()
        ))
        .body(vec![b'x'; 100_000])
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let seen = requests(&up);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].version, "HTTP/2.0");
    assert_eq!(seen[0].path, "/h2/both/ways");
}

/// A request body of `TOTAL` bytes whose first `FIRST` come at once and the rest only once
/// the upstream has received half of those: a gateway that buffered the body would never
/// let the read go on.
struct Gated {
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sent: usize,
}

const FIRST: usize = 1024 * 1024;
const TOTAL: usize = 8 * 1024 * 1024;

impl std::io::Read for Gated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent == FIRST {
            let received = &self.received;
            eventually("the first part of the body at the upstream", |last| {
                let n = received.load(std::sync::atomic::Ordering::Relaxed);
                *last = format!("{n} bytes");
                Ok((n >= (FIRST / 2) as u64).then_some(()))
            })
            .map_err(std::io::Error::other)?;
        }
        let end = if self.sent < FIRST { FIRST } else { TOTAL };
        let n = buf.len().min(end - self.sent).min(64 * 1024);
        buf[..n].fill(b'x');
        self.sent += n;
        Ok(n)
    }
}

#[test]
fn an_http2_request_body_streams_through_to_an_h2_upstream_as_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, up) = signed_upstream(dir.path(), "127.0.0.1").unwrap();
    let extra = format!("    protocol: h2\n    tls: {{ ca: {} }}\n", pem(&ca.cert));
    let gw = GatewayProcess::builder(&policy(&[up.addr.to_string()], &extra))
        .h2c()
        .start()
        .unwrap();
    let client = tests::h2::h2c_client().unwrap();
    let gated = Gated {
        received: up.body_counter(),
        sent: 0,
    };
    let body = reqwest::blocking::Body::sized(gated, TOTAL as u64);
    let r = client
        .post(format!("http://{}/upload", gw.h2c_addr.unwrap()))
        .header("content-type", "application/grpc")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", gw.log());
    assert_eq!(up.body_bytes(), TOTAL as u64);
    assert_eq!(requests(&up)[0].version, "HTTP/2.0");
}

#[test]
fn a_pool_ca_file_that_changes_takes_effect_without_a_restart_and_a_broken_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new(dir.path(), "old-ca").unwrap();
    let new_ca = Ca::new(dir.path(), "new-ca").unwrap();
    let server = new_ca
        .issue_server(dir.path(), "backend", &["127.0.0.1"])
        .unwrap();
    let up = Http2Upstream::tls(&server.cert, &server.key)
        .start()
        .unwrap();
    let trusted = dir.path().join("trusted").join("ca.pem");
    std::fs::create_dir_all(trusted.parent().unwrap()).unwrap();
    std::fs::copy(&old_ca.cert, &trusted).unwrap();
    let extra = format!("    tls: {{ ca: {} }}\n", pem(&trusted));
    let gw = GatewayProcess::start(&policy(&[up.addr.to_string()], &extra)).unwrap();
    assert_eq!(
        get(&gw, "/before").status,
        502,
        "the backend's CA is not trusted yet"
    );

    std::fs::copy(&new_ca.cert, &trusted).unwrap();
    eventually("the new CA to be in service", |last| {
        let r = get(&gw, "/after");
        *last = format!("{} {}", r.status, r.body);
        Ok((r.status == 200).then_some(()))
    })
    .unwrap();

    std::fs::write(&trusted, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    eventually("the broken file to be refused in the log", |_| {
        Ok(gw
            .log()
            .contains("upstream TLS reload refused")
            .then_some(()))
    })
    .unwrap();
    assert_eq!(
        get(&gw, "/still").status,
        200,
        "the old CA stays in service"
    );
}

#[test]
fn gateway_check_refuses_h2_without_tls_and_unreadable_upstream_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        "listeners:\n  - { name: public, address: 127.0.0.1:0 }\nadmin: { address: 127.0.0.1:0 }\npolicies: policies\n",
    )
    .unwrap();
    let check = |policy: &str| -> (bool, String) {
        std::fs::write(policies.join("p.yaml"), policy).unwrap();
        let out = std::process::Command::new(tests::process::gateway_bin().unwrap())
            .arg("check")
            .arg("--config")
            .arg(dir.path().join("gateway.yaml"))
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = check(&policy(&["127.0.0.1:1".into()], "    protocol: h2\n"));
    assert!(!ok);
    assert!(
        out.contains("p.yaml:5:15: pools.up.protocol: h2 is HTTP/2 over TLS"),
        "{out}"
    );
    let (ok, out) = check(&policy(
        &["127.0.0.1:1".into()],
        "    tls: { ca: missing-ca.pem }\n",
    ));
    assert!(!ok);
    assert!(out.contains("p.yaml:5:16: pools.up.tls.ca: "), "{out}");
    assert!(out.contains("missing-ca.pem"), "{out}");
}
