//! The pipeline's first step: a request made unambiguous before routing, or refused.
//!
//! Routes match, and backends receive, the same request: the path in its normal form
//! (`path.rs`), framing and header names that only one reading is possible of
//! (`headers.rs`), and one valid host (`host.rs`). Whatever this step cannot make
//! unambiguous is refused here, with a 400 (or 501 for a transfer coding the gateway does
//! not implement), before any backend sees it. The rules come from the listener's
//! hardening settings; see "Hardening" in the operator guide.

pub mod headers;
pub mod host;
pub mod path;

use pingora::http::RequestHeader;
use std::borrow::Cow;

use crate::config::hardening::{EscapedSlashes, Hardening};

/// A request this step refused: the status, the label counted in metrics, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

impl From<path::PathError> for Rejected {
    fn from(e: path::PathError) -> Self {
        Rejected {
            status: 400,
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

impl From<headers::HeaderError> for Rejected {
    fn from(e: headers::HeaderError) -> Self {
        Rejected {
            status: e.status(),
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

impl From<host::HostError> for Rejected {
    fn from(e: host::HostError) -> Self {
        Rejected {
            status: 400,
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

/// Normalises the request in place (its path, framing and headers); true when the client
/// asked to close the connection after it. Runs once per request, before anything else
/// reads it; [`routing_host`] is the step's second half.
pub fn request(req: &mut RequestHeader, rules: &Hardening) -> Result<bool, Rejected> {
    let close = headers::check(req, rules.headers_with_underscores)?;
    normalize_target(req, rules.escaped_slashes)?;
    Ok(close)
}

/// The host routes match against (lower case, no port, no trailing dot), borrowed from the
/// request when it is in that form already; a missing or bad `Host` is refused.
pub fn routing_host(req: &RequestHeader) -> Result<Option<Cow<'_, str>>, Rejected> {
    Ok(host::routing_host(req)?)
}

/// Replaces the request target's path by its normal form, keeping the query as it was. An
/// absolute-form target (`GET http://h/x`) is sent on in origin form (`/x`): Pingora keeps
/// only its path in the URI, and has checked its authority against `Host` already.
fn normalize_target(req: &mut RequestHeader, slashes: EscapedSlashes) -> Result<(), Rejected> {
    // `OPTIONS *` names the server, not a path; no route takes it.
    if req.uri.path() == "*" && req.method == http::Method::OPTIONS {
        return Ok(());
    }
    let Some(path) = path::normalize(req.uri.path(), slashes)? else {
        // Pingora keeps the bytes as received when it had to escape some to parse them
        // (`raw_path`), and sends those upstream: send what was routed instead.
        let routed = req.uri.path_and_query().map(|p| p.as_str().as_bytes());
        if routed.is_some_and(|r| r != req.raw_path()) {
            let uri = req.uri.clone();
            req.set_uri(uri);
        }
        return Ok(());
    };
    let target = match req.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(target.parse().map_err(|_| path::PathError::BadEscape(0))?);
    let uri = http::Uri::from_parts(parts).map_err(|_| path::PathError::BadEscape(0))?;
    req.set_uri(uri);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn the_normal_path_replaces_the_target_and_the_query_is_kept() {
        let mut r = get(
            "/public/norm/./a//b/../c?x=1&y=%2e%2e",
            &[("host", "A.example")],
        );
        assert_eq!(request(&mut r, &Hardening::default()), Ok(false));
        assert_eq!(routing_host(&r).unwrap().as_deref(), Some("a.example"));
        assert_eq!(r.uri.path(), "/public/norm/a/c");
        assert_eq!(r.uri.query(), Some("x=1&y=%2e%2e"));
        assert_eq!(r.raw_path(), b"/public/norm/a/c?x=1&y=%2e%2e");
    }

    #[test]
    fn an_absolute_form_target_is_sent_on_in_origin_form() {
        let mut r = get("http://a.example/x/../y?q", &[("host", "a.example")]);
        assert_eq!(request(&mut r, &Hardening::default()), Ok(false));
        assert_eq!(routing_host(&r).unwrap().as_deref(), Some("a.example"));
        assert_eq!(r.raw_path(), b"/y?q");
        let mut r = get("http://a.example/y", &[("host", "a.example")]);
        assert_eq!(request(&mut r, &Hardening::default()), Ok(false));
        assert_eq!(routing_host(&r).unwrap().as_deref(), Some("a.example"));
        assert_eq!(r.raw_path(), b"/y");
    }

    #[test]
    fn each_refusal_names_its_reason_and_status() {
        let cases: [(RequestHeader, u16, &str); 5] = [
            (get("/../x", &[("host", "h")]), 400, "path_above_root"),
            (get("/a%2fb", &[("host", "h")]), 400, "escaped_slash"),
            (get("/x", &[]), 400, "missing_host"),
            (
                get("/x", &[("host", "h"), ("transfer-encoding", "gzip")]),
                501,
                "bad_transfer_encoding",
            ),
            (
                get("/x", &[("host", "h"), ("content-length", "5,5")]),
                400,
                "bad_content_length",
            ),
        ];
        for (mut r, status, reason) in cases {
            let refusal = request(&mut r, &Hardening::default())
                .and_then(|_| routing_host(&r).map(|_| false))
                .unwrap_err();
            assert_eq!(
                (refusal.status, refusal.reason),
                (status, reason),
                "{}",
                refusal.message
            );
        }
    }

    #[test]
    fn options_star_is_left_for_routing() {
        let mut r = RequestHeader::build("OPTIONS", b"*", None).unwrap();
        r.insert_header("host", "h").unwrap();
        assert_eq!(request(&mut r, &Hardening::default()), Ok(false));
        assert_eq!(routing_host(&r).unwrap().as_deref(), Some("h"));
    }
}
