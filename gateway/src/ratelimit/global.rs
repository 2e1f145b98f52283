//! Global token buckets, shared by every gateway of a deployment through Redis.
//!
//! ```text
//! each Pingora worker thread                    thread "gw-redis" (current-thread tokio)
//!   GlobalLimiter::decide                         supervise: connect, probe, presence
//!     └─ this thread's ConnectionManager            │
//!          └─ EVALSHA gcra.lua ─> Redis             │
//!   state() instances() stats() <── Shared <───────┘
//! ```
//!
//! A decision runs on the thread that asks for it, on a connection of that thread's own
//! (made lazily, on its runtime): no hand-over to another thread and back, which on a busy
//! machine cost more than the round trip itself (at 5,000 decisions/s, half the CPU a
//! global decision cost and most of its p99). The first decision of a thread waits for its
//! connection, within `connect_timeout`. The Redis thread only watches Redis's health on a
//! connection of its own and keeps this gateway's presence.
//!
//! # The algorithm
//!
//! Each decision is one run of `gcra.lua`, atomic in Redis and timed by Redis's `TIME`, so
//! the gateways' clocks never matter. A bucket's only state is its theoretical arrival time
//! (TAT, unix µs). With the emission interval `T = round(1e6 / rate)` µs (at least 1) and
//! `capacity = burst · T`, a request of `cost` fits when `max(TAT, now) + cost·T − now ≤
//! capacity`; this is GCRA with the burst tolerance `τ = (burst − 1)·T` written for a cost,
//! so a full bucket (`TAT ≤ now`) admits `burst` requests at once and then one per `T`.
//! The tokens left are `⌊(capacity − (TAT − now)) / T⌋`. `T` in whole microseconds keeps all
//! the arithmetic exact in Lua's doubles; the price is that a rate above about 10,000/s per
//! key is approximated within 0.5 %.
//!
//! [`Mode::Check`] takes `cost` only if it fits and otherwise writes nothing;
//! [`Mode::Charge`] takes it regardless (a cost known only after the body), moving TAT past
//! the capacity: the bucket is then in debt and later checks wait until it is paid. Every
//! write sets the key's TTL to the time until the bucket is full again (whole seconds,
//! rounded up, at least 1), after which a missing key means the same as a full bucket.
//!
//! # Keys
//!
//! A bucket is `gw:rl:{<limit>:<caller>}` ([`bucket_key`]): the whole variable part is one
//! Redis Cluster hash tag, so a key lives in one slot and the script touches one key. A
//! `}` inside would end the tag early, so `%`, `{` and `}` are percent-encoded in both
//! parts, and `:` in the limit name too (so `a:b` + `c` and `a` + `b:c` stay apart).
//! Encoding rather than hashing keeps keys readable in `MONITOR` and costs nothing for
//! the usual caller key without braces.
//!
//! # Degradation
//!
//! Nothing here waits for Redis at start: [`GlobalLimiter::start`] returns at once and the
//! limiter reports [`RedisState::Unreachable`] until the first probe succeeds. A decision
//! that fails marks it unreachable; while unreachable, decisions fail at once with
//! [`GlobalError::NotConnected`] (no round trip, so the gateway's fallback to local
//! buckets costs nothing) and the Redis thread probes every [`PROBE_INTERVAL`]. The probe
//! is the presence refresh below, a script that reads `TIME` and writes, so "connected"
//! means that what a decision needs works, not only `PING`. After
//! [`RECREATE_AFTER_FAILURES`] failed probes in a row the connection manager is dropped and
//! built anew.
//!
//! The local fallback limits at "this instance's share", so each gateway keeps a presence
//! in the sorted set [`INSTANCES_KEY`] (score: expiry in unix ms by Redis's clock), refreshed
//! every [`PRESENCE_INTERVAL`]; the same script drops expired members and counts the rest.
//! [`GlobalLimiter::instances`] keeps the last count while Redis is down.

use crate::clock::{Clock, SystemClock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};

#[cfg(test)]
mod tests;

/// The sorted set of live gateways: member = instance id, score = expiry (unix ms).
pub const INSTANCES_KEY: &str = "gw:instances";

/// How often a connected gateway refreshes its presence and the instance count.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(2);

/// How long a presence lasts unrefreshed: two refreshes may be missed before a live
/// gateway drops out of the count.
pub const PRESENCE_TTL: Duration = Duration::from_secs(6);

/// How often an unreachable Redis is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Consecutive failed probes after which the connection manager is built anew.
pub const RECREATE_AFTER_FAILURES: u32 = 4;

/// The first probe after a failed decision waits this long, so that a Redis that answers
/// probes but fails decisions cannot make the two alternate faster than this.
const FIRST_PROBE_DELAY: Duration = Duration::from_millis(50);

/// Reconnect attempts the connection manager makes by itself before failing the command
/// that waits; the probe loop takes over from there.
const RECONNECT_RETRIES: usize = 1;

/// Tells limiters apart in the per-thread connection table.
static NEXT_LIMITER_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Each thread's connections, by limiter id: made on the thread's runtime, so their I/O
    /// is driven where the decisions are awaited.
    static CONNECTIONS: std::cell::RefCell<Vec<(u64, ConnectionManager)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));

static PRESENCE: LazyLock<Script> = LazyLock::new(|| Script::new(PRESENCE_LUA));

/// Refreshes one gateway's presence and counts the live ones, atomically, by Redis's clock.
/// KEYS[1] the set, ARGV[1] the instance id, ARGV[2] the presence's lifetime in ms.
const PRESENCE_LUA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZADD', KEYS[1], now_ms + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
";

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// The longest a decision waits, queueing included (default 20 ms).
    pub command_timeout: Duration,
    /// The longest one connection attempt waits (default 500 ms).
    pub connect_timeout: Duration,
}

impl RedisConfig {
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(20);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

    /// The given URL with the default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            command_timeout: Self::DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig::new("redis://127.0.0.1:6379")
    }
}

/// Whether `cost` must fit (`Check`) or is taken regardless (`Charge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Admit only if `cost` fits; a refusal changes nothing.
    Check,
    /// Consume `cost` whatever is left, possibly into debt: for costs known only after the
    /// body. `allowed` then says whether it fitted.
    Charge,
}

impl Mode {
    fn as_arg(self) -> &'static str {
        match self {
            Mode::Check => "check",
            Mode::Charge => "charge",
        }
    }
}

/// One decision, as Redis took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `Check`: the cost was taken. `Charge`: it fitted without debt.
    pub allowed: bool,
    /// Whole tokens left after the decision (0 when in debt).
    pub remaining: u64,
    /// Zero when allowed. A refused check: when `cost` would fit. A charge in debt: when
    /// the debt is paid and one token is back.
    pub retry_after: Duration,
    /// When the bucket is full again.
    pub reset_after: Duration,
}

/// Why no decision came back; the caller falls back to its local buckets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GlobalError {
    #[error("redis not connected")]
    NotConnected,
    #[error("redis did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// A check whose cost is above the burst could never pass.
    #[error("cost {cost} exceeds burst {burst}: it can never be admitted")]
    InsufficientCapacity { cost: u32, burst: u32 },
    #[error("invalid limit: {0}")]
    InvalidArgument(&'static str),
}

/// Whether decisions reach Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisState {
    Connected,
    Unreachable {
        /// When it was first found unreachable (the limiter's clock).
        since: Instant,
        /// The latest failure.
        last_error: String,
    },
}

impl RedisState {
    pub fn is_connected(&self) -> bool {
        matches!(self, RedisState::Connected)
    }
}

/// Counters for metrics, each since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalStats {
    /// Decisions Redis answered.
    pub decisions_ok: u64,
    /// Decisions that failed: not connected, timed out or a Redis error.
    pub errors: u64,
    /// Times the connection came back after having been lost.
    pub reconnects: u64,
}

/// The client of the shared buckets; see the module docs.
#[derive(Debug)]
pub struct GlobalLimiter {
    /// Dropped with the limiter, which ends the Redis thread.
    _alive: mpsc::Sender<()>,
    shared: Arc<Shared>,
    command_timeout: Duration,
    config: RedisConfig,
    id: u64,
}

// === impl GlobalLimiter ===

impl GlobalLimiter {
    /// Starts the Redis thread and returns at once, whether Redis is up or not.
    pub fn start(config: RedisConfig, instance_id: String) -> GlobalLimiter {
        GlobalLimiter::start_with_clock(config, instance_id, Arc::new(SystemClock))
    }

    /// [`GlobalLimiter::start`], with the clock that stamps [`RedisState::Unreachable`].
    pub fn start_with_clock(
        config: RedisConfig,
        instance_id: String,
        clock: Arc<dyn Clock>,
    ) -> GlobalLimiter {
        let shared = Arc::new(Shared::new(clock));
        let (alive, closed) = mpsc::channel(1);
        let command_timeout = config.command_timeout;
        let thread_shared = shared.clone();
        let thread_config = config.clone();
        let spawned = std::thread::Builder::new()
            .name("gw-redis".into())
            .spawn(move || redis_thread(thread_config, instance_id, thread_shared, closed));
        if let Err(e) = spawned {
            // The queue's receiver is gone with the closure: decisions fail as not connected.
            shared.mark_unreachable(format!("cannot start the redis thread: {e}"));
        }
        GlobalLimiter {
            _alive: alive,
            shared,
            command_timeout,
            config,
            id: NEXT_LIMITER_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Takes one decision on the bucket `limit` × `key`, waiting at most `command_timeout`.
    ///
    /// Callable from any tokio runtime with timers and I/O enabled (Pingora's are), on the
    /// calling thread's own connection. While Redis is unreachable this fails at once with
    /// [`GlobalError::NotConnected`].
    pub async fn decide(
        &self,
        limit: &str,
        key: &str,
        rate: f64,
        burst: u32,
        cost: u32,
        mode: Mode,
    ) -> Result<Decision, GlobalError> {
        validate(rate, burst, cost, mode)?;
        if !self.shared.connected.load(Ordering::Acquire) {
            self.shared.errors.fetch_add(1, Ordering::Relaxed);
            return Err(GlobalError::NotConnected);
        }
        let mut manager = match self.connection().await {
            Ok(m) => m,
            Err(e) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                self.shared.mark_unreachable(e.clone());
                return Err(GlobalError::NotConnected);
            }
        };
        let mut invocation = GCRA.key(bucket_key(limit, key));
        invocation.arg(rate).arg(burst).arg(cost).arg(mode.as_arg());
        let answer = tokio::time::timeout(
            self.command_timeout,
            invocation.invoke_async::<(i64, i64, i64, i64)>(&mut manager),
        )
        .await;
        let result = match answer {
            // The manager's response timeout is the same bound: one error for both.
            Err(_) => Err(GlobalError::TimedOut(self.command_timeout)),
            Ok(Err(e)) if e.is_timeout() => Err(GlobalError::TimedOut(self.command_timeout)),
            Ok(Err(e)) => Err(GlobalError::Redis(e)),
            Ok(Ok(values)) => Ok(decision(values)),
        };
        match &result {
            Ok(_) => {
                self.shared.decisions_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                self.shared.mark_unreachable(e.to_string());
                // Start this thread afresh once Redis is back (the manager may have given
                // up, or belong to a runtime that is gone).
                self.forget_connection();
            }
        }
        result
    }

    /// This thread's connection for this limiter, made on first use: connected then (within
    /// `connect_timeout`), so that the first decision of a thread is not taken for a Redis
    /// too slow to answer.
    async fn connection(&self) -> Result<ConnectionManager, String> {
        let known = || {
            CONNECTIONS.with(|c| {
                c.borrow()
                    .iter()
                    .find(|(id, _)| *id == self.id)
                    .map(|(_, m)| m.clone())
            })
        };
        if let Some(m) = known() {
            return Ok(m);
        }
        let client =
            redis::Client::open(self.config.url.as_str()).map_err(|e| format!("redis url: {e}"))?;
        let connect = ConnectionManager::new_with_config(client, manager_options(&self.config));
        let made = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(format!("redis: {e}")),
            Err(_) => {
                return Err(format!(
                    "redis: no connection within {:?}",
                    self.config.connect_timeout
                ))
            }
        };
        // Another request of this thread may have connected meanwhile: keep one.
        if let Some(m) = known() {
            return Ok(m);
        }
        CONNECTIONS.with(|c| c.borrow_mut().push((self.id, made.clone())));
        Ok(made)
    }

    fn forget_connection(&self) {
        CONNECTIONS.with(|c| c.borrow_mut().retain(|(id, _)| *id != self.id));
    }

    /// Whether decisions reach Redis, for the degradation to local buckets.
    pub fn state(&self) -> RedisState {
        self.shared.lock_state().clone()
    }

    /// The live gateways at the last refresh (at least 1, this one), kept while Redis is
    /// down.
    pub fn instances(&self) -> u32 {
        self.shared.instances.load(Ordering::Relaxed).max(1)
    }

    pub fn stats(&self) -> GlobalStats {
        GlobalStats {
            decisions_ok: self.shared.decisions_ok.load(Ordering::Relaxed),
            errors: self.shared.errors.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// The Redis key of the bucket `limit` × `key`: `gw:rl:{<limit>:<key>}`, with `%`, `{`,
/// `}` percent-encoded in both and `:` in `limit`, so that the braces are exactly one hash
/// tag around the whole variable part and distinct pairs give distinct keys.
pub fn bucket_key(limit: &str, key: &str) -> String {
    let limit = escape(limit, true);
    let key = escape(key, false);
    let mut out = String::with_capacity(9 + limit.len() + key.len());
    out.push_str("gw:rl:{");
    out.push_str(&limit);
    out.push(':');
    out.push_str(&key);
    out.push('}');
    out
}

fn escape(part: &str, colon: bool) -> Cow<'_, str> {
    let special = |c: char| matches!(c, '%' | '{' | '}') || (colon && c == ':');
    if !part.contains(special) {
        return Cow::Borrowed(part);
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            ':' if colon => out.push_str("%3A"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Rejects what the script would refuse or get wrong, before any round trip.
fn validate(rate: f64, burst: u32, cost: u32, mode: Mode) -> Result<(), GlobalError> {
    if !rate.is_finite() || rate <= 0.0 {
        return Err(GlobalError::InvalidArgument(
            "rate must be a positive number",
        ));
    }
    if burst == 0 {
        return Err(GlobalError::InvalidArgument("burst must be at least 1"));
    }
    if cost == 0 {
        return Err(GlobalError::InvalidArgument("cost must be at least 1"));
    }
    // The script's sums must stay exact in a double (2^53) on top of unix µs (2^51).
    let span_us = (1e6 / rate).round().max(1.0) * f64::from(burst.max(cost));
    if span_us > (1u64 << 52) as f64 {
        return Err(GlobalError::InvalidArgument(
            "rate too low for this burst or cost",
        ));
    }
    if mode == Mode::Check && cost > burst {
        return Err(GlobalError::InsufficientCapacity { cost, burst });
    }
    Ok(())
}

// === impl Shared ===

/// What the Redis thread and the callers both see.
#[derive(Debug)]
struct Shared {
    clock: Arc<dyn Clock>,
    /// The fast path's copy of `state.is_connected()`.
    connected: AtomicBool,
    state: Mutex<RedisState>,
    ever_connected: AtomicBool,
    instances: AtomicU32,
    decisions_ok: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    /// Wakes the supervisor when a decision has failed.
    failed: Notify,
}

impl Shared {
    fn new(clock: Arc<dyn Clock>) -> Shared {
        let since = clock.now();
        Shared {
            clock,
            connected: AtomicBool::new(false),
            state: Mutex::new(RedisState::Unreachable {
                since,
                last_error: "not connected yet".into(),
            }),
            ever_connected: AtomicBool::new(false),
            instances: AtomicU32::new(1),
            decisions_ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            failed: Notify::new(),
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, RedisState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the first `since` of an outage; the error is always the latest.
    fn mark_unreachable(&self, error: String) {
        let mut state = self.lock_state();
        let was_connected = self.connected.swap(false, Ordering::AcqRel);
        match &mut *state {
            RedisState::Unreachable { last_error, .. } => *last_error = error,
            RedisState::Connected => {
                *state = RedisState::Unreachable {
                    since: self.clock.now(),
                    last_error: error,
                }
            }
        }
        drop(state);
        if was_connected {
            self.failed.notify_one();
        }
    }

    fn mark_connected(&self) {
        let mut state = self.lock_state();
        if !state.is_connected() {
            *state = RedisState::Connected;
            if self.ever_connected.swap(true, Ordering::AcqRel) {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.connected.store(true, Ordering::Release);
    }
}

// === the Redis thread ===

/// Owns the probe connection (health and presence) and its runtime; returns when the
/// [`GlobalLimiter`] is dropped.
fn redis_thread(
    config: RedisConfig,
    instance_id: String,
    shared: Arc<Shared>,
    mut closed: mpsc::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            shared.mark_unreachable(format!("cannot build the redis runtime: {e}"));
            return;
        }
    };
    runtime.block_on(async move {
        let (manager_tx, manager_rx) = watch::channel(None);
        tokio::select! {
            // Every sender gone: the limiter was dropped.
            _ = closed.recv() => {}
            () = supervise(&config, &instance_id, &shared, &manager_tx) => {}
        }
        // Leave the count at once rather than after PRESENCE_TTL; best effort.
        let manager = manager_rx.borrow().clone();
        if let Some(mut manager) = manager {
            let mut leave = redis::cmd("ZREM");
            leave.arg(INSTANCES_KEY).arg(&instance_id);
            let leave = leave.query_async::<()>(&mut manager);
            let _ = tokio::time::timeout(config.connect_timeout, leave).await;
        }
    });
}

fn decision((allowed, remaining, retry_ms, reset_ms): (i64, i64, i64, i64)) -> Decision {
    let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    Decision {
        allowed: allowed != 0,
        remaining: u64::try_from(remaining).unwrap_or(0),
        retry_after: millis(retry_ms),
        reset_after: millis(reset_ms),
    }
}

/// Keeps a connection manager, probes and refreshes the presence; never returns.
async fn supervise(
    config: &RedisConfig,
    instance_id: &str,
    shared: &Shared,
    manager: &watch::Sender<Option<ConnectionManager>>,
) {
    let mut failures = 0u32;
    // Long enough for the manager's own attempts (connect timeout each, plus backoff).
    let probe_timeout = config.connect_timeout * 2 + config.command_timeout;
    loop {
        if manager.borrow().is_none() {
            match new_manager(config) {
                Ok(created) => {
                    manager.send_replace(Some(created));
                }
                Err(e) => shared.mark_unreachable(e),
            }
        }
        let current = manager.borrow().clone();
        if let Some(mut current) = current {
            let mut refresh = PRESENCE.key(INSTANCES_KEY);
            refresh
                .arg(instance_id)
                .arg(PRESENCE_TTL.as_millis() as u64);
            let refresh = refresh.invoke_async::<u32>(&mut current);
            let error = match tokio::time::timeout(probe_timeout, refresh).await {
                Ok(Ok(count)) => {
                    shared.instances.store(count.max(1), Ordering::Relaxed);
                    shared.mark_connected();
                    failures = 0;
                    None
                }
                Ok(Err(e)) => Some(format!("redis: {e}")),
                Err(_) => Some(format!("redis did not answer within {probe_timeout:?}")),
            };
            if let Some(error) = error {
                shared.mark_unreachable(error);
                failures += 1;
                if failures >= RECREATE_AFTER_FAILURES {
                    // The manager gives up on some failures for good (it reconnects only
                    // after I/O errors): start from scratch.
                    manager.send_replace(None);
                    failures = 0;
                }
            }
        }
        if shared.connected.load(Ordering::Acquire) {
            tokio::select! {
                () = tokio::time::sleep(PRESENCE_INTERVAL) => {}
                () = shared.failed.notified() => tokio::time::sleep(FIRST_PROBE_DELAY).await,
            }
        } else {
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}

/// A manager that connects lazily, on its first command, so building it never waits: the
/// probe that follows drives the connection, under its own timeout.
fn new_manager(config: &RedisConfig) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(config.url.as_str()).map_err(|e| format!("redis url: {e}"))?;
    ConnectionManager::new_lazy_with_config(client, manager_options(config))
        .map_err(|e| format!("redis: {e}"))
}

fn manager_options(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.command_timeout))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(PROBE_INTERVAL)
}
