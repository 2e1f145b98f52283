//! The parameters of `/write` and `/query`, decoded from the query string and a form body.
//!
//! Pure functions over the request's bytes, so the handlers and the `tsdb_query_params`
//! fuzz target run the same decoding. What a parameter means is checked here too (a
//! missing `db`, an unknown `precision`), with InfluxDB 1.x's error texts.

use crate::model::Precision;
use crate::query::executor::QueryParams;
use std::collections::HashMap;

/// Parameters by name; a name given twice keeps its last value, as axum's `Query` (and so
/// serde_urlencoded) did before this module, and as Go's `url.Values.Get` does not (it
/// keeps the first): no client sends a name twice on purpose.
pub type Params = HashMap<String, String>;

/// Decodes a query string (without the `?`). Percent-escapes that do not decode to UTF-8
/// are replaced, never refused.
pub fn from_query(query: Option<&str>) -> Params {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// Adds the pairs of an `application/x-www-form-urlencoded` body for the names the query
/// string did not give (a `POST /query` may carry `q` either way, as InfluxDB clients do).
pub fn add_form(params: &mut Params, body: &[u8]) {
    for (k, v) in form_urlencoded_pairs(body) {
        params.entry(k).or_insert(v);
    }
}

/// `db` and `precision` of a 1.x write, or the message of its 400.
pub fn write_target(params: &Params) -> Result<(&str, Precision), String> {
    let db = params.get("db").map(String::as_str).unwrap_or("");
    if db.is_empty() {
        return Err("database is required".to_string());
    }
    let precision_text = params.get("precision").map(String::as_str).unwrap_or("");
    match Precision::parse(precision_text) {
        Some(precision) => Ok((db, precision)),
        None => Err(format!(
            "invalid precision \"{precision_text}\": expected one of n, ns, u, us, ms, s, m, h"
        )),
    }
}

/// What a `/query` asks: the text, the time format of the answer and the context.
#[derive(Debug, Clone)]
pub struct QueryRequest<'a> {
    pub text: &'a str,
    /// `epoch=`: integer times in this unit; `None` for RFC 3339 strings.
    pub epoch: Option<Precision>,
    pub params: QueryParams,
}

/// Reads a query request from its parameters (`post`: it came as a POST, so writes are
/// allowed), or the message of its 400.
pub fn query_request(params: &Params, post: bool) -> Result<QueryRequest<'_>, String> {
    let Some(text) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return Err("missing required parameter \"q\"".to_string());
    };
    // As InfluxDB: any `epoch=` asks for integer times, an unknown unit means nanoseconds.
    let epoch = match params.get("epoch").map(String::as_str) {
        None | Some("") => None,
        Some(e) => Some(Precision::parse(e).unwrap_or(Precision::Nanoseconds)),
    };
    Ok(QueryRequest {
        text,
        epoch,
        params: QueryParams {
            db: params.get("db").cloned().unwrap_or_default(),
            rp: params.get("rp").cloned().unwrap_or_default(),
            allow_writes: post,
        },
    })
}

/// Decodes `application/x-www-form-urlencoded` pairs. Unlike the query string, a `%` not
/// followed by two hex digits is kept as a literal `%`, as Go's lenient readers do.
pub fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (decode(&pair[..eq]), decode(&pair[eq + 1..])),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// One name or value of a form: `+` is a space, `%XX` a byte, invalid UTF-8 replaced.
fn decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match s.get(i + 1..i + 3).and_then(hex_byte) {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Two hex digits as a byte. Digits only: `u8::from_str_radix` would also take a sign
/// (`%+1`).
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let value = |d: u8| (d as char).to_digit(16);
    match digits {
        [hi, lo] => Some((value(*hi)? * 16 + value(*lo)?) as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_plus_and_percent_escapes() {
        let pairs = form_urlencoded_pairs(b"q=SELECT+%2A+FROM+%22cpu%22&db=d&bad=%zz&end=%4");
        assert_eq!(
            pairs,
            vec![
                ("q".to_string(), "SELECT * FROM \"cpu\"".to_string()),
                ("db".to_string(), "d".to_string()),
                ("bad".to_string(), "%zz".to_string()),
                ("end".to_string(), "%4".to_string()),
            ]
        );
    }

    #[test]
    fn a_percent_escape_ending_the_body_is_decoded() {
        assert_eq!(
            form_urlencoded_pairs(b"q=%41"),
            vec![("q".to_string(), "A".to_string())]
        );
    }

    #[test]
    fn a_signed_percent_escape_is_kept_literally() {
        assert_eq!(
            form_urlencoded_pairs(b"q=%+1"),
            vec![("q".to_string(), "% 1".to_string())]
        );
    }

    #[test]
    fn the_query_string_wins_over_the_form_body() {
        let mut params = from_query(Some("q=SHOW+DATABASES&db=a"));
        add_form(&mut params, b"db=b&epoch=s");
        let request = query_request(&params, true).unwrap();
        assert_eq!(request.text, "SHOW DATABASES");
        assert_eq!(request.params.db, "a");
        assert_eq!(request.epoch, Some(Precision::Seconds));
    }

    #[test]
    fn a_write_names_a_missing_database_and_an_unknown_precision() {
        assert_eq!(
            write_target(&from_query(Some("precision=s"))),
            Err("database is required".to_string())
        );
        assert!(write_target(&from_query(Some("db=d&precision=x")))
            .unwrap_err()
            .starts_with("invalid precision \"x\""));
    }
}
