//! The host a request is for, checked and put in the one form routes are matched against.
//!
//! HTTP/1.1 needs exactly one `Host` (RFC 9112 §3.2; Pingora has refused a second one and
//! a `Host` that differs from an absolute-form target already). Its value must be a host —
//! a name of letters, digits, `-`, `_` and dots, an IPv4 address or a bracketed IPv6
//! address — with an optional numeric port: no comma, no userinfo, no spaces, so that no
//! two readers can disagree on it. Routes match it case-insensitively, without the port
//! and without a trailing dot (`Internal.Example.:443` is `internal.example`), so a
//! host-matched route cannot be skipped by spelling.

use http::Version;
use pingora::http::RequestHeader;
use std::borrow::Cow;

/// Why the host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("an HTTP/1.1 request needs a Host header")]
    Missing,
    #[error("Host {0:?} is not a host[:port]")]
    Invalid(String),
}

impl HostError {
    /// The label of the refusal in metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HostError::Missing => "missing_host",
            HostError::Invalid(_) => "bad_host",
        }
    }
}

/// The request's host for route matching (lower case, no port, no trailing dot), or `None`
/// when an HTTP/1.0 or HTTP/2 request names none.
pub fn routing_host(req: &RequestHeader) -> Result<Option<Cow<'_, str>>, HostError> {
    let raw = match req.headers.get(http::header::HOST) {
        Some(v) => v.as_bytes(),
        None => match req.uri.authority() {
            Some(a) => a.as_str().as_bytes(),
            None if req.version == Version::HTTP_11 => return Err(HostError::Missing),
            None => return Ok(None),
        },
    };
    let invalid = || HostError::Invalid(String::from_utf8_lossy(raw).into_owned());
    let (host, upper) = if raw.first() == Some(&b'[') {
        (ipv6_literal(raw).ok_or_else(invalid)?, true)
    } else {
        name_and_port(raw).ok_or_else(invalid)?
    };
    // Only ASCII passed the checks above.
    let host = std::str::from_utf8(host).map_err(|_| invalid())?;
    Ok(Some(if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }))
}

/// `name[:port]` checked in one pass (the common case, on every request): dot-separated
/// labels of letters, digits, `-` and `_`, none empty, an optional trailing dot, then an
/// optional port. The name without its trailing dot, and whether it has upper case.
fn name_and_port(raw: &[u8]) -> Option<(&[u8], bool)> {
    let (mut upper, mut label, mut end) = (false, 0usize, raw.len());
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => label += 1,
            b'A'..=b'Z' => {
                upper = true;
                label += 1;
            }
            b'.' if label > 0 => label = 0,
            b':' => {
                end = i;
                if !valid_port(&raw[i + 1..]) {
                    return None;
                }
                break;
            }
            _ => return None,
        }
    }
    let name = &raw[..end];
    // A last label ended by a dot: a fully qualified name, routed without the dot.
    let name = if label == 0 {
        name.strip_suffix(b".")?
    } else {
        name
    };
    (!name.is_empty() && name.len() <= 253).then_some((name, upper))
}

/// Empty, or a decimal number up to 65535.
fn valid_port(port: &[u8]) -> bool {
    port.len() <= 5
        && port
            .iter()
            .try_fold(0u32, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })
            .is_some_and(|n| n <= u32::from(u16::MAX))
}

/// `[v6]` or `[v6]:port`: the bracketed address.
fn ipv6_literal(raw: &[u8]) -> Option<&[u8]> {
    let end = raw.iter().position(|&b| b == b']')?;
    let (host, rest) = raw.split_at(end + 1);
    let port_ok = match rest {
        [] => true,
        [b':', port @ ..] => valid_port(port),
        _ => false,
    };
    let address = std::str::from_utf8(&host[1..end]).ok()?;
    (port_ok && address.parse::<std::net::Ipv6Addr>().is_ok()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.set_version(version);
        if let Some(h) = host {
            r.insert_header("host", h).unwrap();
        }
        r
    }

    fn host_of(h: &str) -> Result<Option<String>, HostError> {
        routing_host(&req(Version::HTTP_11, Some(h))).map(|o| o.map(Cow::into_owned))
    }

    #[test]
    fn an_http_1_1_request_without_host_is_refused_and_1_0_may_omit_it() {
        assert_eq!(
            routing_host(&req(Version::HTTP_11, None)),
            Err(HostError::Missing)
        );
        assert_eq!(routing_host(&req(Version::HTTP_10, None)), Ok(None));
    }

    #[test]
    fn hosts_match_without_case_port_or_trailing_dot() {
        assert_eq!(
            host_of("Internal.Example.").unwrap().as_deref(),
            Some("internal.example")
        );
        assert_eq!(
            host_of("internal.example.:8443").unwrap().as_deref(),
            Some("internal.example")
        );
        assert_eq!(
            host_of("127.0.0.1:8080").unwrap().as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(host_of("[::1]:8080").unwrap().as_deref(), Some("[::1]"));
        assert_eq!(
            host_of("[2001:DB8::1]").unwrap().as_deref(),
            Some("[2001:db8::1]")
        );
        assert_eq!(host_of("a.example:").unwrap().as_deref(), Some("a.example"));
    }

    #[test]
    fn a_host_that_is_not_one_host_and_port_is_refused() {
        for bad in [
            "a.example, internal.example",
            "a.example,internal.example",
            "user@internal.example",
            "a.example b",
            "",
            ".",
            "a..example",
            ".a.example",
            "a.example:99999",
            "a.example:80a",
            "a.example:80:80",
            "[::1",
            "[nothex]",
            "[::1]x",
            "a/b",
            "a%2eexample",
        ] {
            assert!(
                matches!(host_of(bad), Err(HostError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_lower_case_host_without_port_is_borrowed() {
        let r = req(Version::HTTP_11, Some("a.example"));
        assert!(matches!(
            routing_host(&r),
            Ok(Some(Cow::Borrowed("a.example")))
        ));
    }
}
