//! Request headers made unambiguous before anything reads them: framing that only one
//! reading is possible of, names with underscores, and the hop-by-hop headers a client
//! names in `Connection`.
//!
//! Pingora has already refused, before this runs: two `Host`s, differing `Content-Length`s,
//! a `Transfer-Encoding` whose last coding is not `chunked`, and `Transfer-Encoding` on
//! HTTP/1.0; with both `Transfer-Encoding` and `Content-Length`, it dropped the latter and
//! will close the connection after the answer (RFC 9112 §6.1). What remains is done here:
//! - `Content-Length` must be one decimal number (`5,5` and `+5` are refused, as nginx
//!   does); equal repeats are sent on once;
//! - `Transfer-Encoding` must be `chunked` alone: other codings are a 501, as in nginx;
//! - a name with an underscore that reads as a framing header once `_` is `-`
//!   (`Transfer_Encoding`, CGI/WSGI backends do that mapping) is always refused, one that
//!   reads as a header the gateway writes (`X_Gateway_Identity`, `X_Forwarded_For`) is
//!   always dropped, and any other follows the listener's `headers_with_underscores`
//!   (Envoy's setting; `drop` by default, as nginx's `underscores_in_headers off`);
//! - headers named in `Connection` are removed (RFC 9110 §7.6.1), `Connection` keeps only
//!   `close`, `keep-alive` and `upgrade`; naming a framing header or `Host` there is a 400.

use http::header::{self, HeaderName, HeaderValue};
use pingora::http::RequestHeader;

pub use crate::config::hardening::Underscores;

/// Why the headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("Content-Length {0:?} is not one decimal number")]
    BadContentLength(String),
    #[error("Content-Length is given more than once with different values")]
    ContentLengthsDiffer,
    #[error("Transfer-Encoding {0:?} is not supported: only chunked is")]
    UnsupportedTransferCoding(String),
    #[error("header {0:?} reads as a framing header once '_' is '-'")]
    FramingLookalike(String),
    #[error("header {0:?} has an underscore in its name")]
    Underscore(String),
    #[error("Connection names {0:?}, which a proxy cannot drop")]
    ProtectedNomination(String),
    #[error("Connection holds a malformed or more than {MAX_NOMINATIONS} names")]
    BadConnection,
}

impl HeaderError {
    /// The status of the refusal: 501 for a coding the gateway does not implement.
    pub fn status(&self) -> u16 {
        match self {
            HeaderError::UnsupportedTransferCoding(_) => 501,
            _ => 400,
        }
    }

    /// The label of the refusal in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HeaderError::BadContentLength(_) | HeaderError::ContentLengthsDiffer => {
                "bad_content_length"
            }
            HeaderError::UnsupportedTransferCoding(_) => "bad_transfer_encoding",
            HeaderError::FramingLookalike(_) => "framing_lookalike",
            HeaderError::Underscore(_) => "underscore_header",
            HeaderError::ProtectedNomination(_) | HeaderError::BadConnection => "bad_connection",
        }
    }
}

/// The most names `Connection` may hold (Pingora refuses ten and more).
pub const MAX_NOMINATIONS: usize = 9;

/// The framing headers: a look-alike of one is always refused.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

/// Headers only the gateway writes for a backend: a look-alike is always dropped, even when
/// underscores are allowed, so a backend that maps `_` to `-` never takes it for ours.
const OWN: [&str; 7] = [
    crate::auth::IDENTITY_HEADER,
    crate::auth::TENANT_HEADER,
    crate::auth::AUTH_HEADER,
    crate::forwarded::FOR,
    crate::forwarded::PROTO,
    "x-forwarded-host",
    crate::request_id::HEADER,
];

/// All of the checks above, each run only when one pass over the headers found something
/// for it to do (the common request has no framing, underscore or `Connection` name to
/// look at twice); true when the client asked to close the connection.
pub fn check(req: &mut RequestHeader, rule: Underscores) -> Result<bool, HeaderError> {
    let (mut framed, mut underscored, mut connection) = (false, false, false);
    for name in req.headers.keys() {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            framed = true;
        } else if name == header::CONNECTION {
            connection = true;
        } else if name.as_str().contains('_') {
            underscored = true;
        }
    }
    let mut close = framed && framing(req)?;
    if underscored {
        underscores(req, rule)?;
    }
    if connection {
        close |= self::connection(req)?;
    }
    Ok(close)
}

/// `Content-Length` and `Transfer-Encoding` as checked above; equal `Content-Length`s
/// become one. True when the connection must close after the answer: both were sent.
pub fn framing(req: &mut RequestHeader) -> Result<bool, HeaderError> {
    let mut codings = req.headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        let chunked_alone = codings.next().is_none()
            && first
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked");
        if !chunked_alone {
            let all: Vec<String> = req
                .headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            return Err(HeaderError::UnsupportedTransferCoding(all.join(", ")));
        }
        // The body is framed by its chunks (RFC 9112 §6.3). Pingora removed any
        // Content-Length already; should one remain, it goes, and so does the connection.
        let both = req.headers.contains_key(header::CONTENT_LENGTH);
        if both {
            req.remove_header(&header::CONTENT_LENGTH);
        }
        return Ok(both);
    }
    let mut length = None;
    let mut count = 0;
    for v in req.headers.get_all(header::CONTENT_LENGTH) {
        count += 1;
        let n = decimal(v.as_bytes()).ok_or_else(|| {
            HeaderError::BadContentLength(String::from_utf8_lossy(v.as_bytes()).into_owned())
        })?;
        if length.is_some_and(|l| l != n) {
            return Err(HeaderError::ContentLengthsDiffer);
        }
        length = Some(n);
    }
    if let (Some(n), true) = (length, count > 1) {
        req.insert_header(header::CONTENT_LENGTH, n)
            .map_err(|_| HeaderError::ContentLengthsDiffer)?;
    }
    Ok(false)
}

/// 1 to 19 ASCII digits (any more could overflow a u64): `Content-Length`'s grammar.
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Headers whose names hold an underscore, by the rules above.
pub fn underscores(req: &mut RequestHeader, rule: Underscores) -> Result<(), HeaderError> {
    let mut drop = Vec::new();
    for name in req.headers.keys() {
        let Some(dashed) = name
            .as_str()
            .contains('_')
            .then(|| name.as_str().replace('_', "-"))
        else {
            continue;
        };
        if FRAMING.contains(&dashed.as_str()) {
            return Err(HeaderError::FramingLookalike(name.as_str().to_string()));
        }
        if OWN.contains(&dashed.as_str()) {
            drop.push(name.clone());
            continue;
        }
        match rule {
            Underscores::Allow => {}
            Underscores::Drop => drop.push(name.clone()),
            Underscores::Reject => return Err(HeaderError::Underscore(name.as_str().to_string())),
        }
    }
    for name in drop {
        req.remove_header(&name);
    }
    Ok(())
}

/// Removes the headers the client named in `Connection` and keeps only the connection
/// options there; true when one of them is `close` (in any of the `Connection` headers,
/// where Pingora reads only the first).
pub fn connection(req: &mut RequestHeader) -> Result<bool, HeaderError> {
    let values: Vec<&HeaderValue> = req.headers.get_all(header::CONNECTION).iter().collect();
    if values.is_empty() {
        return Ok(false);
    }
    let mut options: Vec<&'static str> = Vec::new();
    let mut named: Vec<HeaderName> = Vec::new();
    let tokens = values
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    for (i, token) in tokens.enumerate() {
        if i >= MAX_NOMINATIONS || !token.iter().all(|&b| is_tchar(b)) {
            return Err(HeaderError::BadConnection);
        }
        let option = [
            ("close", "close"),
            ("keep-alive", "keep-alive"),
            ("upgrade", "upgrade"),
        ]
        .into_iter()
        .find(|(o, _)| token.eq_ignore_ascii_case(o.as_bytes()));
        if let Some((_, o)) = option {
            if !options.contains(&o) {
                options.push(o);
            }
            continue;
        }
        let name = HeaderName::from_bytes(token).map_err(|_| HeaderError::BadConnection)?;
        if FRAMING.contains(&name.as_str()) || name == header::HOST {
            return Err(HeaderError::ProtectedNomination(name.as_str().to_string()));
        }
        named.push(name);
    }
    let close = options.contains(&"close");
    // Already only options, as a client that says `keep-alive` or `close` sends: no change.
    if named.is_empty() && values.len() == 1 {
        return Ok(close);
    }
    for name in named {
        req.remove_header(&name);
    }
    if options.is_empty() {
        req.remove_header(&header::CONNECTION);
    } else {
        req.insert_header(header::CONNECTION, options.join(", "))
            .map_err(|_| HeaderError::BadConnection)?;
    }
    Ok(close)
}

/// A character of an HTTP `token` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/x", None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    fn values(req: &RequestHeader, name: &str) -> Vec<String> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_content_length_that_is_not_one_decimal_number_is_refused() {
        for bad in [
            "5,5",
            "1000,1000",
            "+5",
            "-1",
            " 5x",
            "0x10",
            "",
            "5 5",
            "99999999999999999999",
        ] {
            let mut req = request(&[("content-length", bad)]);
            assert!(
                matches!(framing(&mut req), Err(HeaderError::BadContentLength(_))),
                "{bad:?}"
            );
        }
        let mut req = request(&[("content-length", "005")]);
        assert_eq!(framing(&mut req), Ok(false));
        assert_eq!(values(&req, "content-length"), ["005"]);
    }

    #[test]
    fn equal_content_lengths_are_sent_on_once_and_differing_ones_refused() {
        let mut req = request(&[("content-length", "5"), ("content-length", "05")]);
        assert_eq!(framing(&mut req), Ok(false));
        assert_eq!(values(&req, "content-length"), ["5"]);
        let mut req = request(&[("content-length", "5"), ("content-length", "7")]);
        assert_eq!(framing(&mut req), Err(HeaderError::ContentLengthsDiffer));
    }

    #[test]
    fn with_both_framings_the_chunks_win_and_the_connection_closes() {
        let mut req = request(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert_eq!(framing(&mut req), Ok(true));
        assert!(req.headers.get("content-length").is_none());
        assert_eq!(values(&req, "transfer-encoding"), ["chunked"]);
    }

    #[test]
    fn only_chunked_alone_is_a_transfer_coding_the_gateway_takes() {
        let mut req = request(&[("transfer-encoding", "Chunked")]);
        assert_eq!(framing(&mut req), Ok(false));
        for codings in [
            &["gzip, chunked"][..],
            &["chunked", "chunked"],
            &["identity"],
        ] {
            let headers: Vec<(&str, &str)> =
                codings.iter().map(|c| ("transfer-encoding", *c)).collect();
            let err = framing(&mut request(&headers)).unwrap_err();
            assert_eq!(err.status(), 501, "{codings:?}");
        }
    }

    #[test]
    fn framing_lookalikes_are_refused_whatever_the_setting() {
        for name in ["transfer_encoding", "content_length", "Transfer_Encoding"] {
            for rule in [Underscores::Allow, Underscores::Drop, Underscores::Reject] {
                let mut req = request(&[(name, "chunked")]);
                assert!(
                    matches!(
                        underscores(&mut req, rule),
                        Err(HeaderError::FramingLookalike(_))
                    ),
                    "{name} {rule:?}"
                );
            }
        }
    }

    #[test]
    fn lookalikes_of_the_gateways_own_headers_are_dropped_even_when_allowed() {
        let mut req = request(&[
            ("x_gateway_identity", "admin"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x_other", "1"),
        ]);
        assert_eq!(underscores(&mut req, Underscores::Allow), Ok(()));
        assert!(req.headers.get("x_gateway_identity").is_none());
        assert!(req.headers.get("x_forwarded_for").is_none());
        assert_eq!(values(&req, "x_other"), ["1"]);
    }

    #[test]
    fn other_underscored_names_follow_the_listener_setting() {
        let mut req = request(&[("x_custom", "1"), ("x-plain", "2")]);
        assert_eq!(underscores(&mut req, Underscores::Drop), Ok(()));
        assert!(req.headers.get("x_custom").is_none());
        assert_eq!(values(&req, "x-plain"), ["2"]);
        let mut req = request(&[("x_custom", "1")]);
        assert_eq!(
            underscores(&mut req, Underscores::Reject),
            Err(HeaderError::Underscore("x_custom".into()))
        );
    }

    #[test]
    fn headers_named_in_connection_are_removed_and_the_options_kept() {
        let mut req = request(&[
            ("connection", "keep-alive, X-Forwarded-For"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-trace", "t"),
            ("connection", "x-trace"),
        ]);
        assert_eq!(connection(&mut req), Ok(false));
        assert!(req.headers.get("x-forwarded-for").is_none());
        assert!(req.headers.get("x-trace").is_none());
        assert_eq!(values(&req, "connection"), ["keep-alive"]);

        let mut req = request(&[("connection", "x-a"), ("x-a", "1")]);
        assert_eq!(connection(&mut req), Ok(false));
        assert!(req.headers.get("connection").is_none());
        assert!(req.headers.get("x-a").is_none());

        let mut req = request(&[("connection", "close")]);
        assert_eq!(connection(&mut req), Ok(true));
        assert_eq!(values(&req, "connection"), ["close"]);

        // A close in a second Connection header counts too.
        let mut req = request(&[("connection", "keep-alive, x-a"), ("connection", "close")]);
        assert_eq!(connection(&mut req), Ok(true));
        assert_eq!(values(&req, "connection"), ["keep-alive, close"]);
    }

    #[test]
    fn connection_may_not_name_framing_or_host_or_too_many_or_malformed_names() {
        for v in ["content-length", "Transfer-Encoding", "host"] {
            let mut req = request(&[("connection", v)]);
            assert!(
                matches!(
                    connection(&mut req),
                    Err(HeaderError::ProtectedNomination(_))
                ),
                "{v}"
            );
        }
        let many = (0..10)
            .map(|i| format!("x-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        for v in [many.as_str(), "\"x-forwarded-for\"", "a b"] {
            let mut req = request(&[("connection", v)]);
            assert_eq!(connection(&mut req), Err(HeaderError::BadConnection), "{v}");
        }
    }
}
