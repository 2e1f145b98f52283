//! InfluxQL: the lexer, the AST with canonical `Display`, and the parser of InfluxDB 1.x's
//! query language (execution lives elsewhere).
//!
//! [`parse_query`] turns query text into [`ast::Statement`]s or a [`ParseError`] that prints
//! exactly like InfluxDB 1.6's (`found EOF, expected FROM at line 1, char 14`).

pub mod ast;
pub mod lexer;
pub mod parser;

pub use parser::{parse_query, ParseError};
pub mod executor;
pub mod go_regex;
pub mod result;
