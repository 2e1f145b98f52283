//! Data definition and deletion: CREATE / DROP / ALTER of databases, retention policies
//! and measurements, DELETE and DROP SERIES.

use super::{ParseError, Parser};
use crate::ast::{
    AlterRetentionPolicyStatement, CreateDatabaseStatement, CreateRetentionPolicyStatement,
    DeleteStatement, DropDatabaseStatement, DropMeasurementStatement, DropRetentionPolicyStatement,
    DropSeriesStatement, Expr, RetentionPolicySpec, Source, Statement,
};
use crate::lexer::{Keyword, Pos, Token};

/// Replication factors InfluxDB accepts: `1 <= n <= math.MaxInt32`.
const MAX_REPLICATION: i64 = i32::MAX as i64;

impl Parser {
    /// create_stmt = "CREATE" ( "DATABASE" ... | "RETENTION" "POLICY" ... | "CONTINUOUS"
    /// "QUERY" ... | "USER" ... | "SUBSCRIPTION" ... ) ; "CREATE" was consumed.
    pub(crate) fn parse_create_statement(&mut self, start: usize) -> Result<Statement, ParseError> {
        let lexeme = self.scan_ignore_ws();
        match lexeme.token {
            Token::Keyword(Keyword::Database) => self.parse_create_database_statement(),
            Token::Keyword(Keyword::Retention) => {
                self.expect_keywords(&[Keyword::Policy])?;
                self.parse_create_retention_policy_statement()
            }
            Token::Keyword(Keyword::Continuous) => {
                self.expect_keywords(&[Keyword::Query])?;
                Ok(self.skip_statement(start))
            }
            Token::Keyword(Keyword::User | Keyword::Subscription) => Ok(self.skip_statement(start)),
            _ => Err(ParseError::unexpected(
                &lexeme,
                &[
                    "CONTINUOUS",
                    "DATABASE",
                    "USER",
                    "RETENTION",
                    "SUBSCRIPTION",
                ],
            )),
        }
    }

    /// drop_stmt = "DROP" ( "DATABASE" ... | "MEASUREMENT" ... | "RETENTION" "POLICY" ...
    /// | "SERIES" ... | "CONTINUOUS" "QUERY" ... | "SHARD" ... | "SUBSCRIPTION" ...
    /// | "USER" ... ) ; "DROP" was consumed.
    pub(crate) fn parse_drop_statement(&mut self, start: usize) -> Result<Statement, ParseError> {
        let lexeme = self.scan_ignore_ws();
        match lexeme.token {
            Token::Keyword(Keyword::Database) => {
                Ok(Statement::DropDatabase(DropDatabaseStatement {
                    name: self.parse_ident()?,
                }))
            }
            Token::Keyword(Keyword::Measurement) => {
                Ok(Statement::DropMeasurement(DropMeasurementStatement {
                    name: self.parse_ident()?,
                }))
            }
            Token::Keyword(Keyword::Retention) => {
                self.expect_keywords(&[Keyword::Policy])?;
                self.parse_drop_retention_policy_statement()
            }
            Token::Keyword(Keyword::Series) => self.parse_drop_series_statement(),
            Token::Keyword(Keyword::Continuous) => {
                self.expect_keywords(&[Keyword::Query])?;
                Ok(self.skip_statement(start))
            }
            Token::Keyword(Keyword::Shard | Keyword::Subscription | Keyword::User) => {
                Ok(self.skip_statement(start))
            }
            _ => Err(ParseError::unexpected(
                &lexeme,
                &[
                    "CONTINUOUS",
                    "DATABASE",
                    "MEASUREMENT",
                    "RETENTION",
                    "SERIES",
                    "SHARD",
                    "SUBSCRIPTION",
                    "USER",
                ],
            )),
        }
    }

    /// create_database = "CREATE DATABASE" identifier [ "WITH" [ "DURATION" duration ]
    /// [ "REPLICATION" int ] [ "SHARD" "DURATION" duration ] [ "NAME" identifier ] ] .
    fn parse_create_database_statement(&mut self) -> Result<Statement, ParseError> {
        let name = self.parse_ident()?;
        if !self.accept(Keyword::With) {
            return Ok(Statement::CreateDatabase(CreateDatabaseStatement {
                name,
                retention_policy: None,
            }));
        }
        let first = self.scan_ignore_ws();
        if !matches!(
            first.token,
            Token::Keyword(
                Keyword::Duration | Keyword::Name | Keyword::Replication | Keyword::Shard
            )
        ) {
            return Err(ParseError::unexpected(
                &first,
                &["DURATION", "NAME", "REPLICATION", "SHARD"],
            ));
        }
        self.unscan();

        let mut spec = RetentionPolicySpec::default();
        if self.accept(Keyword::Duration) {
            spec.duration = Some(self.parse_duration_value()?);
        }
        if self.accept(Keyword::Replication) {
            spec.replication = Some(self.parse_replication()?);
        }
        if self.accept(Keyword::Shard) {
            let lexeme = self.scan_ignore_ws();
            if lexeme.token != Token::Keyword(Keyword::Duration) {
                return Err(ParseError::unexpected(&lexeme, &["DURATION"]));
            }
            spec.shard_duration = Some(self.parse_duration_value()?);
        }
        if self.accept(Keyword::Name) {
            spec.name = Some(self.parse_ident()?);
        }
        Ok(Statement::CreateDatabase(CreateDatabaseStatement {
            name,
            retention_policy: Some(spec),
        }))
    }

    /// create_retention_policy = "CREATE RETENTION POLICY" identifier "ON" identifier
    /// "DURATION" duration "REPLICATION" int [ "SHARD" "DURATION" duration ] [ "DEFAULT" ] .
    fn parse_create_retention_policy_statement(&mut self) -> Result<Statement, ParseError> {
        let name = self.parse_ident()?;
        self.expect_keywords(&[Keyword::On])?;
        let database = self.parse_ident()?;
        self.expect_keywords(&[Keyword::Duration])?;
        let duration = self.parse_duration_value()?;
        self.expect_keywords(&[Keyword::Replication])?;
        let replication = self.parse_replication()?;
        let shard_duration = if self.accept(Keyword::Shard) {
            Some(self.parse_shard_duration()?)
        } else {
            None
        };
        let default = self.accept(Keyword::Default);
        Ok(Statement::CreateRetentionPolicy(
            CreateRetentionPolicyStatement {
                name,
                database,
                duration,
                replication,
                shard_duration,
                default,
            },
        ))
    }

    /// alter_retention_policy = "ALTER RETENTION POLICY" ( identifier | "DEFAULT" ) "ON"
    /// identifier option { option } ; options DURATION, REPLICATION, SHARD DURATION and
    /// DEFAULT, each at most once.
    pub(crate) fn parse_alter_retention_policy_statement(
        &mut self,
    ) -> Result<Statement, ParseError> {
        let lexeme = self.scan_ignore_ws();
        let name = match lexeme.token {
            Token::Keyword(Keyword::Default) => "default".to_string(),
            Token::Ident => lexeme.lit,
            _ => return Err(ParseError::unexpected(&lexeme, &["identifier"])),
        };
        self.expect_keywords(&[Keyword::On])?;
        let database = self.parse_ident()?;
        let mut stmt = AlterRetentionPolicyStatement {
            name,
            database,
            duration: None,
            replication: None,
            shard_duration: None,
            default: false,
        };
        let mut found: Vec<Keyword> = Vec::new();
        loop {
            let lexeme = self.scan_ignore_ws();
            if let Token::Keyword(keyword) = lexeme.token {
                if found.contains(&keyword) {
                    return Err(ParseError::message(
                        format!("found duplicate {keyword} option"),
                        lexeme.pos,
                    ));
                }
            }
            let keyword = match lexeme.token {
                Token::Keyword(
                    k @ (Keyword::Duration
                    | Keyword::Replication
                    | Keyword::Shard
                    | Keyword::Default),
                ) => k,
                _ => {
                    if found.is_empty() {
                        return Err(ParseError::unexpected(
                            &lexeme,
                            &["DURATION", "REPLICATION", "SHARD", "DEFAULT"],
                        ));
                    }
                    self.unscan();
                    break;
                }
            };
            match keyword {
                Keyword::Duration => stmt.duration = Some(self.parse_duration_value()?),
                Keyword::Replication => stmt.replication = Some(self.parse_replication()?),
                Keyword::Shard => stmt.shard_duration = Some(self.parse_shard_duration()?),
                _ => stmt.default = true,
            }
            found.push(keyword);
        }
        Ok(Statement::AlterRetentionPolicy(stmt))
    }

    /// "DURATION" duration after SHARD, where INF is refused.
    fn parse_shard_duration(&mut self) -> Result<i64, ParseError> {
        let lexeme = self.scan_ignore_ws();
        if lexeme.token != Token::Keyword(Keyword::Duration) {
            return Err(ParseError::unexpected(&lexeme, &["DURATION"]));
        }
        self.parse_shard_duration_value()
    }

    /// A shard duration value: a duration, not INF.
    fn parse_shard_duration_value(&mut self) -> Result<i64, ParseError> {
        let lexeme = self.scan_ignore_ws();
        if lexeme.token == Token::Keyword(Keyword::Inf) {
            return Err(ParseError::message(
                "invalid duration INF for shard duration",
                lexeme.pos,
            ));
        }
        self.unscan();
        self.parse_duration_value()
    }

    fn parse_replication(&mut self) -> Result<u32, ParseError> {
        let n = self.parse_int(1, MAX_REPLICATION)?;
        // The range check above keeps n within u32.
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// drop_retention_policy = "DROP RETENTION POLICY" identifier "ON" identifier .
    fn parse_drop_retention_policy_statement(&mut self) -> Result<Statement, ParseError> {
        let name = self.parse_ident()?;
        self.expect_keywords(&[Keyword::On])?;
        let database = self.parse_ident()?;
        Ok(Statement::DropRetentionPolicy(
            DropRetentionPolicyStatement { name, database },
        ))
    }

    /// delete_stmt = "DELETE" ( "FROM" sources [ where ] | where ) ; "DELETE" was consumed.
    pub(crate) fn parse_delete_statement(&mut self) -> Result<Statement, ParseError> {
        let (sources, condition) = self.parse_series_filter()?;
        Ok(Statement::Delete(DeleteStatement { sources, condition }))
    }

    /// drop_series = "DROP SERIES" ( "FROM" sources [ where ] | where ) .
    fn parse_drop_series_statement(&mut self) -> Result<Statement, ParseError> {
        let (sources, condition) = self.parse_series_filter()?;
        Ok(Statement::DropSeries(DropSeriesStatement {
            sources,
            condition,
        }))
    }

    /// The `[ "FROM" sources ] [ where ]` shared by DELETE and DROP SERIES: one of the two
    /// is required, and sources may name neither a database nor a retention policy.
    fn parse_series_filter(&mut self) -> Result<(Vec<Source>, Option<Expr>), ParseError> {
        let first = self.scan_ignore_ws();
        let mut sources = Vec::new();
        if first.token == Token::Keyword(Keyword::From) {
            sources = self.parse_sources(false)?;
            // InfluxDB checks every measurement and reports the last problem found.
            let mut problem = None;
            for source in &sources {
                if let Source::Measurement(m) = source {
                    if m.database.is_some() {
                        problem = Some("database not supported");
                    }
                    if m.retention_policy.is_some() {
                        problem = Some("retention policy not supported");
                    }
                }
            }
            if let Some(problem) = problem {
                return Err(ParseError::message(problem, Pos::default()));
            }
        } else {
            self.unscan();
        }
        let condition = self.parse_condition()?;
        if condition.is_none() && sources.is_empty() {
            return Err(ParseError::unexpected(&first, &["FROM", "WHERE"]));
        }
        Ok((sources, condition))
    }
}
