//! Request ids: every answer names the request it answers (`X-Request-Id`), so that a
//! client's report and the node's log meet.
//!
//! A client's id is kept when it is a sane token: 1 to [`MAX_LEN`] bytes of printable ASCII
//! without spaces (what a log line can carry unquoted); anything else is replaced by a new
//! id, 16 random bytes as 32 hex digits. The gateway sends its own ids, which pass.
//!
//! While a request is handled its id is the task's [`current`] id (a tokio task-local), so
//! code that has no request at hand (the panic handler and hook in `panics.rs`) can name it.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The header that carries the id, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id taken from a client, in bytes.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: HeaderValue;
}

/// The client's id if it is sane (see the module docs), else `None`.
pub fn sanitise(value: Option<&HeaderValue>) -> Option<HeaderValue> {
    let v = value?;
    let bytes = v.as_bytes();
    let sane =
        !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(|b| b.is_ascii_graphic());
    sane.then(|| v.clone())
}

/// A new id: 16 random bytes as 32 lower-case hex digits.
pub fn generate() -> HeaderValue {
    let n: u128 = rand::random();
    // 32 hex digits are always a valid header value.
    HeaderValue::from_str(&format!("{n:032x}")).unwrap_or(HeaderValue::from_static("unknown"))
}

/// The id of the request the current task is handling, if any.
pub fn current() -> Option<String> {
    CURRENT
        .try_with(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
        .ok()
}

/// Middleware: gives the request its id (kept or new), runs the rest with it as the
/// [`current`] id, and echoes it on the answer.
pub async fn assign(mut req: Request, next: Next) -> Response {
    let id = sanitise(req.headers().get(HEADER)).unwrap_or_else(generate);
    req.headers_mut().insert(HEADER, id.clone());
    let mut res = CURRENT.scope(id.clone(), next.run(req)).await;
    res.headers_mut().insert(HEADER, id);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(raw: &[u8]) -> bool {
        let v = HeaderValue::from_bytes(raw).unwrap();
        sanitise(Some(&v)).is_some_and(|k| k.as_bytes() == raw)
    }

    #[test]
    fn sane_client_ids_are_kept() {
        assert!(kept(b"abc-123"));
        assert!(kept(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(kept(b"{weird}!~ids/are:fine"));
        assert!(kept(&[b'x'; MAX_LEN]), "exactly the longest");
    }

    #[test]
    fn insane_client_ids_are_replaced() {
        assert!(!kept(&[b'x'; MAX_LEN + 1]), "one byte too long");
        assert!(!kept(b"two words"), "a space");
        assert!(!kept(b"tab\there"), "a control character");
        assert!(!kept("caf\u{e9}".as_bytes()), "not ASCII");
        assert!(!kept(b""), "empty");
        assert_eq!(sanitise(None), None);
    }

    #[test]
    fn generated_ids_are_sane_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(sanitise(Some(&a)), Some(a));
    }

    #[test]
    fn there_is_no_current_id_outside_a_request() {
        assert_eq!(current(), None);
    }
}
