//! The configuration as written: YAML shapes with a source position on every value that a
//! later check may need to point at. Unknown keys are errors, so a typo never passes.

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// `config/gateway.yaml`: read once at start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBootstrap {
    pub listeners: Vec<RawListener>,
    pub admin: RawAdmin,
    /// A policy file, or a directory of `*.yaml` policy files.
    pub policies: Spanned<String>,
    #[serde(default)]
    pub threads: Option<Spanned<u64>>,
    #[serde(default)]
    pub shutdown: Option<RawShutdown>,
    /// Where global rate limits keep their buckets.
    #[serde(default)]
    pub redis: Option<RawRedis>,
    /// One line per request (`access_log.rs`).
    #[serde(default)]
    pub access_log: Option<RawAccessLog>,
    /// Spans over OTLP (`tracing: { otlp: http://collector:4318, sample: 10% }`).
    #[serde(default)]
    pub tracing: Option<RawTracing>,
}

/// `tracing: { otlp: <collector URL>, sample: <share of new traces> }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    pub otlp: Spanned<String>,
    #[serde(default)]
    pub sample: Option<Spanned<RawPercent>>,
}

/// `access_log: { format: json | combined, to: stdout | <file> }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    #[serde(default)]
    pub format: Option<Spanned<String>>,
    #[serde(default)]
    pub to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Spanned<String>,
    /// The longest a rate-limit decision waits for Redis before the limit degrades.
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    /// How long a graceful stop waits for requests in flight.
    #[serde(default)]
    pub drain_timeout: Option<Spanned<String>>,
    /// The Unix socket over which a new process takes the listeners (`gateway run --upgrade`).
    #[serde(default)]
    pub upgrade_socket: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// HTTP/2 besides HTTP/1.1: by ALPN on TLS (default on), by prior knowledge (h2c) on
    /// plaintext (default off).
    #[serde(default)]
    pub http2: Option<Spanned<bool>>,
    /// Hardening (see `config/hardening.rs` for what each does and its default).
    #[serde(default)]
    pub escaped_slashes: Option<Spanned<String>>,
    #[serde(default)]
    pub headers_with_underscores: Option<Spanned<String>>,
    #[serde(default)]
    pub request_head_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub body_idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub max_connections: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_connections_per_client: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_requests_per_connection: Option<Spanned<u64>>,
    /// Addresses (CIDRs or single addresses) of the proxies in front of this listener
    /// whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// A PROXY protocol header (v1 or v2) starts every connection from `trusted_proxies`.
    #[serde(default)]
    pub proxy_protocol: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    /// PEM bundle of the CAs whose client certificates are accepted (mTLS).
    #[serde(default)]
    pub client_ca: Option<Spanned<String>>,
    /// `required` (the default with a `client_ca`) or `optional`.
    #[serde(default)]
    pub client_auth: Option<Spanned<String>>,
    /// PEM or DER certificate revocation lists of those CAs.
    #[serde(default)]
    pub crl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Spanned<String>,
    /// A file holding the bearer token that mutating admin endpoints require.
    #[serde(default)]
    pub token_file: Option<Spanned<String>>,
}

/// One policy file; the files of a directory are merged.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyFile {
    #[serde(default)]
    pub authenticators: BTreeMap<String, Spanned<RawAuthenticator>>,
    #[serde(default)]
    pub pools: BTreeMap<String, RawPool>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub rate_limits: BTreeMap<String, Spanned<RawRateLimit>>,
    /// `fail_open` (the default) or `fail_closed`: what a global limit does without Redis.
    #[serde(default)]
    pub on_limiter_error: Option<Spanned<String>>,
    /// Response caches that routes name in their `cache.use`.
    #[serde(default)]
    pub caches: BTreeMap<String, Spanned<RawCache>>,
}

/// A response cache: its memory bound and how long entries stay fresh.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// `256MiB`, `64MB`, `1GiB`, or a number of bytes.
    pub max_size: Spanned<RawSize>,
    pub ttl: Spanned<String>,
    #[serde(default)]
    pub stale_while_revalidate: Option<Spanned<String>>,
    /// Answers larger than this are passed on, not stored.
    #[serde(default)]
    pub max_entry_size: Option<Spanned<RawSize>>,
    /// The longest a request waits for an identical one already on its way to a backend.
    #[serde(default)]
    pub coalesce_timeout: Option<Spanned<String>>,
    /// A successful write through the gateway drops its database's cached answers.
    #[serde(default)]
    pub invalidate_on_write: Option<Spanned<bool>>,
}

/// A size: a number of bytes, or a number with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

/// A route's use of a cache.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteCache {
    #[serde(rename = "use")]
    pub cache: Spanned<String>,
    /// `tenant`, `identity`, `method`, `host`, `path`, `query`, `body`, `header:<name>`.
    #[serde(default)]
    pub key: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub ttl: Option<Spanned<String>>,
    /// Dashboard queries cached by time bucket: `{ settle: 1m, ttl: 10m }`, or
    /// `{ enabled: false }`.
    #[serde(default)]
    pub buckets: Option<Spanned<RawBuckets>>,
}

/// A route's bucket cache for `GROUP BY time()` queries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuckets {
    #[serde(default)]
    pub enabled: Option<Spanned<bool>>,
    /// Buckets younger than this are kept only for the route's ttl.
    #[serde(default)]
    pub settle: Option<Spanned<String>>,
    /// How long settled buckets are kept.
    #[serde(default)]
    pub ttl: Option<Spanned<String>>,
}

/// A token bucket per caller.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// What makes a caller: `identity`, `tenant`, `client_ip`, `route`, `header:<name>`,
    /// `claim:<name>`.
    pub key: Spanned<Vec<Spanned<String>>>,
    /// `100/s`, `6000/m`, `10/h`.
    pub rate: Spanned<String>,
    #[serde(default)]
    pub burst: Option<Spanned<u64>>,
    /// `local` (the default) or `global`.
    #[serde(default)]
    pub scope: Option<Spanned<String>>,
    #[serde(default)]
    pub on_limiter_error: Option<Spanned<String>>,
}

/// One way callers prove who they are: exactly one of `jwt`, `mtls` or `api_keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthenticator {
    #[serde(default)]
    pub jwt: Option<RawJwt>,
    #[serde(default)]
    pub mtls: Option<RawMtls>,
    #[serde(default)]
    pub api_keys: Option<RawApiKeys>,
}

/// Hashed API keys in a file of their own (`config/api_keys.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    pub file: Spanned<String>,
    /// A request header that carries the key as it is (e.g. `X-API-Key`).
    #[serde(default)]
    pub header: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    #[serde(default)]
    pub jwks_file: Option<Spanned<String>>,
    #[serde(default)]
    pub jwks_url: Option<Spanned<String>>,
    /// OpenID Connect discovery from `issuer` instead of a jwks_file or jwks_url.
    #[serde(default)]
    pub discovery: Option<Spanned<bool>>,
    /// PEM CAs an https key set or discovery is verified against (default: built-in roots).
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    #[serde(default)]
    pub refresh: Option<Spanned<String>>,
    pub algorithms: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub issuer: Option<Spanned<String>>,
    #[serde(default)]
    pub audience: Option<Spanned<String>>,
    #[serde(default)]
    pub leeway: Option<Spanned<String>>,
    #[serde(default)]
    pub identity_claim: Option<Spanned<String>>,
    #[serde(default)]
    pub roles_claim: Option<Spanned<String>>,
    #[serde(default)]
    pub tenant_claim: Option<Spanned<String>>,
    #[serde(default)]
    pub max_token_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub forward_token: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMtls {
    #[serde(default)]
    pub identity: Option<Spanned<String>>,
    /// Roles every certificate this authenticator accepts holds.
    #[serde(default)]
    pub roles: Option<Vec<Spanned<String>>>,
}

/// A route's access rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub any_of: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub roles: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// `round_robin` (default), `weighted_round_robin`, `least_connections`, `p2c`, `ewma`.
    #[serde(default)]
    pub algorithm: Option<Spanned<String>>,
    /// `p2c`'s measure of load: `{ by: in_flight }` (default) or `{ by: ewma }`.
    #[serde(default)]
    pub p2c: Option<RawP2c>,
    /// The window over which peak-EWMA latency decays: `{ decay: 10s }`.
    #[serde(default)]
    pub ewma: Option<RawEwma>,
    /// What `ring_hash` and `maglev` hash: `client_ip` (default), `identity`, `tenant`,
    /// `header:<name>`, `cookie:<name>`.
    #[serde(default)]
    pub hash_key: Option<Spanned<String>>,
    /// Session affinity by a cookie the gateway sets: `{ cookie: NAME, ttl: 1h }`.
    #[serde(default)]
    pub sticky: Option<RawSticky>,
    /// `ip:port` or `name:port`; names are resolved again every `dns_refresh`.
    pub backends: Spanned<Vec<RawBackend>>,
    /// How often the backends' names are resolved again: `30s` (default).
    #[serde(default)]
    pub dns_refresh: Option<Spanned<String>>,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    /// Passive health: backends that fail real requests are ejected for a while.
    #[serde(default)]
    pub outlier_detection: Option<Spanned<RawOutlier>>,
    #[serde(default)]
    pub circuit_breaker: Option<RawCircuitBreaker>,
    /// The pool's retry policy (routes may override all of it but the budget).
    #[serde(default)]
    pub retries: Option<RawRetries>,
    /// How long a backend that comes back ramps up from a tenth of its share: `10s`.
    #[serde(default)]
    pub slow_start: Option<Spanned<String>>,
    /// `http1` (default), `h2` (over TLS) or `h2c` (see `config/upstream.rs`).
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    /// TLS to the backends.
    #[serde(default)]
    pub tls: Option<Spanned<super::upstream::RawUpstreamTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    pub cookie: Spanned<String>,
    #[serde(default)]
    pub ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    #[serde(default)]
    pub consecutive_failures: Option<Spanned<u64>>,
    #[serde(default)]
    pub base_ejection: Option<Spanned<String>>,
    #[serde(default)]
    pub max_ejection: Option<Spanned<String>>,
    /// `50%`: the most of the pool ejected at once.
    #[serde(default)]
    pub max_ejected: Option<Spanned<RawPercent>>,
    #[serde(default)]
    pub always_eject_one: Option<Spanned<bool>>,
}

/// A share: `20%` (or a bare number of percent).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPercent {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub max_in_flight_per_backend: Spanned<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawP2c {
    pub by: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEwma {
    pub decay: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: Spanned<String>,
    #[serde(default)]
    pub weight: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Check with the gRPC health service for this service name instead of `GET path`.
    #[serde(default)]
    pub grpc_service: Option<Spanned<String>>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub healthy_threshold: Option<Spanned<u64>>,
    #[serde(default)]
    pub unhealthy_threshold: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    /// The one pool its requests go to; or `split` instead.
    #[serde(default)]
    pub pool: Option<Spanned<String>>,
    /// Its requests shared between pools by weight: `[{ pool: v1, weight: 95 }, ...]`.
    #[serde(default)]
    pub split: Option<Spanned<Vec<RawSplitEntry>>>,
    /// Requests carrying a header go to a pool of their own, whatever the weights say.
    #[serde(default)]
    pub route_by_header: Option<Spanned<Vec<Spanned<RawHeaderRule>>>>,
    #[serde(default)]
    pub timeouts: Option<RawTimeouts>,
    #[serde(default)]
    pub retries: Option<RawRetries>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// Names of rate limits, every one of which must admit the request.
    #[serde(default)]
    pub rate_limit: Option<Vec<Spanned<String>>>,
    /// `1` (the default), a whole number, or `lines` (lines in the body).
    #[serde(default)]
    pub rate_limit_cost: Option<Spanned<RawCost>>,
    /// Answers from a cache named under `caches:`.
    #[serde(default)]
    pub cache: Option<RawRouteCache>,
    /// The largest request body the route takes (413 beyond it).
    #[serde(default)]
    pub max_body_size: Option<Spanned<RawSize>>,
    /// WebSocket upgrades: `true`, or `{ idle_timeout: 10m }` (see `config/websocket.rs`).
    #[serde(default)]
    pub websocket: Option<Spanned<super::websocket::RawWebsocket>>,
    /// Which requests get an access-log line: `on`, `off`, `errors`, `{ sample: 1% }`.
    #[serde(default)]
    pub access_log: Option<Spanned<super::access_log::RawRouteAccessLog>>,
}

/// One pool of a route's `split` and its share.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplitEntry {
    pub pool: Spanned<String>,
    /// A whole number from 0; shares are weight / sum of the weights.
    pub weight: Spanned<u64>,
}

/// `{ header: X-Canary, value: "1", pool: v2 }`: a request with that header (and value,
/// when given) goes to that pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRule {
    pub header: Spanned<String>,
    #[serde(default)]
    pub value: Option<Spanned<String>>,
    pub pool: Spanned<String>,
}

/// A request's cost: a number, or `lines`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCost {
    Fixed(u64),
    Named(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// An exact path.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub path_prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub methods: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default)]
    pub connect: Option<Spanned<String>>,
    #[serde(default)]
    pub request: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    #[serde(default)]
    pub attempts: Option<Spanned<u64>>,
    /// `connect`, `reset`, `timeout`, `5xx` or status codes (`502`).
    #[serde(default)]
    pub on: Option<Spanned<Vec<Spanned<RawRetryOn>>>>,
    #[serde(default)]
    pub backoff: Option<RawBackoff>,
    /// Retries at most this share of requests: `20%`, or `{ ratio: 20%, min_per_second: 10,
    /// window: 10s }`. Pools only.
    #[serde(default)]
    pub budget: Option<Spanned<RawBudget>>,
    #[serde(default)]
    pub per_try_timeout: Option<Spanned<String>>,
}

/// A retry condition: a name or a status code.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRetryOn {
    Code(u64),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    #[serde(default)]
    pub base: Option<Spanned<String>>,
    #[serde(default)]
    pub max: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawBudget {
    Share(RawPercent),
    Full(RawBudgetFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgetFull {
    pub ratio: RawPercent,
    #[serde(default)]
    pub min_per_second: Option<u64>,
    #[serde(default)]
    pub window: Option<String>,
}
