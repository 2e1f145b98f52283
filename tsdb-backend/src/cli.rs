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
#[command(name = "tsdb-backend", version)]
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

    /// How often expired points are removed.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub retention_check_interval: i64,

    /// Write a snapshot and trim the WAL after this many bytes were logged (bounds disk use
    /// and restart time).
    #[arg(long, default_value_t = 64 << 20)]
    pub checkpoint_bytes: u64,

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

    /// Log filter (tracing `EnvFilter` syntax), also from RUST_LOG.
    #[arg(long, default_value = "info", env = "RUST_LOG")]
    pub log: String,
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
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("30m"), Ok(30 * 60_000_000_000));
        assert_eq!(parse_duration("2d"), Ok(2 * 86_400_000_000_000));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("99999999999w").is_err());
    }
}
