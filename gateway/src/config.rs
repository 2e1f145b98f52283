//! Configuration: the bootstrap file read at start, and the policies that reload live.
//!
//! Each file is parsed into the raw YAML shapes (`raw.rs`, unknown keys refused), then
//! compiled into checked types (`policy.rs`, `Bootstrap`). Every error names the file, the
//! line, the column and the field, and all errors are reported at once: a configuration
//! with any error is not used, and a running gateway keeps its current policy.

pub mod access_log;
pub mod api_keys;
pub mod auth;
pub mod cache;
pub mod duration;
pub mod error;
pub mod hardening;
pub mod jwks_source;
pub mod policy;
pub mod raw;
pub mod resilience;
pub mod upstream;
pub mod websocket;

pub use error::{ConfigError, ConfigErrors};
pub use policy::Policy;

use raw::{RawBootstrap, RawPolicyFile};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A listener of the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    pub tls: Option<TlsFiles>,
    /// HTTP/2 besides HTTP/1.1: offered by ALPN on TLS, taken by prior knowledge (h2c) on
    /// plaintext.
    pub http2: bool,
    /// How requests are normalised, and the deadlines and limits of its connections.
    pub hardening: hardening::Hardening,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates (mTLS), when the listener asks for them.
    pub client: Option<ClientAuth>,
}

/// Which client certificates a TLS listener accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM bundle of the accepted CAs.
    pub ca: PathBuf,
    /// Without a valid certificate the handshake fails (`required`), or the connection goes
    /// on without an identity (`optional`).
    pub required: bool,
    /// Revocation lists (PEM or DER), re-read with the CA bundle when they change.
    pub crl: Option<PathBuf>,
}

/// The static configuration: listeners, admin port, where the policies are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub listeners: Vec<Listener>,
    pub admin: SocketAddr,
    /// A policy file, or a directory of `*.yaml` files (relative paths are taken from the
    /// bootstrap file's directory).
    pub policies: PathBuf,
    pub threads: usize,
    /// How long a graceful stop (SIGTERM, or the old process of an upgrade) waits for the
    /// requests in flight before it cuts them.
    pub drain_timeout: Duration,
    /// Where a new process asks this one for its listening sockets (`run --upgrade`).
    pub upgrade_socket: PathBuf,
    /// Where global rate limits keep their buckets.
    pub redis: Option<RedisSettings>,
    /// One line per request, when asked for.
    pub access_log: Option<crate::access_log::AccessLogConfig>,
    /// Spans exported over OTLP, when asked for.
    pub tracing: Option<TracingSettings>,
    /// The file of the bearer token that reload, purge and drain require, when set.
    pub admin_token_file: Option<PathBuf>,
}

/// Where spans go and how many traces are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingSettings {
    /// The OTLP/HTTP collector (its `/v1/traces` is added to a bare address).
    pub endpoint: String,
    /// Millionths of new traces recorded (a client's sampled flag decides for its trace).
    pub sample_ppm: u32,
}

/// Default of `tracing.sample`: every trace (a gateway that exports spans was asked to).
pub const DEFAULT_TRACE_SAMPLE_PPM: u32 = 1_000_000;

/// The Redis of global rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: String,
    /// The longest a decision waits for Redis before the limit degrades.
    pub timeout: Duration,
}

/// Default of `redis.timeout`.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(20);

/// Default of `shutdown.drain_timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn file_error(file: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message,
    }])
}

/// Parses YAML text into a raw shape; a syntax or shape error keeps its position.
fn parse<T: serde::de::DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigErrors> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ConfigErrors(vec![ConfigError {
            file: origin.to_path_buf(),
            line,
            column,
            field: String::new(),
            message: one_line(&e.without_snippet().to_string()),
        }])
    })
}

/// The first line of a message, without a trailing location (we print our own).
fn one_line(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| file_error(path, format!("cannot read: {e}")))
}

/// Reads and checks the bootstrap file.
pub fn load_bootstrap(path: &Path) -> Result<Bootstrap, ConfigErrors> {
    let text = read(path)?;
    parse_bootstrap(&text, path)
}

/// Checks bootstrap text; `origin` names it in errors and anchors relative paths.
pub fn parse_bootstrap(text: &str, origin: &Path) -> Result<Bootstrap, ConfigErrors> {
    let raw: RawBootstrap = parse(text, origin)?;
    let mut errors = ConfigErrors::default();
    let mut at = |line: u64, column: u64, field: String, message: String| {
        errors.push(ConfigError {
            file: origin.to_path_buf(),
            line,
            column,
            field,
            message,
        })
    };
    let base = origin.parent().unwrap_or(Path::new("."));
    let mut listeners = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let tls = l.tls.as_ref().map(|t| {
            let required = match t.client_auth.as_ref().map(|c| c.value.as_str()) {
                None | Some("required") => true,
                Some("optional") => false,
                Some(other) => {
                    if let Some(c) = &t.client_auth {
                        at(
                            c.referenced.line(),
                            c.referenced.column(),
                            format!("listeners[{i}].tls.client_auth"),
                            format!("{other:?}: expected required or optional"),
                        );
                    }
                    true
                }
            };
            let client = match (&t.client_ca, &t.client_auth, &t.crl) {
                (Some(ca), _, crl) => Some(ClientAuth {
                    ca: base.join(&ca.value),
                    required,
                    crl: crl.as_ref().map(|c| base.join(&c.value)),
                }),
                (None, Some(c), _) | (None, None, Some(c)) => {
                    at(
                        c.referenced.line(),
                        c.referenced.column(),
                        format!("listeners[{i}].tls"),
                        "client_auth and crl need a client_ca".into(),
                    );
                    None
                }
                (None, None, None) => None,
            };
            TlsFiles {
                cert: base.join(&t.cert.value),
                key: base.join(&t.key.value),
                client,
            }
        });
        let hardening = hardening::compile(l, &format!("listeners[{i}]"), &mut at);
        match l.address.value.parse::<SocketAddr>() {
            Ok(address) => listeners.push(Listener {
                name: l.name.value.clone(),
                address,
                http2: l.http2.as_ref().map_or(tls.is_some(), |h| h.value),
                tls,
                hardening,
            }),
            Err(_) => at(
                l.address.referenced.line(),
                l.address.referenced.column(),
                format!("listeners[{i}].address"),
                format!("{:?} is not an ip:port address", l.address.value),
            ),
        }
    }
    if raw.listeners.is_empty() {
        at(
            1,
            1,
            "listeners".into(),
            "at least one listener is needed".into(),
        );
    }
    let admin = match raw.admin.address.value.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            at(
                raw.admin.address.referenced.line(),
                raw.admin.address.referenced.column(),
                "admin.address".into(),
                format!("{:?} is not an ip:port address", raw.admin.address.value),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    };
    let threads = match &raw.threads {
        None => 1,
        Some(t) if (1..=1024).contains(&t.value) => t.value as usize,
        Some(t) => {
            at(
                t.referenced.line(),
                t.referenced.column(),
                "threads".into(),
                "must be between 1 and 1024".into(),
            );
            1
        }
    };
    let shutdown = raw.shutdown.as_ref();
    let drain_timeout = match shutdown.and_then(|s| s.drain_timeout.as_ref()) {
        None => DEFAULT_DRAIN_TIMEOUT,
        Some(d) => match duration::parse_duration(&d.value) {
            Ok(t) => t,
            Err(e) => {
                at(
                    d.referenced.line(),
                    d.referenced.column(),
                    "shutdown.drain_timeout".into(),
                    e,
                );
                DEFAULT_DRAIN_TIMEOUT
            }
        },
    };
    let first_port = listeners.first().map_or(0, |l| l.address.port());
    let upgrade_socket = shutdown
        .and_then(|s| s.upgrade_socket.as_ref())
        .map_or_else(
            || std::env::temp_dir().join(format!("gateway-upgrade-{first_port}.sock")),
            |p| base.join(&p.value),
        );
    let mut names = std::collections::BTreeSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        if !names.insert(l.name.value.as_str()) {
            at(
                l.name.referenced.line(),
                l.name.referenced.column(),
                format!("listeners[{i}].name"),
                format!("listener {:?} is defined twice", l.name.value),
            );
        }
    }
    let redis = raw.redis.as_ref().map(|r| {
        if !(r.url.value.starts_with("redis://") || r.url.value.starts_with("rediss://")) {
            at(
                r.url.referenced.line(),
                r.url.referenced.column(),
                "redis.url".into(),
                format!("{:?}: expected redis://host:port/", r.url.value),
            );
        }
        let timeout = match &r.timeout {
            None => DEFAULT_REDIS_TIMEOUT,
            Some(t) => match duration::parse_duration(&t.value) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) | Err(_) => {
                    at(
                        t.referenced.line(),
                        t.referenced.column(),
                        "redis.timeout".into(),
                        format!("{:?}: a duration above 0 like 20ms", t.value),
                    );
                    DEFAULT_REDIS_TIMEOUT
                }
            },
        };
        RedisSettings {
            url: r.url.value.clone(),
            timeout,
        }
    });
    let access_log = raw.access_log.as_ref().map(|a| {
        use crate::access_log::{AccessLogConfig, Format, Target};
        let format = match a.format.as_ref().map(|f| f.value.as_str()) {
            None | Some("json") => Format::Json,
            Some("combined") => Format::Combined,
            Some(other) => {
                if let Some(f) = &a.format {
                    at(
                        f.referenced.line(),
                        f.referenced.column(),
                        "access_log.format".into(),
                        format!("{other:?}: expected json or combined"),
                    );
                }
                Format::Json
            }
        };
        let to = match a.to.as_ref().map(|t| t.value.as_str()) {
            None | Some("stdout") => Target::Stdout,
            Some("") => {
                if let Some(t) = &a.to {
                    at(
                        t.referenced.line(),
                        t.referenced.column(),
                        "access_log.to".into(),
                        "expected stdout or a file path".into(),
                    );
                }
                Target::Stdout
            }
            Some(path) => Target::File(base.join(path)),
        };
        AccessLogConfig { format, to }
    });
    let tracing = raw.tracing.as_ref().map(|t| {
        let endpoint = t.otlp.value.trim();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            at(
                t.otlp.referenced.line(),
                t.otlp.referenced.column(),
                "tracing.otlp".into(),
                format!("{endpoint:?}: expected the collector's http:// or https:// URL"),
            );
        }
        let sample_ppm = match &t.sample {
            None => DEFAULT_TRACE_SAMPLE_PPM,
            Some(s) => {
                let percent = match &s.value {
                    raw::RawPercent::Number(n) => Some(*n as f64),
                    raw::RawPercent::Text(text) => {
                        telemetry::parse_ratio(text).ok().map(|r| r * 100.0)
                    }
                };
                match percent.filter(|p| (0.0..=100.0).contains(p)) {
                    Some(p) => (p * 10_000.0).round() as u32,
                    None => {
                        at(
                            s.referenced.line(),
                            s.referenced.column(),
                            "tracing.sample".into(),
                            "write a share from 0% to 100%, like 10%".into(),
                        );
                        DEFAULT_TRACE_SAMPLE_PPM
                    }
                }
            }
        };
        TracingSettings {
            endpoint: endpoint.to_string(),
            sample_ppm,
        }
    });
    let admin_token_file = raw.admin.token_file.as_ref().map(|f| base.join(&f.value));
    errors.into_result(Bootstrap {
        listeners,
        admin,
        policies: base.join(&raw.policies.value),
        threads,
        drain_timeout,
        upgrade_socket,
        redis,
        access_log,
        tracing,
        admin_token_file,
    })
}

/// The policy files at `path`: the file itself, or the `*.yaml` files of the directory in
/// name order.
pub fn policy_files(path: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| file_error(path, format!("cannot list: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads, parses and compiles every policy file at `path` (file or directory).
pub fn load_policy(path: &Path) -> Result<Policy, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut parsed = Vec::new();
    let mut digest = Sha256::new();
    for file in policy_files(path)? {
        let text = read(&file);
        if let Ok(t) = &text {
            digest.update(file.to_string_lossy().as_bytes());
            digest.update([0]);
            digest.update(t.as_bytes());
            digest.update([0]);
        }
        match text.and_then(|text| parse_policy_file(&text, &file)) {
            Ok(raw) => parsed.push((file, raw)),
            Err(e) => errors.0.extend(e.0),
        }
    }
    match policy::compile(&parsed) {
        Ok(mut p) => {
            p.digest = hex(&digest.finalize());
            errors.into_result(p)
        }
        Err(e) => {
            errors.0.extend(e.0);
            Err(errors)
        }
    }
}

/// Parses one policy file's text (`origin` names it in errors).
pub fn parse_policy_file(text: &str, origin: &Path) -> Result<RawPolicyFile, ConfigErrors> {
    if text.trim().is_empty() {
        return Ok(RawPolicyFile::default());
    }
    parse(text, origin)
}

/// Compiles policy text as a one-file policy (for tests and `gateway check` of one file).
pub fn parse_policy(text: &str, origin: &Path) -> Result<Policy, ConfigErrors> {
    let raw = parse_policy_file(text, origin)?;
    let mut p = policy::compile(&[(origin.to_path_buf(), raw)])?;
    p.digest = hex(&Sha256::digest(text.as_bytes()));
    Ok(p)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
