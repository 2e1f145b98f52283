//! Where a request carries an API key, and taking it out before the request goes on.
//!
//! Read in this order; the first place that has something decides (and its scheme is the
//! challenge of a refusal):
//!
//! ```text
//! 1  the authenticator's header (when configured)   X-API-Key: <key>
//! 2  Authorization: Token <key>                     InfluxDB 2.x clients, Telegraf
//! 3  Authorization: Basic base64(user:key)          InfluxDB 1.x clients, Grafana; user not checked
//! 4  the query's p (u beside it not checked)        InfluxDB 1.x ?u=...&p=...
//! ```
//!
//! The Basic user name is not checked: the key alone names the caller, as with InfluxDB 2.x's
//! 1.x compatibility (any user name, the token as password). An `Authorization` of another
//! scheme (Bearer) is not ours and is left to other authenticators.
//!
//! [`strip`] removes every place this authenticator reads (header, `Authorization` of
//! scheme Token or Basic, `u` and `p`) so no key travels upstream. The query is rewritten
//! on the request target's bytes: the other parameters stay byte for byte as sent, in order.

use super::super::challenge::Scheme;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use http::HeaderName;
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// Longest key read; anything longer is refused before it is hashed.
pub const MAX_KEY_BYTES: usize = 1024;

/// A key as the request presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    pub key: Cow<'a, [u8]>,
    pub scheme: Scheme,
}

/// Credentials that are there but cannot be a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub description: &'static str,
    pub scheme: Scheme,
}

/// Standard base64; some clients leave the padding out.
const BASIC_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn unreadable(description: &'static str, scheme: Scheme) -> Unreadable {
    Unreadable {
        description,
        scheme,
    }
}

/// The key `req` presents, if any (see the module docs for where it is read).
pub fn presented<'a>(
    req: &'a RequestHeader,
    header: Option<&HeaderName>,
) -> Result<Option<Presented<'a>>, Unreadable> {
    if let Some(name) = header {
        let scheme = Scheme::Header(name.clone());
        let mut values = req.headers.get_all(name).iter();
        if let Some(v) = values.next() {
            if values.next().is_some() {
                return Err(unreadable("more than one key header", scheme));
            }
            return key(trim(v.as_bytes()), scheme).map(Some);
        }
    }
    let mut values = req.headers.get_all(http::header::AUTHORIZATION).iter();
    if let Some(v) = values.next() {
        let (scheme_name, rest) = split_scheme(v.as_bytes());
        let scheme = if scheme_name.eq_ignore_ascii_case(b"token") {
            Some(Scheme::Token)
        } else if scheme_name.eq_ignore_ascii_case(b"basic") {
            Some(Scheme::Basic)
        } else {
            None
        };
        if let Some(scheme) = scheme {
            if values.next().is_some() {
                return Err(unreadable("more than one authorization header", scheme));
            }
            return match scheme {
                Scheme::Basic => basic_password(rest).map(Some),
                other => key(rest, other).map(Some),
            };
        }
    }
    Ok(query_password(req.raw_path()).map(|key| Presented {
        key,
        scheme: Scheme::Basic,
    }))
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

fn split_scheme(value: &[u8]) -> (&[u8], &[u8]) {
    let value = trim(value);
    match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], trim(&value[i + 1..])),
        None => (value, &[]),
    }
}

fn key(bytes: &[u8], scheme: Scheme) -> Result<Presented<'_>, Unreadable> {
    if bytes.is_empty() {
        return Err(unreadable("empty key", scheme));
    }
    if bytes.len() > MAX_KEY_BYTES {
        return Err(unreadable("key too long", scheme));
    }
    Ok(Presented {
        key: Cow::Borrowed(bytes),
        scheme,
    })
}

/// The password of `Basic base64(user:password)`.
fn basic_password(encoded: &[u8]) -> Result<Presented<'static>, Unreadable> {
    if encoded.len() > MAX_KEY_BYTES * 2 {
        return Err(unreadable("key too long", Scheme::Basic));
    }
    let decoded = BASIC_B64
        .decode(encoded)
        .map_err(|_| unreadable("malformed basic credentials", Scheme::Basic))?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| unreadable("malformed basic credentials", Scheme::Basic))?;
    let password = &decoded[colon + 1..];
    key(password, Scheme::Basic)?;
    Ok(Presented {
        key: Cow::Owned(password.to_vec()),
        scheme: Scheme::Basic,
    })
}

/// The query of a request target (after the first `?`).
fn query_of(target: &[u8]) -> Option<&[u8]> {
    let i = target.iter().position(|&b| b == b'?')?;
    Some(&target[i + 1..])
}

/// The first non-empty `p` of the query, decoded as a form would be (InfluxDB reads it with
/// Go's `URL.Query().Get("p")`).
fn query_password(target: &[u8]) -> Option<Cow<'static, [u8]>> {
    let query = query_of(target)?;
    form_urlencoded::parse(query)
        .find(|(name, _)| name == "p")
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty() && v.len() <= MAX_KEY_BYTES)
        .map(|v| Cow::Owned(v.into_owned().into_bytes()))
}

/// Whether a query parameter's raw `name[=value]` is `u` or `p` once decoded.
fn is_credential(pair: &[u8]) -> bool {
    let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
    form_urlencoded::parse(name)
        .next()
        .is_some_and(|(n, _)| n == "u" || n == "p")
}

/// The request target without its `u` and `p` parameters, or `None` when it has none.
/// Everything else is kept byte for byte, in order; a query left empty loses its `?`.
pub fn without_credentials(target: &[u8]) -> Option<Vec<u8>> {
    let at = target.iter().position(|&b| b == b'?')?;
    let (path, query) = (&target[..at], &target[at + 1..]);
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut dropped = false;
    for pair in query.split(|&b| b == b'&') {
        if is_credential(pair) {
            dropped = true;
        } else {
            kept.push(pair);
        }
    }
    if !dropped {
        return None;
    }
    let mut out = path.to_vec();
    if !kept.is_empty() {
        out.push(b'?');
        out.extend_from_slice(&kept.join(&b'&'));
    }
    Some(out)
}

/// Removes every place an API key may be in: the authenticator's header, an
/// `Authorization` of scheme Token or Basic, and the query's `u` and `p`.
pub fn strip(req: &mut RequestHeader, header: Option<&HeaderName>) {
    if let Some(name) = header {
        req.remove_header(name);
    }
    let ours = req
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| {
            let (scheme, _) = split_scheme(v.as_bytes());
            scheme.eq_ignore_ascii_case(b"token") || scheme.eq_ignore_ascii_case(b"basic")
        });
    if ours {
        req.remove_header(&http::header::AUTHORIZATION);
    }
    if let Some(target) = without_credentials(req.raw_path()) {
        if let Err(e) = req.set_raw_path(&target) {
            // The target was valid with the parameters; without some it cannot fail to
            // parse, but if it ever did the request would go on with them: say so.
            tracing::error!(error = %e, "could not remove u and p from the request target");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn key_of(
        r: &RequestHeader,
        header: Option<&str>,
    ) -> Result<Option<(Vec<u8>, Scheme)>, Unreadable> {
        let h = header.map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap());
        presented(r, h.as_ref()).map(|p| p.map(|p| (p.key.into_owned(), p.scheme)))
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn a_key_is_read_from_each_place() {
        let xk = HeaderName::from_static("x-api-key");
        let r = req("/write?db=a", &[("X-API-Key", " k1 ")]);
        assert_eq!(
            key_of(&r, Some("x-api-key")),
            Ok(Some((b"k1".to_vec(), Scheme::Header(xk))))
        );
        let r = req("/write", &[("authorization", "Token k2")]);
        assert_eq!(key_of(&r, None), Ok(Some((b"k2".to_vec(), Scheme::Token))));
        let r = req("/write", &[("authorization", "token   k2 ")]);
        assert_eq!(
            key_of(&r, None),
            Ok(Some((b"k2".to_vec(), Scheme::Token))),
            "scheme in any case"
        );
        let r = req(
            "/write",
            &[("authorization", &basic("anyone:k3:with:colons"))],
        );
        assert_eq!(
            key_of(&r, None),
            Ok(Some((b"k3:with:colons".to_vec(), Scheme::Basic)))
        );
        let unpadded = basic(":k4").trim_end_matches('=').to_string();
        let r = req("/write", &[("authorization", &unpadded)]);
        assert_eq!(key_of(&r, None), Ok(Some((b"k4".to_vec(), Scheme::Basic))));
        let r = req("/query?db=a&u=grafana&p=k%2B5+x&q=SHOW", &[]);
        assert_eq!(
            key_of(&r, None),
            Ok(Some((b"k+5 x".to_vec(), Scheme::Basic)))
        );
    }

    #[test]
    fn nothing_of_ours_is_no_key() {
        assert_eq!(key_of(&req("/q", &[]), None), Ok(None));
        assert_eq!(
            key_of(&req("/q", &[("authorization", "Bearer a.b.c")]), None),
            Ok(None)
        );
        assert_eq!(key_of(&req("/q?u=a", &[]), None), Ok(None), "u alone");
        assert_eq!(key_of(&req("/q?u=a&p=", &[]), None), Ok(None), "empty p");
        // Without a configured header, a key header is nobody's.
        assert_eq!(key_of(&req("/q", &[("x-api-key", "k")]), None), Ok(None));
    }

    #[test]
    fn the_first_place_decides() {
        let r = req(
            "/q?p=query",
            &[("x-api-key", "header"), ("authorization", "Token token")],
        );
        assert_eq!(key_of(&r, Some("x-api-key")).unwrap().unwrap().0, b"header");
        assert_eq!(key_of(&r, None).unwrap().unwrap().0, b"token");
    }

    #[test]
    fn credentials_that_cannot_be_a_key_are_refused_in_their_scheme() {
        let bad = |r: &RequestHeader, h| key_of(r, h).unwrap_err();
        let e = bad(&req("/q", &[("authorization", "Basic !!!")]), None);
        assert_eq!(
            (e.description, e.scheme),
            ("malformed basic credentials", Scheme::Basic)
        );
        let no_colon = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("nocolon")
        );
        assert_eq!(
            bad(&req("/q", &[("authorization", &no_colon)]), None).description,
            "malformed basic credentials"
        );
        assert_eq!(
            bad(&req("/q", &[("authorization", &basic("user:"))]), None).description,
            "empty key"
        );
        assert_eq!(
            bad(&req("/q", &[("authorization", "Token")]), None),
            unreadable("empty key", Scheme::Token)
        );
        let two = req(
            "/q",
            &[("authorization", "Token a"), ("authorization", "Token b")],
        );
        assert_eq!(
            bad(&two, None).description,
            "more than one authorization header"
        );
        let two = req("/q", &[("x-api-key", "a"), ("x-api-key", "b")]);
        assert_eq!(
            bad(&two, Some("x-api-key")).description,
            "more than one key header"
        );
        let long = format!("Token {}", "k".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(
            bad(&req("/q", &[("authorization", &long)]), None).description,
            "key too long"
        );
    }

    #[test]
    fn u_and_p_leave_the_query_and_the_rest_stays_byte_for_byte() {
        let cases: [(&str, Option<&str>); 9] = [
            (
                "/query?db=a&u=x&p=y&q=SELECT%20*",
                Some("/query?db=a&q=SELECT%20*"),
            ),
            ("/query?u=x&p=y", Some("/query")),
            ("/query?p=y", Some("/query")),
            ("/query?%75=x&%70=y&db=a", Some("/query?db=a")),
            (
                "/query?db=a&&q=x+y&u=x&pp=1&up=2&p",
                Some("/query?db=a&&q=x+y&pp=1&up=2"),
            ),
            ("/query?db=a&q=SELECT+%22u%22", None),
            ("/query?", None),
            ("/query", None),
            (
                "http://h:8086/query?q=1&u=a&p=b",
                Some("http://h:8086/query?q=1"),
            ),
        ];
        for (target, want) in cases {
            let got = without_credentials(target.as_bytes());
            assert_eq!(
                got.as_deref().map(|b| std::str::from_utf8(b).unwrap()),
                want,
                "{target}"
            );
        }
    }

    #[test]
    fn strip_takes_out_every_place_of_ours_and_leaves_a_bearer_token() {
        let xk = HeaderName::from_static("x-api-key");
        let mut r = req(
            "/write?db=a&u=x&p=y&precision=s",
            &[
                ("x-api-key", "k"),
                ("authorization", "Token t"),
                ("x-other", "o"),
            ],
        );
        strip(&mut r, Some(&xk));
        assert!(r.headers.get("x-api-key").is_none());
        assert!(r.headers.get("authorization").is_none());
        assert_eq!(r.headers.get("x-other").unwrap(), "o");
        assert_eq!(r.raw_path(), b"/write?db=a&precision=s");
        assert_eq!(r.uri.query(), Some("db=a&precision=s"));
        let mut r = req("/q", &[("authorization", "Bearer a.b.c")]);
        strip(&mut r, None);
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer a.b.c");
        let mut r = req("/q", &[("authorization", &basic("u:k"))]);
        strip(&mut r, None);
        assert!(r.headers.get("authorization").is_none());
    }
}
