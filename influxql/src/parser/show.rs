//! SHOW statements: databases, measurements, tag keys and values, field keys, series and
//! retention policies; the other SHOW forms are recognised and kept as unsupported.

use super::{ParseError, Parser};
use crate::ast::{
    CardinalityOf, ShowCardinalityStatement, ShowFieldKeysStatement, ShowMeasurementsStatement,
    ShowRetentionPoliciesStatement, ShowSeriesStatement, ShowTagKeysStatement,
    ShowTagValuesStatement, Source, Statement, TagKeyMatch,
};
use crate::lexer::{Keyword, Token};

impl Parser {
    /// show_stmt = "SHOW" ( ... ) ; "SHOW" was consumed. `start` is its byte offset.
    pub(crate) fn parse_show_statement(&mut self, start: usize) -> Result<Statement, ParseError> {
        let lexeme = self.scan_ignore_ws();
        let Token::Keyword(keyword) = lexeme.token else {
            return Err(show_expected(&lexeme));
        };
        match keyword {
            Keyword::Databases => Ok(Statement::ShowDatabases),
            Keyword::Measurements => self.parse_show_measurements_statement(),
            Keyword::Series => self.parse_show_series_statement(start),
            Keyword::Retention => {
                self.expect_keywords(&[Keyword::Policies])?;
                self.parse_show_retention_policies_statement()
            }
            Keyword::Tag => {
                let next = self.scan_ignore_ws();
                match next.token {
                    Token::Keyword(Keyword::Key) => {
                        self.parse_cardinality_prefix(start, CardinalityOf::TagKey)
                    }
                    Token::Keyword(Keyword::Keys) => self.parse_show_tag_keys_statement(),
                    Token::Keyword(Keyword::Values) => self.parse_show_tag_values_statement(start),
                    _ => Err(ParseError::unexpected(&next, &["KEY", "KEYS", "VALUES"])),
                }
            }
            Keyword::Field => {
                let next = self.scan_ignore_ws();
                match next.token {
                    Token::Keyword(Keyword::Key) => {
                        self.parse_cardinality_prefix(start, CardinalityOf::FieldKey)
                    }
                    Token::Keyword(Keyword::Keys) => self.parse_show_field_keys_statement(),
                    _ => Err(ParseError::unexpected(&next, &["KEY", "KEYS"])),
                }
            }
            Keyword::Measurement => {
                self.parse_cardinality_prefix(start, CardinalityOf::Measurement)
            }
            Keyword::Continuous => {
                self.expect_keywords(&[Keyword::Queries])?;
                Ok(self.unsupported_statement(start))
            }
            Keyword::Grants => {
                self.expect_keywords(&[Keyword::For])?;
                self.parse_ident()?;
                Ok(self.unsupported_statement(start))
            }
            Keyword::Shard => {
                self.expect_keywords(&[Keyword::Groups])?;
                Ok(self.unsupported_statement(start))
            }
            Keyword::Diagnostics | Keyword::Stats => {
                // `[ "FOR" string ]`
                if self.accept(Keyword::For) {
                    let module = self.scan_ignore_ws();
                    if module.token != Token::String {
                        return Err(ParseError::unexpected(&module, &["string"]));
                    }
                }
                Ok(self.unsupported_statement(start))
            }
            Keyword::Queries | Keyword::Shards | Keyword::Subscriptions | Keyword::Users => {
                Ok(self.unsupported_statement(start))
            }
            _ => Err(show_expected(&lexeme)),
        }
    }

    /// `[ "EXACT" ] "CARDINALITY"` of the cardinality statements, then their clauses.
    fn parse_cardinality_prefix(
        &mut self,
        start: usize,
        of: CardinalityOf,
    ) -> Result<Statement, ParseError> {
        let lexeme = self.scan_ignore_ws();
        let exact = match lexeme.token {
            Token::Keyword(Keyword::Exact) => {
                self.expect_keywords(&[Keyword::Cardinality])?;
                true
            }
            Token::Keyword(Keyword::Cardinality) => false,
            _ => return Err(ParseError::unexpected(&lexeme, &["EXACT", "CARDINALITY"])),
        };
        self.parse_cardinality_clauses(start, of, exact)
    }

    /// The clauses of a cardinality statement: `[ "ON" db ] [ "FROM" sources ] [ with_key ]
    /// [ where ] [ group_by ] [ limit ] [ offset ]` (`with_key` required for tag values;
    /// grouping and paging are read, as InfluxDB reads them, and do not change a count).
    fn parse_cardinality_clauses(
        &mut self,
        start: usize,
        of: CardinalityOf,
        exact: bool,
    ) -> Result<Statement, ParseError> {
        let database = self.parse_optional_on()?;
        let sources = self.parse_optional_from()?;
        let key = if of == CardinalityOf::TagValues {
            Some(self.parse_tag_key_expr()?)
        } else {
            None
        };
        let condition = self.parse_condition()?;
        self.parse_dimensions()?;
        self.parse_optional_token_and_int(Keyword::Limit)?;
        self.parse_optional_token_and_int(Keyword::Offset)?;
        let Statement::Unsupported(text) = self.unsupported_statement(start) else {
            return Err(ParseError::plain("cardinality statement text"));
        };
        Ok(Statement::ShowCardinality(ShowCardinalityStatement {
            of,
            exact,
            database,
            sources,
            key,
            condition,
            text,
        }))
    }

    /// show_measurements = "SHOW MEASUREMENTS" [ "ON" db ] [ "WITH" "MEASUREMENT" ( "=" |
    /// "=~" ) source ] [ where ] [ order_by ] [ limit ] [ offset ] .
    fn parse_show_measurements_statement(&mut self) -> Result<Statement, ParseError> {
        let mut stmt = ShowMeasurementsStatement {
            database: self.parse_optional_on()?,
            ..ShowMeasurementsStatement::default()
        };
        if self.accept(Keyword::With) {
            self.expect_keywords(&[Keyword::Measurement])?;
            let op = self.scan_ignore_ws();
            if !matches!(op.token, Token::Eq | Token::EqRegex) {
                return Err(ParseError::unexpected(&op, &["=", "=~"]));
            }
            match self.parse_source(false)? {
                Source::Measurement(m) => stmt.with_measurement = Some(m),
                Source::SubQuery(_) => {
                    return Err(ParseError::plain(
                        "subquery not allowed in WITH MEASUREMENT",
                    ))
                }
            }
        }
        stmt.condition = self.parse_condition()?;
        stmt.order_by = self.parse_order_by()?;
        stmt.limit = self.parse_optional_token_and_int(Keyword::Limit)?;
        stmt.offset = self.parse_optional_token_and_int(Keyword::Offset)?;
        Ok(Statement::ShowMeasurements(stmt))
    }

    /// `[ "FROM" sources ]` of SHOW statements (measurements only).
    fn parse_optional_from(&mut self) -> Result<Vec<Source>, ParseError> {
        if !self.accept(Keyword::From) {
            return Ok(Vec::new());
        }
        self.parse_sources(false)
    }

    /// show_tag_keys = "SHOW TAG KEYS" [ "ON" db ] [ "FROM" sources ] [ where ] [ order_by ]
    /// [ limit ] [ offset ] [ slimit ] [ soffset ] .
    fn parse_show_tag_keys_statement(&mut self) -> Result<Statement, ParseError> {
        let database = self.parse_optional_on()?;
        let sources = self.parse_optional_from()?;
        let condition = self.parse_condition()?;
        let order_by = self.parse_order_by()?;
        let limit = self.parse_optional_token_and_int(Keyword::Limit)?;
        let offset = self.parse_optional_token_and_int(Keyword::Offset)?;
        let slimit = self.parse_optional_token_and_int(Keyword::Slimit)?;
        let soffset = self.parse_optional_token_and_int(Keyword::Soffset)?;
        Ok(Statement::ShowTagKeys(ShowTagKeysStatement {
            database,
            sources,
            condition,
            order_by,
            limit,
            offset,
            slimit,
            soffset,
        }))
    }

    /// show_tag_values = "SHOW TAG VALUES" [ "ON" db ] [ "FROM" sources ] with_key
    /// [ where ] [ order_by ] [ limit ] [ offset ] ; `[EXACT] CARDINALITY` is unsupported.
    fn parse_show_tag_values_statement(&mut self, start: usize) -> Result<Statement, ParseError> {
        let lexeme = self.scan_ignore_ws();
        match lexeme.token {
            Token::Keyword(Keyword::Exact) => {
                self.expect_keywords(&[Keyword::Cardinality])?;
                return self.parse_cardinality_clauses(start, CardinalityOf::TagValues, true);
            }
            Token::Keyword(Keyword::Cardinality) => {
                return self.parse_cardinality_clauses(start, CardinalityOf::TagValues, false);
            }
            _ => self.unscan(),
        }
        let database = self.parse_optional_on()?;
        let sources = self.parse_optional_from()?;
        let key = self.parse_tag_key_expr()?;
        let condition = self.parse_condition()?;
        let order_by = self.parse_order_by()?;
        let limit = self.parse_optional_token_and_int(Keyword::Limit)?;
        let offset = self.parse_optional_token_and_int(Keyword::Offset)?;
        Ok(Statement::ShowTagValues(ShowTagValuesStatement {
            database,
            sources,
            key,
            condition,
            order_by,
            limit,
            offset,
        }))
    }

    /// with_key = "WITH" "KEY" ( ( "=" | "!=" ) identifier | ( "=~" | "!~" ) regex
    /// | "IN" "(" identifier { "," identifier } ")" ) .
    fn parse_tag_key_expr(&mut self) -> Result<TagKeyMatch, ParseError> {
        self.expect_keywords(&[Keyword::With, Keyword::Key])?;
        let op = self.scan_ignore_ws();
        match op.token {
            Token::In => {
                let open = self.scan_ignore_ws();
                if open.token != Token::LParen {
                    return Err(ParseError::unexpected(&open, &["("]));
                }
                let keys = self.parse_ident_list()?;
                let close = self.scan_ignore_ws();
                if close.token != Token::RParen {
                    return Err(ParseError::unexpected(&close, &[")"]));
                }
                Ok(TagKeyMatch::In(keys))
            }
            Token::Eq => Ok(TagKeyMatch::Eq(self.parse_ident()?)),
            Token::Neq => Ok(TagKeyMatch::Neq(self.parse_ident()?)),
            Token::EqRegex | Token::NeqRegex => {
                let Some(re) = self.parse_regex()? else {
                    let found = self.scan_ignore_ws();
                    return Err(ParseError::unexpected(&found, &["regex"]));
                };
                Ok(if op.token == Token::EqRegex {
                    TagKeyMatch::EqRegex(re)
                } else {
                    TagKeyMatch::NeqRegex(re)
                })
            }
            _ => Err(ParseError::unexpected(&op, &["IN", "=", "=~"])),
        }
    }

    /// show_field_keys = "SHOW FIELD KEYS" [ "ON" db ] [ "FROM" sources ] [ order_by ]
    /// [ limit ] [ offset ] .
    fn parse_show_field_keys_statement(&mut self) -> Result<Statement, ParseError> {
        let database = self.parse_optional_on()?;
        let sources = self.parse_optional_from()?;
        let order_by = self.parse_order_by()?;
        let limit = self.parse_optional_token_and_int(Keyword::Limit)?;
        let offset = self.parse_optional_token_and_int(Keyword::Offset)?;
        Ok(Statement::ShowFieldKeys(ShowFieldKeysStatement {
            database,
            sources,
            order_by,
            limit,
            offset,
        }))
    }

    /// show_series = "SHOW SERIES" [ "ON" db ] [ "FROM" sources ] [ where ] [ order_by ]
    /// [ limit ] [ offset ] ; `[EXACT] CARDINALITY` is unsupported, and a lone EXACT is
    /// ignored as InfluxDB 1.6 does.
    fn parse_show_series_statement(&mut self, start: usize) -> Result<Statement, ParseError> {
        let exact = self.accept(Keyword::Exact);
        if self.accept(Keyword::Cardinality) {
            return self.parse_cardinality_clauses(start, CardinalityOf::Series, exact);
        }
        let database = self.parse_optional_on()?;
        let sources = self.parse_optional_from()?;
        let condition = self.parse_condition()?;
        let order_by = self.parse_order_by()?;
        let limit = self.parse_optional_token_and_int(Keyword::Limit)?;
        let offset = self.parse_optional_token_and_int(Keyword::Offset)?;
        Ok(Statement::ShowSeries(ShowSeriesStatement {
            database,
            sources,
            condition,
            order_by,
            limit,
            offset,
        }))
    }

    /// show_retention_policies = "SHOW RETENTION POLICIES" [ "ON" db ] .
    fn parse_show_retention_policies_statement(&mut self) -> Result<Statement, ParseError> {
        Ok(Statement::ShowRetentionPolicies(
            ShowRetentionPoliciesStatement {
                database: self.parse_optional_on()?,
            },
        ))
    }
}

fn show_expected(found: &crate::lexer::Lexeme) -> ParseError {
    ParseError::unexpected(
        found,
        &[
            "CONTINUOUS",
            "DATABASES",
            "DIAGNOSTICS",
            "FIELD",
            "GRANTS",
            "MEASUREMENT",
            "MEASUREMENTS",
            "QUERIES",
            "RETENTION",
            "SERIES",
            "SHARD",
            "SHARDS",
            "STATS",
            "SUBSCRIPTIONS",
            "TAG",
            "USERS",
        ],
    )
}
