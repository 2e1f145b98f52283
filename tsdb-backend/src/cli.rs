//! Command-line flags of the `tsdb-backend` binary.

use crate::storage::FsyncMode;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A time-series database node that speaks the InfluxDB 1.x HTTP API.
///
/// Writes (`POST /write`) are acknowledged only once their WAL record is fsynced;
/// queries (`/query`) take InfluxQL. Stop it with SIGTERM or SIGINT: pending writes are
/// synced before it exits.
#[derive(Debug, Parser)]
#[command(name = "tsdb-backend", version, args_override_self = true)]
pub struct Args {
    /// Address to serve the HTTP API on.
    #[arg(long, default_value = "127.0.0.1:8086", env = "TSDB_LISTEN")]
    pub listen: SocketAddr,

    /// Directory for the WAL and snapshots (created if missing).
    #[arg(long, default_value = "data", env = "TSDB_DATA_DIR")]
    pub data_dir: PathBuf,

    /// When a write is acknowledged: `always` after fsync (group commit shares one fsync
    /// between concurrent writers), `never` lets the OS flush (survives a crash of the
    /// process, not of the machine).
    #[arg(long, value_enum, default_value = "always")]
    pub fsync: FsyncMode,

    /// Largest request body in bytes, also after gzip decompression (413 beyond it).
    #[arg(long, default_value_t = 25_000_000)]
    pub max_body_size: usize,

    /// Retention of the default policy of new databases, e.g. `30d`, `12h`; `0` keeps data
    /// forever. `CREATE RETENTION POLICY ... DEFAULT` overrides it per database.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub retention: i64,

    /// Shard group duration of that policy: the time partition of blocks (retention drops
    /// whole partitions), e.g. `1d`; `0` takes InfluxDB's default for the retention (1h
    /// below 2 days, 1 day up to 6 months, 7 days beyond or forever). `CREATE RETENTION
    /// POLICY ... SHARD DURATION` sets it per policy.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    pub shard_duration: i64,

    /// How often expired points are removed.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub retention_check_interval: i64,

    /// Flush the head into blocks and trim the WAL after this many WAL bytes were logged
    /// since the last flush (bounds replay at restart: 128 MiB of WAL replay in about a
    /// second). `--checkpoint-bytes` is the older name.
    #[arg(long, alias = "checkpoint-bytes", default_value_t = 128 << 20)]
    pub flush_wal_bytes: u64,

    /// Memory for the head and the decoded-block cache, e.g. `512MiB`, `2GiB`. Past half of
    /// it the head is flushed early; past all of it writes get 503 with Retry-After until a
    /// flush catches up. Default: 1/32 of the machine's memory, between 128 MiB and 512 MiB.
    #[arg(long, value_parser = parse_size)]
    pub memory_limit: Option<u64>,

    /// Flush the head after this long without a write.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub flush_quiet: i64,

    /// Flush the head when its oldest value is this old, however busy the node is.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub flush_max_age: i64,

    /// Create these databases at start if they do not exist (repeatable).
    #[arg(long = "create-database", value_name = "NAME")]
    pub create_databases: Vec<String>,

    /// This node's id in a replicated pool: the origin recorded with the writes it accepts
    /// (default: the listen address). Must be unique in the pool and stable across restarts.
    #[arg(long)]
    pub node_id: Option<String>,

    /// Base URLs of the other nodes of the pool, comma-separated
    /// (`http://10.0.0.2:8086,http://10.0.0.3:8086`). Without peers the node runs alone.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,

    /// WAL bytes kept in memory per node for peers that are behind; a peer further behind
    /// is resynchronised from a full snapshot instead.
    #[arg(long, default_value_t = 256 << 20)]
    pub replication_backlog_bytes: u64,

    /// The pool's shared secret: peers send it on every `/internal/*` request and refuse
    /// requests without it. Every node of the pool needs the same file (whitespace around
    /// the secret is ignored). Default: `$HOME/.tsdb-backend/peer-secret`, created on first
    /// start (random, mode 0600), or `<data-dir>/peer-secret` without `HOME`.
    #[arg(long, value_name = "PATH", env = "TSDB_PEER_SECRET_FILE")]
    pub peer_secret_file: Option<PathBuf>,

    /// PEM certificate chain: serve HTTPS instead of HTTP on `--listen` (with `--tls-key`).
    /// It is also this node's client certificate towards `https://` peers.
    #[arg(long, value_name = "FILE", env = "TSDB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, value_name = "FILE", env = "TSDB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle that issued the peers' certificates: `https://` peers are verified
    /// against it (required for them; the system's roots are not used), and with TLS on,
    /// a client certificate that verifies against it proves a peer on `/internal/*`
    /// instead of the secret.
    #[arg(long, value_name = "FILE", env = "TSDB_PEER_CA")]
    pub peer_ca: Option<PathBuf>,

    /// A YAML file with any of these options as keys (`node-id: a`, `peers: [url, ...]`,
    /// `data-dir: ...`); options given on the command line win over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log filter (tracing `EnvFilter` syntax), also from RUST_LOG.
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    pub log: String,

    /// How the process log is written on standard error: `text` for people, `json` (one
    /// object per event, with its fields) for collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "TSDB_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// One line per request once its answer ends, to `stdout` or a file (appended to;
    /// opened again on SIGUSR1, for logrotate). Credentials in query strings are redacted.
    #[arg(long, value_name = "stdout|FILE", env = "TSDB_ACCESS_LOG")]
    pub access_log: Option<String>,

    /// The access log's line format: `json` or nginx's `combined`.
    #[arg(long, value_enum, default_value_t = AccessLogFormat::Json)]
    pub access_log_format: AccessLogFormat,

    /// Export spans (request, parse, WAL commit, query) over OTLP/HTTP to this collector
    /// (`http://host:4318`); a `traceparent` from the gateway continues its trace.
    #[arg(long, value_name = "URL", env = "TSDB_OTLP")]
    pub otlp: Option<String>,

    /// The share of new traces recorded (`10%`); a caller's sampled flag decides for its
    /// own trace.
    #[arg(long, default_value = "100%", value_parser = parse_sample)]
    pub trace_sample: f64,
}

/// The access log's format (`--access-log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    Json,
    Combined,
}

fn parse_sample(text: &str) -> Result<f64, String> {
    telemetry::parse_ratio(text).map_err(|e| e.to_string())
}

/// The process log's format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Args {
    /// Parses the command line, with the options of `--config FILE` (if any) placed before
    /// it so that the command line wins.
    pub fn parse_with_config() -> Result<Args, String> {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let Some(path) = config_path(&argv) else {
            // clap prints help, version and usage errors itself, with its exit codes.
            return Ok(Args::parse_from(&argv));
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let from_file = config_args(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut all: Vec<std::ffi::OsString> = argv.iter().take(1).cloned().collect();
        all.extend(from_file.into_iter().map(Into::into));
        all.extend(argv.iter().skip(1).cloned());
        match Args::try_parse_from(all) {
            Ok(a) => Ok(a),
            Err(e) if e.use_stderr() => Err(format!("{e}(with options from {})", path.display())),
            Err(e) => e.exit(),
        }
    }
}

fn config_path(argv: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// Turns a YAML map of option names to values into command-line arguments.
pub fn config_args(text: &str) -> Result<Vec<String>, String> {
    use serde_yaml_ng::Value;
    let map: std::collections::BTreeMap<String, Value> =
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let scalar = |key: &str, v: &Value| -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(format!(
                "{key}: expected a string, a number or a list of them"
            )),
        }
    };
    let mut out = Vec::new();
    for (key, value) in &map {
        let flag = format!("--{}", key.replace('_', "-"));
        if flag == "--config" {
            return Err("config: a config file cannot name another".into());
        }
        match value {
            Value::Sequence(items) => {
                for item in items {
                    out.push(flag.clone());
                    out.push(scalar(key, item)?);
                }
            }
            v => {
                out.push(flag);
                out.push(scalar(key, v)?);
            }
        }
    }
    Ok(out)
}

/// Parses a byte size: a whole number with an optional unit `B`, `KiB`, `MiB`, `GiB`
/// (or `K`, `M`, `G`, also powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {text:?} must start with a whole number"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" => 1 << 10,
        "M" | "MB" | "MiB" | "m" => 1 << 20,
        "G" | "GB" | "GiB" | "g" => 1 << 30,
        _ => {
            return Err(format!(
                "size {text:?} has an unknown unit {unit:?} (B, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// The default `--memory-limit`: 1/32 of the machine's memory, within [128 MiB, 512 MiB].
pub fn default_memory_limit() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text))
        .unwrap_or(4 << 30);
    (total / 32).clamp(128 << 20, 512 << 20)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses `0`, or a number with one unit: `ns`, `u`/`µ`, `ms`, `s`, `m`, `h`, `d`, `w`.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} needs a unit (ns, u, ms, s, m, h, d, w)"))?;
    let (num, unit) = text.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("duration {text:?} must start with a whole number"))?;
    let scale: i64 = match unit {
        "ns" => 1,
        "u" | "µ" | "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 604_800_000_000_000,
        _ => return Err(format!("duration {text:?} has an unknown unit {unit:?}")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_gives_the_same_options_and_the_command_line_wins() {
        let args =
            config_args("node-id: a\npeers: [http://h1:1, http://h2:2]\nfsync: never\n").unwrap();
        let mut argv = vec!["tsdb-backend".to_string()];
        argv.extend(args);
        argv.extend(["--fsync".to_string(), "always".to_string()]);
        let parsed = Args::try_parse_from(argv).unwrap();
        assert_eq!(parsed.node_id.as_deref(), Some("a"));
        assert_eq!(parsed.peers, vec!["http://h1:1", "http://h2:2"]);
        assert_eq!(parsed.fsync, FsyncMode::Always);
    }

    #[test]
    fn an_unknown_key_in_a_config_file_is_an_error_naming_it() {
        let args = config_args("nodeid: a\n").unwrap();
        let mut argv = vec!["tsdb-backend".to_string()];
        argv.extend(args);
        let err = Args::try_parse_from(argv).unwrap_err().to_string();
        assert!(err.contains("--nodeid"), "{err}");
    }

    #[test]
    fn a_tls_certificate_needs_its_key_and_the_reverse() {
        let both = Args::try_parse_from(["t", "--tls-cert", "c.pem", "--tls-key", "k.pem"]);
        assert!(both.is_ok());
        assert!(Args::try_parse_from(["t", "--tls-cert", "c.pem"]).is_err());
        assert!(Args::try_parse_from(["t", "--tls-key", "k.pem"]).is_err());
    }

    #[test]
    fn the_peer_flags_come_from_a_config_file_too() {
        let args = config_args(
            "peer-secret-file: /etc/pool/secret\ntls-cert: n.pem\ntls-key: n.key\npeer-ca: ca.pem\n",
        )
        .unwrap();
        let mut argv = vec!["tsdb-backend".to_string()];
        argv.extend(args);
        let parsed = Args::try_parse_from(argv).unwrap();
        assert_eq!(
            parsed.peer_secret_file.as_deref(),
            Some(std::path::Path::new("/etc/pool/secret"))
        );
        assert_eq!(
            parsed.peer_ca.as_deref(),
            Some(std::path::Path::new("ca.pem"))
        );
        assert!(parsed.tls_cert.is_some() && parsed.tls_key.is_some());
    }

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(
            mem_total_bytes("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000 * 1024)
        );
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("30m"), Ok(30 * 60_000_000_000));
        assert_eq!(parse_duration("2d"), Ok(2 * 86_400_000_000_000));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("99999999999w").is_err());
    }
}

#[cfg(test)]
mod repeat_tests {
    use super::*;

    #[test]
    fn create_database_stays_repeatable() {
        let a = Args::try_parse_from(["t", "--create-database", "a", "--create-database", "b"])
            .unwrap();
        assert_eq!(a.create_databases, vec!["a", "b"]);
    }
}
