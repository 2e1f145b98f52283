//! A listener's defences against hostile clients: how requests are normalised, and the
//! deadlines and limits on its connections (the bootstrap file's per-listener settings).
//!
//! Defaults, and nginx's setting for the same thing:
//!
//! | setting                       | default  | nginx                                   |
//! |-------------------------------|----------|-----------------------------------------|
//! | `request_head_timeout`        | 10s      | `client_header_timeout` (60s, per read) |
//! | `body_idle_timeout`           | 10s      | `client_body_timeout` (60s)             |
//! | `idle_timeout`                | 60s      | `keepalive_timeout` (75s)               |
//! | `max_connections`             | 10000    | `worker_connections` × workers          |
//! | `max_connections_per_client`  | 1000     | `limit_conn` (none)                     |
//! | `max_requests_per_connection` | 1000     | `keepalive_requests` (1000)             |
//! | `escaped_slashes`             | reject   | `merge_slashes` (no equivalent)         |
//! | `headers_with_underscores`    | drop     | `underscores_in_headers off`            |
//! | `proxy_protocol`              | false    | `listen ... proxy_protocol`             |

use super::duration::parse_duration;
use super::raw::RawListener;
use ipnet::IpNet;
use serde_saphyr::Spanned;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// What to do with `%2F` and `%5C` in a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Refuse the request (400): the default, since backends disagree on what they mean.
    #[default]
    Reject,
    /// Keep them encoded: a segment `a%2Fb` stays one segment.
    Keep,
}

/// What to do with a header whose name holds an underscore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Underscores {
    /// Pass it on.
    Allow,
    /// Remove it before anything reads it: the default.
    #[default]
    Drop,
    /// Refuse the request (400).
    Reject,
}

/// The proxies in front of a listener whose `X-Forwarded-For` is believed (none by
/// default: a caller's own `X-Forwarded-For` is then dropped, so it cannot spoof its
/// address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets.into())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A listener's hardening settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    pub escaped_slashes: EscapedSlashes,
    pub headers_with_underscores: Underscores,
    /// From a request's first byte to the end of its head, however slowly it trickles.
    pub request_head_timeout: Duration,
    /// The longest wait for the next byte of a request body.
    pub body_idle_timeout: Duration,
    /// The longest a keep-alive connection waits for its next request.
    pub idle_timeout: Duration,
    pub max_connections: u32,
    pub max_connections_per_client: u32,
    pub max_requests_per_connection: u32,
    pub trusted_proxies: TrustedProxies,
    /// Connections from `trusted_proxies` start with a PROXY header, which names their
    /// client (`connection/proxy_protocol.rs`); needs `trusted_proxies`.
    pub proxy_protocol: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            escaped_slashes: EscapedSlashes::Reject,
            headers_with_underscores: Underscores::Drop,
            request_head_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_client: 1_000,
            max_requests_per_connection: 1_000,
            trusted_proxies: TrustedProxies::default(),
            proxy_protocol: false,
        }
    }
}

/// Reports a mistake: line, column, field, message.
type At<'a> = dyn FnMut(u64, u64, String, String) + 'a;

fn report<T>(at: &mut At<'_>, v: &Spanned<T>, field: String, message: String) {
    at(v.referenced.line(), v.referenced.column(), field, message);
}

fn duration(
    at: &mut At<'_>,
    v: &Option<Spanned<String>>,
    field: String,
    default: Duration,
) -> Duration {
    let Some(s) = v else {
        return default;
    };
    match parse_duration(&s.value) {
        Ok(t) if !t.is_zero() => t,
        Ok(_) => {
            report(at, s, field, "must be more than 0".into());
            default
        }
        Err(e) => {
            report(at, s, field, e);
            default
        }
    }
}

fn count(at: &mut At<'_>, v: &Option<Spanned<u64>>, field: String, default: u32) -> u32 {
    let Some(n) = v else {
        return default;
    };
    match u32::try_from(n.value) {
        Ok(c) if c > 0 => c,
        _ => {
            report(at, n, field, "must be between 1 and 4294967295".into());
            default
        }
    }
}

/// One of a few words: `choices` pairs each word with its value.
fn choice<T: Copy>(
    at: &mut At<'_>,
    v: &Option<Spanned<String>>,
    field: String,
    choices: &[(&str, T)],
    default: T,
) -> T {
    let Some(s) = v else {
        return default;
    };
    match choices.iter().find(|(w, _)| *w == s.value) {
        Some((_, value)) => *value,
        None => {
            let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            report(
                at,
                s,
                field,
                format!("{:?}: expected one of {}", s.value, words.join(", ")),
            );
            default
        }
    }
}

/// `trusted_proxies`: CIDRs (`10.0.0.0/8`) or single addresses.
fn trusted(at: &mut At<'_>, v: &Option<Vec<Spanned<String>>>, field: &str) -> TrustedProxies {
    let mut nets = Vec::new();
    for (i, s) in v.iter().flatten().enumerate() {
        let text = s.value.trim();
        let net = text
            .parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
        match net {
            Some(n) => nets.push(n.trunc()),
            None => report(
                at,
                s,
                format!("{field}[{i}]"),
                format!("{text:?} is not an address or a CIDR (10.0.0.0/8, 2001:db8::/32)"),
            ),
        }
    }
    TrustedProxies::new(nets)
}

/// `proxy_protocol`: only with `trusted_proxies`, the balancers allowed to send the header
/// (anyone else's is refused, so without them no connection could carry one).
fn proxy_protocol(at: &mut At<'_>, l: &RawListener, field: String) -> bool {
    let Some(on) = &l.proxy_protocol else {
        return false;
    };
    if on.value && l.trusted_proxies.as_ref().is_none_or(Vec::is_empty) {
        report(
            at,
            on,
            field,
            "needs trusted_proxies: the addresses of the balancers that send the header".into(),
        );
    }
    on.value
}

/// Compiles a listener's settings (`field` names it, as `listeners[0]`); every mistake is
/// reported through `at`, and its setting keeps the default.
pub(super) fn compile(l: &RawListener, field: &str, at: &mut At<'_>) -> Hardening {
    let d = Hardening::default();
    let name = |setting: &str| format!("{field}.{setting}");
    Hardening {
        escaped_slashes: choice(
            at,
            &l.escaped_slashes,
            name("escaped_slashes"),
            &[
                ("reject", EscapedSlashes::Reject),
                ("keep", EscapedSlashes::Keep),
            ],
            d.escaped_slashes,
        ),
        headers_with_underscores: choice(
            at,
            &l.headers_with_underscores,
            name("headers_with_underscores"),
            &[
                ("allow", Underscores::Allow),
                ("drop", Underscores::Drop),
                ("reject", Underscores::Reject),
            ],
            d.headers_with_underscores,
        ),
        request_head_timeout: duration(
            at,
            &l.request_head_timeout,
            name("request_head_timeout"),
            d.request_head_timeout,
        ),
        body_idle_timeout: duration(
            at,
            &l.body_idle_timeout,
            name("body_idle_timeout"),
            d.body_idle_timeout,
        ),
        idle_timeout: duration(at, &l.idle_timeout, name("idle_timeout"), d.idle_timeout),
        max_connections: count(
            at,
            &l.max_connections,
            name("max_connections"),
            d.max_connections,
        ),
        max_connections_per_client: count(
            at,
            &l.max_connections_per_client,
            name("max_connections_per_client"),
            d.max_connections_per_client,
        ),
        max_requests_per_connection: count(
            at,
            &l.max_requests_per_connection,
            name("max_requests_per_connection"),
            d.max_requests_per_connection,
        ),
        trusted_proxies: trusted(at, &l.trusted_proxies, &name("trusted_proxies")),
        proxy_protocol: proxy_protocol(at, l, name("proxy_protocol")),
    }
}
