//! The InfluxQL parser: query text to [`Statement`]s, failing with InfluxDB 1.x's exact
//! error texts and positions.
//!
//! The parser is recursive descent with one function per grammar production, named after
//! InfluxDB's (`parse_select_statement` for `parseSelectStatement`...). It drives the lexer
//! through the same scan / unscan / peek sequence as InfluxDB 1.6's parser does, because
//! the position InfluxDB reports for an unexpected end of input depends on how often its
//! reader was asked for a character past the end (see [`crate::lexer`]).
//!
//! Statement families live in submodules: `select` (SELECT and its clauses), `show`
//! (SHOW ...), `ddl` (CREATE / DROP / ALTER / DELETE) and `expr` (expressions); duration
//! literals are read by [`crate::duration`].

mod ddl;
mod expr;
mod select;
mod show;

#[cfg(test)]
mod tests;

use crate::ast::{
    quote_ident, ExplainStatement, Measurement, MeasurementName, RegexLit, SortField, Source,
    Statement,
};
use crate::lexer::{is_whitespace, Keyword, Lexeme, Lexer, Pos, Token};
use std::fmt;

/// A parse failure, displayed exactly like InfluxDB 1.x's parser errors (the HTTP layer
/// answers `{"error":"error parsing query: <this>"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `found X, expected A, B at line L, char C`
    Unexpected {
        found: String,
        expected: Vec<String>,
        pos: Pos,
    },
    /// `<message> at line L, char C`
    Message { message: String, pos: Pos },
    /// A message without a position: InfluxDB returns some parse failures as plain errors
    /// (`invalid duration`, `fill must be a function call`, ...).
    Plain(String),
}

impl ParseError {
    fn unexpected(found: &Lexeme, expected: &[&str]) -> ParseError {
        ParseError::Unexpected {
            found: found.found(),
            expected: expected.iter().map(|s| s.to_string()).collect(),
            pos: found.pos,
        }
    }

    fn message(message: impl Into<String>, pos: Pos) -> ParseError {
        ParseError::Message {
            message: message.into(),
            pos,
        }
    }

    fn plain(message: impl Into<String>) -> ParseError {
        ParseError::Plain(message.into())
    }

    /// The zero-based position, if the error has one.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            ParseError::Unexpected { pos, .. } | ParseError::Message { pos, .. } => Some(*pos),
            ParseError::Plain(_) => None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Unexpected {
                found,
                expected,
                pos,
            } => write!(
                f,
                "found {found}, expected {} at line {}, char {}",
                expected.join(", "),
                pos.line + 1,
                pos.char + 1
            ),
            ParseError::Message { message, pos } => write!(
                f,
                "{message} at line {}, char {}",
                pos.line + 1,
                pos.char + 1
            ),
            ParseError::Plain(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one or more statements separated by `;` (empty statements are skipped, so a
/// trailing `;` is fine).
///
/// The text is trimmed first, as InfluxDB's HTTP handler does (`strings.TrimSpace`) before
/// parsing, so positions in errors match what InfluxDB answers over HTTP.
pub fn parse_query(text: &str) -> Result<Vec<Statement>, ParseError> {
    Parser::new(text.trim()).parse_query()
}

/// Whether a `SELECT ... INTO` target is required (continuous queries), optional
/// (statements) or optional inside a subquery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetRequirement {
    Required,
    NotRequired,
    Subquery,
}

/// The parser state: the lexer and InfluxDB's token buffer (every token scanned so far,
/// with a cursor for `unscan`).
pub(crate) struct Parser {
    lexer: Lexer,
    text: String,
    tokens: Vec<Lexeme>,
    cursor: usize,
    /// Expressions and subqueries open around the current token (see [`MAX_NESTING`]).
    nesting: u32,
}

/// The deepest the parser goes into parentheses, calls and subqueries, and the most binary
/// operators one expression chains. The parser recurses once per level and the syntax tree
/// is as deep as the chain: without a bound, a query of a few kilobytes (`((((...`) or a
/// long `a+a+a...` would overflow the stack of the thread parsing it. InfluxDB's parser
/// has no such bound (Go grows its stacks); no real query comes near these.
pub const MAX_NESTING: u32 = 100;
pub const MAX_CHAINED_OPERATORS: usize = 1_000;
/// What one subquery counts against [`MAX_NESTING`]: at most 10 subqueries deep.
const SUBQUERY_LEVELS: u32 = 10;

impl Parser {
    pub(crate) fn new(text: &str) -> Parser {
        let lexer = Lexer::new(text);
        Parser {
            text: text.replace("\r\n", "\n").replace('\r', "\n"),
            lexer,
            tokens: Vec::new(),
            cursor: 0,
            nesting: 0,
        }
    }

    /// Runs `f` one nesting level deeper, refused past [`MAX_NESTING`].
    pub(crate) fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Parser) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        self.nested_by(1, f)
    }

    /// [`Parser::nested`] for a level that costs `levels` (a subquery parses a whole
    /// statement, whose frames are many times an expression's).
    pub(crate) fn nested_by<T>(
        &mut self,
        levels: u32,
        f: impl FnOnce(&mut Parser) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.nesting + levels > MAX_NESTING {
            return Err(ParseError::plain(format!(
                "query too deeply nested: more than {MAX_NESTING} levels of parentheses, calls or subqueries"
            )));
        }
        self.nesting += levels;
        let out = f(self);
        self.nesting -= levels;
        out
    }

    // -----------------------------------------------------------------------------------
    // Token plumbing, as InfluxDB's Scan / ScanRegex / Unscan / ScanIgnoreWhitespace.
    // -----------------------------------------------------------------------------------

    fn next_token(&mut self, regex: bool) -> Lexeme {
        if let Some(lexeme) = self.tokens.get(self.cursor) {
            self.cursor += 1;
            return lexeme.clone();
        }
        let lexeme = if regex {
            self.lexer.scan_regex()
        } else {
            self.lexer.scan()
        };
        self.tokens.push(lexeme.clone());
        self.cursor += 1;
        lexeme
    }

    /// The next token, whitespace and comments included.
    pub(crate) fn scan(&mut self) -> Lexeme {
        self.next_token(false)
    }

    /// The next token read as a regex (a buffered token is returned as is, like InfluxDB).
    fn scan_regex(&mut self) -> Lexeme {
        self.next_token(true)
    }

    /// Pushes the last token back.
    pub(crate) fn unscan(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// The next token that is neither whitespace nor a comment.
    pub(crate) fn scan_ignore_ws(&mut self) -> Lexeme {
        loop {
            let lexeme = self.scan();
            if !matches!(lexeme.token, Token::Ws | Token::Comment) {
                return lexeme;
            }
        }
    }

    /// Skips one whitespace token if it comes next.
    pub(crate) fn consume_whitespace(&mut self) {
        if self.scan().token != Token::Ws {
            self.unscan();
        }
    }

    /// The next character of the underlying reader, bypassing the token buffer like
    /// InfluxDB's `peekRune` (which does not push back an EOF).
    pub(crate) fn peek_rune(&mut self) -> Option<char> {
        let (ch, _) = self.lexer.reader.read();
        if ch.is_some() {
            self.lexer.reader.unread();
        }
        ch
    }

    /// Whether the next non-blank token is `keyword`; consumes it if so.
    pub(crate) fn accept(&mut self, keyword: Keyword) -> bool {
        if self.scan_ignore_ws().token == Token::Keyword(keyword) {
            return true;
        }
        self.unscan();
        false
    }

    /// Consumes the given tokens in order (InfluxDB's `parseTokens`).
    pub(crate) fn parse_tokens(&mut self, expected: &[Token]) -> Result<(), ParseError> {
        for &token in expected {
            let lexeme = self.scan_ignore_ws();
            if lexeme.token != token {
                return Err(ParseError::unexpected(&lexeme, &[token.as_str()]));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Query and statement dispatch.
    // -----------------------------------------------------------------------------------

    /// query = [ statement ] { ";" [ statement ] } .
    fn parse_query(&mut self) -> Result<Vec<Statement>, ParseError> {
        let mut statements = Vec::new();
        let mut semi = true;
        loop {
            let lexeme = self.scan_ignore_ws();
            match lexeme.token {
                Token::Eof => return Ok(statements),
                Token::Semicolon => semi = true,
                _ => {
                    if !semi {
                        return Err(ParseError::unexpected(&lexeme, &[";"]));
                    }
                    self.unscan();
                    statements.push(self.parse_statement()?);
                    semi = false;
                }
            }
        }
    }

    /// statement: dispatched on its leading keywords like InfluxDB's `Language` tree, whose
    /// registration order the "expected" lists follow.
    fn parse_statement(&mut self) -> Result<Statement, ParseError> {
        let first = self.scan_ignore_ws();
        let start = first.start;
        match first.token {
            Token::Keyword(Keyword::Select) => Ok(Statement::Select(Box::new(
                self.parse_select_statement(TargetRequirement::NotRequired)?,
            ))),
            Token::Keyword(Keyword::Delete) => self.parse_delete_statement(),
            Token::Keyword(Keyword::Show) => self.parse_show_statement(start),
            Token::Keyword(Keyword::Create) => self.parse_create_statement(start),
            Token::Keyword(Keyword::Drop) => self.parse_drop_statement(start),
            Token::Keyword(Keyword::Explain) => self.parse_explain_statement(),
            Token::Keyword(Keyword::Grant | Keyword::Revoke) => {
                self.parse_privilege()?;
                Ok(self.skip_statement(start))
            }
            Token::Keyword(Keyword::Alter) => {
                self.expect_keywords(&[Keyword::Retention, Keyword::Policy])?;
                self.parse_alter_retention_policy_statement()
            }
            Token::Keyword(Keyword::Set) => {
                self.expect_keywords(&[Keyword::Password, Keyword::For])?;
                Ok(self.skip_statement(start))
            }
            Token::Keyword(Keyword::Kill) => {
                self.expect_keywords(&[Keyword::Query])?;
                Ok(self.skip_statement(start))
            }
            _ => Err(ParseError::unexpected(
                &first,
                &[
                    "SELECT", "DELETE", "SHOW", "CREATE", "DROP", "EXPLAIN", "GRANT", "REVOKE",
                    "ALTER", "SET", "KILL",
                ],
            )),
        }
    }

    /// Consumes a fixed keyword path of the statement tree.
    fn expect_keywords(&mut self, keywords: &[Keyword]) -> Result<(), ParseError> {
        let tokens: Vec<Token> = keywords.iter().map(|&k| Token::Keyword(k)).collect();
        self.parse_tokens(&tokens)
    }

    /// The rest of a statement the TSDB node does not execute, kept as text: its tokens up to
    /// the next `;` or the end.
    fn skip_statement(&mut self, start: usize) -> Statement {
        loop {
            let lexeme = self.scan_ignore_ws();
            if matches!(lexeme.token, Token::Eof | Token::Semicolon) {
                self.unscan();
                break;
            }
        }
        self.unsupported_statement(start)
    }

    /// A statement without further clauses that the TSDB node does not execute, as text.
    ///
    /// Trailing whitespace is cut: an unterminated string token ends with the newline that
    /// ended it, and a query is trimmed before parsing, so keeping it made the printed
    /// statement parse back to another (found by fuzzing, issue 16).
    fn unsupported_statement(&self, start: usize) -> Statement {
        let end = self.tokens_end_before_cursor(start);
        let text = self.text.get(start..end).unwrap_or_default();
        Statement::Unsupported(text.trim_end().to_string())
    }

    /// privilege = "READ" | "WRITE" | "ALL" [ "PRIVILEGES" ] (of GRANT and REVOKE).
    fn parse_privilege(&mut self) -> Result<(), ParseError> {
        let lexeme = self.scan_ignore_ws();
        match lexeme.token {
            Token::Keyword(Keyword::Read | Keyword::Write) => Ok(()),
            Token::Keyword(Keyword::All) => {
                self.accept(Keyword::Privileges);
                Ok(())
            }
            _ => Err(ParseError::unexpected(
                &lexeme,
                &["READ", "WRITE", "ALL [PRIVILEGES]"],
            )),
        }
    }

    /// The end offset of the last non-blank token consumed so far (at least `start`).
    fn tokens_end_before_cursor(&self, start: usize) -> usize {
        self.tokens[..self.cursor]
            .iter()
            .rev()
            .find(|l| !matches!(l.token, Token::Ws | Token::Comment | Token::Eof))
            .map_or(start, |l| l.end.max(start))
    }

    /// explain_stmt = "EXPLAIN" [ "ANALYZE" ] select_stmt .
    fn parse_explain_statement(&mut self) -> Result<Statement, ParseError> {
        let analyze = self.accept(Keyword::Analyze);
        let lexeme = self.scan_ignore_ws();
        if lexeme.token != Token::Keyword(Keyword::Select) {
            return Err(ParseError::unexpected(&lexeme, &["SELECT"]));
        }
        let statement = self.parse_select_statement(TargetRequirement::NotRequired)?;
        Ok(Statement::Explain(ExplainStatement {
            analyze,
            statement: Box::new(statement),
        }))
    }

    // -----------------------------------------------------------------------------------
    // Shared productions.
    // -----------------------------------------------------------------------------------

    /// identifier (bare or double-quoted).
    pub(crate) fn parse_ident(&mut self) -> Result<String, ParseError> {
        let lexeme = self.scan_ignore_ws();
        if lexeme.token != Token::Ident {
            return Err(ParseError::unexpected(&lexeme, &["identifier"]));
        }
        Ok(lexeme.lit)
    }

    /// identifier { "," identifier } .
    pub(crate) fn parse_ident_list(&mut self) -> Result<Vec<String>, ParseError> {
        let mut idents = vec![self.parse_ident()?];
        loop {
            if self.scan_ignore_ws().token != Token::Comma {
                self.unscan();
                return Ok(idents);
            }
            idents.push(self.parse_ident()?);
        }
    }

    /// `[ "ON" identifier ]`, the database of SHOW statements. An empty quoted name is
    /// treated as absent, as InfluxDB does.
    pub(crate) fn parse_optional_on(&mut self) -> Result<Option<String>, ParseError> {
        if !self.accept(Keyword::On) {
            return Ok(None);
        }
        let db = self.parse_ident()?;
        Ok(Some(db).filter(|d| !d.is_empty()))
    }

    /// segmented identifiers: `a`, `a.b`, `a.b.c`, `a..c` (at most three segments).
    pub(crate) fn parse_segmented_idents(&mut self) -> Result<Vec<String>, ParseError> {
        let mut idents = vec![self.parse_ident()?];
        loop {
            if self.scan().token != Token::Dot {
                self.unscan();
                break;
            }
            match self.peek_rune() {
                // A regex or a `:MEASUREMENT` back-reference ends the segments.
                Some('/') | Some(':') => break,
                Some('.') => {
                    idents.push(String::new());
                    continue;
                }
                _ => {}
            }
            idents.push(self.parse_ident()?);
        }
        if idents.len() > 3 {
            let segments: Vec<&str> = idents.iter().map(String::as_str).collect();
            // InfluxDB gives this error no position, so it reports line 1, char 1.
            return Err(ParseError::message(
                format!("too many segments in {}", quote_ident(&segments)),
                Pos::default(),
            ));
        }
        Ok(idents)
    }

    /// A base-10 integer within `[min, max]` (InfluxDB's `ParseInt`).
    pub(crate) fn parse_int(&mut self, min: i64, max: i64) -> Result<i64, ParseError> {
        let lexeme = self.scan_ignore_ws();
        if lexeme.token != Token::Integer {
            return Err(ParseError::unexpected(&lexeme, &["integer"]));
        }
        let n: i64 = lexeme.lit.parse().map_err(|_| {
            ParseError::message(
                format!(
                    "strconv.Atoi: parsing \"{}\": value out of range",
                    lexeme.lit
                ),
                lexeme.pos,
            )
        })?;
        if n < min || n > max {
            return Err(ParseError::message(
                format!("invalid value {n}: must be {min} <= n <= {max}"),
                lexeme.pos,
            ));
        }
        Ok(n)
    }

    /// A duration value or `INF` (0), as InfluxDB's `Parser.ParseDuration`.
    pub(crate) fn parse_duration_value(&mut self) -> Result<i64, ParseError> {
        let lexeme = self.scan_ignore_ws();
        match lexeme.token {
            Token::Keyword(Keyword::Inf) => Ok(0),
            Token::DurationVal => crate::duration::parse_duration(&lexeme.lit)
                .map_err(|e| ParseError::message(e, lexeme.pos)),
            _ => Err(ParseError::unexpected(&lexeme, &["duration"])),
        }
    }

    /// `[ keyword integer ]` for LIMIT, OFFSET, SLIMIT and SOFFSET; 0 counts as absent.
    pub(crate) fn parse_optional_token_and_int(
        &mut self,
        keyword: Keyword,
    ) -> Result<Option<u64>, ParseError> {
        if !self.accept(keyword) {
            return Ok(None);
        }
        let lexeme = self.scan_ignore_ws();
        if lexeme.token != Token::Integer {
            return Err(ParseError::unexpected(&lexeme, &["integer"]));
        }
        // InfluxDB ignores the range error here and takes the clamped value.
        let n = lexeme.lit.parse::<i64>().unwrap_or(i64::MAX);
        Ok(u64::try_from(n).ok().filter(|n| *n > 0))
    }

    /// `[ "WHERE" expr ]`.
    pub(crate) fn parse_condition(&mut self) -> Result<Option<crate::ast::Expr>, ParseError> {
        if !self.accept(Keyword::Where) {
            return Ok(None);
        }
        Ok(Some(self.parse_expr()?))
    }

    /// A `/regex/` if one comes next (after optional whitespace); `None` otherwise.
    pub(crate) fn parse_regex(&mut self) -> Result<Option<RegexLit>, ParseError> {
        if is_whitespace(self.peek_rune()) {
            self.consume_whitespace();
        }
        match self.peek_rune() {
            Some('$') => {
                // A bound parameter could stand for a regex; without parameters it never does.
                self.scan();
                self.unscan();
                return Ok(None);
            }
            Some('/') => {}
            _ => return Ok(None),
        }
        let lexeme = self.scan_regex();
        match lexeme.token {
            Token::BadEscape => Err(ParseError::message(
                format!("bad escape: {}", lexeme.lit),
                lexeme.pos,
            )),
            Token::BadRegex => Err(ParseError::message(
                format!("bad regex: {}", lexeme.lit),
                lexeme.pos,
            )),
            Token::Regex => RegexLit::new(&lexeme.lit)
                .map(Some)
                .map_err(|e| ParseError::message(go_regex_error(&lexeme.lit, &e), lexeme.pos)),
            _ => Err(ParseError::unexpected(&lexeme, &["regex"])),
        }
    }

    /// sources = source { "," source } .
    pub(crate) fn parse_sources(&mut self, subqueries: bool) -> Result<Vec<Source>, ParseError> {
        let mut sources = Vec::new();
        loop {
            sources.push(self.parse_source(subqueries)?);
            if self.scan_ignore_ws().token != Token::Comma {
                self.unscan();
                return Ok(sources);
            }
        }
    }

    /// source = measurement | "(" select_stmt ")" (subqueries only in SELECT).
    pub(crate) fn parse_source(&mut self, subqueries: bool) -> Result<Source, ParseError> {
        if let Some(re) = self.parse_regex()? {
            return Ok(Source::Measurement(Measurement {
                database: None,
                retention_policy: None,
                name: MeasurementName::Regex(re),
            }));
        }
        if subqueries {
            if self.scan_ignore_ws().token == Token::LParen {
                self.parse_tokens(&[Token::Keyword(Keyword::Select)])?;
                let statement = self.nested_by(SUBQUERY_LEVELS, |p| {
                    p.parse_select_statement(TargetRequirement::Subquery)
                })?;
                self.parse_tokens(&[Token::RParen])?;
                return Ok(Source::SubQuery(Box::new(statement)));
            }
            self.unscan();
        }

        let mut idents = self.parse_segmented_idents()?;
        let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
        if idents.len() == 3 {
            let name = idents.pop().unwrap_or_default();
            let rp = idents.pop().unwrap_or_default();
            let db = idents.pop().unwrap_or_default();
            return Ok(Source::Measurement(Measurement {
                database: non_empty(db),
                retention_policy: non_empty(rp),
                name: MeasurementName::Name(name),
            }));
        }
        let re = self.parse_regex()?;
        let mut idents = idents.into_iter();
        let first = idents.next().unwrap_or_default();
        let second = idents.next();
        let measurement = match (re, second) {
            (Some(re), None) => Measurement {
                database: None,
                retention_policy: non_empty(first),
                name: MeasurementName::Regex(re),
            },
            (Some(re), Some(rp)) => Measurement {
                database: non_empty(first),
                retention_policy: non_empty(rp),
                name: MeasurementName::Regex(re),
            },
            (None, None) => Measurement {
                database: None,
                retention_policy: None,
                name: MeasurementName::Name(first),
            },
            (None, Some(name)) => Measurement {
                database: None,
                retention_policy: non_empty(first),
                name: MeasurementName::Name(name),
            },
        };
        Ok(Source::Measurement(measurement))
    }

    /// `[ "ORDER" "BY" sort_fields ]`.
    pub(crate) fn parse_order_by(&mut self) -> Result<Option<SortField>, ParseError> {
        if !self.accept(Keyword::Order) {
            return Ok(None);
        }
        let lexeme = self.scan_ignore_ws();
        if lexeme.token != Token::Keyword(Keyword::By) {
            return Err(ParseError::unexpected(&lexeme, &["BY"]));
        }
        self.parse_sort_fields().map(Some)
    }

    /// sort_fields = ( "ASC" | "DESC" | sort_field ) { "," sort_field } ; only `time`.
    fn parse_sort_fields(&mut self) -> Result<SortField, ParseError> {
        const ONLY_TIME: &str = "only ORDER BY time supported at this time";
        let lexeme = self.scan_ignore_ws();
        let first = match lexeme.token {
            Token::Keyword(k @ (Keyword::Asc | Keyword::Desc)) => SortField {
                name: None,
                ascending: k == Keyword::Asc,
            },
            Token::Ident => {
                self.unscan();
                let field = self.parse_sort_field()?;
                if lexeme.lit != "time" {
                    return Err(ParseError::plain(ONLY_TIME));
                }
                field
            }
            _ => {
                return Err(ParseError::unexpected(
                    &lexeme,
                    &["identifier", "ASC", "DESC"],
                ))
            }
        };
        let mut count = 1;
        loop {
            if self.scan_ignore_ws().token != Token::Comma {
                self.unscan();
                break;
            }
            self.parse_sort_field()?;
            count += 1;
        }
        if count > 1 {
            return Err(ParseError::plain(ONLY_TIME));
        }
        Ok(first)
    }

    /// sort_field = identifier [ "ASC" | "DESC" ] .
    fn parse_sort_field(&mut self) -> Result<SortField, ParseError> {
        let name = self.parse_ident()?;
        let lexeme = self.scan_ignore_ws();
        let ascending = match lexeme.token {
            Token::Keyword(Keyword::Asc) => true,
            Token::Keyword(Keyword::Desc) => false,
            _ => {
                self.unscan();
                true
            }
        };
        Ok(SortField {
            name: Some(name),
            ascending,
        })
    }
}

/// A regex compile error in the words of Go's `regexp` package where the kind is known
/// (`error parsing regexp: missing closing ): `a(``), else the regex crate's reason.
fn go_regex_error(pattern: &str, text: &str) -> String {
    let reason = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text)
        .to_string();
    let (code, arg) = if reason.contains("unclosed group") {
        ("missing closing )", pattern.to_string())
    } else if reason.contains("unopened group") {
        ("unexpected )", pattern.to_string())
    } else if reason.contains("unclosed character class") {
        ("missing closing ]", pattern.to_string())
    } else if reason.contains("unrecognized escape") {
        ("invalid escape sequence", invalid_escape(pattern))
    } else if reason.contains("repetition operator missing expression") {
        let op = pattern
            .chars()
            .find(|c| matches!(c, '*' | '+' | '?'))
            .map_or_else(|| pattern.to_string(), |c| c.to_string());
        ("missing argument to repetition operator", op)
    } else {
        return format!("error parsing regexp: {reason}: `{pattern}`");
    };
    format!("error parsing regexp: {code}: `{arg}`")
}

/// The first backslash escape Go's regexp would reject, for its error message.
fn invalid_escape(pattern: &str) -> String {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            continue;
        }
        match chars.next() {
            Some(e)
                if e.is_ascii_alphanumeric() && !"abfnrtvxdDsSwWpPBAzQE01234567".contains(e) =>
            {
                return format!("\\{e}");
            }
            _ => {}
        }
    }
    pattern.to_string()
}
