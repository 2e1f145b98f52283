//! The InfluxQL lexer: turns query text into tokens with InfluxDB-exact positions.
//!
//! It mirrors InfluxDB 1.x's scanner (`influxql/scanner.go`) closely, including its
//! quirks, because error messages quote token positions and clients compare them:
//!
//! * positions are zero-based `(line, char)` counted in characters, `\r\n` and a lone
//!   `\r` count as one newline;
//! * reading past the end yields EOF at the end position the first time and one character
//!   further on every later fresh read (InfluxDB's reader stops counting after one EOF);
//! * a string token is positioned at the character *before* its opening quote and a regex
//!   at the character before its `/` (InfluxDB takes the position after un-reading).
//!
//! The reader is a cursor over the characters followed by an endless run of EOFs, which
//! behaves like InfluxDB's three-slot unread buffer for every sequence the parser uses.

use std::fmt;

/// A zero-based line and character position, as InfluxDB's `influxql.Pos`.
/// Error messages print both plus one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub char: u32,
}

/// An InfluxQL keyword. Keywords are matched case-insensitively and print in upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    All,
    Alter,
    Analyze,
    Any,
    As,
    Asc,
    Begin,
    By,
    Cardinality,
    Create,
    Continuous,
    Database,
    Databases,
    Default,
    Delete,
    Desc,
    Destinations,
    Diagnostics,
    Distinct,
    Drop,
    Duration,
    End,
    Every,
    Exact,
    Explain,
    Field,
    For,
    From,
    Grant,
    Grants,
    Group,
    Groups,
    Inf,
    Insert,
    Into,
    Key,
    Keys,
    Kill,
    Limit,
    Measurement,
    Measurements,
    Name,
    Offset,
    On,
    Order,
    Password,
    Policy,
    Policies,
    Privileges,
    Queries,
    Query,
    Read,
    Replication,
    Resample,
    Retention,
    Revoke,
    Select,
    Series,
    Set,
    Show,
    Shard,
    Shards,
    Slimit,
    Soffset,
    Stats,
    Subscription,
    Subscriptions,
    Tag,
    To,
    User,
    Users,
    Values,
    Where,
    With,
    Write,
}

/// Every keyword with its spelling, in InfluxDB 1.6's `token.go` order.
const KEYWORDS: &[(Keyword, &str)] = &[
    (Keyword::All, "ALL"),
    (Keyword::Alter, "ALTER"),
    (Keyword::Analyze, "ANALYZE"),
    (Keyword::Any, "ANY"),
    (Keyword::As, "AS"),
    (Keyword::Asc, "ASC"),
    (Keyword::Begin, "BEGIN"),
    (Keyword::By, "BY"),
    (Keyword::Cardinality, "CARDINALITY"),
    (Keyword::Create, "CREATE"),
    (Keyword::Continuous, "CONTINUOUS"),
    (Keyword::Database, "DATABASE"),
    (Keyword::Databases, "DATABASES"),
    (Keyword::Default, "DEFAULT"),
    (Keyword::Delete, "DELETE"),
    (Keyword::Desc, "DESC"),
    (Keyword::Destinations, "DESTINATIONS"),
    (Keyword::Diagnostics, "DIAGNOSTICS"),
    (Keyword::Distinct, "DISTINCT"),
    (Keyword::Drop, "DROP"),
    (Keyword::Duration, "DURATION"),
    (Keyword::End, "END"),
    (Keyword::Every, "EVERY"),
    (Keyword::Exact, "EXACT"),
    (Keyword::Explain, "EXPLAIN"),
    (Keyword::Field, "FIELD"),
    (Keyword::For, "FOR"),
    (Keyword::From, "FROM"),
    (Keyword::Grant, "GRANT"),
    (Keyword::Grants, "GRANTS"),
    (Keyword::Group, "GROUP"),
    (Keyword::Groups, "GROUPS"),
    (Keyword::Inf, "INF"),
    (Keyword::Insert, "INSERT"),
    (Keyword::Into, "INTO"),
    (Keyword::Key, "KEY"),
    (Keyword::Keys, "KEYS"),
    (Keyword::Kill, "KILL"),
    (Keyword::Limit, "LIMIT"),
    (Keyword::Measurement, "MEASUREMENT"),
    (Keyword::Measurements, "MEASUREMENTS"),
    (Keyword::Name, "NAME"),
    (Keyword::Offset, "OFFSET"),
    (Keyword::On, "ON"),
    (Keyword::Order, "ORDER"),
    (Keyword::Password, "PASSWORD"),
    (Keyword::Policy, "POLICY"),
    (Keyword::Policies, "POLICIES"),
    (Keyword::Privileges, "PRIVILEGES"),
    (Keyword::Queries, "QUERIES"),
    (Keyword::Query, "QUERY"),
    (Keyword::Read, "READ"),
    (Keyword::Replication, "REPLICATION"),
    (Keyword::Resample, "RESAMPLE"),
    (Keyword::Retention, "RETENTION"),
    (Keyword::Revoke, "REVOKE"),
    (Keyword::Select, "SELECT"),
    (Keyword::Series, "SERIES"),
    (Keyword::Set, "SET"),
    (Keyword::Show, "SHOW"),
    (Keyword::Shard, "SHARD"),
    (Keyword::Shards, "SHARDS"),
    (Keyword::Slimit, "SLIMIT"),
    (Keyword::Soffset, "SOFFSET"),
    (Keyword::Stats, "STATS"),
    (Keyword::Subscription, "SUBSCRIPTION"),
    (Keyword::Subscriptions, "SUBSCRIPTIONS"),
    (Keyword::Tag, "TAG"),
    (Keyword::To, "TO"),
    (Keyword::User, "USER"),
    (Keyword::Users, "USERS"),
    (Keyword::Values, "VALUES"),
    (Keyword::Where, "WHERE"),
    (Keyword::With, "WITH"),
    (Keyword::Write, "WRITE"),
];

impl Keyword {
    /// The upper-case spelling InfluxDB prints in messages.
    pub fn as_str(self) -> &'static str {
        KEYWORDS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("", |(_, s)| s)
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lexical token kind, as InfluxDB's `influxql.Token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    Illegal,
    Eof,
    Ws,
    Comment,
    Ident,
    BoundParam,
    Number,
    Integer,
    DurationVal,
    String,
    BadString,
    BadEscape,
    True,
    False,
    Regex,
    BadRegex,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    And,
    Or,
    In,
    Eq,
    Neq,
    EqRegex,
    NeqRegex,
    Lt,
    Lte,
    Gt,
    Gte,
    LParen,
    RParen,
    Comma,
    Colon,
    DoubleColon,
    Semicolon,
    Dot,
    Pi,
    Keyword(Keyword),
}

impl Token {
    /// The text InfluxDB's `Token.String()` gives; empty for the kinds it has no name for
    /// (those always carry a literal, which messages print instead).
    pub fn as_str(self) -> &'static str {
        match self {
            Token::Illegal => "ILLEGAL",
            Token::Eof => "EOF",
            Token::Ws => "WS",
            Token::Ident => "IDENT",
            Token::Number => "NUMBER",
            Token::DurationVal => "DURATIONVAL",
            Token::String => "STRING",
            Token::BadString => "BADSTRING",
            Token::BadEscape => "BADESCAPE",
            Token::True => "TRUE",
            Token::False => "FALSE",
            Token::Regex => "REGEX",
            Token::Add => "+",
            Token::Sub => "-",
            Token::Mul => "*",
            Token::Div => "/",
            Token::Mod => "%",
            Token::BitwiseAnd => "&",
            Token::BitwiseOr => "|",
            Token::BitwiseXor => "^",
            Token::And => "AND",
            Token::Or => "OR",
            Token::In => "IN",
            Token::Eq => "=",
            Token::Neq => "!=",
            Token::EqRegex => "=~",
            Token::NeqRegex => "!~",
            Token::Lt => "<",
            Token::Lte => "<=",
            Token::Gt => ">",
            Token::Gte => ">=",
            Token::LParen => "(",
            Token::RParen => ")",
            Token::Comma => ",",
            Token::Colon => ":",
            Token::DoubleColon => "::",
            Token::Semicolon => ";",
            Token::Dot => ".",
            Token::Keyword(k) => k.as_str(),
            Token::Comment | Token::BoundParam | Token::Integer | Token::BadRegex | Token::Pi => "",
        }
    }

    /// Whether this is a binary operator token. `IN` is not one in InfluxDB 1.6 (it only
    /// appears in `WITH KEY IN (...)`), so `a IN (1)` fails as it does there.
    pub fn is_operator(self) -> bool {
        matches!(
            self,
            Token::Add
                | Token::Sub
                | Token::Mul
                | Token::Div
                | Token::Mod
                | Token::BitwiseAnd
                | Token::BitwiseOr
                | Token::BitwiseXor
                | Token::And
                | Token::Or
                | Token::Eq
                | Token::Neq
                | Token::EqRegex
                | Token::NeqRegex
                | Token::Lt
                | Token::Lte
                | Token::Gt
                | Token::Gte
        )
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Looks up a bare word: a keyword (case-insensitively) or else an identifier.
pub fn lookup(ident: &str) -> Token {
    let lower = ident.to_ascii_lowercase();
    match lower.as_str() {
        "and" => return Token::And,
        "or" => return Token::Or,
        "in" => return Token::In,
        "true" => return Token::True,
        "false" => return Token::False,
        _ => {}
    }
    KEYWORDS
        .iter()
        .find(|(_, s)| s.eq_ignore_ascii_case(&lower))
        .map_or(Token::Ident, |(k, _)| Token::Keyword(*k))
}

/// One scanned token: its kind, position, literal text (identifiers, strings, numbers,
/// durations, regexes, illegal characters; empty for keywords and operators) and the byte
/// range it covers in the (newline-normalised) query text.
#[derive(Debug, Clone, PartialEq)]
pub struct Lexeme {
    pub token: Token,
    pub pos: Pos,
    pub lit: String,
    pub start: usize,
    pub end: usize,
}

impl Lexeme {
    /// What an error message calls this token: its literal, else its kind (`tokstr`).
    pub fn found(&self) -> String {
        if self.lit.is_empty() {
            self.token.as_str().to_string()
        } else {
            self.lit.clone()
        }
    }
}

/// Whitespace as InfluxDB defines it: space, tab and newline only.
pub(crate) fn is_whitespace(ch: Option<char>) -> bool {
    matches!(ch, Some(' ' | '\t' | '\n'))
}

fn is_letter(ch: Option<char>) -> bool {
    matches!(ch, Some(c) if c.is_ascii_alphabetic())
}

fn is_digit(ch: Option<char>) -> bool {
    matches!(ch, Some(c) if c.is_ascii_digit())
}

fn is_ident_char(ch: Option<char>) -> bool {
    matches!(ch, Some(c) if c.is_ascii_alphanumeric() || c == '_')
}

/// Whether an unquoted identifier may start with this character.
pub(crate) fn is_ident_first_char(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Whether an unquoted identifier may contain this character.
pub(crate) fn is_ident_char_at(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A character reader with unlimited unread, positioned like InfluxDB's `reader`.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    chars: Vec<(char, Pos, usize)>,
    end: Pos,
    text_len: usize,
    cursor: usize,
}

impl Reader {
    fn new(text: &str) -> Reader {
        let mut chars = Vec::with_capacity(text.len());
        let mut pos = Pos::default();
        for (offset, ch) in text.char_indices() {
            chars.push((ch, pos, offset));
            if ch == '\n' {
                pos.line += 1;
                pos.char = 0;
            } else {
                pos.char += 1;
            }
        }
        Reader {
            chars,
            end: pos,
            text_len: text.len(),
            cursor: 0,
        }
    }

    fn item(&self, index: usize) -> (Option<char>, Pos) {
        match self.chars.get(index) {
            Some(&(ch, pos, _)) => (Some(ch), pos),
            // The first EOF sits at the end; InfluxDB counts one more character for it,
            // so every later EOF is one further on.
            None if index == self.chars.len() => (None, self.end),
            None => (
                None,
                Pos {
                    line: self.end.line,
                    char: self.end.char + 1,
                },
            ),
        }
    }

    /// Reads the next character (`None` is EOF) and its position.
    pub(crate) fn read(&mut self) -> (Option<char>, Pos) {
        let item = self.item(self.cursor);
        self.cursor += 1;
        item
    }

    /// Pushes the last read character back.
    pub(crate) fn unread(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// The last read character, as InfluxDB's `reader.curr()`; before any read, an EOF at
    /// the origin (the zero value of InfluxDB's buffer slot).
    fn curr(&self) -> (Option<char>, Pos) {
        match self.cursor.checked_sub(1) {
            Some(i) => self.item(i),
            None => (None, Pos::default()),
        }
    }

    /// The byte offset of the next character to read.
    fn offset(&self) -> usize {
        self.chars
            .get(self.cursor)
            .map_or(self.text_len, |&(_, _, offset)| offset)
    }
}

/// The InfluxQL scanner. [`Lexer::scan`] returns every token including whitespace and
/// comments; the parser skips those where InfluxDB does.
#[derive(Debug, Clone)]
pub struct Lexer {
    pub(crate) reader: Reader,
}

impl Lexer {
    /// A lexer over `text`. `\r\n` and lone `\r` are read as `\n`, as InfluxDB does.
    pub fn new(text: &str) -> Lexer {
        let normalised = normalise_newlines(text);
        Lexer {
            reader: Reader::new(&normalised),
        }
    }

    /// Scans the next token.
    pub fn scan(&mut self) -> Lexeme {
        let start = self.reader.offset();
        let (token, pos, lit) = self.scan_token();
        Lexeme {
            token,
            pos,
            lit,
            start,
            end: self.reader.offset(),
        }
    }

    /// Scans a `/regex/` token at the current position (the parser calls this only after
    /// peeking a `/`, like InfluxDB's `ScanRegex`).
    pub fn scan_regex(&mut self) -> Lexeme {
        let start = self.reader.offset();
        let (_, pos) = self.reader.curr();
        let (token, lit) = match self.scan_delimited_regex() {
            Some(pattern) => (Token::Regex, pattern),
            None => (Token::BadRegex, String::new()),
        };
        Lexeme {
            token,
            pos,
            lit,
            start,
            end: self.reader.offset(),
        }
    }

    fn scan_token(&mut self) -> (Token, Pos, String) {
        let (ch0, pos) = self.reader.read();
        if is_whitespace(ch0) {
            return self.scan_whitespace();
        } else if is_letter(ch0) || ch0 == Some('_') {
            self.reader.unread();
            return self.scan_ident(true);
        } else if is_digit(ch0) {
            return self.scan_number();
        }
        let Some(c) = ch0 else {
            return (Token::Eof, pos, String::new());
        };
        let simple = |t: Token| (t, pos, String::new());
        match c {
            '"' => {
                self.reader.unread();
                self.scan_ident(true)
            }
            '\'' => self.scan_string(),
            '.' => {
                let (ch1, _) = self.reader.read();
                self.reader.unread();
                if is_digit(ch1) {
                    self.scan_number()
                } else {
                    simple(Token::Dot)
                }
            }
            '$' => {
                let (tok, _, lit) = self.scan_ident(false);
                if tok == Token::Ident {
                    (Token::BoundParam, pos, format!("${lit}"))
                } else {
                    (tok, pos, format!("${lit}"))
                }
            }
            '+' => simple(Token::Add),
            '-' => {
                let (ch1, _) = self.reader.read();
                if ch1 == Some('-') {
                    self.skip_until_newline();
                    return simple(Token::Comment);
                }
                self.reader.unread();
                simple(Token::Sub)
            }
            '*' => simple(Token::Mul),
            '/' => {
                let (ch1, _) = self.reader.read();
                if ch1 == Some('*') {
                    if self.skip_until_end_comment() {
                        return simple(Token::Comment);
                    }
                    return simple(Token::Illegal);
                }
                self.reader.unread();
                simple(Token::Div)
            }
            '%' => simple(Token::Mod),
            '&' => simple(Token::BitwiseAnd),
            '|' => simple(Token::BitwiseOr),
            '^' => simple(Token::BitwiseXor),
            '=' => {
                if self.reader.read().0 == Some('~') {
                    return simple(Token::EqRegex);
                }
                self.reader.unread();
                simple(Token::Eq)
            }
            '!' => {
                match self.reader.read().0 {
                    Some('=') => return simple(Token::Neq),
                    Some('~') => return simple(Token::NeqRegex),
                    _ => self.reader.unread(),
                }
                (Token::Illegal, pos, "!".to_string())
            }
            '>' => {
                if self.reader.read().0 == Some('=') {
                    return simple(Token::Gte);
                }
                self.reader.unread();
                simple(Token::Gt)
            }
            '<' => match self.reader.read().0 {
                Some('=') => simple(Token::Lte),
                Some('>') => simple(Token::Neq),
                _ => {
                    self.reader.unread();
                    simple(Token::Lt)
                }
            },
            '(' => simple(Token::LParen),
            ')' => simple(Token::RParen),
            ',' => simple(Token::Comma),
            ';' => simple(Token::Semicolon),
            ':' => {
                if self.reader.read().0 == Some(':') {
                    return simple(Token::DoubleColon);
                }
                self.reader.unread();
                simple(Token::Colon)
            }
            'π' => (Token::Pi, pos, "π".to_string()),
            other => (Token::Illegal, pos, other.to_string()),
        }
    }

    fn scan_whitespace(&mut self) -> (Token, Pos, String) {
        let (ch, pos) = self.reader.curr();
        let mut buf: String = ch.into_iter().collect();
        loop {
            let (ch, _) = self.reader.read();
            match ch {
                // InfluxDB does not un-read the EOF here; that shifts later EOF positions.
                None => break,
                Some(c) if is_whitespace(ch) => buf.push(c),
                Some(_) => {
                    self.reader.unread();
                    break;
                }
            }
        }
        (Token::Ws, pos, buf)
    }

    fn skip_until_newline(&mut self) {
        loop {
            match self.reader.read().0 {
                None | Some('\n') => return,
                Some(_) => {}
            }
        }
    }

    /// Skips to the end of a `/* */` comment; false if the text ends first.
    fn skip_until_end_comment(&mut self) -> bool {
        loop {
            match self.reader.read().0 {
                None => return false,
                Some('*') => loop {
                    match self.reader.read().0 {
                        Some('/') => return true,
                        Some('*') => continue,
                        None => return false,
                        Some(_) => break,
                    }
                },
                Some(_) => {}
            }
        }
    }

    fn scan_ident(&mut self, lookup_keyword: bool) -> (Token, Pos, String) {
        let (_, pos) = self.reader.read();
        self.reader.unread();
        let mut buf = String::new();
        loop {
            let (ch, _) = self.reader.read();
            match ch {
                None => break,
                Some('"') => {
                    let (tok0, pos0, lit0) = self.scan_string();
                    if matches!(tok0, Token::BadString | Token::BadEscape) {
                        return (tok0, pos0, lit0);
                    }
                    return (Token::Ident, pos, lit0);
                }
                Some(_) if is_ident_char(ch) => {
                    self.reader.unread();
                    self.scan_bare_ident(&mut buf);
                }
                Some(_) => {
                    self.reader.unread();
                    break;
                }
            }
        }
        if lookup_keyword {
            let tok = lookup(&buf);
            if tok != Token::Ident {
                return (tok, pos, String::new());
            }
        }
        (Token::Ident, pos, buf)
    }

    fn scan_bare_ident(&mut self, buf: &mut String) {
        loop {
            let (ch, _) = self.reader.read();
            match ch {
                None => break,
                Some(c) if is_ident_char(ch) => buf.push(c),
                Some(_) => {
                    self.reader.unread();
                    break;
                }
            }
        }
    }

    /// Scans a quoted string or identifier whose opening quote was just read.
    fn scan_string(&mut self) -> (Token, Pos, String) {
        self.reader.unread();
        let (_, pos) = self.reader.curr();
        let Some(ending) = self.reader.read().0 else {
            return (Token::BadString, pos, String::new());
        };
        let mut buf = String::new();
        loop {
            let (ch0, _) = self.reader.read();
            match ch0 {
                Some(c) if c == ending => return (Token::String, pos, buf),
                None | Some('\n') => return (Token::BadString, pos, buf),
                Some('\\') => {
                    let (ch1, _) = self.reader.read();
                    match ch1 {
                        Some('n') => buf.push('\n'),
                        Some('\\') => buf.push('\\'),
                        Some('"') => buf.push('"'),
                        Some('\'') => buf.push('\''),
                        other => {
                            let (_, pos) = self.reader.curr();
                            let mut lit = String::from("\\");
                            lit.extend(other);
                            return (Token::BadEscape, pos, lit);
                        }
                    }
                }
                Some(c) => buf.push(c),
            }
        }
    }

    /// Reads `/pattern/`; `\/` stands for `/`, every other backslash is kept for the regex
    /// engine. `None` if there is no closing `/` on the line.
    fn scan_delimited_regex(&mut self) -> Option<String> {
        if self.reader.read().0 != Some('/') {
            return None;
        }
        let mut buf = String::new();
        loop {
            match self.reader.read().0 {
                Some('/') => return Some(buf),
                None | Some('\n') => return None,
                Some('\\') => match self.reader.read().0 {
                    None => return None,
                    Some('/') => buf.push('/'),
                    Some(_) => {
                        self.reader.unread();
                        buf.push('\\');
                    }
                },
                Some(c) => buf.push(c),
            }
        }
    }

    fn scan_number(&mut self) -> (Token, Pos, String) {
        let (ch, pos) = self.reader.curr();
        if ch == Some('.') {
            let (ch1, _) = self.reader.read();
            self.reader.unread();
            if !is_digit(ch1) {
                return (Token::Illegal, pos, ".".to_string());
            }
        }
        self.reader.unread();

        let mut buf = self.scan_digits();
        let mut is_decimal = false;
        let (ch0, _) = self.reader.read();
        if ch0 == Some('.') {
            is_decimal = true;
            let (ch1, _) = self.reader.read();
            if let Some(c1) = ch1.filter(|c| c.is_ascii_digit()) {
                buf.push('.');
                buf.push(c1);
                buf.push_str(&self.scan_digits());
            } else {
                self.reader.unread();
            }
        } else {
            self.reader.unread();
        }

        if is_decimal {
            return (Token::Number, pos, buf);
        }
        // An integer directly followed by letters is a duration (`10s`, `1h30m`).
        let (ch0, _) = self.reader.read();
        let is_unit = |ch: Option<char>| is_letter(ch) || ch == Some('µ');
        if let Some(c0) = ch0.filter(|_| is_unit(ch0)) {
            buf.push(c0);
            loop {
                let (ch1, _) = self.reader.read();
                match ch1 {
                    Some(c) if is_unit(ch1) => buf.push(c),
                    _ => {
                        self.reader.unread();
                        break;
                    }
                }
            }
            loop {
                let (ch1, _) = self.reader.read();
                match ch1 {
                    Some(c) if is_unit(ch1) || is_digit(ch1) => buf.push(c),
                    _ => {
                        self.reader.unread();
                        break;
                    }
                }
            }
            return (Token::DurationVal, pos, buf);
        }
        self.reader.unread();
        (Token::Integer, pos, buf)
    }

    fn scan_digits(&mut self) -> String {
        let mut buf = String::new();
        loop {
            let (ch, _) = self.reader.read();
            match ch {
                Some(c) if c.is_ascii_digit() => buf.push(c),
                _ => {
                    self.reader.unread();
                    return buf;
                }
            }
        }
    }
}

fn normalise_newlines(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_string();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<(Token, String)> {
        let mut lexer = Lexer::new(text);
        let mut out = Vec::new();
        loop {
            let lexeme = lexer.scan();
            if lexeme.token == Token::Eof {
                return out;
            }
            if lexeme.token != Token::Ws {
                out.push((lexeme.token, lexeme.lit));
            }
        }
    }

    fn t(token: Token, lit: &str) -> (Token, String) {
        (token, lit.to_string())
    }

    #[test]
    fn keywords_are_case_insensitive_and_identifiers_keep_case() {
        assert_eq!(
            tokens("select Value FROM cpu"),
            vec![
                t(Token::Keyword(Keyword::Select), ""),
                t(Token::Ident, "Value"),
                t(Token::Keyword(Keyword::From), ""),
                t(Token::Ident, "cpu"),
            ]
        );
        assert_eq!(lookup("AnD"), Token::And);
        assert_eq!(lookup("TRUE"), Token::True);
        assert_eq!(lookup("cpu"), Token::Ident);
    }

    #[test]
    fn quoted_identifiers_allow_any_character_and_escapes() {
        assert_eq!(
            tokens(r#""my \"db\"".select"#),
            vec![
                t(Token::Ident, "my \"db\""),
                t(Token::Dot, ""),
                t(Token::Keyword(Keyword::Select), ""),
            ]
        );
        assert_eq!(tokens(r#""select""#), vec![t(Token::Ident, "select")]);
    }

    #[test]
    fn strings_unescape_quotes_backslashes_and_newlines() {
        assert_eq!(
            tokens(r"'it\'s \\ a\nb'"),
            vec![t(Token::String, "it's \\ a\nb")]
        );
    }

    #[test]
    fn bad_strings_and_escapes_are_tokens_with_the_influxdb_position() {
        let mut lexer = Lexer::new("x 'abc");
        lexer.scan();
        lexer.scan();
        let bad = lexer.scan();
        assert_eq!(bad.token, Token::BadString);
        assert_eq!(bad.lit, "abc");
        // InfluxDB positions a string at the character before its quote.
        assert_eq!(bad.pos, Pos { line: 0, char: 1 });

        let mut lexer = Lexer::new("'a\\qb'");
        let bad = lexer.scan();
        assert_eq!((bad.token, bad.lit.as_str()), (Token::BadEscape, "\\q"));
        assert_eq!(bad.pos, Pos { line: 0, char: 3 });
    }

    #[test]
    fn numbers_integers_and_durations_are_distinguished() {
        assert_eq!(
            tokens("10 1.5 .5 10s 1h30m 100ms 10µ 1e3"),
            vec![
                t(Token::Integer, "10"),
                t(Token::Number, "1.5"),
                t(Token::Number, ".5"),
                t(Token::DurationVal, "10s"),
                t(Token::DurationVal, "1h30m"),
                t(Token::DurationVal, "100ms"),
                t(Token::DurationVal, "10µ"),
                t(Token::DurationVal, "1e3"),
            ]
        );
    }

    #[test]
    fn operators_scan_as_influxdb_does() {
        assert_eq!(
            tokens("= != <> =~ !~ < <= > >= + - * / % :: ; , ( ) ."),
            [
                Token::Eq,
                Token::Neq,
                Token::Neq,
                Token::EqRegex,
                Token::NeqRegex,
                Token::Lt,
                Token::Lte,
                Token::Gt,
                Token::Gte,
                Token::Add,
                Token::Sub,
                Token::Mul,
                Token::Div,
                Token::Mod,
                Token::DoubleColon,
                Token::Semicolon,
                Token::Comma,
                Token::LParen,
                Token::RParen,
                Token::Dot,
            ]
            .iter()
            .map(|&tok| t(tok, ""))
            .collect::<Vec<_>>()
        );
        assert_eq!(tokens("!"), vec![t(Token::Illegal, "!")]);
        assert_eq!(tokens("#"), vec![t(Token::Illegal, "#")]);
    }

    #[test]
    fn comments_are_tokens_the_parser_skips() {
        assert_eq!(
            tokens("a -- to the end\nb /* block */ c"),
            vec![
                t(Token::Ident, "a"),
                t(Token::Comment, ""),
                t(Token::Ident, "b"),
                t(Token::Comment, ""),
                t(Token::Ident, "c"),
            ]
        );
        assert_eq!(tokens("/* open"), vec![t(Token::Illegal, "")]);
    }

    #[test]
    fn regexes_unescape_only_slashes() {
        let mut lexer = Lexer::new(r"/a\/b\d/");
        let re = lexer.scan_regex();
        assert_eq!((re.token, re.lit.as_str()), (Token::Regex, r"a/b\d"));
        let mut lexer = Lexer::new("/abc");
        assert_eq!(lexer.scan_regex().token, Token::BadRegex);
    }

    #[test]
    fn positions_count_characters_and_lines_and_eof_moves_after_its_first_read() {
        let mut lexer = Lexer::new("ab\r\ncd");
        let a = lexer.scan();
        assert_eq!(a.pos, Pos { line: 0, char: 0 });
        lexer.scan();
        let c = lexer.scan();
        assert_eq!((c.token, c.lit.as_str()), (Token::Ident, "cd"));
        assert_eq!(c.pos, Pos { line: 1, char: 0 });
        // The identifier scan read the first EOF, so the next one is one further on.
        assert_eq!(lexer.scan().pos, Pos { line: 1, char: 3 });
    }

    #[test]
    fn bound_parameters_keep_their_dollar() {
        assert_eq!(tokens("$host"), vec![t(Token::BoundParam, "$host")]);
    }
}
