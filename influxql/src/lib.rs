//! InfluxQL, the query language of InfluxDB 1.x: the lexer, the AST with canonical
//! `Display`, and the parser. Nothing here executes a query; the TSDB node's executor and
//! the gateway's query cache both read what [`parse_query`] returns.
//!
//! [`parse_query`] turns query text into [`ast::Statement`]s or a [`ParseError`] that prints
//! exactly like InfluxDB 1.6's (`found EOF, expected FROM at line 1, char 14`).
//!
//! * [`lexer`]: text to tokens, with InfluxDB's positions;
//! * [`parser`]: tokens to statements (recursive descent, one function per production);
//! * [`ast`]: the statements, printed back as InfluxDB prints them;
//! * [`duration`]: duration literals (`1h30m`) to nanoseconds and back;
//! * [`go_regex`]: regex literals compiled with Go's ASCII Perl classes;
//! * [`time`]: time literals and the time range of a condition.

pub mod ast;
pub mod duration;
pub mod go_regex;
pub mod lexer;
pub mod parser;
pub mod time;

pub use parser::{parse_query, ParseError};
