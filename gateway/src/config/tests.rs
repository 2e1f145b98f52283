//! Configuration tests: valid files compile to the expected policy; every kind of mistake
//! is named with its file, line, column and field.

use super::*;
use std::path::Path;

const POLICY: &str = "\
pools:
  tsdb:
    algorithm: round_robin
    backends:
      - { address: 127.0.0.1:8086, weight: 1 }
      - { address: 127.0.0.1:8087, weight: 3 }
    health_check: { path: /ping, interval: 1s, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 3 }
routes:
  - name: any
    match: { path_prefix: / }
    pool: tsdb
  - name: write
    match: { path_prefix: /write, methods: [POST] }
    pool: tsdb
    timeouts: { connect: 1s, request: 10s }
    retries: { attempts: 2 }
  - name: ping
    match: { path: /ping }
    pool: tsdb
";

fn file() -> &'static Path {
    Path::new("policies/tsdb.yaml")
}

#[test]
fn a_valid_policy_compiles_with_defaults_filled_in() {
    let p = parse_policy(POLICY, file()).unwrap();
    let pool = &p.pools["tsdb"];
    assert_eq!(pool.backends.len(), 2);
    assert_eq!(pool.backends[1].weight.get(), 3);
    assert_eq!(pool.health_check.unhealthy_threshold.get(), 3);
    let write = p.routes.iter().find(|r| r.name == "write").unwrap();
    assert_eq!(write.attempts.get(), 2);
    assert_eq!(write.request_timeout, std::time::Duration::from_secs(10));
    let any = p.routes.iter().find(|r| r.name == "any").unwrap();
    assert_eq!(
        any.request_timeout,
        std::time::Duration::from_secs(30),
        "the default"
    );
}

#[test]
fn routes_match_most_specific_first_whatever_their_order_in_the_file() {
    let p = parse_policy(POLICY, file()).unwrap();
    let names: Vec<&str> = p.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["ping", "write", "any"]);
    assert_eq!(
        p.route(None, "/write", "POST").map(|r| r.name.as_str()),
        Some("write")
    );
    assert_eq!(
        p.route(None, "/write", "GET").map(|r| r.name.as_str()),
        Some("any")
    );
    assert_eq!(
        p.route(None, "/ping", "GET").map(|r| r.name.as_str()),
        Some("ping")
    );
}

#[test]
fn an_unknown_key_is_named_with_its_line_and_column() {
    let text = POLICY.replace("retries: { attempts: 2 }", "retrys: { attempts: 2 }");
    let err = parse_policy(&text, file()).unwrap_err();
    let e = &err.0[0];
    assert_eq!((e.line, e.column), (16, 5), "{err}");
    assert!(e.message.contains("retrys"), "{err}");
    assert!(
        err.to_string().starts_with("policies/tsdb.yaml:16:5: "),
        "{err}"
    );
}

#[test]
fn a_route_to_a_missing_pool_names_the_route_field_and_the_known_pools() {
    let text = POLICY.replace(
        "    pool: tsdb\n    timeouts",
        "    pool: tsbd\n    timeouts",
    );
    let err = parse_policy(&text, file()).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(
        err.to_string(),
        "policies/tsdb.yaml:14:11: routes[1].pool: no pool named \"tsbd\" (pools: tsdb)"
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let text = POLICY
        .replace("127.0.0.1:8087", "localhost")
        .replace("interval: 1s", "interval: 1sec")
        .replace("methods: [POST]", "methods: [POTS]");
    let err = parse_policy(&text, file()).unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "pools.tsdb.backends[1].address",
            "pools.tsdb.health_check.interval",
            "routes[1].match.methods[0]",
        ],
        "{err}"
    );
}

#[test]
fn a_bootstrap_file_resolves_the_policies_next_to_it() {
    let b = parse_bootstrap(
        "listeners:\n  - { name: public, address: 127.0.0.1:8080 }\nadmin: { address: 127.0.0.1:9090 }\npolicies: policies/\nthreads: 2\n",
        Path::new("config/gateway.yaml"),
    )
    .unwrap();
    assert_eq!(b.policies, Path::new("config/policies/"));
    assert_eq!(b.threads, 2);
    let err = parse_bootstrap(
        "listeners:\n  - { name: public, address: nowhere }\nadmin: { address: 127.0.0.1:9090 }\npolicies: p\n",
        Path::new("g.yaml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "g.yaml:2:30: listeners[0].address: \"nowhere\" is not an ip:port address"
    );
}

#[test]
fn policies_in_several_files_merge_and_a_pool_defined_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "pools:\n  tsdb:\n    backends:\n      - { address: 127.0.0.1:9 }\n",
    )
    .unwrap();
    let err = load_policy(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("b.yaml:4:7: pools.tsdb: "),
        "{err}"
    );
    assert!(err.to_string().contains("already defined in"), "{err}");
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    assert_eq!(load_policy(dir.path()).unwrap().routes.len(), 3);
}

#[test]
fn http2_defaults_to_on_for_tls_and_off_for_plaintext_and_shutdown_has_defaults() {
    let b = parse_bootstrap(
        "listeners:\n  - { name: plain, address: 127.0.0.1:8080 }\n  - { name: h2c, address: 127.0.0.1:8081, http2: true }\n  - { name: tls, address: 127.0.0.1:8443, tls: { cert: c.pem, key: k.pem } }\n  - { name: tls1, address: 127.0.0.1:8444, tls: { cert: c.pem, key: k.pem }, http2: false }\nadmin: { address: 127.0.0.1:9090 }\npolicies: p\n",
        Path::new("config/gateway.yaml"),
    )
    .unwrap();
    let h2: Vec<bool> = b.listeners.iter().map(|l| l.http2).collect();
    assert_eq!(h2, [false, true, true, false]);
    assert_eq!(
        b.listeners[2].tls.as_ref().map(|t| t.cert.clone()),
        Some(PathBuf::from("config/c.pem")),
        "TLS files are relative to the bootstrap file"
    );
    assert_eq!(b.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    assert!(b
        .upgrade_socket
        .to_string_lossy()
        .ends_with("gateway-upgrade-8080.sock"));
}

#[test]
fn a_bad_drain_timeout_and_a_listener_named_twice_are_both_named() {
    let err = parse_bootstrap(
        "listeners:\n  - { name: a, address: 127.0.0.1:8080 }\n  - { name: a, address: 127.0.0.1:8081 }\nadmin: { address: 127.0.0.1:9090 }\npolicies: p\nshutdown: { drain_timeout: 5 }\n",
        Path::new("g.yaml"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 2, "{text}");
    assert!(
        text.contains("g.yaml:6:28: shutdown.drain_timeout: duration \"5\" needs a unit"),
        "{text}"
    );
    assert!(
        text.contains("g.yaml:3:13: listeners[1].name: listener \"a\" is defined twice"),
        "{text}"
    );
}
