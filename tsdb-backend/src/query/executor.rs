//! Runs parsed InfluxQL statements against the storage engine.
//!
//! [`run`] parses the text, executes the statements in order and returns one result per
//! statement. A parse error fails the whole request (HTTP 400, nothing runs); a statement
//! error is reported in that statement's result and stops the statements after it, as in
//! InfluxDB. Reads take the catalog's read locks only; catalog changes go through the WAL.

pub mod ddl;
pub mod eval;
pub mod fill;
pub mod fold;
pub mod functions;
pub mod math;
pub mod select;
pub mod show;
pub mod subquery;
pub mod transform;

use crate::query::result::{Message, ResultSeries, StatementResult};
use crate::query::zone;
use crate::storage::Engine;
use influxql::ast::Statement;
use influxql::{parse_query, ParseError};

/// The request parameters a query runs with.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    /// `db=`: the database of unqualified measurements.
    pub db: String,
    /// `rp=`: the policy of sources that name none; one the database lacks is refused, and
    /// all of a database's data lives under its default policy.
    pub rp: String,
    /// False for GET: write statements still run, with InfluxDB's deprecation warning.
    pub allow_writes: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A `tz()` naming a zone the database does not know (InfluxDB refuses it at parse time).
    #[error("unable to find time zone {0}")]
    UnknownZone(String),
}

/// Parses and runs a query text.
pub async fn run(
    engine: &Engine,
    text: &str,
    params: &QueryParams,
) -> Result<Vec<StatementResult>, RunError> {
    let statements = parse_query(text)?;
    let mut zones = Vec::with_capacity(statements.len());
    for stmt in &statements {
        zones.push(match stmt {
            Statement::Select(s) => match &s.timezone {
                Some(name) => {
                    Some(zone::lookup(name).ok_or_else(|| RunError::UnknownZone(name.clone()))?)
                }
                None => None,
            },
            _ => None,
        });
    }
    let mut results = Vec::with_capacity(statements.len());
    for (id, (stmt, zone)) in statements.iter().zip(zones).enumerate() {
        let res = execute(engine, stmt, params).await;
        let failed = res.is_err();
        let mut r = match res {
            Ok(series) => StatementResult {
                statement_id: id,
                series,
                zone,
                ..StatementResult::default()
            },
            Err(e) => StatementResult::error(id, e),
        };
        if !params.allow_writes && is_write(stmt) {
            r.messages.push(Message {
                level: "warning",
                text: format!(
                    "deprecated use of '{stmt}' in a read only context, please use a POST request instead"
                ),
            });
        }
        results.push(r);
        if failed {
            break;
        }
    }
    Ok(results)
}

fn is_write(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::CreateDatabase(_)
            | Statement::DropDatabase(_)
            | Statement::CreateRetentionPolicy(_)
            | Statement::AlterRetentionPolicy(_)
            | Statement::DropRetentionPolicy(_)
            | Statement::DropMeasurement(_)
            | Statement::Delete(_)
            | Statement::DropSeries(_)
    )
}

async fn execute(
    engine: &Engine,
    stmt: &Statement,
    params: &QueryParams,
) -> Result<Vec<ResultSeries>, String> {
    let catalog = engine.catalog();
    let db = params.db.as_str();
    let none = || Ok(Vec::new());
    match stmt {
        // Queries over many points are CPU-bound: let the runtime move other tasks off this
        // worker while it runs.
        Statement::Select(s) => {
            check_policies(catalog, s, db, &params.rp)?;
            let now = engine.now_ns();
            tokio::task::block_in_place(|| subquery::select(catalog, s, db, now))
        }
        Statement::ShowDatabases => Ok(show::show_databases(catalog)),
        Statement::ShowMeasurements(s) => show::show_measurements(catalog, s, db),
        Statement::ShowTagKeys(s) => show::show_tag_keys(catalog, s, db),
        Statement::ShowTagValues(s) => show::show_tag_values(catalog, s, db),
        Statement::ShowFieldKeys(s) => show::show_field_keys(catalog, s, db),
        Statement::ShowSeries(s) => show::show_series(catalog, s, db),
        Statement::ShowCardinality(s) => show::show_cardinality(catalog, s, db),
        Statement::ShowRetentionPolicies(s) => show::show_retention_policies(catalog, s, db),
        Statement::CreateDatabase(s) => ddl::create_database(engine, s).await.and_then(|_| none()),
        Statement::DropDatabase(s) => ddl::drop_database(engine, &s.name)
            .await
            .and_then(|_| none()),
        Statement::CreateRetentionPolicy(s) => ddl::create_retention_policy(engine, s)
            .await
            .and_then(|_| none()),
        Statement::AlterRetentionPolicy(s) => ddl::alter_retention_policy(engine, s)
            .await
            .and_then(|_| none()),
        Statement::DropRetentionPolicy(s) => {
            ddl::drop_retention_policy(engine, &s.database, &s.name)
                .await
                .and_then(|_| none())
        }
        Statement::DropMeasurement(s) => ddl::drop_measurement(engine, db, &s.name)
            .await
            .and_then(|_| none()),
        Statement::Explain(_) => Err("EXPLAIN is not supported by this node".into()),
        Statement::Delete(s) => ddl::delete(engine, db, s, engine.now_ns())
            .await
            .and_then(|_| none()),
        Statement::DropSeries(_) => {
            Err("DROP SERIES is not supported by this node; use DROP MEASUREMENT".into())
        }
        Statement::Unsupported(text) => {
            Err(format!("statement not supported by this node: {text}"))
        }
    }
}

/// Refuses a `SELECT` naming a retention policy its database lacks (in `FROM db.rp.m`, or
/// the request's `rp=` for sources that name none), in subqueries too, as InfluxDB does:
/// `retention policy not found: <rp>`. A database that does not exist is the select's own
/// error.
fn check_policies(
    catalog: &crate::storage::catalog::Catalog,
    stmt: &influxql::ast::SelectStatement,
    default_db: &str,
    default_rp: &str,
) -> Result<(), String> {
    use influxql::ast::Source;
    for source in &stmt.sources {
        match source {
            Source::SubQuery(inner) => check_policies(catalog, inner, default_db, default_rp)?,
            Source::Measurement(m) => {
                let rp = m
                    .retention_policy
                    .as_deref()
                    .filter(|rp| !rp.is_empty())
                    .unwrap_or(default_rp);
                if rp.is_empty() {
                    continue;
                }
                let db = m.database.as_deref().unwrap_or(default_db);
                let Some(d) = catalog.database(db) else {
                    continue;
                };
                let known = crate::storage::catalog::read(&d.policies)
                    .list
                    .iter()
                    .any(|p| p.name == rp);
                if !known {
                    return Err(format!("retention policy not found: {rp}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
