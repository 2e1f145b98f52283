//! The API gateway: an L7 proxy that routes by operator-written policies to pools of
//! backends.
//!
//! ```text
//! config/      bootstrap + policies: raw YAML -> compiled Policy (file:line:column errors)
//! runtime.rs   the snapshot the data plane reads (policy + pool states), swapped whole
//! split.rs     which of its pools a route's request goes to: header rules, then weights
//! backend.rs   each backend's live state (health verdict, in flight), kept across reloads
//! dns.rs       backends addressed by name: resolved off the request path, last answers kept
//! balance/     choosing a backend (one file per algorithm)
//! health/      backend health: state machine, active checks, outlier ejection
//! retry/       retry budget and backoff with full jitter
//! auth/        who is calling: JWT (JWKS) and mTLS identities, route requirements
//! ratelimit/   token buckets per caller: local (governor) or global (Redis GCRA script)
//! cache/       the query cache: Moka bounded in bytes, per-caller keys, coalescing, SWR
//! normalize/   the first step: path, framing, header names and host made unambiguous
//! connection/  a client connection: limits, head deadline, keep-alive, pipelining
//! websocket.rs upgrades: which routes take a WebSocket, the upgraded connection's timeouts
//! contain.rs   a panic in a pipeline phase becomes a 500, counted
//! proxy.rs     the request pipeline (Pingora ProxyHttp), and nothing else
//! forwarded.rs who the client is; X-Forwarded-For, -Proto, -Host, -Port for the backend
//! request_id.rs the client's X-Request-Id, or a new one (prefix + counter)
//! respond.rs   the gateway's own JSON error answers
//! metrics.rs   Prometheus counters and gauges, rendered on the admin port
//! admin.rs     /healthz, /readyz, /admin/status, /metrics, POST /admin/reload; SIGHUP
//! reload.rs    validate-then-swap policy reloads; health checkers follow the backends;
//!              names resolved again every `dns_refresh`
//! tls.rs       listener certificates: loaded and checked, served by a swappable resolver
//! shutdown.rs  graceful stop: count requests in flight, exit when drained
//! server.rs    assembles it all into a Pingora server with its listeners
//! devcerts.rs  a development CA and server certificate (`gateway dev-certs`)
//! clock.rs     the one place time is read
//! ```

/// The access log (its writer is shared with the TSDB node).
pub use telemetry::access_log;
pub mod admin;
pub mod auth;
pub mod backend;
pub mod balance;
pub mod cache;
pub mod clock;
pub mod config;
pub mod connect;
pub mod connection;
pub mod contain;
pub mod devcerts;
pub mod dns;
pub mod fetch;
pub mod forwarded;
pub mod fuzz;
pub mod health;
pub mod metrics;
pub mod normalize;
pub mod proxy;
pub mod ratelimit;
pub mod refresh;
pub mod refusal;
pub mod reload;
pub mod request_id;
pub mod respond;
pub mod retry;
pub mod route;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod spans;
pub mod split;
pub mod tls;
pub mod trace_context;
pub mod tries;
pub mod upstream;
pub mod websocket;
