//! The gateway's query cache end to end: a real gateway in front of scripted upstreams whose
//! answers are numbered (`<name> #<n>`, the n-th request for that path), so every answer
//! shows which backend request it came from, and `X-Cache` shows what the cache did.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tests::clock;
use tests::gateway::{GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::{request, Response};
use tests::jwt::{self, Key};
use tests::upstream::{Behaviour, FakeUpstream};
use tests::wait::eventually;

/// A `caches:` block: each `(name, settings)` as `name: { settings }`.
fn caches(list: &[(&str, &str)]) -> String {
    let mut s = String::from("caches:\n");
    for (name, settings) in list {
        s += &format!("  {name}: {{ {settings} }}\n");
    }
    s
}

/// A route `name` matching `matcher` to pool `up`, one attempt (so a backend failure is the
/// client's answer), with `extra` lines (already indented by four spaces).
fn route(name: &str, matcher: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    match: {matcher}\n    pool: up\n    timeouts: {{ connect: 1s, request: 10s }}\n    retries: {{ attempts: 1 }}\n{extra}"
    )
}

/// `route` with `cache: { cache }`.
fn cached_route(name: &str, matcher: &str, cache: &str) -> String {
    route(name, matcher, &format!("    cache: {{ {cache} }}\n"))
}

/// `head` (caches, authenticators), a pool `up` of `backends` with health checks too rare to
/// matter, and `routes`.
fn policy(backends: &[SocketAddr], head: &str, routes: &[String]) -> String {
    let list: String = backends
        .iter()
        .map(|a| format!("      - {{ address: {a} }}\n"))
        .collect();
    format!(
        "{head}pools:\n  up:\n    backends:\n{list}    {QUIET_HEALTH_CHECK}\nroutes:\n{}",
        routes.concat()
    )
}

/// A gateway with one cache `queries` (`settings`) and one route `name` on `matcher` to
/// `upstream`, using it with `cache` (the route's `cache:` settings).
fn one_cached_route(
    upstream: SocketAddr,
    settings: &str,
    name: &str,
    matcher: &str,
    cache: &str,
) -> GatewayProcess {
    GatewayProcess::start(&policy(
        &[upstream],
        &caches(&[("queries", settings)]),
        &[cached_route(name, matcher, cache)],
    ))
    .unwrap()
}

fn get(gw: &GatewayProcess, path: &str, headers: &[(&str, &str)]) -> Response {
    request("GET", &format!("{}{path}", gw.url()), headers, None).expect("request")
}

fn post_form(gw: &GatewayProcess, path: &str, body: &str) -> Response {
    request(
        "POST",
        &format!("{}{path}", gw.url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    )
    .expect("request")
}

/// What `X-Cache` said (`-` when absent).
fn xc(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("-")
}

/// Status, `X-Cache` and body, for one comparison that shows all three on failure.
fn seen(r: &Response) -> (u16, &str, &str) {
    (r.status, xc(r), r.body.as_str())
}

/// The `Age` header as seconds; fails the test if absent or not a number.
fn age(r: &Response) -> u64 {
    let a = r.header("age").unwrap_or_else(|| panic!("no Age on {r:?}"));
    a.parse()
        .unwrap_or_else(|_| panic!("Age {a:?} is not a number of seconds"))
}

fn metrics(gw: &GatewayProcess) -> String {
    let r = request("GET", &format!("{}/metrics", gw.admin_url()), &[], None).expect("metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The value of `name{..., cache="<cache>", ...}` in a Prometheus text, if present.
fn metric_in(text: &str, name: &str, cache: &str) -> Option<f64> {
    let label = format!("cache=\"{cache}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            series.starts_with(&format!("{name}{{")) && series.contains(label.as_str())
        })
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// Polls `/metrics` until `name{cache}` satisfies `ok`; returns the value.
fn metric_until(gw: &GatewayProcess, name: &str, cache: &str, ok: impl Fn(f64) -> bool) -> f64 {
    eventually(&format!("{name}{{cache=\"{cache}\"}} to settle"), |last| {
        let text = metrics(gw);
        let v = metric_in(&text, name, cache);
        *last = format!("{v:?}");
        Ok(v.filter(|v| ok(*v)))
    })
    .unwrap()
}

/// One answer from a thread, with how long it took.
struct Outcome {
    status: u16,
    x_cache: String,
    body: String,
    took: Duration,
}

/// `n` threads released together by a barrier, each sending `GET url` once.
fn concurrent_gets(url: &str, n: usize) -> Vec<std::thread::JoinHandle<Outcome>> {
    let barrier = Arc::new(Barrier::new(n));
    (0..n)
        .map(|_| {
            let (barrier, url) = (barrier.clone(), url.to_string());
            std::thread::spawn(move || {
                barrier.wait();
                let start = clock::now();
                let r = request("GET", &url, &[], None);
                let took = clock::now() - start;
                match r {
                    Ok(r) => Outcome {
                        status: r.status,
                        x_cache: xc(&r).to_string(),
                        body: r.body,
                        took,
                    },
                    Err(e) => Outcome {
                        status: 0,
                        x_cache: String::new(),
                        body: format!("{e:#}"),
                        took,
                    },
                }
            })
        })
        .collect()
}

const QUERY: &str = "/query?db=d&q=SELECT+mean%28v%29+FROM+m";

#[test]
fn two_hundred_identical_misses_make_one_backend_request_and_a_repeat_is_a_hit_with_age() {
    let up = FakeUpstream::new()
        .numbered()
        .behaviour(Behaviour::Slow(Duration::from_millis(300)))
        .start()
        .unwrap();
    let gw = one_cached_route(
        up.addr,
        "max_size: 16MiB, ttl: 60s, coalesce_timeout: 10s",
        "query",
        "{ path_prefix: /query, methods: [GET, POST] }",
        "use: queries",
    );
    let n = 200;
    let outcomes: Vec<Outcome> = concurrent_gets(&format!("{}{QUERY}", gw.url()), n)
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status != 200 || o.body != "upstream #1")
        .map(|o| format!("{} {} {:?}", o.status, o.x_cache, o.body))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {n} not the upstream's one answer: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(
        up.requests_for("/query"),
        1,
        "one request reached the backend"
    );
    // The waiters are woken when the entry is stored, not when their coalesce wait runs out.
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(5),
        "slowest answer took {slowest:?}"
    );
    let misses = outcomes.iter().filter(|o| o.x_cache == "MISS").count();
    let hits = outcomes.iter().filter(|o| o.x_cache == "HIT").count();
    assert_eq!(
        (misses, hits),
        (1, n - 1),
        "one leader, the rest answered from its entry"
    );
    let repeat = get(&gw, QUERY, &[]);
    assert_eq!(seen(&repeat), (200, "HIT", "upstream #1"));
    assert!(age(&repeat) < 60);
    assert_eq!(up.requests_for("/query"), 1);
    metric_until(&gw, "gateway_cache_misses_total", "queries", |v| v == 1.0);
    metric_until(&gw, "gateway_cache_hits_total", "queries", |v| {
        v == n as f64
    });
    let coalesced = metric_until(&gw, "gateway_cache_coalesced_total", "queries", |v| {
        v >= 1.0
    });
    assert!(coalesced <= (n - 1) as f64, "{coalesced} coalesced");
}

const ISS: &str = "https://issuer.test";
const AUD: &str = "gateway";

#[test]
fn one_tenant_never_gets_another_tenants_cached_answer_even_without_tenant_in_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::es256("k1").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwt::jwks_json(&[&key])).unwrap();
    let up = FakeUpstream::new()
        .echo_header("x-gateway-tenant")
        .start()
        .unwrap();
    let head = format!(
        "authenticators:\n  services:\n    jwt: {{ jwks_file: {}, algorithms: [ES256], issuer: {ISS}, audience: {AUD}, identity_claim: sub, tenant_claim: tenant }}\n{}",
        jwks.display(),
        caches(&[("queries", "max_size: 16MiB, ttl: 60s")])
    );
    let gw = GatewayProcess::start(&policy(
        &[up.addr],
        &head,
        &[route(
            "query",
            "{ path_prefix: /query, methods: [GET, POST] }",
            "    auth: { any_of: [services] }\n    cache: { use: queries, key: [method, path, query] }\n",
        )],
    ))
    .unwrap();
    let token = |sub: &str, tenant: &str| {
        let mut c = jwt::claims(ISS, AUD, sub, 300);
        c["tenant"] = json!(tenant);
        format!("Bearer {}", key.sign(&c).unwrap())
    };
    let a = token("svc-a", "tenant-a");
    let b = token("svc-b", "tenant-b");
    let r = get(&gw, QUERY, &[("authorization", &a)]);
    assert_eq!(
        seen(&r),
        (200, "MISS", "upstream #1 x-gateway-tenant=tenant-a")
    );
    let r = get(&gw, QUERY, &[("authorization", &a)]);
    assert_eq!(
        seen(&r),
        (200, "HIT", "upstream #1 x-gateway-tenant=tenant-a"),
        "an authenticated route caches too"
    );
    let r = get(&gw, QUERY, &[("authorization", &b)]);
    assert_eq!(
        seen(&r),
        (200, "MISS", "upstream #2 x-gateway-tenant=tenant-b"),
        "tenant B's first request is its own"
    );
    let r = get(&gw, QUERY, &[("authorization", &b)]);
    assert_eq!(
        seen(&r),
        (200, "HIT", "upstream #2 x-gateway-tenant=tenant-b")
    );
    // Another caller of tenant A shares A's entry: the key is the tenant, not the caller.
    let a2 = token("svc-a2", "tenant-a");
    let r = get(&gw, QUERY, &[("authorization", &a2)]);
    assert_eq!(
        seen(&r),
        (200, "HIT", "upstream #1 x-gateway-tenant=tenant-a")
    );
    assert_eq!(up.requests_for("/query"), 2);
    // Nobody without a token reaches either entry.
    assert_eq!(get(&gw, QUERY, &[]).status, 401);
}

#[test]
fn parameter_order_and_percent_encoding_make_one_key() {
    let up = FakeUpstream::new().numbered().start().unwrap();
    let gw = one_cached_route(
        up.addr,
        "max_size: 16MiB, ttl: 60s",
        "series",
        "{ path_prefix: /series }",
        "use: queries",
    );
    let r = get(&gw, "/series?b=2&a=1", &[]);
    assert_eq!(seen(&r), (200, "MISS", "upstream #1"));
    let r = get(&gw, "/series?a=1&b=%32", &[]);
    assert_eq!(seen(&r), (200, "HIT", "upstream #1"));
    assert_eq!(up.requests_for("/series"), 1);
    // A different value is a different key.
    let r = get(&gw, "/series?a=1&b=3", &[]);
    assert_eq!(seen(&r), (200, "MISS", "upstream #2"));
    assert_eq!(up.requests_for("/series"), 2);
}

#[test]
fn a_backend_answer_that_forbids_storing_is_never_stored() {
    let up = FakeUpstream::new().numbered().start().unwrap();
    let gw = one_cached_route(
        up.addr,
        "max_size: 16MiB, ttl: 60s",
        "data",
        "{ path_prefix: /data }",
        "use: queries",
    );
    let variants = [
        ("cache-control", "no-store"),
        ("cache-control", "no-cache"),
        ("cache-control", "private"),
        ("cache-control", "max-age=0"),
        ("set-cookie", "session=1"),
        ("vary", "accept"),
    ];
    for (i, (k, v)) in variants.iter().enumerate() {
        up.set_response_headers(&[(*k, *v)]);
        let path = format!("/data/{i}");
        for n in 1..=2 {
            let r = get(&gw, &path, &[]);
            assert_eq!(
                (r.status, r.body.clone()),
                (200, format!("upstream #{n}")),
                "{k}: {v}, request {n}: X-Cache {}",
                xc(&r)
            );
            assert_ne!(xc(&r), "HIT", "{k}: {v}, request {n}");
        }
        assert_eq!(
            up.requests_for(&path),
            2,
            "{k}: {v}: both reached the backend"
        );
    }
    // The same answer without such a header is stored.
    up.set_response_headers(&[]);
    assert_eq!(
        seen(&get(&gw, "/data/plain", &[])),
        (200, "MISS", "upstream #1")
    );
    assert_eq!(
        seen(&get(&gw, "/data/plain", &[])),
        (200, "HIT", "upstream #1")
    );
}

#[test]
fn client_no_store_bypasses_both_ways_and_no_cache_skips_the_lookup_but_stores() {
    let up = FakeUpstream::new().numbered().start().unwrap();
    let gw = one_cached_route(
        up.addr,
        "max_size: 16MiB, ttl: 60s",
        "data",
        "{ path_prefix: /data }",
        "use: queries",
    );
    let no_store = [("cache-control", "no-store")];
    let r = get(&gw, "/data", &no_store);
    assert_eq!(seen(&r), (200, "BYPASS", "upstream #1"));
    assert_eq!(
        seen(&get(&gw, "/data", &[])),
        (200, "MISS", "upstream #2"),
        "the no-store answer was not stored"
    );
    assert_eq!(seen(&get(&gw, "/data", &[])), (200, "HIT", "upstream #2"));
    // no-store on a cached key: not looked up, and the entry is left alone.
    let r = get(&gw, "/data", &no_store);
    assert_eq!(seen(&r), (200, "BYPASS", "upstream #3"));
    assert_eq!(seen(&get(&gw, "/data", &[])), (200, "HIT", "upstream #2"));
    // no-cache and Pragma: no-cache go to the backend and store what it said.
    let r = get(&gw, "/data", &[("cache-control", "no-cache")]);
    assert_eq!(seen(&r), (200, "BYPASS", "upstream #4"));
    assert_eq!(seen(&get(&gw, "/data", &[])), (200, "HIT", "upstream #4"));
    let r = get(&gw, "/data", &[("pragma", "no-cache")]);
    assert_eq!(seen(&r), (200, "BYPASS", "upstream #5"));
    assert_eq!(seen(&get(&gw, "/data", &[])), (200, "HIT", "upstream #5"));
    assert_eq!(up.requests_for("/data"), 5);
    metric_until(&gw, "gateway_cache_bypass_total", "queries", |v| v == 4.0);
}

#[test]
fn backend_max_age_shortens_the_ttl_and_a_route_ttl_overrides_the_caches() {
    let up = FakeUpstream::new().numbered().start().unwrap();
    let gw = GatewayProcess::start(&policy(
        &[up.addr],
        &caches(&[("queries", "max_size: 16MiB, ttl: 60s")]),
        &[
            cached_route("long", "{ path_prefix: /long }", "use: queries"),
            cached_route("short", "{ path_prefix: /short }", "use: queries, ttl: 1s"),
        ],
    ))
    .unwrap();
    let store = |path: &str, headers: &[(&str, &str)]| {
        up.set_response_headers(headers);
        assert_eq!(
            seen(&get(&gw, path, &[])),
            (200, "MISS", "upstream #1"),
            "{path}"
        );
        assert_eq!(
            seen(&get(&gw, path, &[])),
            (200, "HIT", "upstream #1"),
            "{path}"
        );
    };
    store("/long/max-age", &[("cache-control", "max-age=1")]);
    store("/long/s-maxage", &[("cache-control", "public, s-maxage=1")]);
    store("/short/long-max-age", &[("cache-control", "max-age=600")]);
    store("/long/control", &[]);
    for path in ["/long/max-age", "/long/s-maxage", "/short/long-max-age"] {
        eventually(&format!("{path} to expire"), |last| {
            let r = get(&gw, path, &[]);
            *last = format!("{:?}", seen(&r));
            match xc(&r) {
                "HIT" => Ok(None),
                "MISS" => Ok(Some(())),
                other => anyhow::bail!("{path}: X-Cache {other}: {r:?}"),
            }
        })
        .unwrap();
        assert_eq!(up.requests_for(path), 2, "{path}");
    }
    assert_eq!(
        seen(&get(&gw, "/long/control", &[])),
        (200, "HIT", "upstream #1"),
        "the cache's 60s ttl holds without a max-age"
    );
}

#[test]
fn an_expired_entry_is_served_stale_at_once_while_one_background_refresh_runs() {
    // Slow, so that many requests arrive while the refresh is on its way, and so that a
    // stale answer that waited for the backend would take at least this long.
    let delay = Duration::from_millis(2000);
    let up = FakeUpstream::new()
        .numbered()
        .behaviour(Behaviour::Slow(delay))
        .start()
        .unwrap();
    let gw = one_cached_route(
        up.addr,
        "max_size: 16MiB, ttl: 1s, stale_while_revalidate: 60s",
        "query",
        "{ path_prefix: /query, methods: [GET, POST] }",
        "use: queries",
    );
    assert_eq!(seen(&get(&gw, QUERY, &[])), (200, "MISS", "upstream #1"));
    let stale = eventually("an answer marked STALE", |last| {
        let start = clock::now();
        let r = get(&gw, QUERY, &[]);
        let took = clock::now() - start;
        *last = format!("{:?}", seen(&r));
        match seen(&r) {
            (200, "HIT", "upstream #1") => Ok(None),
            (200, "STALE", _) => Ok(Some((r, took))),
            other => anyhow::bail!("while fresh: {other:?}"),
        }
    })
    .unwrap();
    let (r, took) = stale;
    assert_eq!(seen(&r), (200, "STALE", "upstream #1"), "the old body");
    assert!(age(&r) >= 1, "{r:?}");
    assert!(
        took < delay,
        "a stale answer waits for no backend: took {took:?}"
    );
    let mut stale_seen = 1u32;
    eventually("the refreshed entry", |last| {
        let r = get(&gw, QUERY, &[]);
        let count = up.requests_for("/query");
        *last = format!("{:?} after {count} backend requests", seen(&r));
        match seen(&r) {
            (200, "STALE", "upstream #1") => {
                stale_seen += 1;
                Ok(None)
            }
            (200, "HIT", body) => {
                assert_eq!(
                    (body, count),
                    ("upstream #2", 2),
                    "one refresh for {stale_seen} stale answers"
                );
                Ok(Some(()))
            }
            other => anyhow::bail!("while refreshing: {other:?}"),
        }
    })
    .unwrap();
    metric_until(&gw, "gateway_cache_stale_total", "queries", |v| {
        v >= f64::from(stale_seen)
    });
}

#[test]
fn the_cache_stays_within_max_size_by_evicting() {
    let up = FakeUpstream::new().body_size(1024).start().unwrap();
    let gw = GatewayProcess::start(&policy(
        &[up.addr],
        &caches(&[("small", "max_size: 64KiB, ttl: 60s")]),
        &[cached_route(
            "query",
            "{ path_prefix: /query, methods: [GET, POST] }",
            "use: small",
        )],
    ))
    .unwrap();
    for i in 0..300 {
        let r = get(
            &gw,
            &format!("/query?db=d&q=SELECT+v+FROM+m+WHERE+i%3D{i}"),
            &[],
        );
        assert_eq!(
            (r.status, r.body.len(), xc(&r)),
            (200, 1024, "MISS"),
            "query {i}"
        );
    }
    assert_eq!(up.requests_for("/query"), 300);
    let bytes = metric_until(&gw, "gateway_cache_bytes", "small", |v| v <= 65536.0);
    let evictions = metric_until(&gw, "gateway_cache_evictions_total", "small", |v| v > 0.0);
    let text = metrics(&gw);
    let entries = metric_in(&text, "gateway_cache_entries", "small");
    assert_eq!(
        metric_in(&text, "gateway_cache_max_bytes", "small"),
        Some(65536.0),
        "{text}"
    );
    assert!(
        entries.is_some_and(|e| e > 0.0 && e < 300.0),
        "{entries:?} entries, {bytes} bytes, {evictions} evictions"
    );
}

#[test]
fn a_write_through_the_gateway_drops_that_databases_entries_only() {
    let up = FakeUpstream::new().numbered().start().unwrap();
    let gw = GatewayProcess::start(&policy(
        &[up.addr],
        &caches(&[(
            "queries",
            "max_size: 16MiB, ttl: 60s, invalidate_on_write: true",
        )]),
        &[
            route("write", "{ path_prefix: /write, methods: [POST] }", ""),
            cached_route(
                "query",
                "{ path_prefix: /query, methods: [GET, POST] }",
                "use: queries",
            ),
        ],
    ))
    .unwrap();
    let qa = "/query?db=a&q=SELECT+v+FROM+m";
    let qb = "/query?db=b&q=SELECT+v+FROM+m";
    assert_eq!(seen(&get(&gw, qa, &[])), (200, "MISS", "upstream #1"));
    assert_eq!(seen(&get(&gw, qa, &[])), (200, "HIT", "upstream #1"));
    assert_eq!(seen(&get(&gw, qb, &[])), (200, "MISS", "upstream #2"));
    assert_eq!(seen(&get(&gw, qb, &[])), (200, "HIT", "upstream #2"));
    let write = |db: &str| {
        request(
            "POST",
            &format!("{}/write?db={db}", gw.url()),
            &[("content-type", "text/plain")],
            Some(b"m v=1 1000000000".as_slice()),
        )
        .expect("write")
    };
    // A failed write drops nothing.
    up.set_behaviour(Behaviour::Status(500));
    assert_eq!(write("a").status, 500);
    up.set_behaviour(Behaviour::Ok);
    assert_eq!(seen(&get(&gw, qa, &[])), (200, "HIT", "upstream #1"));
    up.set_behaviour(Behaviour::Status(204));
    assert_eq!(write("a").status, 204);
    up.set_behaviour(Behaviour::Ok);
    assert_eq!(
        seen(&get(&gw, qa, &[])),
        (200, "MISS", "upstream #3"),
        "db a's entry went with the write"
    );
    assert_eq!(
        seen(&get(&gw, qb, &[])),
        (200, "HIT", "upstream #2"),
        "db b's entry stays"
    );
    assert_eq!(seen(&get(&gw, qa, &[])), (200, "HIT", "upstream #3"));
    assert_eq!(up.requests_for("/write"), 2);
}

#[test]
fn the_admin_purge_empties_one_cache_or_all_and_status_shows_the_caches() {
    let up = FakeUpstream::new().numbered().start().unwrap();
    let gw = GatewayProcess::start(&policy(
        &[up.addr],
        &caches(&[
            ("queries", "max_size: 16MiB, ttl: 60s"),
            ("other", "max_size: 1MiB, ttl: 60s"),
        ]),
        &[
            cached_route("q", "{ path_prefix: /q }", "use: queries"),
            cached_route("o", "{ path_prefix: /o }", "use: other"),
        ],
    ))
    .unwrap();
    let purge = |query: &str| {
        request(
            "POST",
            &format!("{}/admin/cache/purge{query}", gw.admin_url()),
            &[],
            None,
        )
        .expect("purge")
    };
    for path in ["/q", "/o"] {
        assert_eq!(seen(&get(&gw, path, &[])), (200, "MISS", "upstream #1"));
        assert_eq!(seen(&get(&gw, path, &[])), (200, "HIT", "upstream #1"));
    }
    let status = request(
        "GET",
        &format!("{}/admin/status", gw.admin_url()),
        &[],
        None,
    )
    .unwrap()
    .json();
    assert!(
        status["caches"]["queries"].is_object() && status["caches"]["other"].is_object(),
        "{status}"
    );
    let unknown = purge("?cache=nope");
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(seen(&get(&gw, "/q", &[])), (200, "HIT", "upstream #1"));
    let one = purge("?cache=other");
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(one.json().is_object(), "{}", one.body);
    assert_eq!(seen(&get(&gw, "/o", &[])), (200, "MISS", "upstream #2"));
    assert_eq!(
        seen(&get(&gw, "/q", &[])),
        (200, "HIT", "upstream #1"),
        "the other cache is untouched"
    );
    let all = purge("");
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.json().is_object(), "{}", all.body);
    assert_eq!(seen(&get(&gw, "/q", &[])), (200, "MISS", "upstream #2"));
    assert_eq!(seen(&get(&gw, "/o", &[])), (200, "MISS", "upstream #3"));
}

#[test]
fn a_post_body_is_part_of_the_key_and_a_write_statement_is_never_cached() {
    let up = FakeUpstream::new().numbered().start().unwrap();
    let gw = one_cached_route(
        up.addr,
        "max_size: 16MiB, ttl: 60s",
        "query",
        "{ path_prefix: /query, methods: [GET, POST] }",
        "use: queries, key: [method, path, query, body]",
    );
    let select = "q=SELECT+v+FROM+m&db=a";
    assert_eq!(
        seen(&post_form(&gw, "/query", select)),
        (200, "MISS", "upstream #1")
    );
    assert_eq!(
        seen(&post_form(&gw, "/query", select)),
        (200, "HIT", "upstream #1")
    );
    assert_eq!(
        seen(&post_form(&gw, "/query", "q=SELECT+w+FROM+m&db=a")),
        (200, "MISS", "upstream #2"),
        "another body, another key"
    );
    let mut n = 2;
    for body in [
        "q=DROP+DATABASE+a",
        "q=DROP%20DATABASE%20a&db=a",
        "q=SELECT+v+INTO+m2+FROM+m&db=a",
        "q=SELECT+v+FROM+m%3B+DROP+DATABASE+a&db=a",
    ] {
        for _ in 0..2 {
            n += 1;
            let r = post_form(&gw, "/query", body);
            assert_eq!(
                (r.status, xc(&r), r.body.clone()),
                (200, "BYPASS", format!("upstream #{n}")),
                "{body}"
            );
        }
    }
    let r = get(&gw, "/query?db=a&q=DROP+DATABASE+a", &[]);
    assert_eq!(
        seen(&r),
        (200, "BYPASS", "upstream #11"),
        "in a query string too"
    );
    assert_eq!(up.requests_for("/query"), 11);
}

#[test]
fn when_the_leader_fails_every_waiter_gets_its_own_answer_promptly() {
    let up = FakeUpstream::new()
        .numbered()
        .behaviour(Behaviour::Status(500))
        .start()
        .unwrap();
    let gw = one_cached_route(
        up.addr,
        "max_size: 16MiB, ttl: 60s, coalesce_timeout: 20s",
        "query",
        "{ path_prefix: /query, methods: [GET, POST] }",
        "use: queries",
    );
    // The leader's 500 is held back long enough for all the others to join it.
    let hold = Duration::from_millis(1500);
    up.pause(hold);
    let n = 20;
    let threads = concurrent_gets(&format!("{}{QUERY}", gw.url()), n);
    eventually("the leader's request at the backend", |_| {
        Ok((up.requests_for("/query") >= 1).then_some(()))
    })
    .unwrap();
    // Only the leader's request has its answer fixed as a 500; the others will be 200s.
    up.set_behaviour(Behaviour::Ok);
    let outcomes: Vec<Outcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let summary: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{} {} {:?} {:?}", o.status, o.x_cache, o.body, o.took))
        .collect();
    let failed = outcomes.iter().filter(|o| o.status == 500).count();
    let ok = outcomes.iter().filter(|o| o.status == 200).count();
    assert_eq!(
        (failed, ok),
        (1, n - 1),
        "only the leader has the failure: {summary:#?}"
    );
    // Far below the coalesce timeout: the waiters were released when the leader failed.
    let bound = hold + Duration::from_secs(5);
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap();
    assert!(slowest < bound, "slowest {slowest:?}: {summary:#?}");
    let sent = up.requests_for("/query");
    assert!(
        (2..=n as u64).contains(&sent),
        "{sent} backend requests: {summary:#?}"
    );
    assert!(
        outcomes
            .iter()
            .filter(|o| o.status == 200)
            .all(|o| o.body.starts_with("upstream #") && o.body != "upstream #1"),
        "{summary:#?}"
    );
}

#[test]
fn a_per_caller_key_or_an_unknown_cache_on_an_open_route_is_a_policy_error() {
    let up = FakeUpstream::new().start().unwrap();
    for (cache, needle) in [
        ("use: queries, key: [tenant, path, query]", "tenant"),
        ("use: queries, key: [identity, path]", "identity"),
        ("use: nope", "nope"),
    ] {
        let p = policy(
            &[up.addr],
            &caches(&[("queries", "max_size: 16MiB, ttl: 60s")]),
            &[cached_route("query", "{ path_prefix: /query }", cache)],
        );
        let started = GatewayProcess::start(&p);
        let err = format!("{:#}", started.expect_err(cache));
        assert!(err.contains(needle), "{cache}: {err}");
    }
    // The same policy with a valid cache starts (the refusals above were the keys').
    let p = policy(
        &[up.addr],
        &caches(&[("queries", "max_size: 16MiB, ttl: 60s")]),
        &[cached_route(
            "query",
            "{ path_prefix: /query }",
            "use: queries",
        )],
    );
    let gw = GatewayProcess::start(&p).unwrap();
    assert_eq!(get(&gw, QUERY, &[]).status, 200);
}
