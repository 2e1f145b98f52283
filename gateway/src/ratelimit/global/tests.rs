//! Against a private `redis-server` per test, on a free port, killed by PID when dropped.
//!
//! Time here is Redis's real clock, so timing assertions carry a tolerance, and every wait
//! for a condition polls against a deadline.

use super::*;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// The longest any condition is waited for.
const PATIENCE: Duration = Duration::from_secs(10);

/// Generous, for tests that are not about timeouts: the machine is shared and noisy.
const RELAXED: Duration = Duration::from_secs(1);

struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let server = RedisServer { child, port };
        let deadline = SystemClock.now() + PATIENCE;
        while server.try_plain().is_err() {
            assert!(
                SystemClock.now() < deadline,
                "redis-server on {port} never answered"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn config(&self, command_timeout: Duration) -> RedisConfig {
        RedisConfig {
            command_timeout,
            ..RedisConfig::new(self.url())
        }
    }

    fn try_plain(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let mut con = client.get_connection_with_timeout(Duration::from_millis(200))?;
        redis::cmd("PING").query::<String>(&mut con)?;
        Ok(con)
    }

    /// A plain connection, to look at what the limiter left in Redis.
    fn plain(&self) -> redis::Connection {
        self.try_plain().expect("redis answers")
    }

    /// SIGSTOP or SIGCONT: a Redis that hangs rather than dies.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
        // The signal is only queued: wait until the kernel has actually stopped it.
        let stat = format!("/proc/{}/stat", self.child.id());
        let stopped = || {
            let stat = std::fs::read_to_string(&stat).unwrap_or_default();
            // "pid (comm) S ...": the state follows the last ')'.
            stat.rsplit(')')
                .next()
                .map(str::trim_start)
                .and_then(|s| s.chars().next())
                == Some('T')
        };
        let deadline = SystemClock.now() + PATIENCE;
        while (signal == "-STOP") != stopped() {
            assert!(SystemClock.now() < deadline, "kill {signal}: no effect");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = SystemClock.now() + PATIENCE;
    while !condition() {
        assert!(
            SystemClock.now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A limiter that has connected to `server`.
async fn connected(server: &RedisServer, id: &str, command_timeout: Duration) -> GlobalLimiter {
    let limiter = GlobalLimiter::start(server.config(command_timeout), id.into());
    eventually("connected", || limiter.state().is_connected()).await;
    limiter
}

fn within(actual: Duration, low_ms: u64, high_ms: u64) -> bool {
    actual >= Duration::from_millis(low_ms) && actual <= Duration::from_millis(high_ms)
}

// === keys ===

#[test]
fn bucket_keys_put_the_whole_variable_part_in_one_hash_tag() {
    assert_eq!(bucket_key("api", "10.0.0.1"), "gw:rl:{api:10.0.0.1}");
    assert_eq!(
        bucket_key("per-user", "user:{7}%"),
        "gw:rl:{per-user:user:%7B7%7D%25}"
    );
    // A colon in the limit name is encoded, so the first ':' in the tag ends the name.
    assert_ne!(bucket_key("a:b", "c"), bucket_key("a", "b:c"));
    assert_eq!(bucket_key("a:b", "c"), "gw:rl:{a%3Ab:c}");
    let key = bucket_key("{x}", "}{");
    assert_eq!(key.matches('{').count(), 1, "{key}");
    assert_eq!(key.matches('}').count(), 1, "{key}");
    assert!(key.ends_with('}'), "{key}");
}

#[test]
fn arguments_that_could_never_work_are_refused_before_any_round_trip() {
    use GlobalError::*;
    let bad = |rate, burst, cost, mode| validate(rate, burst, cost, mode).err();
    assert!(matches!(
        bad(0.0, 1, 1, Mode::Check),
        Some(InvalidArgument(_))
    ));
    assert!(matches!(
        bad(f64::NAN, 1, 1, Mode::Check),
        Some(InvalidArgument(_))
    ));
    assert!(matches!(
        bad(-1.0, 1, 1, Mode::Check),
        Some(InvalidArgument(_))
    ));
    assert!(matches!(
        bad(1.0, 0, 1, Mode::Check),
        Some(InvalidArgument(_))
    ));
    assert!(matches!(
        bad(1.0, 1, 0, Mode::Charge),
        Some(InvalidArgument(_))
    ));
    assert!(matches!(
        bad(1e-9, 1000, 1, Mode::Check),
        Some(InvalidArgument(_))
    ));
    assert!(matches!(
        bad(1.0, 3, 5, Mode::Check),
        Some(InsufficientCapacity { cost: 5, burst: 3 })
    ));
    // A charge may exceed the burst: that is what debt is for.
    assert!(bad(1.0, 3, 5, Mode::Charge).is_none());
    assert!(bad(0.5, 1, 1, Mode::Check).is_none());
}

// === the algorithm ===

#[tokio::test]
async fn a_full_bucket_admits_exactly_burst_at_once_then_one_per_interval() {
    let server = RedisServer::start();
    let limiter = connected(&server, "gw-1", RELAXED).await;
    // 10/s: T = 100 ms; burst 5.
    let decide = || limiter.decide("api", "alice", 10.0, 5, 1, Mode::Check);
    for left in (0..5).rev() {
        let d = decide().await.unwrap();
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, left, "{d:?}");
        assert_eq!(d.retry_after, Duration::ZERO, "{d:?}");
    }
    let refused = decide().await.unwrap();
    assert!(!refused.allowed, "{refused:?}");
    assert_eq!(refused.remaining, 0);
    // One interval minus the few ms the six calls took.
    assert!(within(refused.retry_after, 50, 100), "{refused:?}");
    assert!(within(refused.reset_after, 450, 500), "{refused:?}");

    tokio::time::sleep(refused.retry_after).await;
    let next = decide().await.unwrap();
    assert!(next.allowed, "after retry_after: {next:?}");
    assert_eq!(next.remaining, 0);
    let again = decide().await.unwrap();
    assert!(!again.allowed, "only one token came back: {again:?}");
}

#[tokio::test]
async fn a_cost_takes_that_many_tokens_and_a_refused_check_takes_none() {
    let server = RedisServer::start();
    let limiter = connected(&server, "gw-1", RELAXED).await;
    // 1/s: T = 1 s; burst 10.
    let decide = |cost| limiter.decide("lines", "bob", 1.0, 10, cost, Mode::Check);
    let first = decide(4).await.unwrap();
    assert!(first.allowed && first.remaining == 6, "{first:?}");
    assert!(within(first.reset_after, 3_900, 4_000), "{first:?}");
    let second = decide(4).await.unwrap();
    assert!(second.allowed && second.remaining == 2, "{second:?}");
    let refused = decide(4).await.unwrap();
    assert!(!refused.allowed && refused.remaining == 2, "{refused:?}");
    // Two tokens are missing: two intervals.
    assert!(within(refused.retry_after, 1_900, 2_000), "{refused:?}");
    assert!(within(refused.reset_after, 7_900, 8_000), "{refused:?}");
    // The refusal took nothing: the two tokens are still there.
    let rest = decide(2).await.unwrap();
    assert!(rest.allowed && rest.remaining == 0, "{rest:?}");
    assert!(within(rest.reset_after, 9_900, 10_000), "{rest:?}");
}

#[tokio::test]
async fn a_charge_goes_into_debt_and_the_next_check_waits_until_it_is_paid() {
    let server = RedisServer::start();
    let limiter = connected(&server, "gw-1", RELAXED).await;
    // 10/s: T = 100 ms; burst 2; a charge of 5 leaves a debt of 3 tokens.
    let fitting = limiter
        .decide("bytes", "carol", 10.0, 2, 1, Mode::Charge)
        .await
        .unwrap();
    assert!(fitting.allowed && fitting.remaining == 1, "{fitting:?}");
    let debt = limiter
        .decide("bytes", "carol", 10.0, 2, 5, Mode::Charge)
        .await
        .unwrap();
    assert!(!debt.allowed && debt.remaining == 0, "{debt:?}");
    // TAT = now + 600 ms; one token is back at TAT + T - 2T = now + 500 ms.
    assert!(within(debt.retry_after, 450, 500), "{debt:?}");
    assert!(within(debt.reset_after, 550, 600), "{debt:?}");
    let check = limiter
        .decide("bytes", "carol", 10.0, 2, 1, Mode::Check)
        .await
        .unwrap();
    assert!(!check.allowed, "{check:?}");
    assert!(
        check.retry_after <= debt.retry_after && within(check.retry_after, 400, 500),
        "{check:?} after {debt:?}"
    );
    tokio::time::sleep(check.retry_after).await;
    let paid = limiter
        .decide("bytes", "carol", 10.0, 2, 1, Mode::Check)
        .await
        .unwrap();
    assert!(paid.allowed, "{paid:?}");
}

#[tokio::test]
async fn the_bucket_is_one_hash_tagged_key_that_expires_when_full() {
    let server = RedisServer::start();
    let limiter = connected(&server, "gw-1", RELAXED).await;
    // 0.5/s: T = 2 s; a cost of 2 empties the bucket for 4 s.
    let d = limiter
        .decide("per-user", "user:{7}", 0.5, 3, 2, Mode::Check)
        .await
        .unwrap();
    assert!(d.allowed && d.remaining == 1, "{d:?}");
    assert!(within(d.reset_after, 3_900, 4_000), "{d:?}");

    let mut plain = server.plain();
    let keys: Vec<String> = redis::cmd("KEYS").arg("gw:rl:*").query(&mut plain).unwrap();
    assert_eq!(keys, vec!["gw:rl:{per-user:user:%7B7%7D}".to_string()]);
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query(&mut plain).unwrap();
    assert!((3..=4).contains(&ttl), "ttl {ttl}");
    let tat: String = redis::cmd("GET").arg(&keys[0]).query(&mut plain).unwrap();
    assert!(tat.parse::<u64>().is_ok(), "TAT stored as whole µs: {tat}");

    // A refused check writes nothing, so the TTL is not extended either.
    let refused = limiter
        .decide("per-user", "user:{7}", 0.5, 3, 2, Mode::Check)
        .await
        .unwrap();
    assert!(!refused.allowed, "{refused:?}");
    let after: String = redis::cmd("GET").arg(&keys[0]).query(&mut plain).unwrap();
    assert_eq!(after, tat);
}

// === several gateways ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_bucket_and_count_each_other() {
    let server = RedisServer::start();
    let a = connected(&server, "gw-a", RELAXED).await;
    let b = connected(&server, "gw-b", RELAXED).await;
    // 1/s, burst 4: four passes in all, whichever gateway takes them.
    let mut allowed = 0;
    for limiter in [&a, &b, &a, &b, &a, &b] {
        let d = limiter
            .decide("api", "shared", 1.0, 4, 1, Mode::Check)
            .await
            .unwrap();
        allowed += u32::from(d.allowed);
    }
    assert_eq!(allowed, 4);

    eventually("both count 2", || a.instances() == 2 && b.instances() == 2).await;
    let mut plain = server.plain();
    let mut members: Vec<String> = redis::cmd("ZRANGE")
        .arg(INSTANCES_KEY)
        .arg(0)
        .arg(-1)
        .query(&mut plain)
        .unwrap();
    members.sort();
    assert_eq!(members, vec!["gw-a".to_string(), "gw-b".to_string()]);

    // A gateway that stops leaves the count at once.
    drop(b);
    eventually("gw-b left", || {
        let n: u32 = redis::cmd("ZCARD")
            .arg(INSTANCES_KEY)
            .query(&mut plain)
            .unwrap();
        n == 1
    })
    .await;
}

// === degradation ===

#[tokio::test]
async fn a_limiter_starts_at_once_while_redis_is_down_and_connects_when_it_comes_up() {
    let port = free_port();
    let began = SystemClock.now();
    let limiter = GlobalLimiter::start(
        RedisConfig::new(format!("redis://127.0.0.1:{port}")),
        "gw-1".into(),
    );
    assert!(
        (SystemClock.now() - began) < Duration::from_millis(100),
        "start blocked"
    );
    assert!(!limiter.state().is_connected());
    assert_eq!(limiter.instances(), 1);
    let refused = limiter.decide("api", "k", 1.0, 1, 1, Mode::Check).await;
    assert!(
        matches!(refused, Err(GlobalError::NotConnected)),
        "{refused:?}"
    );
    assert!(
        (SystemClock.now() - began) < Duration::from_millis(100),
        "decide waited"
    );

    let _server = RedisServer::start_on(port);
    eventually("connected", || limiter.state().is_connected()).await;
    let d = limiter.decide("api", "k", 1.0, 1, 1, Mode::Check).await;
    assert!(matches!(d, Ok(Decision { allowed: true, .. })), "{d:?}");
    // The first connection is not a reconnect.
    assert_eq!(limiter.stats().reconnects, 0);
}

/// The first decision on `key` that Redis answers, waiting for the limiter to be connected
/// before each of at most 50 tries; the last error if none was.
async fn decided(limiter: &GlobalLimiter, key: &str) -> Result<Decision, GlobalError> {
    let mut last = Err(GlobalError::NotConnected);
    for _ in 0..50 {
        eventually("connected", || limiter.state().is_connected()).await;
        last = limiter.decide("api", key, 100.0, 10, 1, Mode::Check).await;
        if last.is_ok() {
            break;
        }
    }
    last
}

#[tokio::test]
async fn a_dead_redis_fails_decisions_fast_and_a_restarted_one_is_found_again() {
    let mut server = RedisServer::start();
    let port = server.port;
    // The default 20 ms command timeout, as in production.
    let limiter = connected(&server, "gw-1", RedisConfig::DEFAULT_COMMAND_TIMEOUT).await;
    // A noisy machine may miss 20 ms once; the state then flips back by itself.
    let first = decided(&limiter, "k").await;
    assert!(
        first.is_ok(),
        "no decision within 20 ms in 50 tries: {first:?}"
    );

    server.kill();
    let began = SystemClock.now();
    let failed = limiter.decide("api", "k", 100.0, 10, 1, Mode::Check).await;
    let took = SystemClock.now() - began;
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        took < Duration::from_millis(20 + 100),
        "took {took:?}: {failed:?}"
    );
    match limiter.state() {
        RedisState::Unreachable { since, last_error } => {
            assert!(since >= began - Duration::from_secs(1), "{since:?}");
            assert!(!last_error.is_empty());
        }
        RedisState::Connected => panic!("still connected after {failed:?}"),
    }
    // Now without a round trip.
    let fast = limiter.decide("api", "k", 100.0, 10, 1, Mode::Check).await;
    assert!(matches!(fast, Err(GlobalError::NotConnected)), "{fast:?}");
    assert_eq!(limiter.instances(), 1, "the last count is kept");

    let _server = RedisServer::start_on(port);
    let restarted = SystemClock.now();
    eventually("reconnected", || limiter.state().is_connected()).await;
    println!(
        "first failure {failed:?} after {took:?}; connected again {:?} after the restart",
        SystemClock.now() - restarted
    );
    let again = decided(&limiter, "k").await;
    assert!(again.is_ok(), "no decision after the restart: {again:?}");
    let stats = limiter.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(stats.errors >= 2, "{stats:?}");
    assert!(stats.decisions_ok >= 2, "{stats:?}");
}

#[tokio::test]
async fn a_hung_redis_times_decisions_out_within_the_command_timeout() {
    let server = RedisServer::start();
    let limiter = connected(&server, "gw-1", Duration::from_millis(20)).await;
    // This thread's connection is made (and the script loaded) by a first decision; it is
    // the established connection whose Redis then hangs.
    let first = decided(&limiter, "warm").await;
    assert!(first.is_ok(), "{first:?}");
    server.signal("-STOP");
    let began = SystemClock.now();
    let failed = limiter.decide("api", "k", 100.0, 10, 1, Mode::Check).await;
    let took = SystemClock.now() - began;
    assert!(
        matches!(failed, Err(GlobalError::TimedOut(_))),
        "{failed:?} after {took:?}"
    );
    assert!(took < Duration::from_millis(20 + 100), "took {took:?}");
    assert!(!limiter.state().is_connected());

    server.signal("-CONT");
    eventually("connected again", || limiter.state().is_connected()).await;
}

#[tokio::test]
async fn after_a_long_outage_the_connection_is_rebuilt_and_found_again() {
    let mut server = RedisServer::start();
    let port = server.port;
    let limiter = connected(&server, "gw-1", RELAXED).await;
    server.kill();
    let failed = limiter.decide("api", "k", 100.0, 10, 1, Mode::Check).await;
    assert!(failed.is_err(), "{failed:?}");
    // Long enough for RECREATE_AFTER_FAILURES probes to fail: the outage is the point.
    tokio::time::sleep(PROBE_INTERVAL * (RECREATE_AFTER_FAILURES + 1)).await;
    assert!(!limiter.state().is_connected());

    let _server = RedisServer::start_on(port);
    let restarted = SystemClock.now();
    eventually("reconnected", || limiter.state().is_connected()).await;
    println!(
        "after a long outage: connected again {:?} after the restart",
        SystemClock.now() - restarted
    );
    let d = limiter.decide("api", "k", 100.0, 10, 1, Mode::Check).await;
    assert!(matches!(d, Ok(Decision { allowed: true, .. })), "{d:?}");
    assert_eq!(limiter.stats().reconnects, 1);
}

// === latency ===

#[tokio::test]
async fn decide_latency_over_5000_sequential_calls() {
    let server = RedisServer::start();
    let limiter = connected(&server, "gw-1", RELAXED).await;
    let mut micros = Vec::with_capacity(5_000);
    for i in 0..5_000u32 {
        let key = format!("caller-{}", i % 100);
        let began = SystemClock.now();
        let d = limiter
            .decide("bench", &key, 1e6, 1_000_000, 1, Mode::Check)
            .await
            .unwrap();
        micros.push((SystemClock.now() - began).as_micros());
        assert!(d.allowed);
    }
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    println!(
        "decide latency over {} calls: p50 {} µs, p99 {} µs, max {} µs",
        micros.len(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}
