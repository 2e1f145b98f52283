//! Response caches, compiled: the `caches:` a policy defines and each route's use of one
//! (which cache, what its key is made of, how long an answer stays fresh). Kept apart from
//! `policy.rs`, which calls these while it compiles the policy and its routes.

use super::raw::{RawBuckets, RawCache, RawRouteCache, RawSize};
use http::HeaderName;
use operator_config::Collector;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A cache as the policy defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub name: String,
    /// The bound on the bytes of its entries (keys, heads and bodies).
    pub max_size: u64,
    /// How long an answer is fresh, unless the route says otherwise.
    pub ttl: Duration,
    /// How long after its ttl an answer may still be served while one refresh runs.
    pub stale_while_revalidate: Duration,
    /// Answers larger than this are passed on and not stored.
    pub max_entry_size: u64,
    /// The longest a request waits for an identical one in flight before it goes itself.
    pub coalesce_timeout: Duration,
    /// A successful write (`POST /write?db=X`) through the gateway drops the cached answers
    /// of database X from that pool.
    pub invalidate_on_write: bool,
}

/// What one part of a cache key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Tenant,
    Identity,
    Method,
    Host,
    Path,
    /// The query string, normalised: parameters sorted by name, encoding made canonical.
    Query,
    /// The request body (a form body normalised as a query string is).
    Body,
    Header(HeaderName),
}

/// A route's use of a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCache {
    /// The name of a cache in `Policy::caches`.
    pub cache: String,
    pub key: Vec<KeyPart>,
    pub ttl: Duration,
    pub stale_while_revalidate: Duration,
    /// The route authenticates: every key holds the caller's tenant (or identity), so one
    /// tenant's answer is never another's.
    pub per_caller: bool,
    /// `GROUP BY time()` queries cached by bucket (`None`: by their text, like the others).
    pub buckets: Option<Buckets>,
}

/// How a route keeps the buckets of dashboard queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// A bucket that ended less than this ago may still get late points: it is kept only
    /// for the route's ttl, like any answer.
    pub settle: Duration,
    /// How long the buckets of one query shape are kept once its first were stored.
    pub ttl: Duration,
}

/// Late points land within a minute in most collectors' defaults (Telegraf flushes every
/// 10 s, with jitter and retries).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(60);
pub const DEFAULT_BUCKET_TTL: Duration = Duration::from_secs(600);

impl RouteCache {
    /// Whether the body is part of the key (which makes POST answers cacheable).
    pub fn keys_body(&self) -> bool {
        self.key.contains(&KeyPart::Body)
    }
}

/// The default key: the request line.
fn default_key() -> Vec<KeyPart> {
    vec![KeyPart::Method, KeyPart::Path, KeyPart::Query]
}

const DEFAULT_COALESCE_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on one entry: an eighth of the cache, at most this.
const MAX_DEFAULT_ENTRY: u64 = 32 << 20;

/// Parses a size: `256MiB`, `64MB`, `512KiB`, `1GiB`, `100B` or a bare number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is not a size: expected a number and a unit, e.g. 256MiB")
    })?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: expected B, KB, KiB, MB, MiB, GB or GiB"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

pub(super) fn size(e: &mut Collector<'_>, v: &Spanned<RawSize>, field: &str) -> Option<u64> {
    let parsed = match &v.value {
        RawSize::Bytes(n) => Ok(*n),
        RawSize::Text(t) => parse_size(t),
    };
    match parsed {
        Ok(0) => {
            e.at(v, field, "must be more than 0");
            None
        }
        Ok(n) => Some(n),
        Err(msg) => {
            e.at(v, field, msg);
            None
        }
    }
}

fn zero_or_more(e: &mut Collector<'_>, v: Option<&Spanned<String>>, field: &str) -> Duration {
    v.and_then(|s| e.duration(s, field, true))
        .unwrap_or(Duration::ZERO)
}

/// Compiles one `caches.<name>` entry.
pub(super) fn cache(
    e: &mut Collector<'_>,
    name: &str,
    c: &Spanned<RawCache>,
) -> Option<CacheConfig> {
    let field = |f: &str| format!("caches.{name}.{f}");
    let raw = &c.value;
    let max_size = size(e, &raw.max_size, &field("max_size"));
    // An entry's weight is a u32 in Moka.
    let entry_cap = u64::from(u32::MAX);
    let max_entry_size = match &raw.max_entry_size {
        None => max_size.map(|m| (m / 8).clamp(1, MAX_DEFAULT_ENTRY)),
        Some(v) => size(e, v, &field("max_entry_size")),
    };
    if let (Some(m), Some(entry), Some(v)) = (max_size, max_entry_size, &raw.max_entry_size) {
        if entry > m {
            e.at(v, field("max_entry_size"), "is more than max_size");
        } else if entry > entry_cap {
            e.at(v, field("max_entry_size"), "must be below 4GiB");
        }
    }
    let ttl = e.duration_or(Some(&raw.ttl), &field("ttl"), Duration::from_secs(1));
    let stale_while_revalidate = zero_or_more(
        e,
        raw.stale_while_revalidate.as_ref(),
        &field("stale_while_revalidate"),
    );
    let coalesce_timeout = e.duration_or(
        raw.coalesce_timeout.as_ref(),
        &field("coalesce_timeout"),
        DEFAULT_COALESCE_TIMEOUT,
    );
    Some(CacheConfig {
        name: name.to_string(),
        max_size: max_size?,
        ttl,
        stale_while_revalidate,
        max_entry_size: max_entry_size?.min(entry_cap),
        coalesce_timeout,
        invalidate_on_write: raw.invalidate_on_write.as_ref().is_some_and(|v| v.value),
    })
}

/// Compiles a route's `cache:`; `authenticated` says whether the route has `auth:`.
pub(super) fn route_cache(
    e: &mut Collector<'_>,
    raw: &RawRouteCache,
    caches: &BTreeMap<String, CacheConfig>,
    // Every cache written, compiled or not (one that failed has its own error already).
    defined: &BTreeMap<String, PathBuf>,
    authenticated: bool,
    field: &str,
) -> Option<RouteCache> {
    let f = |s: &str| format!("{field}.{s}");
    let config = caches.get(&raw.cache.value);
    if config.is_none() && !defined.contains_key(&raw.cache.value) {
        let known: Vec<&str> = defined.keys().map(String::as_str).collect();
        e.at(
            &raw.cache,
            f("use"),
            format!(
                "no cache named {:?} (caches: {})",
                raw.cache.value,
                known.join(", ")
            ),
        );
    }
    let key = match &raw.key {
        None => default_key(),
        Some(k) => {
            if k.value.is_empty() {
                e.at(k, f("key"), "name at least one part, or leave key out");
            }
            let mut parts = Vec::new();
            for (j, p) in k.value.iter().enumerate() {
                let here = f(&format!("key[{j}]"));
                let Some(part) = key_part(e, p, &here) else {
                    continue;
                };
                if parts.contains(&part) {
                    e.at(p, &here, format!("{:?} is listed twice", p.value));
                    continue;
                }
                if matches!(part, KeyPart::Tenant | KeyPart::Identity) && !authenticated {
                    e.at(
                        p,
                        &here,
                        format!(
                            "{:?} needs a route with auth: (no caller is known here)",
                            p.value
                        ),
                    );
                }
                parts.push(part);
            }
            parts
        }
    };
    let ttl = config.map_or(Duration::from_secs(1), |c| c.ttl);
    let ttl = e.duration_or(raw.ttl.as_ref(), &f("ttl"), ttl);
    let buckets = buckets(e, raw.buckets.as_ref(), &f("buckets"));
    let config = config?;
    Some(RouteCache {
        cache: config.name.clone(),
        key,
        ttl,
        stale_while_revalidate: config.stale_while_revalidate,
        per_caller: authenticated,
        buckets,
    })
}

/// Compiles a route's `cache.buckets` (left out: on, with the defaults).
fn buckets(
    e: &mut Collector<'_>,
    raw: Option<&Spanned<RawBuckets>>,
    field: &str,
) -> Option<Buckets> {
    let f = |s: &str| format!("{field}.{s}");
    let Some(raw) = raw.map(|r| &r.value) else {
        return Some(Buckets {
            settle: DEFAULT_SETTLE,
            ttl: DEFAULT_BUCKET_TTL,
        });
    };
    // Zero is allowed: every whole bucket that has ended counts as settled.
    let settle = raw
        .settle
        .as_ref()
        .and_then(|s| e.duration(s, &f("settle"), true))
        .unwrap_or(DEFAULT_SETTLE);
    let ttl = e.duration_or(raw.ttl.as_ref(), &f("ttl"), DEFAULT_BUCKET_TTL);
    let enabled = raw.enabled.as_ref().is_none_or(|v| v.value);
    enabled.then_some(Buckets { settle, ttl })
}

fn key_part(e: &mut Collector<'_>, p: &Spanned<String>, field: &str) -> Option<KeyPart> {
    let part = match p.value.as_str() {
        "tenant" => KeyPart::Tenant,
        "identity" => KeyPart::Identity,
        "method" => KeyPart::Method,
        "host" => KeyPart::Host,
        "path" => KeyPart::Path,
        "query" => KeyPart::Query,
        "body" => KeyPart::Body,
        other => match other.strip_prefix("header:") {
            Some(name) => match HeaderName::from_bytes(name.trim().as_bytes()) {
                Ok(h) => KeyPart::Header(h),
                Err(_) => {
                    e.at(p, field, format!("{name:?} is not a header name"));
                    return None;
                }
            },
            None => {
                e.at(
                    p,
                    field,
                    format!("unknown key part {other:?}: expected tenant, identity, method, host, path, query, body or header:<name>"),
                );
                return None;
            }
        },
    };
    Some(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 2 MiB "), Ok(2 << 20));
    }

    #[test]
    fn sizes_refuse_unknown_units_and_overflow() {
        assert!(parse_size("5 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_size("MiB").unwrap_err().contains("not a size"));
        assert!(parse_size("99999999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }
}
