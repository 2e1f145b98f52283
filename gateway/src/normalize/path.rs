//! The request path as routes and backends both read it, made one form before routing.
//!
//! Rules (Envoy's `normalize_path` + `merge_slashes`, RFC 3986 §6.2.2):
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, so `%61dmin`
//!   is `admin`; every other escape is kept, its hex digits upper-cased (`%c3` → `%C3`);
//! - an escape that is not `%` and two hex digits is refused, and so is `%00`;
//! - `%2F` and `%5C` (an encoded slash or backslash) are refused by default, or kept encoded
//!   (and so never a separator) when the listener says `escaped_slashes: keep`; a literal
//!   backslash is refused either way, since some backends take it for a slash;
//! - repeated slashes are merged, `.` and `..` segments are resolved (RFC 3986 §5.2.4) —
//!   after decoding, so `%2e%2e` is `..` — and a `..` that would climb above the root is
//!   refused rather than dropped, as nginx does;
//! - a dot segment with parameters (`..;x`, `.;x`) is refused: servlet containers read it
//!   as `..`, which would walk around a route as `/public/..;/admin` (a known Tomcat trick
//!   behind nginx and Envoy alike);
//! - case stays significant, and the query string is not touched.
//!
//! Where we differ from Envoy: a path that climbs above the root is a 400 there only under
//! some settings; here always. What a route matches is exactly what the backend receives.

pub use crate::config::hardening::EscapedSlashes;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("bad percent-encoding at byte {0} of the path")]
    BadEscape(usize),
    #[error("an encoded NUL in the path")]
    EncodedNul,
    #[error("an encoded slash or backslash in the path")]
    EscapedSlash,
    #[error("a backslash in the path")]
    Backslash,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("a dot segment with parameters (such as ..;) in the path")]
    DotSegmentWithParameters,
}

impl PathError {
    /// The label of the refusal in metrics.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute | PathError::BadEscape(_) | PathError::EncodedNul => "bad_path",
            PathError::EscapedSlash | PathError::Backslash => "escaped_slash",
            PathError::AboveRoot => "path_above_root",
            PathError::DotSegmentWithParameters => "bad_path",
        }
    }
}

/// The normal form of `path` (the path alone, without the query), or `None` when it is
/// already normal: the common case, checked without allocating.
///
/// ```
/// use gateway::normalize::path::{normalize, EscapedSlashes, PathError};
///
/// let keep = EscapedSlashes::Reject;
/// assert_eq!(normalize("/a/b", keep), Ok(None));
/// assert_eq!(normalize("/public/%2e%2e/%61dmin//x", keep), Ok(Some("/admin/x".into())));
/// assert_eq!(normalize("/public/../../x", keep), Err(PathError::AboveRoot));
/// ```
pub fn normalize(path: &str, slashes: EscapedSlashes) -> Result<Option<String>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(bytes) {
        return Ok(None);
    }
    let decoded = decode_unreserved(bytes, slashes)?;
    let out = remove_dot_segments(&decoded)?;
    // Only ASCII went in (an `http::Uri` path) and only ASCII came out of the decoding.
    let out = String::from_utf8(out).map_err(|_| PathError::BadEscape(0))?;
    Ok((out != path).then_some(out))
}

/// No escape, no backslash, no empty segment (but a trailing slash) and no dot segment,
/// with or without parameters: nothing to do. One pass, as it runs on every request.
fn is_normal(path: &[u8]) -> bool {
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'%' | b'\\' => return false,
            b'/' => {
                let segment = &path[i + 1..];
                match segment.first() {
                    Some(b'/') => return false,
                    Some(b'.') => {
                        // `.` or `..`, alone, before a slash or before parameters.
                        let rest = &segment[1..];
                        let rest = rest.strip_prefix(b".").unwrap_or(rest);
                        if matches!(rest.first(), None | Some(b'/' | b';')) {
                            return false;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    true
}

/// Decodes the escapes of unreserved characters, keeps the others (hex upper-cased), and
/// refuses malformed escapes, `%00`, backslashes and (unless kept) encoded slashes.
fn decode_unreserved(path: &[u8], slashes: EscapedSlashes) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'\\' {
            return Err(PathError::Backslash);
        }
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            path.get(i + 1).copied().and_then(hex_value),
            path.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadEscape(i));
        };
        let c = hi << 4 | lo;
        match c {
            0 => return Err(PathError::EncodedNul),
            b'/' | b'\\' if slashes == EscapedSlashes::Reject => {
                return Err(PathError::EscapedSlash)
            }
            c if is_unreserved(c) => out.push(c),
            c => {
                out.push(b'%');
                out.push(HEX_UPPER[usize::from(c >> 4)]);
                out.push(HEX_UPPER[usize::from(c & 0xf)]);
            }
        }
        i += 3;
    }
    Ok(out)
}

/// Merges repeated slashes and resolves `.` and `..` (RFC 3986 §5.2.4); a path that ends in
/// a slash, `.` or `..` keeps a trailing slash.
fn remove_dot_segments(path: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    // The path starts with '/', so the first piece of the split is empty.
    let segments: Vec<&[u8]> = path.split(|&b| b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.into_iter().enumerate() {
        if seg.starts_with(b".;") || seg.starts_with(b"..;") {
            return Err(PathError::DotSegmentWithParameters);
        }
        match seg {
            b"" | b"." => {}
            b".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => {
                kept.push(seg);
                trailing_slash = false;
                continue;
            }
        }
        if i == last {
            trailing_slash = true;
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for seg in &kept {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if out.is_empty() || trailing_slash {
        out.push(b'/');
    }
    Ok(out)
}

const HEX_UPPER: [u8; 16] = *b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    const REJECT: EscapedSlashes = EscapedSlashes::Reject;
    const KEEP: EscapedSlashes = EscapedSlashes::Keep;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p, REJECT).map(|o| o.unwrap_or_else(|| p.to_string()))
    }

    #[test]
    fn normal_paths_are_left_alone_without_a_copy() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/admin/x",
            "/a.b/c..d/.e/f.",
            "/~user/-_.x",
        ] {
            assert_eq!(normalize(p, REJECT), Ok(None), "{p}");
        }
    }

    #[test]
    fn every_spelling_of_admin_becomes_admin() {
        let cases = [
            "/%61dmin/x",
            "/adm%69n/x",
            "/ADM%69n/x/../../admin/x",
            "//admin/x",
            "///admin//x",
            "/./admin/x",
            "/public/../admin/x",
            "/public/%2e%2e/admin/x",
            "/public/.%2E/admin/x",
            "/public/%2E./admin/x",
            "/public/a/b/../../../admin/x",
            "/public/./../admin/./x",
        ];
        for p in cases {
            assert_eq!(norm(p).as_deref(), Ok("/admin/x"), "{p}");
        }
    }

    #[test]
    fn dot_segments_resolve_as_rfc_3986_says() {
        // RFC 3986 §5.2.4 examples, on absolute paths.
        assert_eq!(norm("/a/b/c/./../../g").as_deref(), Ok("/a/g"));
        assert_eq!(norm("/mid/content=5/../6").as_deref(), Ok("/mid/6"));
        assert_eq!(
            norm("/public/norm/./a//b/../c").as_deref(),
            Ok("/public/norm/a/c")
        );
        assert_eq!(norm("/a/b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(norm("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(norm("/a/..").as_deref(), Ok("/"));
        assert_eq!(norm("/a//").as_deref(), Ok("/a/"));
        assert_eq!(norm("//").as_deref(), Ok("/"));
        assert_eq!(norm("/.").as_deref(), Ok("/"));
    }

    #[test]
    fn a_path_that_climbs_above_the_root_is_refused() {
        for p in ["/..", "/../x", "/a/../../x", "/%2e%2e/x", "/a/./../.%2e"] {
            assert_eq!(normalize(p, REJECT), Err(PathError::AboveRoot), "{p}");
        }
    }

    #[test]
    fn encoded_slashes_are_refused_or_kept_encoded_by_the_listener_setting() {
        for p in [
            "/public/..%2fadmin/x",
            "/a%2Fb",
            "/public/..%5cadmin/x",
            "/a%5Cb",
        ] {
            assert_eq!(normalize(p, REJECT), Err(PathError::EscapedSlash), "{p}");
        }
        // Kept, they are part of a segment, never a separator: `..%2F` is no dot segment.
        assert_eq!(
            normalize("/public/..%2fadmin/x", KEEP),
            Ok(Some("/public/..%2Fadmin/x".into()))
        );
        assert_eq!(normalize("/a%2Fb", KEEP), Ok(None));
    }

    #[test]
    fn a_dot_segment_with_parameters_is_refused() {
        for p in [
            "/public/..;/admin/x",
            "/public/.;x/admin",
            "/public/%2e%2e;/admin",
        ] {
            assert_eq!(
                normalize(p, REJECT),
                Err(PathError::DotSegmentWithParameters),
                "{p}"
            );
        }
        // A parameter on an ordinary segment is the backend's business.
        assert_eq!(normalize("/a;b/c..;d/...;e", REJECT), Ok(None));
    }

    #[test]
    fn a_literal_backslash_is_refused_whatever_the_setting() {
        assert_eq!(
            normalize("/public\\..\\admin", KEEP),
            Err(PathError::Backslash)
        );
    }

    #[test]
    fn other_escapes_stay_encoded_with_upper_case_hex() {
        assert_eq!(
            normalize("/caf%c3%a9/%3f%20x", REJECT),
            Ok(Some("/caf%C3%A9/%3F%20x".into()))
        );
        assert_eq!(normalize("/caf%C3%A9", REJECT), Ok(None));
        assert_eq!(
            normalize("/%7Euser/%41", REJECT),
            Ok(Some("/~user/A".into()))
        );
    }

    #[test]
    fn malformed_escapes_and_nul_are_refused() {
        assert_eq!(normalize("/a%", REJECT), Err(PathError::BadEscape(2)));
        assert_eq!(normalize("/a%4", REJECT), Err(PathError::BadEscape(2)));
        assert_eq!(normalize("/a%zz", REJECT), Err(PathError::BadEscape(2)));
        assert_eq!(normalize("/a%00b", REJECT), Err(PathError::EncodedNul));
    }

    #[test]
    fn case_stays_significant() {
        assert_eq!(normalize("/Admin/X", REJECT), Ok(None));
        assert_eq!(norm("/%41dmin").as_deref(), Ok("/Admin"));
    }

    #[test]
    fn a_path_must_start_with_a_slash() {
        assert_eq!(normalize("admin", REJECT), Err(PathError::NotAbsolute));
        assert_eq!(normalize("", REJECT), Err(PathError::NotAbsolute));
        assert_eq!(normalize("*", REJECT), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normalising_twice_changes_nothing_more() {
        let inputs = [
            "/a/./b/../c//d/",
            "/%61%62%2e%2E/x",
            "/x/%7e/%c3%a9/../y",
            "/public/..%2fadmin",
        ];
        for p in inputs {
            if let Ok(once) = normalize(p, KEEP).map(|o| o.unwrap_or_else(|| p.to_string())) {
                assert_eq!(normalize(&once, KEEP), Ok(None), "{p} -> {once}");
            }
        }
    }
}
