//! The cost of a local rate-limit decision, and of what goes with it on every limited
//! request: building the caller key and rendering the RateLimit headers.
//!
//! Run with `cargo bench -p gateway --bench ratelimit`. The clock is the system clock (as
//! in the gateway), so an admitted decision here pays for reading it.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gateway::clock::SystemClock;
use gateway::config::policy::KeyPart;
use gateway::ratelimit::headers::{self, Quota};
use gateway::ratelimit::local::{LocalLimiter, DEFAULT_MAX_KEYS};
use gateway::ratelimit::{caller_key, KeySource};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

const ONE: NonZeroU32 = NonZeroU32::MIN;

fn limiter(interval: Duration, burst: u32) -> LocalLimiter {
    LocalLimiter::new(
        interval,
        NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        DEFAULT_MAX_KEYS,
        Arc::new(SystemClock),
    )
}

fn local(c: &mut Criterion) {
    let mut g = c.benchmark_group("local decision");
    // A rate no benchmark can exhaust: every decision admits.
    let open = limiter(Duration::from_nanos(1), 1_000_000);
    let key = "tenant-a|10.1.2.3".to_string();
    g.bench_function("admitted, one hot key", |b| {
        b.iter(|| black_box(open.check(black_box(&key), ONE)))
    });
    // One token an hour, spent at once: every decision refuses.
    let shut = limiter(Duration::from_secs(3600), 1);
    shut.check(&key, ONE);
    g.bench_function("refused, one hot key", |b| {
        b.iter(|| black_box(shut.check(black_box(&key), ONE)))
    });
    // 10,000 callers in the map, asked in turn.
    let keys: Vec<String> = (0..10_000)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    for k in &keys {
        open.check(k, ONE);
    }
    let mut i = 0usize;
    g.bench_function("admitted, 10k keys in turn", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(open.check(&keys[i], ONE))
        })
    });
    g.finish();
}

fn around(c: &mut Criterion) {
    let mut g = c.benchmark_group("around the decision");
    let mut headers = http::HeaderMap::new();
    headers.insert("x-device-id", http::HeaderValue::from_static("dev-0042"));
    let src = KeySource {
        identity: Some("svc-ingest"),
        tenant: Some("acme"),
        client_ip: Some(
            "10.1.2.3"
                .parse()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        ),
        route: "write",
        headers: &headers,
        claims: &[],
    };
    let parts = [
        KeyPart::Tenant,
        KeyPart::ClientIp,
        KeyPart::Header(http::HeaderName::from_static("x-device-id")),
    ];
    g.bench_function("caller key: tenant|client_ip|header", |b| {
        b.iter(|| black_box(caller_key(black_box(&parts), &src)))
    });
    let quotas = vec![Quota {
        name: "per-tenant".into(),
        quota: 2000,
        window: Duration::from_secs(2),
        remaining: 1234,
        reset: Duration::from_millis(766),
    }];
    g.bench_function("RateLimit-Policy and RateLimit headers", |b| {
        b.iter_batched(
            || quotas.clone(),
            |q| black_box((headers::policy(&q), headers::current(&q))),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, local, around);
criterion_main!(benches);
