//! End-to-end test harness: real processes on ephemeral loopback ports, killed by PID on drop.
//!
//! - [`TsdbProcess`]: the workspace's `tsdb-backend` binary (built on demand).
//! - [`InfluxdProcess`]: a private real InfluxDB 1.x (`/usr/bin/influxd`), the reference.
//! - [`VictoriaMetricsProcess`]: a private Debian `victoria-metrics`, another engine behind the gateway.
//! - [`Pool`]: several `tsdb-backend` nodes replicating to each other; [`converged`] waits
//!   until they agree byte for byte.
//! - [`http`]: a tiny `ureq` client that never turns 4xx/5xx into errors.
//! - [`wait`]: bounded polling (`eventually`, [`assert_eventually!`]), patience from
//!   `TEST_PATIENCE_MS`.
//! - [`diff`]: the differential-case runner used by `tests/tsdb_differential.rs`.
//! - [`upstream`]: [`upstream::FakeUpstream`], a scriptable fake HTTP/1.1 backend for the gateway.
//! - [`gateway`]: [`gateway::GatewayProcess`], the real gateway on free ports (TLS, h2c, upgrade).
//! - [`http2_upstream`]: [`http2_upstream::Http2Upstream`], an HTTP/1.1 and HTTP/2 backend
//!   over TLS (ALPN, client certificates) or h2c, reporting the version it was spoken to in.
//! - [`h2`]: reqwest clients for HTTP/2 over TLS (trusting a given CA) and h2c.
//! - [`tls_client`]: one blocking TLS connection (client certificates, the server's certificate).
//! - [`pki`]: [`pki::Ca`], a throwaway CA issuing server and client certificates and CRLs (mTLS).
//! - [`jwt`]: [`jwt::Key`], run-time JWT signing keys with their JWKs, and forged tokens.
//! - [`jwks_server`]: [`jwks_server::JwksServer`], a `GET /jwks.json` endpoint whose body can change,
//!   over plain HTTP or TLS (a [`pki`] certificate), with an OpenID discovery document.
//! - [`redis`]: [`redis::RedisProcess`], a private `redis-server` (killed, restarted on its
//!   port) and a tiny RESP client, for the gateway's global rate limits.

pub mod clock;
pub mod diff;
pub mod faults;
pub mod gateway;
pub mod h2;
pub mod http;
pub mod http2_upstream;
pub mod jwks_server;
pub mod jwt;
pub mod otlp;
pub mod pki;
pub mod pool;
pub mod ports;
pub mod process;
pub mod redis;
pub mod tls_client;
pub mod upstream;
pub mod wait;

pub use pool::{converged, Pool};
pub use ports::free_port;
pub use process::{InfluxdProcess, TsdbProcess, TsdbProcessBuilder, VictoriaMetricsProcess};
pub use tempfile::TempDir;
pub use wait::{eventually, patience};

/// Root of the Cargo workspace (the parent of this crate's manifest directory).
pub fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// True when running under CI (`CI` set and not empty / "false" / "0").
pub fn under_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}
