//! Expressions: binary operators by precedence, unary terms, calls and variable references.

use super::{ParseError, Parser};
use crate::ast::{BinaryOp, DataType, Expr, RegexLit, WildcardType};
use crate::lexer::{Keyword, Token};

impl Parser {
    /// expr = unary_expr { binary_op unary_expr } ; the right side of `=~` / `!~` must be
    /// a regex. Operators group by InfluxDB's precedence, equal precedence to the left.
    pub(crate) fn parse_expr(&mut self) -> Result<Expr, ParseError> {
        self.nested(Parser::parse_expr_chain)
    }

    fn parse_expr_chain(&mut self) -> Result<Expr, ParseError> {
        let mut root = self.parse_unary_expr()?;
        let mut operators = 0usize;
        loop {
            let lexeme = self.scan_ignore_ws();
            let Some(op) = BinaryOp::from_token(lexeme.token) else {
                self.unscan();
                return Ok(root);
            };
            let rhs = if matches!(op, BinaryOp::EqRegex | BinaryOp::NeqRegex) {
                match self.parse_regex()? {
                    Some(re) => Expr::Regex(re),
                    None => {
                        let found = self.scan_ignore_ws();
                        return Err(ParseError::unexpected(&found, &["regex"]));
                    }
                }
            } else {
                self.parse_unary_expr()?
            };
            operators += 1;
            if operators > super::MAX_CHAINED_OPERATORS {
                return Err(ParseError::plain(format!(
                    "expression too long: more than {} operators",
                    super::MAX_CHAINED_OPERATORS
                )));
            }
            root = insert_binary(root, op, rhs);
        }
    }

    /// unary_expr = "(" expr ")" | identifier [ call ] | var_ref | literal | "*"
    /// | "DISTINCT" ... | ( "+" | "-" ) ( number | duration | identifier | "(" ) .
    pub(crate) fn parse_unary_expr(&mut self) -> Result<Expr, ParseError> {
        if self.scan_ignore_ws().token == Token::LParen {
            let expr = self.parse_expr()?;
            let lexeme = self.scan_ignore_ws();
            if lexeme.token != Token::RParen {
                return Err(ParseError::unexpected(&lexeme, &[")"]));
            }
            return Ok(Expr::Paren(Box::new(expr)));
        }
        self.unscan();

        let lexeme = self.scan_ignore_ws();
        match lexeme.token {
            Token::Ident => {
                // A call only when "(" follows immediately: `mean (x)` is not a call.
                if self.scan().token == Token::LParen {
                    return self.parse_call(&lexeme.lit);
                }
                self.unscan();
                self.unscan();
                self.parse_var_ref()
            }
            Token::Keyword(Keyword::Distinct) => {
                let next = self.scan();
                match next.token {
                    Token::LParen => self.parse_call("distinct"),
                    Token::Ws => {
                        let ident = self.scan_ignore_ws();
                        if ident.token != Token::Ident {
                            return Err(ParseError::unexpected(&ident, &["identifier"]));
                        }
                        Ok(Expr::Distinct(ident.lit))
                    }
                    _ => Err(ParseError::unexpected(&next, &["(", "identifier"])),
                }
            }
            Token::String => Ok(Expr::String(lexeme.lit)),
            Token::Number => lexeme
                .lit
                .parse::<f64>()
                .map(Expr::Float)
                .map_err(|_| ParseError::message("unable to parse number", lexeme.pos)),
            Token::Integer => {
                if let Ok(n) = lexeme.lit.parse::<i64>() {
                    return Ok(Expr::Integer(n));
                }
                // Too large for i64: InfluxDB falls back to an unsigned literal.
                lexeme
                    .lit
                    .parse::<u64>()
                    .map(Expr::Unsigned)
                    .map_err(|_| ParseError::message("unable to parse integer", lexeme.pos))
            }
            Token::True => Ok(Expr::Boolean(true)),
            Token::False => Ok(Expr::Boolean(false)),
            Token::DurationVal => crate::duration::parse_duration(&lexeme.lit)
                .map(Expr::Duration)
                .map_err(ParseError::plain),
            Token::Mul => self.parse_wildcard(),
            Token::Regex => RegexLit::new(&lexeme.lit)
                .map(Expr::Regex)
                .map_err(|e| ParseError::message(e, lexeme.pos)),
            Token::BoundParam => {
                let name = lexeme.lit.trim_start_matches('$');
                if name.is_empty() {
                    return Err(ParseError::plain("empty bound parameter"));
                }
                Err(ParseError::plain(format!("missing parameter: {name}")))
            }
            Token::Add | Token::Sub => self.parse_signed(lexeme.token == Token::Sub),
            _ => Err(ParseError::unexpected(
                &lexeme,
                &["identifier", "string", "number", "bool"],
            )),
        }
    }

    /// wildcard = "*" [ "::" ( "field" | "tag" ) ] ; the "*" was consumed.
    fn parse_wildcard(&mut self) -> Result<Expr, ParseError> {
        if self.scan().token != Token::DoubleColon {
            self.unscan();
            return Ok(Expr::Wildcard(None));
        }
        let lexeme = self.scan();
        match lexeme.token {
            Token::Keyword(Keyword::Field) => Ok(Expr::Wildcard(Some(WildcardType::Field))),
            Token::Keyword(Keyword::Tag) => Ok(Expr::Wildcard(Some(WildcardType::Tag))),
            _ => Err(ParseError::unexpected(&lexeme, &["field", "tag"])),
        }
    }

    /// A signed term after a leading `+` or `-`: literals are folded, anything else becomes
    /// `±1 * term`, as InfluxDB does (so `-x` prints as `-1 * x`).
    fn parse_signed(&mut self, negative: bool) -> Result<Expr, ParseError> {
        let next = self.scan_ignore_ws();
        if !matches!(
            next.token,
            Token::Number | Token::Integer | Token::DurationVal | Token::LParen | Token::Ident
        ) {
            return Err(ParseError::unexpected(
                &next,
                &["identifier", "number", "duration", "("],
            ));
        }
        self.unscan();
        let sign: i64 = if negative { -1 } else { 1 };
        match self.parse_unary_expr()? {
            Expr::Float(v) => Ok(Expr::Float(v * sign as f64)),
            Expr::Integer(n) => Ok(Expr::Integer(n.wrapping_mul(sign))),
            Expr::Unsigned(n) if negative => {
                // i64::MIN only fits when read with its sign.
                if n == 1u64 << 63 {
                    Ok(Expr::Integer(i64::MIN))
                } else {
                    Err(ParseError::plain(format!("constant -{n} underflows int64")))
                }
            }
            Expr::Unsigned(n) => Ok(Expr::Unsigned(n)),
            Expr::Duration(d) => Ok(Expr::Duration(d.wrapping_mul(sign))),
            term @ (Expr::VarRef { .. } | Expr::Call { .. } | Expr::Paren(_)) => {
                Ok(Expr::binary(BinaryOp::Mul, Expr::Integer(sign), term))
            }
            other => Err(ParseError::plain(format!("unexpected literal: {other}"))),
        }
    }

    /// call = identifier "(" [ arg { "," arg } ] ")" ; the name and "(" were consumed.
    /// Arguments are expressions or regexes; the name is lower-cased.
    pub(crate) fn parse_call(&mut self, name: &str) -> Result<Expr, ParseError> {
        let name = name.to_lowercase();
        let mut args = Vec::new();
        if let Some(re) = self.parse_regex()? {
            args.push(Expr::Regex(re));
        } else {
            if self.scan().token == Token::RParen {
                return Ok(Expr::Call { name, args });
            }
            self.unscan();
            args.push(self.parse_expr()?);
        }
        loop {
            if self.scan_ignore_ws().token != Token::Comma {
                self.unscan();
                break;
            }
            if let Some(re) = self.parse_regex()? {
                args.push(Expr::Regex(re));
                continue;
            }
            args.push(self.parse_expr()?);
        }
        let lexeme = self.scan();
        if lexeme.token != Token::RParen {
            return Err(ParseError::unexpected(&lexeme, &[")"]));
        }
        Ok(Expr::Call { name, args })
    }

    /// var_ref = segmented_idents [ "::" type ] .
    pub(crate) fn parse_var_ref(&mut self) -> Result<Expr, ParseError> {
        let segments = self.parse_segmented_idents()?;
        let mut data_type = None;
        if self.scan().token == Token::DoubleColon {
            let lexeme = self.scan();
            data_type = Some(match lexeme.token {
                Token::Ident => match lexeme.lit.to_lowercase().as_str() {
                    "float" => DataType::Float,
                    "integer" => DataType::Integer,
                    "unsigned" => DataType::Unsigned,
                    "string" => DataType::String,
                    "boolean" => DataType::Boolean,
                    _ => {
                        return Err(ParseError::unexpected(
                            &lexeme,
                            &[
                                "float", "integer", "unsigned", "string", "boolean", "field", "tag",
                            ],
                        ))
                    }
                },
                Token::Keyword(Keyword::Field) => DataType::Field,
                Token::Keyword(Keyword::Tag) => DataType::Tag,
                // InfluxDB's list here leaves out "unsigned".
                _ => {
                    return Err(ParseError::unexpected(
                        &lexeme,
                        &["float", "integer", "string", "boolean", "field", "tag"],
                    ))
                }
            });
        } else {
            self.unscan();
        }
        Ok(Expr::VarRef {
            name: segments.join("."),
            data_type,
        })
    }
}

/// Adds `op rhs` to the tree: descend the right spine while the operators there bind
/// looser than `op`, then take that subtree as the left operand (InfluxDB's `ParseExpr`).
fn insert_binary(node: Expr, op: BinaryOp, rhs: Expr) -> Expr {
    match node {
        Expr::Binary {
            op: node_op,
            lhs,
            rhs: node_rhs,
        } if node_op.precedence() < op.precedence() => Expr::Binary {
            op: node_op,
            lhs,
            rhs: Box::new(insert_binary(*node_rhs, op, rhs)),
        },
        other => Expr::binary(op, other, rhs),
    }
}
