//! Statements that change the catalog: databases, retention policies, measurements.
//!
//! Each is validated here, then logged through the WAL like a write, so it is durable
//! before it is answered and replayed after a restart.

use super::eval::{strip_time, time_range};
use crate::storage::catalog::{read, DEFAULT_POLICY};
use crate::storage::entry::Entry;
use crate::storage::Engine;
use influxql::ast::{
    AlterRetentionPolicyStatement, CreateDatabaseStatement, CreateRetentionPolicyStatement,
    DeleteStatement, MeasurementName, Source,
};

type StatementError = String;

/// InfluxDB refuses retention shorter than this (`ErrRetentionPolicyDurationTooLow`).
const MIN_RETENTION_NS: i64 = 3_600_000_000_000;

fn check_duration(d: i64) -> Result<(), StatementError> {
    if d != 0 && d < MIN_RETENTION_NS {
        return Err("retention policy duration must be at least 1h0m0s".into());
    }
    Ok(())
}

async fn log(engine: &Engine, entry: Entry) -> Result<(), StatementError> {
    engine
        .log(entry)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub async fn create_database(
    engine: &Engine,
    s: &CreateDatabaseStatement,
) -> Result<(), StatementError> {
    if let Some(spec) = &s.retention_policy {
        check_duration(spec.duration.unwrap_or(0))?;
    }
    log(
        engine,
        Entry::CreateDatabase {
            name: s.name.clone(),
        },
    )
    .await?;
    if let Some(spec) = &s.retention_policy {
        log(
            engine,
            Entry::SetRetentionPolicy {
                db: s.name.clone(),
                name: spec
                    .name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_POLICY.to_string()),
                duration_ns: spec.duration.unwrap_or(0),
                shard_duration_ns: spec.shard_duration.unwrap_or(0),
                default: true,
            },
        )
        .await?;
    }
    Ok(())
}

pub async fn drop_database(engine: &Engine, name: &str) -> Result<(), StatementError> {
    log(
        engine,
        Entry::DropDatabaseAt {
            name: name.to_string(),
            version: engine.next_version(),
        },
    )
    .await
}

pub async fn create_retention_policy(
    engine: &Engine,
    s: &CreateRetentionPolicyStatement,
) -> Result<(), StatementError> {
    if engine.catalog().database(&s.database).is_none() {
        return Err(format!("database not found: {}", s.database));
    }
    check_duration(s.duration)?;
    log(
        engine,
        Entry::SetRetentionPolicy {
            db: s.database.clone(),
            name: s.name.clone(),
            duration_ns: s.duration,
            shard_duration_ns: s.shard_duration.unwrap_or(0),
            default: s.default,
        },
    )
    .await
}

pub async fn alter_retention_policy(
    engine: &Engine,
    s: &AlterRetentionPolicyStatement,
) -> Result<(), StatementError> {
    let db = engine
        .catalog()
        .database(&s.database)
        .ok_or_else(|| format!("database not found: {}", s.database))?;
    let current = read(&db.policies)
        .list
        .iter()
        .find(|rp| rp.name == s.name)
        .cloned()
        .ok_or_else(|| "retention policy not found".to_string())?;
    let duration = s.duration.unwrap_or(current.duration_ns);
    check_duration(duration)?;
    log(
        engine,
        Entry::SetRetentionPolicy {
            db: s.database.clone(),
            name: s.name.clone(),
            duration_ns: duration,
            shard_duration_ns: s.shard_duration.unwrap_or(current.shard_duration_ns),
            default: s.default,
        },
    )
    .await
}

pub async fn drop_retention_policy(
    engine: &Engine,
    db: &str,
    name: &str,
) -> Result<(), StatementError> {
    if engine.catalog().database(db).is_none() {
        return Err(format!("database not found: {db}"));
    }
    log(
        engine,
        Entry::DropRetentionPolicy {
            db: db.to_string(),
            name: name.to_string(),
        },
    )
    .await
}

pub async fn drop_measurement(
    engine: &Engine,
    default_db: &str,
    name: &str,
) -> Result<(), StatementError> {
    if default_db.is_empty() {
        return Err("database name required".into());
    }
    if engine.catalog().database(default_db).is_none() {
        return Err(format!("database not found: {default_db}"));
    }
    // A versioned tombstone over all time: replicas and resyncs cannot bring back what it
    // hid, and a write made after it is kept.
    log(
        engine,
        Entry::Delete {
            db: default_db.to_string(),
            measurement: Some(name.to_string()),
            min_time: i64::MIN,
            max_time: i64::MAX,
            version: engine.next_version(),
            drop_schema: true,
        },
    )
    .await
}

/// `DELETE [FROM m, ...] [WHERE time ...]`: a versioned tombstone per measurement (or one
/// for every measurement) over the time range. Conditions on tags are refused: they would
/// need a series-level tombstone, which this node does not keep.
pub async fn delete(
    engine: &Engine,
    default_db: &str,
    stmt: &DeleteStatement,
    now: i64,
) -> Result<(), StatementError> {
    let mut names: Vec<Option<String>> = Vec::new();
    let mut db_name = default_db.to_string();
    for source in &stmt.sources {
        let Source::Measurement(m) = source else {
            return Err("DELETE takes measurements, not subqueries".into());
        };
        if let Some(d) = &m.database {
            db_name = d.clone();
        }
        match &m.name {
            MeasurementName::Name(n) => names.push(Some(n.clone())),
            MeasurementName::Regex(_) => {
                return Err(
                    "DELETE FROM a regular expression is not supported; name the measurements"
                        .into(),
                )
            }
        }
    }
    if names.is_empty() {
        names.push(None);
    }
    if db_name.is_empty() {
        return Err("database name required".into());
    }
    if engine.catalog().database(&db_name).is_none() {
        return Err(format!("database not found: {db_name}"));
    }
    if stmt.condition.as_ref().and_then(strip_time).is_some() {
        return Err(
            "DELETE with conditions on tags or fields is not supported; only time bounds".into(),
        );
    }
    let (lo, hi) = time_range(stmt.condition.as_ref(), now)?;
    let version = engine.next_version();
    for measurement in names {
        log(
            engine,
            Entry::Delete {
                db: db_name.clone(),
                measurement,
                min_time: lo.unwrap_or(i64::MIN),
                max_time: hi.unwrap_or(i64::MAX),
                version,
                drop_schema: false,
            },
        )
        .await?;
    }
    Ok(())
}
