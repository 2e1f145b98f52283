//! A pool's defences, compiled: retries and their budget, outlier ejection, the circuit
//! breaker, slow start, and what hashing and sticky sessions key on. Kept apart from
//! `policy.rs`, which calls these while it compiles a pool or a route.

use super::duration::parse_duration;
use super::raw::{RawBudget, RawOutlier, RawPercent, RawRetries, RawRetryOn, RawSticky};
use crate::retry::condition::RetryOn;
use operator_config::Collector;
use serde_saphyr::Spanned;
use std::num::NonZeroU32;
use std::time::Duration;

/// How a route retries a failed try on another backend of its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (the first and the retries); at least 1.
    pub attempts: NonZeroU32,
    pub on: RetryOn,
    /// Exponential backoff with full jitter: the wait before retry `n` is uniform in
    /// `[0, min(max, base × 2^(n−1))]`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The longest one try waits for its answer to begin (and between reads after); `None`:
    /// the route's request timeout. A try never runs past the request timeout either.
    pub per_try_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: NonZeroU32::MIN,
            on: RetryOn::default(),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(200),
            per_try_timeout: None,
        }
    }
}

/// A pool's retry budget: retries at most `ratio` of its requests over `window`, plus a
/// reserve of `min_per_second` (see `retry/budget.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudgetConfig {
    /// The share in millionths (20% is 200 000), so the policy stays comparable.
    pub ratio_ppm: u32,
    pub min_per_second: u32,
    pub window: Duration,
}

impl RetryBudgetConfig {
    pub fn ratio(&self) -> f64 {
        f64::from(self.ratio_ppm) / 1_000_000.0
    }
}

impl Default for RetryBudgetConfig {
    /// linkerd's and Finagle's: 20% over 10 s, with 10 retries a second in reserve.
    fn default() -> Self {
        RetryBudgetConfig {
            ratio_ppm: 200_000,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// What `ring_hash` and `maglev` hash to keep a caller on one backend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    #[default]
    ClientIp,
    Identity,
    Tenant,
    Header(http::HeaderName),
    Cookie(String),
}

impl HashKey {
    pub fn describe(&self) -> String {
        match self {
            HashKey::ClientIp => "client_ip".into(),
            HashKey::Identity => "identity".into(),
            HashKey::Tenant => "tenant".into(),
            HashKey::Header(h) => format!("header:{h}"),
            HashKey::Cookie(c) => format!("cookie:{c}"),
        }
    }
}

/// Session affinity: the gateway names the backend that served a client in a cookie, and
/// sends the client's next requests there while it can take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    pub cookie: String,
    pub ttl: Duration,
}

/// The default `sticky.ttl`.
pub const DEFAULT_STICKY_TTL: Duration = Duration::from_secs(3600);

/// `20%`, `12.5%` or a bare number of percent, as millionths; `None` (reported) when it is
/// not a share from 0 to `max_percent`.
pub(super) fn percent_ppm(
    e: &mut Collector<'_>,
    at: &Spanned<impl Sized>,
    v: &RawPercent,
    field: &str,
    max_percent: u32,
) -> Option<u32> {
    let parsed = match v {
        RawPercent::Number(n) => Some(*n as f64),
        RawPercent::Text(t) => t.trim().trim_end_matches('%').trim().parse::<f64>().ok(),
    };
    match parsed {
        Some(p) if p.is_finite() && (0.0..=f64::from(max_percent)).contains(&p) => {
            Some((p * 10_000.0).round() as u32)
        }
        _ => {
            e.at(
                at,
                field,
                format!("write a share from 0% to {max_percent}%"),
            );
            None
        }
    }
}

/// A pool's retry policy (`base` is the default) or a route's, over its pool's.
pub(super) fn retries(
    e: &mut Collector<'_>,
    raw: Option<&RawRetries>,
    base: &RetryPolicy,
    field: &str,
) -> RetryPolicy {
    let Some(r) = raw else {
        return base.clone();
    };
    let f = |x: &str| format!("{field}.{x}");
    let attempts = match &r.attempts {
        None => base.attempts,
        some => e.positive_or(some.as_ref(), &f("attempts"), base.attempts.get()),
    };
    let on = match &r.on {
        None => base.on.clone(),
        Some(list) => {
            let mut on = RetryOn {
                connect: false,
                reset: false,
                timeout: false,
                statuses: Vec::new(),
            };
            for (i, c) in list.value.iter().enumerate() {
                match &c.value {
                    RawRetryOn::Name(n) if n == "connect" => on.connect = true,
                    RawRetryOn::Name(n) if n == "reset" => on.reset = true,
                    RawRetryOn::Name(n) if n == "timeout" => on.timeout = true,
                    RawRetryOn::Name(n) if n == "5xx" => on.statuses.extend(500..=599),
                    RawRetryOn::Code(code @ 500..=599) => on.statuses.push(*code as u16),
                    RawRetryOn::Code(code) => e.at(
                        c,
                        f(&format!("on[{i}]")),
                        format!("{code}: only 5xx statuses are retried"),
                    ),
                    RawRetryOn::Name(other) => e.at(
                        c,
                        f(&format!("on[{i}]")),
                        format!(
                            "unknown condition {other:?}: expected connect, reset, timeout, 5xx or a status from 500 to 599"
                        ),
                    ),
                }
            }
            on.statuses.sort_unstable();
            on.statuses.dedup();
            on
        }
    };
    let backoff = r.backoff.as_ref();
    let backoff_base = e.duration_or(
        backoff.and_then(|b| b.base.as_ref()),
        &f("backoff.base"),
        base.backoff_base,
    );
    let backoff_max = e.duration_or(
        backoff.and_then(|b| b.max.as_ref()),
        &f("backoff.max"),
        base.backoff_max,
    );
    if let (Some(m), true) = (
        backoff.and_then(|b| b.max.as_ref()),
        backoff_max < backoff_base,
    ) {
        e.at(m, f("backoff.max"), "must be at least backoff.base");
    }
    let per_try_timeout = match &r.per_try_timeout {
        None => base.per_try_timeout,
        some => Some(e.duration_or(some.as_ref(), &f("per_try_timeout"), Duration::from_secs(1))),
    };
    RetryPolicy {
        attempts,
        on,
        backoff_base,
        backoff_max,
        per_try_timeout,
    }
}

/// A pool's retry budget (`retries.budget`).
pub(super) fn budget(
    e: &mut Collector<'_>,
    raw: Option<&RawRetries>,
    field: &str,
) -> RetryBudgetConfig {
    let default = RetryBudgetConfig::default();
    let Some(b) = raw.and_then(|r| r.budget.as_ref()) else {
        return default;
    };
    let (ratio, min, window) = match &b.value {
        RawBudget::Share(p) => (p, None, None),
        RawBudget::Full(full) => (&full.ratio, full.min_per_second, full.window.as_deref()),
    };
    let ratio_ppm = percent_ppm(e, b, ratio, field, 100).unwrap_or(default.ratio_ppm);
    let min_per_second = match min.map(u32::try_from) {
        None => default.min_per_second,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            e.at(b, format!("{field}.min_per_second"), "too large");
            default.min_per_second
        }
    };
    let window = match window.map(parse_duration) {
        None => default.window,
        Some(Ok(w)) if w >= Duration::from_secs(1) && w <= Duration::from_secs(3600) => w,
        Some(Ok(_)) => {
            e.at(b, format!("{field}.window"), "must be from 1s to 1h");
            default.window
        }
        Some(Err(msg)) => {
            e.at(b, format!("{field}.window"), msg);
            default.window
        }
    };
    RetryBudgetConfig {
        ratio_ppm,
        min_per_second,
        window,
    }
}

/// `outlier_detection`, if the pool has it.
pub(super) fn outlier(
    e: &mut Collector<'_>,
    raw: Option<&Spanned<RawOutlier>>,
    field: &str,
) -> Option<OutlierConfig> {
    let o = &raw?.value;
    let f = |x: &str| format!("{field}.{x}");
    let d = OutlierConfig::default();
    let consecutive_failures = e.positive_or(
        o.consecutive_failures.as_ref(),
        &f("consecutive_failures"),
        d.consecutive_failures.get(),
    );
    let base_ejection = e.duration_or(
        o.base_ejection.as_ref(),
        &f("base_ejection"),
        d.base_ejection,
    );
    let max_ejection = e.duration_or(
        o.max_ejection.as_ref(),
        &f("max_ejection"),
        d.max_ejection.max(base_ejection),
    );
    if let (Some(m), true) = (&o.max_ejection, max_ejection < base_ejection) {
        e.at(m, f("max_ejection"), "must be at least base_ejection");
    }
    let max_ejected_percent = match &o.max_ejected {
        None => d.max_ejected_percent,
        Some(p) => percent_ppm(e, p, &p.value, &f("max_ejected"), 100)
            .map_or(d.max_ejected_percent, |ppm| (ppm / 10_000) as u8),
    };
    Some(OutlierConfig {
        consecutive_failures,
        base_ejection,
        max_ejection,
        max_ejected_percent,
        always_eject_one: o.always_eject_one.as_ref().is_some_and(|b| b.value),
    })
}

/// `hash_key`: `client_ip` when absent.
pub(super) fn hash_key(
    e: &mut Collector<'_>,
    raw: Option<&Spanned<String>>,
    field: &str,
) -> HashKey {
    let Some(k) = raw else {
        return HashKey::default();
    };
    let text = k.value.trim();
    match text {
        "client_ip" => HashKey::ClientIp,
        "identity" => HashKey::Identity,
        "tenant" => HashKey::Tenant,
        _ => {
            if let Some(h) = text.strip_prefix("header:") {
                match http::HeaderName::from_bytes(h.trim().as_bytes()) {
                    Ok(h) => return HashKey::Header(h),
                    Err(_) => e.at(k, field, format!("{h:?} is not a header name")),
                }
            } else if let Some(c) = text.strip_prefix("cookie:") {
                if is_cookie_name(c.trim()) {
                    return HashKey::Cookie(c.trim().to_string());
                }
                e.at(k, field, format!("{c:?} is not a cookie name"));
            } else {
                e.at(
                    k,
                    field,
                    format!("unknown key {text:?}: expected client_ip, identity, tenant, header:<name> or cookie:<name>"),
                );
            }
            HashKey::default()
        }
    }
}

/// `sticky`, if the pool has it.
pub(super) fn sticky(
    e: &mut Collector<'_>,
    raw: Option<&RawSticky>,
    field: &str,
) -> Option<Sticky> {
    let s = raw?;
    let cookie = s.cookie.value.trim();
    if !is_cookie_name(cookie) {
        e.at(
            &s.cookie,
            format!("{field}.cookie"),
            format!("{cookie:?} is not a cookie name (RFC 6265 token)"),
        );
    }
    let ttl = e.duration_or(s.ttl.as_ref(), &format!("{field}.ttl"), DEFAULT_STICKY_TTL);
    Some(Sticky {
        cookie: cookie.to_string(),
        ttl,
    })
}

/// `slow_start`, if the pool has it.
pub(super) fn slow_start(
    e: &mut Collector<'_>,
    raw: Option<&Spanned<String>>,
    field: &str,
) -> Option<Duration> {
    raw.map(|s| e.duration_or(Some(s), field, Duration::from_secs(10)))
}

/// RFC 6265's cookie-name: an RFC 9110 token.
fn is_cookie_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// When and for how long backends are ejected. The defaults are Envoy's, except
/// `max_ejected_percent` (Envoy: 10, which in pools under 10 backends ejects none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failed requests in a row that eject a backend.
    pub consecutive_failures: NonZeroU32,
    /// The first ejection's length; later ones are multiples of it.
    pub base_ejection: Duration,
    /// The longest ejection (Envoy's `max_ejection_time`); taken as `base_ejection` if less.
    pub max_ejection: Duration,
    /// The most of the pool's backends that may be ejected at once, in percent (over 100 is
    /// taken as 100).
    pub max_ejected_percent: u8,
    /// Allow one ejection when none is active even if the percentage forbids it (Envoy's
    /// `always_eject_one_host`; off by default there and here).
    pub always_eject_one: bool,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: NonZeroU32::MIN.saturating_add(4),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
            always_eject_one: false,
        }
    }
}
