//! The compiled policy: pools and routes with every value parsed and checked, routes in
//! match order. A running gateway swaps whole `Policy` snapshots; it never edits one.

use super::auth::{IdentitySource, JwtConfig};
use super::cache::{self, CacheConfig, RouteCache};
use super::duration::parse_duration;
use super::error::ConfigErrors;
use super::raw::{
    RawAuthenticator, RawCost, RawHealthCheck, RawPolicyFile, RawRateLimit, RawRoute,
};
use super::resilience::OutlierConfig;
use super::resilience::{self, HashKey, RetryBudgetConfig, RetryPolicy, Sticky};
use operator_config::Collector;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a pool picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    /// Fewest requests in flight per unit of weight.
    LeastConnections,
    /// Two distinct random backends, the less loaded of them.
    P2c {
        by_ewma: bool,
    },
    /// Least peak-EWMA latency × requests in flight.
    Ewma,
    /// Consistent hashing of the pool's `hash_key` on a Ketama ring.
    RingHash,
    /// Consistent hashing of the pool's `hash_key` in a Maglev table.
    Maglev,
}

impl Algorithm {
    /// The name operators write in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::P2c { .. } => "p2c",
            Algorithm::Ewma => "ewma",
            Algorithm::RingHash => "ring_hash",
            Algorithm::Maglev => "maglev",
        }
    }

    /// Whether it reads the backends' latency estimates.
    pub fn uses_ewma(self) -> bool {
        matches!(self, Algorithm::Ewma | Algorithm::P2c { by_ewma: true })
    }

    /// Whether it hashes a key of the request.
    pub fn hashes(self) -> bool {
        matches!(self, Algorithm::RingHash | Algorithm::Maglev)
    }
}

/// Default of `ewma.decay`: the window over which a latency estimate fades.
pub const DEFAULT_EWMA_DECAY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub address: SocketAddr,
    pub weight: NonZeroU32,
    /// The host name it was resolved from (`None`: listed as an IP address): the default
    /// TLS server name of a pool with `tls`.
    pub host: Option<String>,
}

/// Default of a pool's `dns_refresh`: how often the names of its backends are resolved
/// again.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);

/// Where a backend is configured: an IP literal, or a name resolved when the snapshot is
/// built (and again every `dns_refresh`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Ip(a) => write!(f, "{a}"),
            Address::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A backend as the policy lists it, with where it is written (for the error of a name
/// that does not resolve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: Address,
    pub weight: NonZeroU32,
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    /// The field's path: `pools.p.backends[0].address`.
    pub field: String,
}

/// `host:port` with a host that may be a DNS name (letters, digits, `-`, `.`, `_`), or an
/// IP literal. `None` when it is neither.
fn parse_address(text: &str) -> Option<Address> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Some(Address::Ip(a));
    }
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let name_ok = !trimmed.is_empty()
        && host.len() <= 253
        && trimmed.split('.').all(label_ok)
        && trimmed.parse::<std::net::IpAddr>().is_err();
    name_ok.then(|| Address::Name {
        host: host.to_string(),
        port,
    })
}

/// Active health checking of a pool's backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    /// Check with `grpc.health.v1.Health/Check` for this service instead of `GET path`
    /// (pools that speak HTTP/2 only).
    pub grpc_service: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that make a down backend healthy again.
    pub healthy_threshold: NonZeroU32,
    /// Consecutive failures that take a backend out.
    pub unhealthy_threshold: NonZeroU32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/ping".into(),
            grpc_service: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_threshold: NonZeroU32::MIN.saturating_add(1),
            unhealthy_threshold: NonZeroU32::MIN.saturating_add(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub algorithm: Algorithm,
    /// How fast a backend's latency estimate fades (`ewma.decay`).
    pub ewma_decay: Duration,
    /// The addresses it serves: the IP literals as compiled; every address of the
    /// endpoints once the snapshot is built (`Snapshot::build` resolves the names).
    pub backends: Vec<Backend>,
    /// The backends as configured, names unresolved, in order.
    pub endpoints: Vec<Endpoint>,
    /// How often the names among `endpoints` are resolved again.
    pub dns_refresh: Duration,
    pub health_check: HealthCheck,
    /// What `ring_hash` and `maglev` hash.
    pub hash_key: HashKey,
    pub sticky: Option<Sticky>,
    /// Passive health: `None` ejects nobody.
    pub outlier: Option<OutlierConfig>,
    /// The circuit breaker: a backend with this many requests in flight takes no more.
    pub max_in_flight_per_backend: Option<NonZeroU32>,
    /// What its routes retry, unless they say otherwise.
    pub retries: RetryPolicy,
    pub retry_budget: RetryBudgetConfig,
    /// How long a backend that comes back (health check, ejection, added) ramps up.
    pub slow_start: Option<Duration>,
    /// The HTTP version spoken to the backends, and TLS to them.
    pub protocol: super::upstream::Protocol,
    pub tls: Option<super::upstream::UpstreamTls>,
}

/// How an authenticator checks callers.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthenticatorKind {
    Jwt(Box<JwtConfig>),
    /// A client certificate verified by a TLS listener with a `client_ca`; the identity is
    /// the certificate's name `source` reads, and it holds `roles` (a certificate carries
    /// none of its own).
    Mtls {
        source: IdentitySource,
        roles: Vec<String>,
    },
    /// Hashed keys in a file of their own (`config/api_keys.rs`).
    ApiKeys(super::api_keys::ApiKeysConfig),
}

/// A named authenticator, with where it was defined (its keys are loaded when the policy
/// goes into service, and an error there points back at it).
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticator {
    pub name: String,
    pub kind: AuthenticatorKind,
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
}

/// A route's access rule: who may call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuth {
    /// Authenticators tried in this order; the first that recognises the caller decides.
    pub any_of: Vec<String>,
    /// Roles the caller must hold, every one of them (OAuth's required scopes); empty:
    /// any authenticated caller.
    pub roles: Vec<String>,
}

/// A part of a rate limit's key: what makes two requests the same caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The authenticated identity (`-` when the route does not authenticate).
    Identity,
    /// The authenticated caller's tenant (`-` when there is none).
    Tenant,
    /// The client's IP address, as the gateway's TCP peer.
    ClientIp,
    /// The route's name (so one limit can be kept per route).
    Route,
    /// A request header's value (`-` when absent).
    Header(http::HeaderName),
    /// A claim of the caller's verified token, string, number or boolean (`-` when absent
    /// or when the caller did not present a token).
    Claim(String),
}

impl KeyPart {
    /// As written in a policy.
    pub fn as_text(&self) -> String {
        match self {
            KeyPart::Identity => "identity".into(),
            KeyPart::Tenant => "tenant".into(),
            KeyPart::ClientIp => "client_ip".into(),
            KeyPart::Route => "route".into(),
            KeyPart::Header(h) => format!("header:{h}"),
            KeyPart::Claim(c) => format!("claim:{c}"),
        }
    }
}

/// Where a limit keeps its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In this gateway's memory.
    Local,
    /// In Redis, shared by every gateway of the fleet.
    Global,
}

/// What a global limit does when Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimiterError {
    /// Decide locally, at this gateway's share of the limit (the default).
    FailOpen,
    /// Refuse with 429 until Redis is back.
    FailClosed,
}

/// A rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// Requests per second.
    pub fn per_second(self) -> f64 {
        f64::from(self.count.get()) / self.per.as_secs_f64()
    }

    /// The time one token takes to come back.
    pub fn interval(self) -> Duration {
        self.per / self.count.get()
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A named token bucket per caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub name: String,
    pub key: Vec<KeyPart>,
    pub rate: Rate,
    /// Tokens a full bucket holds: requests that may pass at once.
    pub burst: NonZeroU32,
    pub scope: Scope,
    pub on_error: OnLimiterError,
}

/// What a request costs in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    Fixed(NonZeroU32),
    /// One token at the request head, then one per further line of the body, charged as
    /// the body ends (a batch is never cut midway; a big one leaves the caller in debt).
    Lines,
}

/// Which requests a route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// Default of a route's `max_body_size`: more than the bundled TSDB's own limit (25 MB),
/// so the node's 413 is the one a writer sees, but a bound on what a route will stream.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// Lower case, without a trailing dot: matched against the request's host as
    /// `normalize::host` gives it (lower case, no port, no trailing dot).
    pub host: Option<String>,
    pub path: PathMatch,
    /// Upper-case method names; `None` takes every method.
    pub methods: Option<Vec<String>>,
}

impl Matcher {
    pub fn matches(&self, host: Option<&str>, path: &str, method: &str) -> bool {
        if let Some(want) = &self.host {
            if !host.is_some_and(|h| h.eq_ignore_ascii_case(want)) {
                return false;
            }
        }
        let path_ok = match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        };
        path_ok
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m == method))
    }

    /// Sort key, most specific first: a host before none, an exact path before a prefix,
    /// a longer prefix before a shorter one, a method list before any method.
    fn specificity(&self) -> (bool, bool, std::cmp::Reverse<usize>, bool) {
        let (exact, len) = match &self.path {
            PathMatch::Exact(p) => (true, p.len()),
            PathMatch::Prefix(p) => (false, p.len()),
        };
        (
            self.host.is_none(),
            !exact,
            std::cmp::Reverse(len),
            self.methods.is_none(),
        )
    }
}

/// A pool a route sends requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub pool: String,
    /// Its share of the route's requests: weight / the sum of the targets' weights (0: only
    /// the requests a header rule sends it).
    pub weight: u32,
    /// The pool's retry policy with the route's own settings over it: what a request sent
    /// there follows (its retries stay in this pool).
    pub retries: RetryPolicy,
}

/// `route_by_header`: a request carrying `header` (with exactly `value`, when given) goes to
/// `targets[target]`, whatever the weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRule {
    pub header: http::HeaderName,
    pub value: Option<http::HeaderValue>,
    pub target: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub matcher: Matcher,
    /// The pools its requests go to: `pool: X` is one target of weight 1; `split` lists
    /// them with their weights; pools only header rules name follow with weight 0. Never
    /// empty, each pool once, at least one weight above 0.
    pub targets: Vec<Target>,
    /// Written as `split:` (not `pool:`), as `/admin/status` shows it.
    pub split: bool,
    /// Tried in order before the weights (`split.rs`).
    pub by_header: Vec<HeaderRule>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// `None`: no authentication (the gateway still removes `X-Gateway-*` headers).
    pub auth: Option<RouteAuth>,
    /// Rate limits that must all admit a request, by name.
    pub rate_limits: Vec<String>,
    pub cost: Cost,
    /// Answers served from (and stored in) a cache.
    pub cache: Option<RouteCache>,
    /// The largest request body in bytes (413 beyond it).
    pub max_body_size: u64,
    /// `Some`: the route takes WebSocket upgrades (`config/websocket.rs`).
    pub websocket: Option<super::websocket::WebSocketRoute>,
    /// Which of its requests get an access-log line (`config/access_log.rs`).
    pub access_log: super::access_log::LogRule,
    /// The file that defined it.
    pub file: PathBuf,
}

impl Route {
    /// The names of the pools its requests may go to, in `targets` order.
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.pool.as_str())
    }
}

/// A whole, valid policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub authenticators: BTreeMap<String, Authenticator>,
    pub rate_limits: BTreeMap<String, RateLimit>,
    pub pools: BTreeMap<String, Pool>,
    pub caches: BTreeMap<String, CacheConfig>,
    /// In match order: the first route that matches a request takes it.
    pub routes: Vec<Route>,
    /// SHA-256 (hex) of the files it was compiled from, names and texts in load order, so
    /// operators can tell which version a gateway serves.
    pub digest: String,
}

impl Policy {
    /// The route for a request, if any.
    pub fn route(&self, host: Option<&str>, path: &str, method: &str) -> Option<&Route> {
        self.route_index(host, path, method)
            .map(|i| &self.routes[i])
    }

    /// The position in `routes` of the route for a request, if any.
    pub fn route_index(&self, host: Option<&str>, path: &str, method: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.matcher.matches(host, path, method))
    }
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Compiles the parsed files of a policy into one `Policy`, or every error found.
pub fn compile(files: &[(PathBuf, RawPolicyFile)]) -> Result<Policy, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut policy = Policy::default();
    for (file, raw) in files {
        let mut e = Collector::new(file, &mut errors);
        for (name, a) in &raw.authenticators {
            if let Some(first) = policy.authenticators.get(name) {
                e.at(
                    a,
                    format!("authenticators.{name}"),
                    format!(
                        "authenticator {name:?} is already defined in {}",
                        first.file.display()
                    ),
                );
                continue;
            }
            if let Some(kind) = authenticator(&mut e, name, a, file) {
                policy.authenticators.insert(
                    name.clone(),
                    Authenticator {
                        name: name.clone(),
                        kind,
                        file: file.clone(),
                        line: a.referenced.line(),
                        column: a.referenced.column(),
                    },
                );
            }
        }
    }
    let mut default_on_error: Option<(OnLimiterError, PathBuf)> = None;
    for (file, raw) in files {
        let mut e = Collector::new(file, &mut errors);
        if let Some(v) = &raw.on_limiter_error {
            if let Some(mode) = on_error(&mut e, v, "on_limiter_error") {
                match &default_on_error {
                    Some((m, first)) if *m != mode => e.at(
                        v,
                        "on_limiter_error",
                        format!("differs from the value in {}", first.display()),
                    ),
                    _ => default_on_error = Some((mode, file.clone())),
                }
            }
        }
    }
    let default_on_error = default_on_error.map_or(OnLimiterError::FailOpen, |(m, _)| m);
    let mut limit_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, raw) in files {
        let mut e = Collector::new(file, &mut errors);
        for (name, l) in &raw.rate_limits {
            if let Some(first) = limit_files.get(name) {
                e.at(
                    l,
                    format!("rate_limits.{name}"),
                    format!(
                        "rate limit {name:?} is already defined in {}",
                        first.display()
                    ),
                );
                continue;
            }
            limit_files.insert(name.clone(), file.clone());
            if let Some(limit) = rate_limit(&mut e, name, l, default_on_error) {
                policy.rate_limits.insert(name.clone(), limit);
            }
        }
    }
    // A verified token keeps the claims that rate-limit keys name (and no others).
    let key_claims: Vec<String> = policy
        .rate_limits
        .values()
        .flat_map(|l| &l.key)
        .filter_map(|p| match p {
            KeyPart::Claim(c) => Some(c.clone()),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for a in policy.authenticators.values_mut() {
        if let AuthenticatorKind::Jwt(c) = &mut a.kind {
            c.kept_claims = key_claims.clone();
        }
    }
    let mut pool_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, raw) in files {
        let mut e = Collector::new(file, &mut errors);
        for (name, p) in &raw.pools {
            let field = |f: &str| format!("pools.{name}.{f}");
            if let Some(first) = pool_files.get(name) {
                e.at(
                    &p.backends,
                    format!("pools.{name}"),
                    format!("pool {name:?} is already defined in {}", first.display()),
                );
                continue;
            }
            let by_ewma = match p.p2c.as_ref().map(|c| (&c.by, c.by.value.as_str())) {
                None | Some((_, "in_flight")) => false,
                Some((_, "ewma")) => true,
                Some((by, other)) => {
                    e.at(
                        by,
                        field("p2c.by"),
                        format!("{other:?}: expected in_flight or ewma"),
                    );
                    false
                }
            };
            let algorithm = match p.algorithm.as_ref().map(|a| a.value.as_str()) {
                None | Some("round_robin") => Algorithm::RoundRobin,
                Some("weighted_round_robin") => Algorithm::WeightedRoundRobin,
                Some("least_connections") => Algorithm::LeastConnections,
                Some("p2c") => Algorithm::P2c { by_ewma },
                Some("ewma") => Algorithm::Ewma,
                Some("ring_hash") => Algorithm::RingHash,
                Some("maglev") => Algorithm::Maglev,
                Some(other) => {
                    if let Some(a) = &p.algorithm {
                        e.at(
                            a,
                            field("algorithm"),
                            format!("unknown algorithm {other:?}: expected round_robin, weighted_round_robin, least_connections, p2c, ewma, ring_hash or maglev"),
                        );
                    }
                    Algorithm::RoundRobin
                }
            };
            if let (Some(c), false) = (&p.p2c, matches!(algorithm, Algorithm::P2c { .. })) {
                e.at(&c.by, field("p2c"), "p2c settings need algorithm: p2c");
            }
            let ewma_decay = match &p.ewma {
                None => DEFAULT_EWMA_DECAY,
                Some(w) => match parse_duration(&w.decay.value) {
                    Ok(d) if !d.is_zero() => d,
                    Ok(_) => {
                        e.at(&w.decay, field("ewma.decay"), "must be more than zero");
                        DEFAULT_EWMA_DECAY
                    }
                    Err(msg) => {
                        e.at(&w.decay, field("ewma.decay"), msg);
                        DEFAULT_EWMA_DECAY
                    }
                },
            };
            if p.backends.value.is_empty() {
                e.at(
                    &p.backends,
                    field("backends"),
                    "a pool needs at least one backend",
                );
            }
            let mut backends = Vec::new();
            let mut endpoints: Vec<Endpoint> = Vec::new();
            for (i, b) in p.backends.value.iter().enumerate() {
                let f = field(&format!("backends[{i}]"));
                let weight = e.positive_or(b.weight.as_ref(), &format!("{f}.weight"), 1);
                match parse_address(&b.address.value) {
                    Some(address) => {
                        if endpoints.iter().any(|x| x.address == address) {
                            e.at(
                                &b.address,
                                format!("{f}.address"),
                                format!("{address} is listed twice"),
                            );
                        }
                        if let Address::Ip(a) = address {
                            backends.push(Backend {
                                address: a,
                                weight,
                                host: None,
                            });
                        }
                        endpoints.push(Endpoint {
                            address,
                            weight,
                            file: file.clone(),
                            line: b.address.referenced.line(),
                            column: b.address.referenced.column(),
                            field: format!("{f}.address"),
                        });
                    }
                    None => e.at(
                        &b.address,
                        format!("{f}.address"),
                        format!(
                            "{:?} is not an ip:port or name:port address (port 1-65535)",
                            b.address.value
                        ),
                    ),
                }
            }
            let dns_refresh = e.duration_or(
                p.dns_refresh.as_ref(),
                &field("dns_refresh"),
                DEFAULT_DNS_REFRESH,
            );
            let health_check =
                health_check(&mut e, p.health_check.as_ref(), &field("health_check"));
            let hash_key = resilience::hash_key(&mut e, p.hash_key.as_ref(), &field("hash_key"));
            if let (Some(k), false) = (&p.hash_key, algorithm.hashes()) {
                e.at(
                    k,
                    field("hash_key"),
                    "hash_key needs algorithm: ring_hash or maglev",
                );
            }
            let retries = resilience::retries(
                &mut e,
                p.retries.as_ref(),
                &RetryPolicy::default(),
                &field("retries"),
            );
            let retry_budget =
                resilience::budget(&mut e, p.retries.as_ref(), &field("retries.budget"));
            let max_in_flight_per_backend = p.circuit_breaker.as_ref().map(|c| {
                e.positive_or(
                    Some(&c.max_in_flight_per_backend),
                    &field("circuit_breaker.max_in_flight_per_backend"),
                    1,
                )
            });
            let (protocol, tls) = super::upstream::compile(
                &mut e,
                p.protocol.as_ref(),
                p.tls.as_ref(),
                &format!("pools.{name}"),
            );
            if let (Some(g), false) = (
                p.health_check
                    .as_ref()
                    .and_then(|h| h.grpc_service.as_ref()),
                protocol.is_h2(),
            ) {
                e.at(
                    g,
                    field("health_check.grpc_service"),
                    "a gRPC health check needs protocol: h2 or h2c",
                );
            }
            let pool = Pool {
                protocol,
                tls,
                name: name.clone(),
                algorithm,
                ewma_decay,
                backends,
                endpoints,
                dns_refresh,
                health_check,
                hash_key,
                sticky: resilience::sticky(&mut e, p.sticky.as_ref(), &field("sticky")),
                outlier: resilience::outlier(
                    &mut e,
                    p.outlier_detection.as_ref(),
                    &field("outlier_detection"),
                ),
                max_in_flight_per_backend,
                retries,
                retry_budget,
                slow_start: resilience::slow_start(
                    &mut e,
                    p.slow_start.as_ref(),
                    &field("slow_start"),
                ),
            };
            pool_files.insert(name.clone(), file.clone());
            policy.pools.insert(name.clone(), pool);
        }
    }
    let mut cache_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, raw) in files {
        let mut e = Collector::new(file, &mut errors);
        for (name, c) in &raw.caches {
            if let Some(first) = cache_files.get(name) {
                e.at(
                    c,
                    format!("caches.{name}"),
                    format!("cache {name:?} is already defined in {}", first.display()),
                );
                continue;
            }
            cache_files.insert(name.clone(), file.clone());
            if let Some(config) = cache::cache(&mut e, name, c) {
                policy.caches.insert(name.clone(), config);
            }
        }
    }
    let mut route_names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, raw) in files {
        let mut e = Collector::new(file, &mut errors);
        for (i, r) in raw.routes.iter().enumerate() {
            if let Some(first) = route_names.get(&r.name.value) {
                e.at(
                    &r.name,
                    format!("routes[{i}].name"),
                    format!(
                        "route {:?} is already defined in {}",
                        r.name.value,
                        first.display()
                    ),
                );
                continue;
            }
            route_names.insert(r.name.value.clone(), file.clone());
            let defined = Defined {
                limits: &limit_files,
                caches: &cache_files,
            };
            if let Some(route) = route(&mut e, r, i, &policy, &defined, file) {
                policy.routes.push(route);
            }
        }
    }
    // Most specific first; equally specific routes keep their order in the files.
    policy.routes.sort_by_key(|r| r.matcher.specificity());
    errors.into_result(policy)
}

fn on_error(e: &mut Collector<'_>, v: &Spanned<String>, field: &str) -> Option<OnLimiterError> {
    match v.value.as_str() {
        "fail_open" => Some(OnLimiterError::FailOpen),
        "fail_closed" => Some(OnLimiterError::FailClosed),
        other => {
            e.at(
                v,
                field,
                format!("{other:?}: expected fail_open or fail_closed"),
            );
            None
        }
    }
}

/// `100/s`, `6000/m`, `10/h`: a whole number of requests per second, minute or hour.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let (count, unit) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("rate {text:?}: write it as 100/s, 6000/m or 10/h"))?;
    let count = count
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| format!("rate {text:?}: the count must be a whole number from 1"))?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => return Err(format!("rate {text:?}: unknown unit {other:?} (s, m or h)")),
    };
    Ok(Rate { count, per })
}

fn rate_limit(
    e: &mut Collector<'_>,
    name: &str,
    l: &Spanned<RawRateLimit>,
    default_on_error: OnLimiterError,
) -> Option<RateLimit> {
    let field = |f: &str| format!("rate_limits.{name}.{f}");
    let raw = &l.value;
    let mut key = Vec::new();
    for (i, part) in raw.key.value.iter().enumerate() {
        let p = match part.value.as_str() {
            "identity" => Some(KeyPart::Identity),
            "tenant" => Some(KeyPart::Tenant),
            "client_ip" => Some(KeyPart::ClientIp),
            "route" => Some(KeyPart::Route),
            other => match other.strip_prefix("header:") {
                None if other.starts_with("claim:") => {
                    let c = other.trim_start_matches("claim:").trim();
                    if c.is_empty() {
                        e.at(
                            part,
                            field(&format!("key[{i}]")),
                            "claim: needs a claim name",
                        );
                        None
                    } else {
                        Some(KeyPart::Claim(c.to_owned()))
                    }
                }
                Some(h) => match http::HeaderName::from_bytes(h.trim().as_bytes()) {
                    Ok(h) => Some(KeyPart::Header(h)),
                    Err(_) => {
                        e.at(
                            part,
                            field(&format!("key[{i}]")),
                            format!("{h:?} is not a header name"),
                        );
                        None
                    }
                },
                None => {
                    e.at(
                        part,
                        field(&format!("key[{i}]")),
                        format!("unknown key part {other:?}: expected identity, tenant, client_ip, route, header:<name> or claim:<name>"),
                    );
                    None
                }
            },
        };
        key.extend(p);
    }
    if raw.key.value.is_empty() {
        e.at(&raw.key, field("key"), "name at least one key part");
    }
    let rate = match parse_rate(&raw.rate.value) {
        Ok(r) => Some(r),
        Err(msg) => {
            e.at(&raw.rate, field("rate"), msg);
            None
        }
    };
    let burst = match &raw.burst {
        None => rate.map(|r| r.count),
        Some(b) => match u32::try_from(b.value).ok().and_then(NonZeroU32::new) {
            Some(n) => Some(n),
            None => {
                e.at(
                    b,
                    field("burst"),
                    format!("must be between 1 and {}", u32::MAX),
                );
                None
            }
        },
    };
    let scope = match raw.scope.as_ref().map(|s| s.value.as_str()) {
        None | Some("local") => Scope::Local,
        Some("global") => Scope::Global,
        Some(other) => {
            if let Some(s) = &raw.scope {
                e.at(
                    s,
                    field("scope"),
                    format!("{other:?}: expected local or global"),
                );
            }
            Scope::Local
        }
    };
    let on_error_mode = match &raw.on_limiter_error {
        Some(v) => on_error(e, v, &field("on_limiter_error")).unwrap_or(default_on_error),
        None => default_on_error,
    };
    Some(RateLimit {
        name: name.to_string(),
        key,
        rate: rate?,
        burst: burst?,
        scope,
        on_error: on_error_mode,
    })
}

const ALGORITHMS: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

/// Default and bounds of `max_token_bytes`.
const DEFAULT_MAX_TOKEN_BYTES: u64 = 8 * 1024;

fn authenticator(
    e: &mut Collector<'_>,
    name: &str,
    a: &Spanned<RawAuthenticator>,
    file: &Path,
) -> Option<AuthenticatorKind> {
    let field = |f: &str| format!("authenticators.{name}.{f}");
    if let Some(k) = &a.value.api_keys {
        if a.value.jwt.is_some() || a.value.mtls.is_some() {
            e.at(
                a,
                format!("authenticators.{name}"),
                "give exactly one of jwt, mtls or api_keys",
            );
            return None;
        }
        return Some(AuthenticatorKind::ApiKeys(super::api_keys::compile(
            e, name, k, file,
        )));
    }
    match (&a.value.jwt, &a.value.mtls) {
        (Some(_), Some(_)) | (None, None) => {
            e.at(
                a,
                format!("authenticators.{name}"),
                "give exactly one of jwt, mtls or api_keys",
            );
            None
        }
        (None, Some(m)) => {
            let source = match m.identity.as_ref().map(|i| i.value.as_str()) {
                None | Some("san_uri") => IdentitySource::SanUri,
                Some("san_dns") => IdentitySource::SanDns,
                Some("cn") => IdentitySource::Cn,
                Some(other) => {
                    if let Some(i) = &m.identity {
                        e.at(
                            i,
                            field("mtls.identity"),
                            format!("{other:?}: expected san_uri, san_dns or cn"),
                        );
                    }
                    IdentitySource::SanUri
                }
            };
            let roles = m.roles.iter().flatten().map(|r| r.value.clone()).collect();
            Some(AuthenticatorKind::Mtls { source, roles })
        }
        (Some(j), None) => {
            let (jwks, trust) = super::jwks_source::compile(e, name, a, j, file);
            let mut algorithms = Vec::new();
            for (k, alg) in j.algorithms.value.iter().enumerate() {
                match alg.value.parse::<jsonwebtoken::Algorithm>() {
                    Ok(x) if !algorithms.contains(&x) => algorithms.push(x),
                    Ok(_) => {}
                    Err(_) => e.at(
                        alg,
                        field(&format!("jwt.algorithms[{k}]")),
                        format!("unknown algorithm {:?} (known: {ALGORITHMS})", alg.value),
                    ),
                }
            }
            if j.algorithms.value.is_empty() {
                e.at(
                    &j.algorithms,
                    field("jwt.algorithms"),
                    "list at least one algorithm",
                );
            }
            let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.value.clone());
            let max = j
                .max_token_bytes
                .as_ref()
                .map_or(DEFAULT_MAX_TOKEN_BYTES, |m| {
                    if (256..=65_536).contains(&m.value) {
                        m.value
                    } else {
                        e.at(
                            m,
                            field("jwt.max_token_bytes"),
                            "must be between 256 and 65536",
                        );
                        DEFAULT_MAX_TOKEN_BYTES
                    }
                });
            Some(AuthenticatorKind::Jwt(Box::new(JwtConfig {
                source: jwks,
                trust,
                refresh: e.duration_or(
                    j.refresh.as_ref(),
                    &field("jwt.refresh"),
                    Duration::from_secs(300),
                ),
                algorithms,
                issuer: text(&j.issuer),
                audience: text(&j.audience),
                leeway: match &j.leeway {
                    Some(l) => e
                        .duration(l, &field("jwt.leeway"), true)
                        .unwrap_or(Duration::ZERO),
                    None => Duration::from_secs(30),
                },
                identity_claim: text(&j.identity_claim).unwrap_or_else(|| "sub".into()),
                roles_claim: text(&j.roles_claim).unwrap_or_else(|| "roles".into()),
                tenant_claim: text(&j.tenant_claim),
                max_token_bytes: usize::try_from(max).unwrap_or(usize::MAX),
                forward_token: j.forward_token.as_ref().is_some_and(|f| f.value),
                kept_claims: Vec::new(),
            })))
        }
    }
}

fn health_check(e: &mut Collector<'_>, raw: Option<&RawHealthCheck>, field: &str) -> HealthCheck {
    let d = HealthCheck::default();
    let Some(h) = raw else { return d };
    let path = match &h.path {
        Some(p) if !p.value.starts_with('/') => {
            e.at(p, format!("{field}.path"), "must start with /");
            d.path.clone()
        }
        Some(p) => p.value.clone(),
        None => d.path.clone(),
    };
    let interval = e.duration_or(
        h.interval.as_ref(),
        &format!("{field}.interval"),
        d.interval,
    );
    let timeout = e.duration_or(h.timeout.as_ref(), &format!("{field}.timeout"), d.timeout);
    if timeout > interval {
        if let Some(t) = &h.timeout {
            e.at(
                t,
                format!("{field}.timeout"),
                "must not be longer than the interval",
            );
        }
    }
    if let (Some(p), Some(_)) = (&h.path, &h.grpc_service) {
        e.at(
            p,
            format!("{field}.path"),
            "give path or grpc_service, not both",
        );
    }
    HealthCheck {
        path,
        grpc_service: h.grpc_service.as_ref().map(|g| g.value.clone()),
        interval,
        timeout,
        healthy_threshold: e.positive_or(
            h.healthy_threshold.as_ref(),
            &format!("{field}.healthy_threshold"),
            2,
        ),
        unhealthy_threshold: e.positive_or(
            h.unhealthy_threshold.as_ref(),
            &format!("{field}.unhealthy_threshold"),
            2,
        ),
    }
}

/// The names written in the policy's files, compiled or not: a route that names one that
/// failed to compile gets no second error for it.
struct Defined<'a> {
    limits: &'a BTreeMap<String, PathBuf>,
    caches: &'a BTreeMap<String, PathBuf>,
}

fn route(
    e: &mut Collector<'_>,
    r: &RawRoute,
    i: usize,
    policy: &Policy,
    defined: &Defined<'_>,
    file: &Path,
) -> Option<Route> {
    let defined_limits = defined.limits;
    let pools = &policy.pools;
    let field = |f: &str| format!("routes[{i}].{f}");
    let m = &r.matcher;
    let path = match (&m.path, &m.path_prefix) {
        (Some(p), None) => PathMatch::Exact(p.value.clone()),
        (None, Some(p)) => PathMatch::Prefix(p.value.clone()),
        (None, None) => PathMatch::Prefix("/".into()),
        (Some(p), Some(_)) => {
            e.at(p, field("match"), "give path or path_prefix, not both");
            return None;
        }
    };
    match (&path, m.path.as_ref().or(m.path_prefix.as_ref())) {
        (PathMatch::Exact(p) | PathMatch::Prefix(p), Some(s)) if !p.starts_with('/') => {
            e.at(s, field("match"), "a path must start with /");
        }
        _ => {}
    }
    let methods = m.methods.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .filter_map(|(j, s)| {
                let upper = s.value.to_ascii_uppercase();
                if METHODS.contains(&upper.as_str()) {
                    Some(upper)
                } else {
                    e.at(
                        s,
                        field(&format!("match.methods[{j}]")),
                        format!("unknown HTTP method {:?}", s.value),
                    );
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    let targets = route_targets(e, r, i, pools)?;
    let by_header = header_rules(e, r, i, &targets);
    let t = r.timeouts.as_ref();
    let connect_timeout = e.duration_or(
        t.and_then(|t| t.connect.as_ref()),
        &field("timeouts.connect"),
        Duration::from_secs(1),
    );
    let request_timeout = e.duration_or(
        t.and_then(|t| t.request.as_ref()),
        &field("timeouts.request"),
        Duration::from_secs(30),
    );
    // The route's retries over each of its pools' own; their errors are the same for every
    // pool, so they are reported once, for the first.
    let mut repeated = ConfigErrors::default();
    let targets: Vec<Target> = targets
        .iter()
        .enumerate()
        .map(|(k, w)| {
            let base = pools
                .get(&w.pool.value)
                .map(|p| p.retries.clone())
                .unwrap_or_default();
            let raw = r.retries.as_ref();
            let retries = if k == 0 {
                resilience::retries(e, raw, &base, &field("retries"))
            } else {
                let mut scratch = Collector::new(file, &mut repeated);
                resilience::retries(&mut scratch, raw, &base, &field("retries"))
            };
            Target {
                pool: w.pool.value.clone(),
                weight: w.weight,
                retries,
            }
        })
        .collect();
    if let Some(b) = r.retries.as_ref().and_then(|x| x.budget.as_ref()) {
        e.at(
            b,
            field("retries.budget"),
            format!(
                "a retry budget is the pool's: set it under pools.{}.retries",
                targets[0].pool
            ),
        );
    }
    let auth = r.auth.as_ref().map(|a| {
        if a.any_of.value.is_empty() {
            e.at(
                &a.any_of,
                field("auth.any_of"),
                "name at least one authenticator",
            );
        }
        for (j, n) in a.any_of.value.iter().enumerate() {
            if !policy.authenticators.contains_key(&n.value) {
                let known: Vec<&str> = policy.authenticators.keys().map(String::as_str).collect();
                e.at(
                    n,
                    field(&format!("auth.any_of[{j}]")),
                    format!(
                        "no authenticator named {:?} (authenticators: {})",
                        n.value,
                        known.join(", ")
                    ),
                );
            }
        }
        RouteAuth {
            any_of: a.any_of.value.iter().map(|n| n.value.clone()).collect(),
            roles: a.roles.iter().flatten().map(|r| r.value.clone()).collect(),
        }
    });
    let mut rate_limits = Vec::new();
    for (j, n) in r.rate_limit.iter().flatten().enumerate() {
        if policy.rate_limits.contains_key(&n.value) {
            rate_limits.push(n.value.clone());
        } else if !defined_limits.contains_key(&n.value) {
            let known: Vec<&str> = defined_limits.keys().map(String::as_str).collect();
            e.at(
                n,
                field(&format!("rate_limit[{j}]")),
                format!(
                    "no rate limit named {:?} (rate_limits: {})",
                    n.value,
                    known.join(", ")
                ),
            );
        }
    }
    let cost = match r.rate_limit_cost.as_ref() {
        None => Cost::Fixed(NonZeroU32::MIN),
        Some(c) => match &c.value {
            RawCost::Named(s) if s == "lines" => Cost::Lines,
            RawCost::Fixed(n) => match u32::try_from(*n).ok().and_then(NonZeroU32::new) {
                Some(n) => Cost::Fixed(n),
                None => {
                    e.at(
                        c,
                        field("rate_limit_cost"),
                        "must be a whole number from 1, or lines",
                    );
                    Cost::Fixed(NonZeroU32::MIN)
                }
            },
            RawCost::Named(other) => {
                e.at(
                    c,
                    field("rate_limit_cost"),
                    format!("{other:?}: expected a whole number or lines"),
                );
                Cost::Fixed(NonZeroU32::MIN)
            }
        },
    };
    // A fixed cost above a limit's burst could never be admitted.
    if let (Cost::Fixed(n), Some(c)) = (cost, r.rate_limit_cost.as_ref()) {
        for l in rate_limits.iter().filter_map(|l| policy.rate_limits.get(l)) {
            if n > l.burst {
                e.at(
                    c,
                    field("rate_limit_cost"),
                    format!(
                        "{n} is more than the burst of rate limit {:?} ({}): no request could pass",
                        l.name, l.burst
                    ),
                );
            }
        }
    }
    let cache = r.cache.as_ref().and_then(|c| {
        cache::route_cache(
            e,
            c,
            &policy.caches,
            defined.caches,
            auth.is_some(),
            &field("cache"),
        )
    });
    let max_body_size = r
        .max_body_size
        .as_ref()
        .and_then(|v| cache::size(e, v, &field("max_body_size")))
        .unwrap_or(DEFAULT_MAX_BODY_SIZE);
    let websocket = super::websocket::compile(
        e,
        r.websocket.as_ref(),
        methods.as_deref(),
        &field("websocket"),
    );
    // A WebSocket is an HTTP/1.1 upgrade; to a pool that speaks HTTP/2 it could never switch
    // (RFC 8441's extended CONNECT is not supported), so say so rather than fail each one.
    // Every pool of the route may get the handshake.
    if let (Some(_), Some(ws)) = (&websocket, r.websocket.as_ref()) {
        for t in &targets {
            let Some(pool) = pools.get(&t.pool).filter(|p| p.protocol.is_h2()) else {
                continue;
            };
            e.at(
                ws,
                field("websocket"),
                format!(
                    "pool {:?} speaks HTTP/2 (protocol: {}); WebSockets need an http1 pool",
                    t.pool,
                    pool.protocol.as_str()
                ),
            );
        }
    }
    let access_log = super::access_log::compile(e, r.access_log.as_ref(), &field("access_log"));
    Some(Route {
        websocket,
        access_log,
        name: r.name.value.clone(),
        auth,
        cache,
        max_body_size,
        rate_limits,
        cost,
        matcher: Matcher {
            // As requests are matched: lower case, no trailing dot.
            host: m.host.as_ref().map(|h| {
                let host = h.value.strip_suffix('.').unwrap_or(&h.value);
                host.to_ascii_lowercase()
            }),
            path,
            methods,
        },
        split: r.split.is_some(),
        targets,
        by_header,
        connect_timeout,
        request_timeout,
        file: file.to_path_buf(),
    })
}

/// A pool a route names, as written, with its weight.
struct Written<'r> {
    pool: &'r Spanned<String>,
    weight: u32,
}

/// The pools of a route as written: `pool: X` (weight 1), or `split:` with its weights, then
/// the pools only header rules name (weight 0). Each must exist, once; a split needs a
/// weight above 0. `None` when the route gives neither `pool` nor `split`, or both.
fn route_targets<'r>(
    e: &mut Collector<'_>,
    r: &'r RawRoute,
    i: usize,
    pools: &BTreeMap<String, Pool>,
) -> Option<Vec<Written<'r>>> {
    let field = |f: &str| format!("routes[{i}].{f}");
    let mut out: Vec<Written<'r>> = Vec::new();
    let exists = |e: &mut Collector<'_>, pool: &Spanned<String>, f: String| {
        pool_exists(e, pools, pool, f);
    };
    match (&r.pool, &r.split) {
        (Some(pool), None) => {
            exists(e, pool, field("pool"));
            out.push(Written { pool, weight: 1 });
        }
        (None, Some(split)) => {
            let mut too_large = false;
            for (j, entry) in split.value.iter().enumerate() {
                let f = |x: &str| field(&format!("split[{j}].{x}"));
                let weight = u32::try_from(entry.weight.value).unwrap_or_else(|_| {
                    e.at(
                        &entry.weight,
                        f("weight"),
                        format!("must be a whole number from 0 to {}", u32::MAX),
                    );
                    too_large = true;
                    0
                });
                if out.iter().any(|w| w.pool.value == entry.pool.value) {
                    e.at(
                        &entry.pool,
                        f("pool"),
                        format!("pool {:?} is listed twice", entry.pool.value),
                    );
                    continue;
                }
                exists(e, &entry.pool, f("pool"));
                out.push(Written {
                    pool: &entry.pool,
                    weight,
                });
            }
            if split.value.is_empty() {
                e.at(split, field("split"), "list at least one pool");
                return None;
            }
            if !too_large && out.iter().all(|w| w.weight == 0) {
                e.at(
                    split,
                    field("split"),
                    "at least one weight must be more than 0",
                );
            }
        }
        (Some(pool), Some(_)) => {
            e.at(pool, field("pool"), "give pool or split, not both");
            return None;
        }
        (None, None) => {
            e.at(
                &r.name,
                field("pool"),
                "give pool (one pool) or split (pools by weight)",
            );
            return None;
        }
    }
    for (j, rule) in r.route_by_header.iter().flat_map(|l| &l.value).enumerate() {
        let pool = &rule.value.pool;
        if out.iter().all(|w| w.pool.value != pool.value) {
            exists(e, pool, field(&format!("route_by_header[{j}].pool")));
            out.push(Written { pool, weight: 0 });
        }
    }
    Some(out)
}

/// Reports a pool name the policy does not define.
fn pool_exists(
    e: &mut Collector<'_>,
    pools: &BTreeMap<String, Pool>,
    pool: &Spanned<String>,
    field: String,
) {
    if !pools.contains_key(&pool.value) {
        let known: Vec<&str> = pools.keys().map(String::as_str).collect();
        e.at(
            pool,
            field,
            format!(
                "no pool named {:?} (pools: {})",
                pool.value,
                known.join(", ")
            ),
        );
    }
}

/// `route_by_header`, compiled against the route's targets (which hold every pool a rule
/// names).
fn header_rules(
    e: &mut Collector<'_>,
    r: &RawRoute,
    i: usize,
    targets: &[Written<'_>],
) -> Vec<HeaderRule> {
    let mut out = Vec::new();
    for (j, rule) in r.route_by_header.iter().flat_map(|l| &l.value).enumerate() {
        let field = |x: &str| format!("routes[{i}].route_by_header[{j}].{x}");
        let rule = &rule.value;
        let header = match http::HeaderName::from_bytes(rule.header.value.trim().as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                e.at(
                    &rule.header,
                    field("header"),
                    format!("{:?} is not a header name", rule.header.value),
                );
                None
            }
        };
        let value = match &rule.value {
            None => Some(None),
            Some(v) => match http::HeaderValue::from_str(&v.value) {
                Ok(h) => Some(Some(h)),
                Err(_) => {
                    e.at(
                        v,
                        field("value"),
                        format!("{:?} is not a header value", v.value),
                    );
                    None
                }
            },
        };
        let target = targets.iter().position(|w| w.pool.value == rule.pool.value);
        if let (Some(header), Some(value), Some(target)) = (header, value, target) {
            out.push(HeaderRule {
                header,
                value,
                target,
            });
        }
    }
    out
}
