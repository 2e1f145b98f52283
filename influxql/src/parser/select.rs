//! The SELECT statement and its clauses: fields, INTO, GROUP BY, fill() and tz().

use super::{ParseError, Parser, TargetRequirement};
use crate::ast::{BinaryOp, Dimension, Expr, Field, Fill, SelectStatement, Target};
use crate::lexer::{Keyword, Token};

impl Parser {
    /// select_stmt = "SELECT" fields [ into ] "FROM" sources [ where ] [ group_by ]
    /// [ fill ] [ order_by ] [ limit ] [ offset ] [ slimit ] [ soffset ] [ tz ] ;
    /// "SELECT" was consumed.
    pub(crate) fn parse_select_statement(
        &mut self,
        target: TargetRequirement,
    ) -> Result<SelectStatement, ParseError> {
        let fields = self.parse_fields()?;
        let into = self.parse_target(target)?;
        let from = self.scan_ignore_ws();
        if from.token != Token::Keyword(Keyword::From) {
            return Err(ParseError::unexpected(&from, &["FROM"]));
        }
        let sources = self.parse_sources(true)?;
        let condition = self.parse_condition()?;
        let dimensions = self.parse_dimensions()?;
        let fill = self.parse_fill()?;
        let order_by = self.parse_order_by()?;
        let limit = self.parse_optional_token_and_int(Keyword::Limit)?;
        let offset = self.parse_optional_token_and_int(Keyword::Offset)?;
        let slimit = self.parse_optional_token_and_int(Keyword::Slimit)?;
        let soffset = self.parse_optional_token_and_int(Keyword::Soffset)?;
        let timezone = self.parse_location()?;
        Ok(SelectStatement {
            fields,
            into,
            sources,
            condition,
            dimensions,
            fill,
            order_by,
            limit,
            offset,
            slimit,
            soffset,
            timezone,
        })
    }

    /// fields = field { "," field } .
    fn parse_fields(&mut self) -> Result<Vec<Field>, ParseError> {
        let mut fields = Vec::new();
        loop {
            fields.push(self.parse_field()?);
            if self.scan().token != Token::Comma {
                self.unscan();
                return Ok(fields);
            }
        }
    }

    /// field = ( regex | expr ) [ "AS" identifier ] ; comparisons and AND/OR are rejected
    /// with InfluxDB's message, which names the last such operator found.
    fn parse_field(&mut self) -> Result<Field, ParseError> {
        let expr = match self.parse_regex()? {
            Some(re) => Expr::Regex(re),
            None => {
                let pos = self.scan_ignore_ws().pos;
                self.unscan();
                let expr = self.parse_expr()?;
                let mut bad = None;
                find_condition_operator(&expr, &mut bad);
                if let Some(op) = bad {
                    return Err(ParseError::plain(format!(
                        "invalid operator {op} in SELECT clause at line {}, char {}; \
                         operator is intended for WHERE clause",
                        pos.line + 1,
                        pos.char + 1
                    )));
                }
                expr
            }
        };
        let alias = self.parse_alias()?;
        self.consume_whitespace();
        Ok(Field { expr, alias })
    }

    /// alias = "AS" identifier .
    fn parse_alias(&mut self) -> Result<Option<String>, ParseError> {
        if !self.accept(Keyword::As) {
            return Ok(None);
        }
        self.parse_ident().map(Some)
    }

    /// into = "INTO" segmented_idents [ ":MEASUREMENT" ] .
    fn parse_target(
        &mut self,
        requirement: TargetRequirement,
    ) -> Result<Option<Target>, ParseError> {
        let lexeme = self.scan_ignore_ws();
        if lexeme.token != Token::Keyword(Keyword::Into) {
            if requirement == TargetRequirement::Required {
                return Err(ParseError::unexpected(&lexeme, &["INTO"]));
            }
            self.unscan();
            return Ok(None);
        }
        let mut idents = self.parse_segmented_idents()?;
        if idents.len() < 3 && self.peek_rune() == Some(':') {
            self.parse_tokens(&[Token::Colon, Token::Keyword(Keyword::Measurement)])?;
            idents.push(String::new());
        }
        let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
        let mut idents = idents.into_iter();
        let target = match (idents.next(), idents.next(), idents.next()) {
            (Some(db), Some(rp), Some(name)) => Target {
                database: non_empty(db),
                retention_policy: non_empty(rp),
                measurement: non_empty(name),
            },
            (Some(rp), Some(name), None) => Target {
                database: None,
                retention_policy: non_empty(rp),
                measurement: non_empty(name),
            },
            (name, _, _) => Target {
                database: None,
                retention_policy: None,
                measurement: name.and_then(non_empty),
            },
        };
        Ok(Some(target))
    }

    /// group_by = "GROUP" "BY" dimension { "," dimension } .
    pub(crate) fn parse_dimensions(&mut self) -> Result<Vec<Dimension>, ParseError> {
        if !self.accept(Keyword::Group) {
            return Ok(Vec::new());
        }
        let by = self.scan_ignore_ws();
        if by.token != Token::Keyword(Keyword::By) {
            return Err(ParseError::unexpected(&by, &["BY"]));
        }
        let mut dimensions = Vec::new();
        loop {
            dimensions.push(self.parse_dimension()?);
            if self.scan().token != Token::Comma {
                self.unscan();
                return Ok(dimensions);
            }
        }
    }

    /// dimension = regex | expr ; classified into time(), tag, `*`, regex or other.
    fn parse_dimension(&mut self) -> Result<Dimension, ParseError> {
        if let Some(re) = self.parse_regex()? {
            return Ok(Dimension::Regex(re));
        }
        let expr = self.parse_expr()?;
        self.consume_whitespace();
        Ok(classify_dimension(expr))
    }

    /// fill = "fill" "(" ( "null" | "none" | "previous" | "linear" | number ) ")" .
    fn parse_fill(&mut self) -> Result<Fill, ParseError> {
        let lexeme = self.scan_ignore_ws();
        self.unscan();
        if lexeme.token != Token::Ident || lexeme.lit.to_lowercase() != "fill" {
            return Ok(Fill::Null);
        }
        let Expr::Call { args, .. } = self.parse_expr()? else {
            return Err(ParseError::plain("fill must be a function call"));
        };
        let [arg] = args.as_slice() else {
            return Err(ParseError::plain(
                "fill requires an argument, e.g.: 0, null, none, previous, linear",
            ));
        };
        // InfluxDB compares the argument's printed form, so `fill(null)` is a name here.
        Ok(match arg.to_string().as_str() {
            "null" => Fill::Null,
            "none" => Fill::None,
            "previous" => Fill::Previous,
            "linear" => Fill::Linear,
            _ => match arg {
                Expr::Integer(n) => Fill::Integer(*n),
                Expr::Float(v) => Fill::Float(*v),
                _ => return Err(ParseError::plain("expected number argument in fill()")),
            },
        })
    }

    /// tz = "tz" "(" string ")" . The zone name is not checked here.
    fn parse_location(&mut self) -> Result<Option<String>, ParseError> {
        let lexeme = self.scan_ignore_ws();
        self.unscan();
        if lexeme.token != Token::Ident || lexeme.lit.to_lowercase() != "tz" {
            return Ok(None);
        }
        let Expr::Call { args, .. } = self.parse_expr()? else {
            return Err(ParseError::plain("tz must be a function call"));
        };
        let [arg] = args.as_slice() else {
            return Err(ParseError::plain("tz requires exactly one argument"));
        };
        match arg {
            Expr::String(name) => Ok(Some(name.clone())),
            _ => Err(ParseError::plain("expected string argument in tz()")),
        }
    }
}

/// InfluxDB's `validateField` walk: the last comparison or logical operator met, not
/// looking inside one once found.
fn find_condition_operator(expr: &Expr, bad: &mut Option<BinaryOp>) {
    match expr {
        Expr::Binary { op, .. } if op.is_condition() => *bad = Some(*op),
        Expr::Binary { lhs, rhs, .. } => {
            find_condition_operator(lhs, bad);
            find_condition_operator(rhs, bad);
        }
        Expr::Call { args, .. } => args.iter().for_each(|a| find_condition_operator(a, bad)),
        Expr::Paren(inner) => find_condition_operator(inner, bad),
        _ => {}
    }
}

fn classify_dimension(expr: Expr) -> Dimension {
    match expr {
        Expr::Call { ref name, ref args } if name == "time" => match args.as_slice() {
            [Expr::Duration(interval)] => Dimension::Time {
                interval: *interval,
                offset: None,
            },
            [Expr::Duration(interval), Expr::Duration(offset)] => Dimension::Time {
                interval: *interval,
                offset: Some(*offset),
            },
            _ => Dimension::Expr(expr),
        },
        Expr::VarRef {
            name,
            data_type: None,
        } => Dimension::Tag(name),
        Expr::Wildcard(None) => Dimension::Wildcard,
        other => Dimension::Expr(other),
    }
}
