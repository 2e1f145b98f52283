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
    assert_eq!(write.targets[0].retries.attempts.get(), 2);
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

const LIMITS: &str = "\
rate_limits:
  per-tenant:  { key: [tenant], rate: 1000/s, burst: 2000, scope: global }
  per-device:  { key: [identity, header:x-device-id], rate: 600/m, burst: 20 }
  per-ip-anon: { key: [client_ip], rate: 5/h, on_limiter_error: fail_closed }
  per-org:     { key: [claim:org, route], rate: 1/s }
on_limiter_error: fail_open
pools:
  tsdb:
    backends:
      - { address: 127.0.0.1:8086 }
routes:
  - name: write
    match: { path_prefix: /write }
    pool: tsdb
    rate_limit: [per-tenant, per-device]
    rate_limit_cost: lines
  - name: query
    match: { path_prefix: /query }
    pool: tsdb
    rate_limit: [per-ip-anon]
    rate_limit_cost: 3
";

#[test]
fn rate_limits_compile_with_their_rates_keys_scopes_and_route_costs() {
    use crate::config::policy::{Cost, KeyPart, OnLimiterError, Scope};
    let p = parse_policy(LIMITS, file()).unwrap();
    let tenant = &p.rate_limits["per-tenant"];
    assert_eq!(tenant.scope, Scope::Global);
    assert_eq!(tenant.burst.get(), 2000);
    assert_eq!(tenant.rate.interval(), std::time::Duration::from_millis(1));
    assert_eq!(
        tenant.on_error,
        OnLimiterError::FailOpen,
        "the file's default"
    );
    let device = &p.rate_limits["per-device"];
    assert_eq!(device.scope, Scope::Local, "the default scope");
    assert_eq!(
        device.rate.interval(),
        std::time::Duration::from_millis(100)
    );
    assert_eq!(
        device.key,
        [
            KeyPart::Identity,
            KeyPart::Header(http::HeaderName::from_static("x-device-id"))
        ]
    );
    let anon = &p.rate_limits["per-ip-anon"];
    assert_eq!(anon.burst.get(), 5, "the burst defaults to the count");
    assert_eq!(anon.rate.interval(), std::time::Duration::from_secs(720));
    assert_eq!(anon.on_error, OnLimiterError::FailClosed, "overridden");
    assert_eq!(
        p.rate_limits["per-org"].key,
        [KeyPart::Claim("org".into()), KeyPart::Route]
    );
    let write = p.routes.iter().find(|r| r.name == "write").unwrap();
    assert_eq!(write.rate_limits, ["per-tenant", "per-device"]);
    assert_eq!(write.cost, Cost::Lines);
    let query = p.routes.iter().find(|r| r.name == "query").unwrap();
    assert_eq!(
        query.cost,
        Cost::Fixed(std::num::NonZeroU32::new(3).unwrap())
    );
}

#[test]
fn a_key_claim_is_kept_by_every_jwt_authenticator() {
    use crate::config::policy::AuthenticatorKind;
    let text = format!(
        "authenticators:\n  partners: {{ jwt: {{ jwks_file: keys.json, algorithms: [ES256] }} }}\n{LIMITS}"
    );
    let p = parse_policy(&text, file()).unwrap();
    match &p.authenticators["partners"].kind {
        AuthenticatorKind::Jwt(c) => assert_eq!(c.kept_claims, ["org"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rate_limit_mistakes_are_each_named_with_their_field() {
    let text = LIMITS
        .replace("rate: 1000/s", "rate: 1000/d")
        .replace("burst: 20 }", "burst: 0 }")
        .replace("[client_ip]", "[client_ip, cookie]")
        .replace("scope: global", "scope: fleet")
        .replace("fail_closed", "fail_shut")
        .replace("[per-ip-anon]", "[per-ip-anno]");
    let err = parse_policy(&text, file()).unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "rate_limits.per-device.burst",
            "rate_limits.per-ip-anon.key[1]",
            "rate_limits.per-ip-anon.on_limiter_error",
            "rate_limits.per-tenant.rate",
            "rate_limits.per-tenant.scope",
            "routes[1].rate_limit[0]",
        ],
        "{err}"
    );
    assert!(err.to_string().contains("unknown unit \"d\""), "{err}");
    assert!(
        err.to_string()
            .contains("no rate limit named \"per-ip-anno\" (rate_limits: per-device, per-ip-anon, per-org, per-tenant)"),
        "{err}"
    );
}

#[test]
fn a_fixed_cost_above_a_limits_burst_is_refused() {
    let text = LIMITS.replace("rate_limit_cost: 3", "rate_limit_cost: 6");
    let err = parse_policy(&text, file()).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].field, "routes[1].rate_limit_cost");
    assert!(
        err.0[0]
            .message
            .contains("burst of rate limit \"per-ip-anon\" (5)"),
        "{err}"
    );
}

#[test]
fn load_aware_algorithms_compile_with_their_settings_and_mistakes_are_named() {
    use crate::config::policy::Algorithm;
    let with = |pool: &str| POLICY.replace("    algorithm: round_robin\n", pool);
    let p = parse_policy(
        &with("    algorithm: p2c\n    p2c: { by: ewma }\n    ewma: { decay: 30s }\n"),
        file(),
    )
    .unwrap();
    assert_eq!(p.pools["tsdb"].algorithm, Algorithm::P2c { by_ewma: true });
    assert_eq!(
        p.pools["tsdb"].ewma_decay,
        std::time::Duration::from_secs(30)
    );
    for (name, algorithm) in [
        ("least_connections", Algorithm::LeastConnections),
        ("p2c", Algorithm::P2c { by_ewma: false }),
        ("ewma", Algorithm::Ewma),
    ] {
        let p = parse_policy(&with(&format!("    algorithm: {name}\n")), file()).unwrap();
        assert_eq!(p.pools["tsdb"].algorithm, algorithm);
        assert_eq!(p.pools["tsdb"].algorithm.as_str(), name);
    }
    let err = parse_policy(
        &with("    algorithm: ewma\n    p2c: { by: latency }\n    ewma: { decay: 0s }\n"),
        file(),
    )
    .unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "pools.tsdb.p2c.by",
            "pools.tsdb.p2c",
            "pools.tsdb.ewma.decay"
        ],
        "{err}"
    );
    let err = parse_policy(&with("    algorithm: fastest\n"), file()).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected round_robin, weighted_round_robin, least_connections, p2c, ewma, ring_hash or maglev"),
        "{err}"
    );
}

#[test]
fn a_pools_defences_compile_and_a_route_overrides_its_retries_but_not_the_budget() {
    let text = r#"
pools:
  tsdb:
    algorithm: ring_hash
    hash_key: header:x-user
    sticky: { cookie: gw_backend, ttl: 30m }
    backends:
      - { address: 127.0.0.1:8086 }
      - { address: 127.0.0.1:8087 }
    outlier_detection: { consecutive_failures: 3, base_ejection: 10s, max_ejected: 50% }
    circuit_breaker: { max_in_flight_per_backend: 512 }
    retries: { attempts: 3, on: [connect, reset, 502, 503, 504], backoff: { base: 10ms, max: 200ms },
               budget: 20%, per_try_timeout: 2s }
    slow_start: 10s
routes:
  - name: query
    match: { path_prefix: /query }
    pool: tsdb
  - name: write
    match: { path_prefix: /write }
    pool: tsdb
    retries: { attempts: 2, on: [connect] }
"#;
    let p = parse_policy(text, file()).unwrap();
    let pool = &p.pools["tsdb"];
    assert_eq!(pool.algorithm, policy::Algorithm::RingHash);
    assert_eq!(pool.hash_key.describe(), "header:x-user");
    let sticky = pool.sticky.as_ref().unwrap();
    assert_eq!(
        (sticky.cookie.as_str(), sticky.ttl),
        ("gw_backend", Duration::from_secs(1800))
    );
    let o = pool.outlier.unwrap();
    assert_eq!(o.consecutive_failures.get(), 3);
    assert_eq!(o.base_ejection, Duration::from_secs(10));
    assert_eq!(o.max_ejected_percent, 50);
    assert_eq!(pool.max_in_flight_per_backend.map(|m| m.get()), Some(512));
    assert_eq!(pool.slow_start, Some(Duration::from_secs(10)));
    assert_eq!(pool.retry_budget.ratio_ppm, 200_000);
    let r = &pool.retries;
    assert_eq!(r.attempts.get(), 3);
    assert_eq!(r.on.describe(), ["connect", "reset", "502", "503", "504"]);
    assert_eq!(
        (r.backoff_base, r.backoff_max),
        (Duration::from_millis(10), Duration::from_millis(200))
    );
    assert_eq!(r.per_try_timeout, Some(Duration::from_secs(2)));
    let query = p.routes.iter().find(|r| r.name == "query").unwrap();
    assert_eq!(
        &query.targets[0].retries, r,
        "a route without retries takes its pool's"
    );
    let write = p.routes.iter().find(|r| r.name == "write").unwrap();
    assert_eq!(write.targets[0].retries.attempts.get(), 2);
    assert_eq!(write.targets[0].retries.on.describe(), ["connect"]);
    assert_eq!(
        write.targets[0].retries.per_try_timeout,
        Some(Duration::from_secs(2)),
        "the rest is the pool's"
    );

    let bad = text
        .replace("header:x-user", "header:bad header")
        .replace("gw_backend", "gw backend")
        .replace("max_ejected: 50%", "max_ejected: 150%")
        .replace(
            "max_in_flight_per_backend: 512",
            "max_in_flight_per_backend: 0",
        )
        .replace("502, 503", "404, 503, teapot")
        .replace("budget: 20%", "budget: lots")
        .replace("slow_start: 10s", "slow_start: soon")
        .replace("on: [connect] }", "on: [connect], budget: 10% }");
    let err = parse_policy(&bad, file()).unwrap_err();
    let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "pools.tsdb.hash_key",
            "pools.tsdb.retries.on[2]",
            "pools.tsdb.retries.on[4]",
            "pools.tsdb.retries.budget",
            "pools.tsdb.circuit_breaker.max_in_flight_per_backend",
            "pools.tsdb.sticky.cookie",
            "pools.tsdb.outlier_detection.max_ejected",
            "pools.tsdb.slow_start",
            "routes[1].retries.budget",
        ],
        "{err}"
    );
    assert!(
        err.to_string().contains("a retry budget is the pool's"),
        "{err}"
    );
    let err = parse_policy(
        &text.replace("algorithm: ring_hash", "algorithm: p2c"),
        file(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("hash_key needs algorithm: ring_hash or maglev"),
        "{err}"
    );
}

const CACHED: &str = "\
caches:
  queries: { max_size: 256MiB, ttl: 5s, stale_while_revalidate: 10s }
pools:
  tsdb:
    backends: [ { address: 127.0.0.1:8086 } ]
routes:
  - name: query
    match: { path_prefix: /query }
    pool: tsdb
    cache: { use: queries, key: [method, path, query, body], ttl: 2s }
  - name: plain
    match: { path_prefix: /ping }
    pool: tsdb
    cache: { use: queries }
";

#[test]
fn caches_compile_with_their_defaults_and_routes_take_their_settings() {
    use crate::config::cache::KeyPart;
    use std::time::Duration;
    let p = parse_policy(CACHED, file()).unwrap();
    let c = &p.caches["queries"];
    assert_eq!(c.max_size, 256 << 20);
    assert_eq!(c.ttl, Duration::from_secs(5));
    assert_eq!(c.stale_while_revalidate, Duration::from_secs(10));
    assert_eq!(
        c.max_entry_size,
        32 << 20,
        "an eighth of max_size, at most 32 MiB"
    );
    assert_eq!(c.coalesce_timeout, Duration::from_secs(5));
    assert!(!c.invalidate_on_write);
    let cache_of = |path: &str| p.route(None, path, "GET").unwrap().cache.clone().unwrap();
    let q = cache_of("/query");
    assert_eq!(q.ttl, Duration::from_secs(2), "the route's own ttl");
    assert_eq!(q.stale_while_revalidate, Duration::from_secs(10));
    assert!(q.keys_body() && !q.per_caller);
    let plain = cache_of("/ping");
    assert_eq!(plain.key, [KeyPart::Method, KeyPart::Path, KeyPart::Query]);
    assert_eq!(plain.ttl, Duration::from_secs(5), "the cache's ttl");
}

#[test]
fn cache_mistakes_are_each_named_with_their_field() {
    let text = CACHED
        .replace("max_size: 256MiB", "max_size: 256 parsecs")
        .replace(
            "key: [method, path, query, body]",
            "key: [method, tenant, colour, method]",
        )
        .replace("cache: { use: queries }", "cache: { use: querys }");
    let err = parse_policy(&text, file()).unwrap_err().to_string();
    for expected in [
        "policies/tsdb.yaml:2:24: caches.queries.max_size: unknown size unit \"parsecs\"",
        "routes[0].cache.key[1]: \"tenant\" needs a route with auth:",
        "routes[0].cache.key[2]: unknown key part \"colour\"",
        "routes[0].cache.key[3]: \"method\" is listed twice",
        "routes[1].cache.use: no cache named \"querys\" (caches: queries)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn an_authenticated_route_keys_its_cache_per_caller() {
    let text = format!(
        "authenticators:\n  jwt: {{ jwt: {{ jwks_file: keys.json, algorithms: [RS256] }} }}\n{}",
        CACHED.replace(
            "    cache: { use: queries, key",
            "    auth: { any_of: [jwt] }\n    cache: { use: queries, key"
        )
    );
    let Ok(p) = parse_policy(&text, file()) else {
        panic!("{:?}", parse_policy(&text, file()).unwrap_err().to_string());
    };
    let q = p
        .route(None, "/query", "GET")
        .unwrap()
        .cache
        .as_ref()
        .unwrap();
    assert!(q.per_caller);
}

#[test]
fn listener_hardening_has_defaults_and_each_setting_is_read() {
    let b = parse_bootstrap(
        "listeners:\n  - { name: a, address: 127.0.0.1:8080 }\n  - name: b\n    address: 127.0.0.1:8081\n    escaped_slashes: keep\n    headers_with_underscores: reject\n    request_head_timeout: 2s\n    body_idle_timeout: 500ms\n    idle_timeout: 30s\n    max_connections: 50\n    max_connections_per_client: 5\n    max_requests_per_connection: 100\nadmin: { address: 127.0.0.1:9090 }\npolicies: p\n",
        Path::new("g.yaml"),
    )
    .unwrap();
    assert_eq!(b.listeners[0].hardening, hardening::Hardening::default());
    assert_eq!(
        b.listeners[0].hardening.request_head_timeout,
        Duration::from_secs(10)
    );
    let h = &b.listeners[1].hardening;
    assert_eq!(h.escaped_slashes, hardening::EscapedSlashes::Keep);
    assert_eq!(h.headers_with_underscores, hardening::Underscores::Reject);
    assert_eq!(h.request_head_timeout, Duration::from_secs(2));
    assert_eq!(h.body_idle_timeout, Duration::from_millis(500));
    assert_eq!(h.idle_timeout, Duration::from_secs(30));
    assert_eq!(
        (
            h.max_connections,
            h.max_connections_per_client,
            h.max_requests_per_connection
        ),
        (50, 5, 100)
    );
}

#[test]
fn hardening_mistakes_are_each_named_with_their_field() {
    let err = parse_bootstrap(
        "listeners:\n  - name: a\n    address: 127.0.0.1:8080\n    escaped_slashes: decode\n    headers_with_underscores: maybe\n    request_head_timeout: 0s\n    body_idle_timeout: 10\n    max_connections: 0\n    max_requests_per_connection: 5000000000\n    trusted_proxies: [10.0.0.0/8, 10.0.0.0/33, lb.internal]\nadmin: { address: 127.0.0.1:9090 }\npolicies: p\n",
        Path::new("g.yaml"),
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 8, "{text}");
    for want in [
        "g.yaml:4:22: listeners[0].escaped_slashes: \"decode\": expected one of reject, keep",
        "g.yaml:5:31: listeners[0].headers_with_underscores: \"maybe\": expected one of allow, drop, reject",
        "g.yaml:6:27: listeners[0].request_head_timeout: must be more than 0",
        "g.yaml:7:24: listeners[0].body_idle_timeout: duration \"10\" needs a unit",
        "g.yaml:8:22: listeners[0].max_connections: must be between 1 and 4294967295",
        "g.yaml:9:34: listeners[0].max_requests_per_connection: must be between 1 and 4294967295",
        "g.yaml:10:35: listeners[0].trusted_proxies[1]: \"10.0.0.0/33\" is not an address or a CIDR",
        "g.yaml:10:48: listeners[0].trusted_proxies[2]: \"lb.internal\" is not an address or a CIDR",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn a_route_bounds_its_body_and_a_host_matches_without_its_trailing_dot() {
    let p = parse_policy(
        "pools:\n  p:\n    backends:\n      - { address: 127.0.0.1:8086 }\nroutes:\n  - name: small\n    match: { host: Internal.Example., path_prefix: /w }\n    pool: p\n    max_body_size: 1KiB\n  - name: any\n    match: { path_prefix: / }\n    pool: p\n",
        file(),
    )
    .unwrap();
    assert_eq!(p.routes[0].max_body_size, 1024);
    assert_eq!(p.routes[1].max_body_size, policy::DEFAULT_MAX_BODY_SIZE);
    assert_eq!(
        p.routes[0].matcher.host.as_deref(),
        Some("internal.example")
    );
    let r = p.route(Some("internal.example"), "/w", "POST").unwrap();
    assert_eq!(r.name, "small");

    let err = parse_policy(
        "pools:\n  p:\n    backends:\n      - { address: 127.0.0.1:8086 }\nroutes:\n  - name: a\n    match: { path_prefix: / }\n    pool: p\n    max_body_size: 12XB\n",
        file(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("policies/tsdb.yaml:9:20: routes[0].max_body_size: unknown size unit"),
        "{err}"
    );
}

#[test]
fn a_backend_may_be_a_name_with_a_port_resolved_every_dns_refresh() {
    let text = POLICY
        .replace("127.0.0.1:8087", "tsdb-1.internal:8087")
        .replace(
            "    algorithm: round_robin\n",
            "    algorithm: round_robin\n    dns_refresh: 5s\n",
        );
    let p = parse_policy(&text, file()).unwrap();
    let pool = &p.pools["tsdb"];
    assert_eq!(pool.dns_refresh, std::time::Duration::from_secs(5));
    assert_eq!(
        pool.backends.len(),
        1,
        "only the IP literal, until resolved"
    );
    assert_eq!(pool.endpoints.len(), 2);
    assert_eq!(
        pool.endpoints[1].address,
        policy::Address::Name {
            host: "tsdb-1.internal".into(),
            port: 8087
        }
    );
    assert_eq!(pool.endpoints[1].weight.get(), 3);
    assert_eq!(
        (pool.endpoints[1].line, pool.endpoints[1].field.as_str()),
        (7, "pools.tsdb.backends[1].address")
    );
    let default = parse_policy(POLICY, file()).unwrap();
    assert_eq!(
        default.pools["tsdb"].dns_refresh,
        policy::DEFAULT_DNS_REFRESH
    );
}

#[test]
fn a_bad_port_or_dns_refresh_is_named_with_its_position() {
    for (address, why) in [
        ("localhost:0", "port 0"),
        ("localhost:65536", "port too large"),
        ("localhost:http", "port not a number"),
        ("bad..name:80", "empty label"),
        ("-bad:80", "label starting with -"),
    ] {
        let text = POLICY.replace("127.0.0.1:8087", address);
        let err = parse_policy(&text, file()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "policies/tsdb.yaml:6:20: pools.tsdb.backends[1].address: {address:?} is not an ip:port or name:port address (port 1-65535)"
            ),
            "{why}"
        );
    }
    let text = POLICY.replace(
        "    algorithm: round_robin\n",
        "    algorithm: round_robin\n    dns_refresh: 0s\n",
    );
    let err = parse_policy(&text, file()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "policies/tsdb.yaml:4:18: pools.tsdb.dns_refresh: must be more than 0"
    );
    let text = POLICY.replace(
        "    algorithm: round_robin\n",
        "    algorithm: round_robin\n    dns_refresh: soon\n",
    );
    let err = parse_policy(&text, file()).unwrap_err();
    assert_eq!(err.0[0].field, "pools.tsdb.dns_refresh", "{err}");
    assert_eq!((err.0[0].line, err.0[0].column), (4, 18), "{err}");
    let text = POLICY.replace(
        "127.0.0.1:8087, weight: 3 }",
        "localhost:8086 }\n      - { address: localhost:8086, weight: 3 }",
    );
    let err = parse_policy(&text, file()).unwrap_err();
    assert!(
        err.to_string().contains("localhost:8086 is listed twice"),
        "{err}"
    );
}

#[test]
fn proxy_protocol_is_read_and_refused_without_trusted_proxies() {
    let b = parse_bootstrap(
        "listeners:\n  - { name: a, address: 127.0.0.1:8080, proxy_protocol: true, trusted_proxies: [10.0.0.0/8] }\n  - { name: b, address: 127.0.0.1:8081, proxy_protocol: false }\nadmin: { address: 127.0.0.1:9090 }\npolicies: p\n",
        Path::new("g.yaml"),
    )
    .unwrap();
    assert!(b.listeners[0].hardening.proxy_protocol);
    assert!(!b.listeners[1].hardening.proxy_protocol);
    assert!(!hardening::Hardening::default().proxy_protocol);

    let err = parse_bootstrap(
        "listeners:\n  - name: a\n    address: 127.0.0.1:8080\n    proxy_protocol: true\n  - { name: b, address: 127.0.0.1:8081, proxy_protocol: true, trusted_proxies: [] }\nadmin: { address: 127.0.0.1:9090 }\npolicies: p\n",
        Path::new("g.yaml"),
    )
    .unwrap_err()
    .to_string();
    for want in [
        "g.yaml:4:21: listeners[0].proxy_protocol: needs trusted_proxies",
        "g.yaml:5:57: listeners[1].proxy_protocol: needs trusted_proxies",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
}

const CANARY: &str = "\
pools:
  v1:
    backends: [{ address: 127.0.0.1:8086 }]
    retries: { attempts: 3 }
  v2:
    backends: [{ address: 127.0.0.1:9086 }]
  v3:
    backends: [{ address: 127.0.0.1:9186 }]
routes:
  - name: query
    match: { path_prefix: /query }
    split: [ { pool: v1, weight: 95 }, { pool: v2, weight: 5 } ]
    route_by_header: [ { header: X-Canary, value: \"1\", pool: v2 }, { header: X-Next, pool: v3 } ]
    retries: { per_try_timeout: 2s }
  - name: write
    match: { path_prefix: /write }
    pool: v1
";

#[test]
fn a_split_route_lists_its_pools_with_weights_and_header_rules_first() {
    let p = parse_policy(CANARY, file()).unwrap();
    let q = p.routes.iter().find(|r| r.name == "query").unwrap();
    assert!(q.split);
    let targets: Vec<(&str, u32)> = q
        .targets
        .iter()
        .map(|t| (t.pool.as_str(), t.weight))
        .collect();
    assert_eq!(
        targets,
        [("v1", 95), ("v2", 5), ("v3", 0)],
        "a pool only a header rule names follows with weight 0"
    );
    assert_eq!(q.pools().collect::<Vec<_>>(), ["v1", "v2", "v3"]);
    // Each pool's retries, with the route's over them.
    assert_eq!(q.targets[0].retries.attempts.get(), 3);
    assert_eq!(q.targets[1].retries.attempts.get(), 1);
    for t in &q.targets {
        assert_eq!(t.retries.per_try_timeout, Some(Duration::from_secs(2)));
    }
    let rules: Vec<(&str, Option<&[u8]>, usize)> = q
        .by_header
        .iter()
        .map(|h| {
            (
                h.header.as_str(),
                h.value.as_ref().map(|v| v.as_bytes()),
                h.target,
            )
        })
        .collect();
    assert_eq!(
        rules,
        [("x-canary", Some(&b"1"[..]), 1), ("x-next", None, 2)]
    );
    let w = p.routes.iter().find(|r| r.name == "write").unwrap();
    assert!(!w.split);
    assert_eq!(
        (
            w.targets.len(),
            w.targets[0].pool.as_str(),
            w.targets[0].weight
        ),
        (1, "v1", 1)
    );
    assert!(w.by_header.is_empty());
    // Block style too, and a weight of 0 beside a positive one.
    let block = CANARY.replace(
        "    split: [ { pool: v1, weight: 95 }, { pool: v2, weight: 5 } ]\n",
        "    split:\n      - pool: v1\n        weight: 100\n      - pool: v2\n        weight: 0\n",
    );
    let p = parse_policy(&block, file()).unwrap();
    let q = p.routes.iter().find(|r| r.name == "query").unwrap();
    assert_eq!((q.targets[0].weight, q.targets[1].weight), (100, 0));
}

#[test]
fn split_mistakes_are_named_with_their_line_and_field() {
    let err = |text: &str| parse_policy(text, file()).unwrap_err().to_string();
    let split = "    split: [ { pool: v1, weight: 95 }, { pool: v2, weight: 5 } ]\n";
    let with = |s: &str| CANARY.replace(split, s);
    assert_eq!(
        err(&with("    split: [ { pool: v1, weight: 95 }, { pool: v9, weight: 5 } ]\n")),
        "policies/tsdb.yaml:12:48: routes[0].split[1].pool: no pool named \"v9\" (pools: v1, v2, v3)"
    );
    assert_eq!(
        err(&with(
            "    split: [ { pool: v1, weight: 0 }, { pool: v2, weight: 0 } ]\n"
        )),
        "policies/tsdb.yaml:12:12: routes[0].split: at least one weight must be more than 0"
    );
    assert_eq!(
        err(&with(
            "    split: [ { pool: v1, weight: 5 }, { pool: v1, weight: 5 } ]\n"
        )),
        "policies/tsdb.yaml:12:47: routes[0].split[1].pool: pool \"v1\" is listed twice"
    );
    assert_eq!(
        err(&with("    split: []\n")),
        "policies/tsdb.yaml:12:12: routes[0].split: list at least one pool"
    );
    assert_eq!(
        err(&with("    split: [ { pool: v1, weight: 5000000000 } ]\n")),
        "policies/tsdb.yaml:12:34: routes[0].split[0].weight: must be a whole number from 0 to 4294967295"
    );
    assert_eq!(
        err(&with(
            "    pool: v1\n    split: [ { pool: v1, weight: 1 } ]\n"
        )),
        "policies/tsdb.yaml:12:11: routes[0].pool: give pool or split, not both"
    );
    assert_eq!(
        err(&with("")),
        "policies/tsdb.yaml:10:11: routes[0].pool: give pool (one pool) or split (pools by weight)"
    );
    let negative = err(&with("    split: [ { pool: v1, weight: -1 } ]\n"));
    assert!(negative.starts_with("policies/tsdb.yaml:12:"), "{negative}");
    let unknown = err(&with("    split: [ { pool: v1, share: 5 } ]\n"));
    assert!(
        unknown.starts_with("policies/tsdb.yaml:12:") && unknown.contains("share"),
        "{unknown}"
    );

    let rules = "    route_by_header: [ { header: X-Canary, value: \"1\", pool: v2 }, { header: X-Next, pool: v3 } ]\n";
    let with = |s: &str| CANARY.replace(rules, s);
    let all = err(&with(
        "    route_by_header: [ { header: \"X Canary\", value: \"a\\nb\", pool: v7 } ]\n",
    ));
    for want in [
        "policies/tsdb.yaml:13:67: routes[0].route_by_header[0].pool: no pool named \"v7\" (pools: v1, v2, v3)",
        "policies/tsdb.yaml:13:34: routes[0].route_by_header[0].header: \"X Canary\" is not a header name",
        "policies/tsdb.yaml:13:53: routes[0].route_by_header[0].value: \"a\\nb\" is not a header value",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
}

#[test]
fn every_pool_of_a_split_route_follows_the_rules_of_a_route_pool() {
    // A WebSocket route needs HTTP/1.1 pools: each pool of the split is checked.
    let text = CANARY
        .replace(
            "  v2:\n    backends: [{ address: 127.0.0.1:9086 }]\n",
            "  v2:\n    backends: [{ address: 127.0.0.1:9086 }]\n    protocol: h2c\n",
        )
        .replace(
            "    retries: { per_try_timeout: 2s }\n",
            "    retries: { per_try_timeout: 2s, budget: 10%, attempts: 0 }\n    websocket: true\n",
        );
    let err = parse_policy(&text, file()).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "policies/tsdb.yaml:15:60: routes[0].retries.attempts: must be between 1 and 4294967295",
            "policies/tsdb.yaml:15:45: routes[0].retries.budget: a retry budget is the pool's: set it under pools.v1.retries",
            "policies/tsdb.yaml:16:16: routes[0].websocket: pool \"v2\" speaks HTTP/2 (protocol: h2c); WebSockets need an http1 pool",
        ],
        "a route's retries are reported once, not once per pool"
    );
}
