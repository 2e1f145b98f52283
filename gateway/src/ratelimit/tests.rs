//! The rate-limit stage: caller keys, the order of a route's limits, the fallback share
//! of a global limit without Redis, fail_closed, buckets kept across rebuilds.

use super::*;
use crate::clock::ManualClock;
use crate::config::policy::Rate;
use global::RedisConfig;

const ONE: NonZeroU32 = NonZeroU32::MIN;

fn limit(
    name: &str,
    per_second: u32,
    burst: u32,
    scope: Scope,
    on_error: OnLimiterError,
) -> RateLimit {
    RateLimit {
        name: name.into(),
        key: vec![KeyPart::ClientIp],
        rate: Rate {
            count: NonZeroU32::new(per_second).unwrap(),
            per: Duration::from_secs(1),
        },
        burst: NonZeroU32::new(burst).unwrap(),
        scope,
        on_error,
    }
}

fn local(l: RateLimit, clock: &ManualClock) -> Arc<Limiter> {
    Arc::new(Limiter {
        buckets: Buckets::Local(Arc::new(LocalLimiter::new(
            l.rate.interval(),
            l.burst,
            DEFAULT_MAX_KEYS,
            Arc::new(clock.clone()),
        ))),
        limit: l,
        clock: Arc::new(clock.clone()),
    })
}

/// A global limiter whose Redis is a closed port: every decision fails at once.
fn unreachable_redis() -> Arc<GlobalLimiter> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Arc::new(GlobalLimiter::start(
        RedisConfig::new(format!("redis://127.0.0.1:{port}/")),
        "test".into(),
    ))
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn caller_keys_compose_their_parts_and_cannot_collide() {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-api-key", "k|1".parse().unwrap());
    let claims = [("org".to_owned(), "acme".to_owned())];
    let src = KeySource {
        identity: Some("svc-1"),
        tenant: None,
        client_ip: Some("10.0.0.7".parse().unwrap()),
        route: "write",
        headers: &headers,
        claims: &claims,
    };
    let parts = vec![
        KeyPart::Identity,
        KeyPart::Tenant,
        KeyPart::ClientIp,
        KeyPart::Route,
        KeyPart::Header(http::HeaderName::from_static("x-api-key")),
        KeyPart::Claim("org".into()),
        KeyPart::Claim("plan".into()),
    ];
    assert_eq!(
        caller_key(&parts, &src),
        "svc-1|-|10.0.0.7|write|k\\|1|acme|-"
    );
    // "a|b" + "c" and "a" + "b|c" are two callers.
    let a = KeySource {
        identity: Some("a|b"),
        tenant: Some("c"),
        ..src
    };
    let b = KeySource {
        identity: Some("a"),
        tenant: Some("b|c"),
        ..src
    };
    let two = [KeyPart::Identity, KeyPart::Tenant];
    assert_ne!(caller_key(&two, &a), caller_key(&two, &b));
}

#[test]
fn every_limit_must_admit_and_the_first_refusal_answers() {
    let clock = ManualClock::new();
    let wide = local(
        limit("wide", 100, 100, Scope::Local, OnLimiterError::FailOpen),
        &clock,
    );
    let narrow = local(
        limit("narrow", 1, 2, Scope::Local, OnLimiterError::FailOpen),
        &clock,
    );
    let route = vec![
        (wide.clone(), "k".to_string()),
        (narrow.clone(), "k".to_string()),
    ];
    for i in 0..2 {
        let o = run(decide(&route, ONE));
        assert!(o.allowed, "request {i}");
        assert_eq!(o.verdicts.len(), 2);
    }
    let o = run(decide(&route, ONE));
    assert!(!o.allowed);
    let (name, v) = o.refusal().unwrap();
    assert_eq!(name, "narrow");
    assert_eq!(v.retry_after, Duration::from_secs(1));
    assert_eq!(v.source, Source::Local);
    // The quotas for the headers: the narrow limit is the most restrictive.
    let current = headers::current(&o.quotas()).unwrap();
    assert!(current.starts_with("\"narrow\";r=0"), "{current}");
}

#[test]
fn a_global_limit_without_redis_fails_open_at_this_gateways_share() {
    let clock = ManualClock::new();
    let l = limit("g", 10, 4, Scope::Global, OnLimiterError::FailOpen);
    let limiter = Arc::new(Limiter {
        limit: l,
        buckets: Buckets::Global {
            redis: unreachable_redis(),
            fallback: Mutex::new(None),
        },
        clock: Arc::new(clock.clone()),
    });
    // One gateway known: its share is the whole limit (burst 4).
    let route = vec![(limiter, "k".to_string())];
    for i in 0..4 {
        let o = run(decide(&route, ONE));
        assert!(o.allowed, "request {i}: {:?}", o.verdicts);
        assert_eq!(o.verdicts[0].1.source, Source::Fallback);
    }
    assert!(!run(decide(&route, ONE)).allowed);
}

#[test]
fn a_global_limit_without_redis_that_fails_closed_refuses_as_unavailable() {
    let clock = ManualClock::new();
    let limiter = Arc::new(Limiter {
        limit: limit("g", 10, 4, Scope::Global, OnLimiterError::FailClosed),
        buckets: Buckets::Global {
            redis: unreachable_redis(),
            fallback: Mutex::new(None),
        },
        clock: Arc::new(clock.clone()),
    });
    let o = run(decide(&[(limiter, "k".to_string())], ONE));
    assert!(!o.allowed);
    assert_eq!(o.verdicts[0].1.source, Source::Unavailable);
}

#[test]
fn the_share_divides_rate_and_burst_by_the_number_of_gateways() {
    let clock = ManualClock::new();
    let limiter = Limiter {
        limit: limit("g", 10, 5, Scope::Global, OnLimiterError::FailOpen),
        buckets: Buckets::Local(Arc::new(LocalLimiter::new(
            Duration::from_millis(100),
            NonZeroU32::new(5).unwrap(),
            DEFAULT_MAX_KEYS,
            Arc::new(clock.clone()),
        ))),
        clock: Arc::new(clock.clone()),
    };
    let slot = Mutex::new(None);
    let share = limiter.share(&slot, 2);
    // Burst 5 / 2 rounds up to 3; one token every 200 ms.
    for _ in 0..3 {
        assert!(share.check("k", ONE).allowed);
    }
    let refused = share.check("k", ONE);
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Duration::from_millis(200));
    assert!(
        Arc::ptr_eq(&share, &limiter.share(&slot, 2)),
        "kept while the count holds"
    );
    assert!(
        !Arc::ptr_eq(&share, &limiter.share(&slot, 3)),
        "rebuilt when it changes"
    );
}

#[test]
fn an_unchanged_limit_keeps_its_buckets_across_a_rebuild_and_a_changed_one_starts_fresh() {
    let text = |rate: &str| {
        format!(
            "rate_limits:\n  per-ip: {{ key: [client_ip], rate: {rate}, burst: 1 }}\npools:\n  p:\n    backends: [{{ address: 127.0.0.1:1 }}]\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n    rate_limit: [per-ip]\n"
        )
    };
    let path = std::path::Path::new("p.yaml");
    let clock = ManualClock::new();
    let registry = LimitRegistry::new(None, Arc::new(clock.clone()));
    let first = registry
        .build(&crate::config::parse_policy(&text("1/s"), path).unwrap())
        .unwrap();
    let l = first.get("per-ip").unwrap().clone();
    assert!(run(l.check("ip", ONE)).allowed);
    let again = registry
        .build(&crate::config::parse_policy(&text("1/s"), path).unwrap())
        .unwrap();
    assert!(
        !run(again.get("per-ip").unwrap().check("ip", ONE)).allowed,
        "the same bucket: its one token is spent"
    );
    let changed = registry
        .build(&crate::config::parse_policy(&text("2/s"), path).unwrap())
        .unwrap();
    assert!(run(changed.get("per-ip").unwrap().check("ip", ONE)).allowed);
}

#[test]
fn a_global_limit_needs_redis_in_the_bootstrap_file() {
    let text = "rate_limits:\n  g: { key: [tenant], rate: 10/s, scope: global }\npools:\n  p:\n    backends: [{ address: 127.0.0.1:1 }]\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    pool: p\n    rate_limit: [g]\n";
    let policy = crate::config::parse_policy(text, std::path::Path::new("p.yaml")).unwrap();
    let e = LimitRegistry::new(None, Arc::new(ManualClock::new()))
        .build(&policy)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("rate_limits.g.scope: scope: global needs redis"),
        "{e}"
    );
}

#[test]
fn lines_are_counted_by_newlines() {
    assert_eq!(count_newlines(b"a v=1\nb v=2\n"), 2);
    assert_eq!(count_newlines(b""), 0);
}

fn source(headers: &http::HeaderMap) -> KeySource<'_> {
    KeySource {
        identity: None,
        tenant: None,
        client_ip: Some("10.0.0.1".parse().unwrap()),
        route: "r",
        headers,
        claims: &[],
    }
}

#[test]
fn the_step_admits_with_the_quotas_and_refuses_with_the_limits_answer() {
    let clock = ManualClock::new();
    let one = local(
        limit("one", 1, 1, Scope::Local, OnLimiterError::FailOpen),
        &clock,
    );
    let all = [one];
    let metrics = crate::metrics::Metrics::new().unwrap();
    let headers = http::HeaderMap::new();
    let src = source(&headers);
    let admitted = run(admit(&all, Cost::Fixed(ONE), &src, &metrics)).unwrap();
    assert_eq!(admitted.quotas.len(), 1);
    assert!(
        admitted.line_charges.is_empty(),
        "a fixed cost is paid at once"
    );
    let limited = run(admit(&all, Cost::Fixed(ONE), &src, &metrics)).unwrap_err();
    assert_eq!(limited.limit, "one");
    assert_eq!(limited.retry_after, "1");
    assert!(!limited.unavailable);
    assert_eq!(limited.message(), "rate limited by one");
    let names: Vec<&str> = limited.headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["ratelimit-policy", "ratelimit"]);
    // No limits on the route: nothing asked, nothing to tell.
    let none = run(admit(&[], Cost::Fixed(ONE), &src, &metrics)).unwrap();
    assert!(none.quotas.is_empty());
}

#[test]
fn a_per_line_cost_pays_one_token_at_the_head_and_keeps_the_rest_for_the_body() {
    let clock = ManualClock::new();
    let l = local(
        limit("lines", 10, 10, Scope::Local, OnLimiterError::FailOpen),
        &clock,
    );
    let metrics = crate::metrics::Metrics::new().unwrap();
    let headers = http::HeaderMap::new();
    let admitted = run(admit(&[l], Cost::Lines, &source(&headers), &metrics)).unwrap();
    assert_eq!(admitted.line_charges.len(), 1);
    assert_eq!(admitted.line_charges[0].1, "10.0.0.1");
}
