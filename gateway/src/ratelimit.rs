//! Rate limiting: token buckets per caller, kept in this gateway's memory (`scope: local`)
//! or in Redis for the whole fleet (`scope: global`), and what a request is told about them.
//!
//! ```text
//! local.rs    governor keyed buckets (GCRA) on the gateway's clock, memory bounded
//! global.rs   one atomic Redis script per decision (GCRA on Redis TIME), health, fleet size
//! headers.rs  RateLimit-Policy / RateLimit / Retry-After
//! ```
//!
//! A route lists limits; every one must admit the request (each is asked in turn, and the
//! first refusal answers 429). A global limit whose Redis does not answer in time degrades
//! by its `on_limiter_error`: `fail_open` decides locally at this gateway's share of the
//! limit (rate and burst divided by the number of live gateways, last seen in Redis),
//! `fail_closed` refuses. The limiter never turns a request into a 5xx. Buckets live in a
//! [`LimitRegistry`] keyed by limit name and parameters, so a reload that keeps a limit
//! keeps its buckets.

pub mod global;
pub mod headers;
pub mod local;

use crate::clock::Clock;
use crate::config::policy::{Cost, KeyPart, OnLimiterError, Policy, RateLimit, Scope};
use crate::config::{ConfigError, ConfigErrors};
use crate::metrics::Metrics;
use global::{GlobalLimiter, Mode};
use headers::Quota;
use local::{LocalLimiter, DEFAULT_MAX_KEYS};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Where a limit keeps its buckets.
#[derive(Debug)]
pub enum Buckets {
    Local(Arc<LocalLimiter>),
    Global {
        redis: Arc<GlobalLimiter>,
        /// The local buckets used while Redis does not answer, at this gateway's share
        /// (rebuilt when the number of gateways changes).
        fallback: Mutex<Option<(u32, Arc<LocalLimiter>)>>,
    },
}

/// A limit ready to decide.
#[derive(Debug)]
pub struct Limiter {
    pub limit: RateLimit,
    pub buckets: Buckets,
    clock: Arc<dyn Clock>,
}

/// How a decision was made, for metrics and the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    Redis,
    /// Redis did not answer: the local share decided.
    Fallback,
    /// Redis did not answer and the limit fails closed.
    Unavailable,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Redis => "redis",
            Source::Fallback => "fallback",
            Source::Unavailable => "unavailable",
        }
    }
}

/// One limit's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub quota: Quota,
    pub retry_after: Duration,
    pub source: Source,
}

impl Limiter {
    /// The local buckets at this gateway's share of the limit, for `instances` gateways:
    /// rate and burst divided by their number (the burst rounded up, at least 1).
    fn share(
        &self,
        slot: &Mutex<Option<(u32, Arc<LocalLimiter>)>>,
        instances: u32,
    ) -> Arc<LocalLimiter> {
        let n = instances.max(1);
        let mut f = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match f.as_ref() {
            Some((m, l)) if *m == n => l.clone(),
            _ => {
                let burst =
                    NonZeroU32::new(self.limit.burst.get().div_ceil(n)).unwrap_or(NonZeroU32::MIN);
                let l = Arc::new(LocalLimiter::new(
                    self.limit.rate.interval() * n,
                    burst,
                    DEFAULT_MAX_KEYS,
                    self.clock.clone(),
                ));
                *f = Some((n, l.clone()));
                l
            }
        }
    }

    fn quota(&self, remaining: u32, reset: Duration) -> Quota {
        Quota {
            name: self.limit.name.clone(),
            quota: self.limit.burst.get(),
            window: self.limit.rate.interval() * self.limit.burst.get(),
            remaining,
            reset,
        }
    }

    fn verdict_of(&self, d: local::Decision, source: Source) -> Verdict {
        Verdict {
            allowed: d.allowed,
            quota: self.quota(d.remaining, d.reset_after),
            retry_after: d.retry_after,
            source,
        }
    }

    /// Asks the limit whether `key` may spend `cost` tokens now.
    pub async fn check(&self, key: &str, cost: NonZeroU32) -> Verdict {
        match &self.buckets {
            Buckets::Local(l) => self.verdict_of(l.check(key, cost), Source::Local),
            Buckets::Global { redis, fallback } => {
                let rate = self.limit.rate.per_second();
                let burst = self.limit.burst.get();
                match redis
                    .decide(&self.limit.name, key, rate, burst, cost.get(), Mode::Check)
                    .await
                {
                    Ok(d) => Verdict {
                        allowed: d.allowed,
                        quota: self.quota(
                            u32::try_from(d.remaining).unwrap_or(u32::MAX),
                            d.reset_after,
                        ),
                        retry_after: d.retry_after,
                        source: Source::Redis,
                    },
                    Err(_) => match self.limit.on_error {
                        OnLimiterError::FailOpen => {
                            let share = self.share(fallback, redis.instances());
                            self.verdict_of(share.check(key, cost), Source::Fallback)
                        }
                        OnLimiterError::FailClosed => Verdict {
                            allowed: false,
                            quota: self.quota(0, Duration::from_secs(1)),
                            retry_after: Duration::from_secs(1),
                            source: Source::Unavailable,
                        },
                    },
                }
            }
        }
    }

    /// Spends `cost` more tokens of `key` whatever is left (a cost learnt from the body).
    pub async fn charge(&self, key: &str, cost: u32) {
        if cost == 0 {
            return;
        }
        match &self.buckets {
            Buckets::Local(l) => l.charge(key, cost),
            Buckets::Global { redis, fallback } => {
                let rate = self.limit.rate.per_second();
                let burst = self.limit.burst.get();
                let charged = redis
                    .decide(&self.limit.name, key, rate, burst, cost, Mode::Charge)
                    .await;
                if charged.is_err() && self.limit.on_error == OnLimiterError::FailOpen {
                    self.share(fallback, redis.instances()).charge(key, cost);
                }
            }
        }
    }

    /// The local buckets of this limit (its own, or its fallback share), for housekeeping.
    pub fn local_buckets(&self) -> Option<Arc<LocalLimiter>> {
        match &self.buckets {
            Buckets::Local(l) => Some(l.clone()),
            Buckets::Global { fallback, .. } => fallback
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(|(_, l)| l.clone()),
        }
    }
}

/// The limits of one policy version, by name.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    by_name: BTreeMap<String, Arc<Limiter>>,
}

impl Limits {
    pub fn get(&self, name: &str) -> Option<&Arc<Limiter>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Limiter>)> {
        self.by_name.iter()
    }

    /// The Redis client of the global limits, if the policy has any.
    pub fn redis(&self) -> Option<&Arc<GlobalLimiter>> {
        self.by_name.values().find_map(|l| match &l.buckets {
            Buckets::Global { redis, .. } => Some(redis),
            Buckets::Local(_) => None,
        })
    }
}

/// Buckets that outlive policy versions: a reload that keeps a limit's parameters keeps
/// its buckets (and its callers' standing).
#[derive(Debug)]
pub struct LimitRegistry {
    kept: Mutex<HashMap<String, Arc<Limiter>>>,
    redis: Option<Arc<GlobalLimiter>>,
    clock: Arc<dyn Clock>,
}

impl LimitRegistry {
    pub fn new(redis: Option<Arc<GlobalLimiter>>, clock: Arc<dyn Clock>) -> LimitRegistry {
        LimitRegistry {
            kept: Mutex::new(HashMap::new()),
            redis,
            clock,
        }
    }

    pub fn redis(&self) -> Option<&Arc<GlobalLimiter>> {
        self.redis.as_ref()
    }

    /// The limiters of `policy`. A global limit needs Redis in the bootstrap file.
    pub fn build(&self, policy: &Policy) -> Result<Limits, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::new();
        let mut by_name = BTreeMap::new();
        for (name, limit) in &policy.rate_limits {
            let reused = kept.get(name).filter(|l| l.limit == *limit).cloned();
            let limiter = match reused {
                Some(l) => l,
                None => {
                    let buckets = match (limit.scope, &self.redis) {
                        (Scope::Local, _) => Buckets::Local(Arc::new(LocalLimiter::new(
                            limit.rate.interval(),
                            limit.burst,
                            DEFAULT_MAX_KEYS,
                            self.clock.clone(),
                        ))),
                        (Scope::Global, Some(redis)) => Buckets::Global {
                            redis: redis.clone(),
                            fallback: Mutex::new(None),
                        },
                        (Scope::Global, None) => {
                            errors.push(ConfigError {
                                file: policy
                                    .routes
                                    .iter()
                                    .find(|r| r.rate_limits.contains(name))
                                    .map(|r| r.file.clone())
                                    .unwrap_or_default(),
                                line: 0,
                                column: 0,
                                field: format!("rate_limits.{name}.scope"),
                                message:
                                    "scope: global needs redis: { url: ... } in the bootstrap file"
                                        .into(),
                            });
                            continue;
                        }
                    };
                    Arc::new(Limiter {
                        limit: limit.clone(),
                        buckets,
                        clock: self.clock.clone(),
                    })
                }
            };
            next.insert(name.clone(), limiter.clone());
            by_name.insert(name.clone(), limiter);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        *kept = next;
        Ok(Limits { by_name })
    }
}

/// What a request's key is made of.
#[derive(Debug, Clone, Copy)]
pub struct KeySource<'a> {
    pub identity: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    pub route: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The verified token's claims that keys name.
    pub claims: &'a [(String, String)],
}

/// The caller key of a request for one limit: its parts joined by `|` (a part's own `|`
/// and `\` escaped, so two different callers never share a key); `-` for a part the request
/// does not have.
pub fn caller_key(parts: &[KeyPart], src: &KeySource<'_>) -> String {
    let mut out = String::with_capacity(48);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        let ip;
        let value: Option<&str> = match p {
            KeyPart::Identity => src.identity,
            KeyPart::Tenant => src.tenant,
            KeyPart::ClientIp => {
                ip = src.client_ip.map(|a| a.to_string());
                ip.as_deref()
            }
            KeyPart::Route => Some(src.route),
            KeyPart::Header(h) => src.headers.get(h).and_then(|v| v.to_str().ok()),
            KeyPart::Claim(c) => src
                .claims
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, v)| v.as_str()),
        };
        match value {
            None | Some("") => out.push('-'),
            Some(v) => {
                for c in v.chars() {
                    if c == '|' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Lines of a line-protocol body part: newlines, plus one for a last line without its
/// newline (counted when the body ends).
pub fn count_newlines(chunk: &[u8]) -> u32 {
    let n = chunk.iter().filter(|&&b| b == b'\n').count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The answer to a route's limits: admitted (with what to tell the client), or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Every limit asked so far (all of them when admitted).
    pub verdicts: Vec<(String, Verdict)>,
}

impl Outcome {
    /// The refusing verdict, if any.
    pub fn refusal(&self) -> Option<&(String, Verdict)> {
        self.verdicts.iter().find(|(_, v)| !v.allowed)
    }

    pub fn quotas(&self) -> Vec<Quota> {
        self.verdicts.iter().map(|(_, v)| v.quota.clone()).collect()
    }
}

/// A request a route's limits refused: which limit, how long to wait (`Retry-After`), and
/// the `RateLimit-Policy` / `RateLimit` headers of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub limit: String,
    pub retry_after: String,
    /// The limit's store did not answer and it fails closed.
    pub unavailable: bool,
    pub headers: Vec<(&'static str, String)>,
}

impl Limited {
    pub fn message(&self) -> String {
        if self.unavailable {
            format!(
                "rate limit {} unavailable (its store does not answer)",
                self.limit
            )
        } else {
            format!("rate limited by {}", self.limit)
        }
    }
}

/// What a route's limits left a request they admitted: the state its answer tells the
/// client, and the limits still to charge per line when its body ends.
#[derive(Debug, Default)]
pub struct Admitted {
    pub quotas: Vec<Quota>,
    pub line_charges: Vec<(Arc<Limiter>, String)>,
}

/// The rate-limit step: every limit of the route asked in turn for the caller `src`, each
/// answer counted in `metrics`.
pub async fn admit(
    limits: &[Arc<Limiter>],
    cost: Cost,
    src: &KeySource<'_>,
    metrics: &Metrics,
) -> Result<Admitted, Limited> {
    if limits.is_empty() {
        return Ok(Admitted::default());
    }
    let limiters: Vec<(Arc<Limiter>, String)> = limits
        .iter()
        .map(|l| (l.clone(), caller_key(&l.limit.key, src)))
        .collect();
    let first = match cost {
        Cost::Fixed(n) => n,
        // The head pays one token; the rest is charged when the body ends.
        Cost::Lines => NonZeroU32::MIN,
    };
    let outcome = decide(&limiters, first).await;
    for (name, v) in &outcome.verdicts {
        metrics.ratelimit(name, v.allowed, v.source.as_str());
    }
    let quotas = outcome.quotas();
    if let Some((name, v)) = outcome.refusal() {
        let mut headers = vec![("ratelimit-policy", headers::policy(&quotas))];
        headers.extend(headers::current(std::slice::from_ref(&v.quota)).map(|c| ("ratelimit", c)));
        return Err(Limited {
            limit: name.clone(),
            retry_after: headers::retry_after(v.retry_after),
            unavailable: v.source == Source::Unavailable,
            headers,
        });
    }
    Ok(Admitted {
        quotas,
        line_charges: if cost == Cost::Lines {
            limiters
        } else {
            Vec::new()
        },
    })
}

/// Asks each of the route's limits in turn; the first refusal ends it.
pub async fn decide(limiters: &[(Arc<Limiter>, String)], cost: NonZeroU32) -> Outcome {
    let mut verdicts = Vec::with_capacity(limiters.len());
    for (l, key) in limiters {
        let v = l.check(key, cost).await;
        let allowed = v.allowed;
        verdicts.push((l.limit.name.clone(), v));
        if !allowed {
            return Outcome {
                allowed: false,
                verdicts,
            };
        }
    }
    Outcome {
        allowed: true,
        verdicts,
    }
}

/// Evicts idle callers of every local bucket, every second, for the life of the process.
pub fn spawn_housekeeping(
    current: impl Fn() -> Limits + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ratelimit-gc".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            for (_, l) in current().iter() {
                if let Some(b) = l.local_buckets() {
                    b.housekeeping();
                }
            }
        })
}

#[cfg(test)]
mod tests;
