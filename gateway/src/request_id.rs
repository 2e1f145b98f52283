//! Request ids: the client's own `X-Request-Id` when it sent a usable one, else a new one.
//!
//! A new id is 32 lower-case hex digits: a random 64-bit prefix drawn once per process,
//! then a 64-bit counter. Ids are unique within a process and, by the prefix, across
//! processes; they are labels for logs, not secrets, so a counter (no random draw, no
//! allocation on the way to the header) is enough.

use http::HeaderValue;
use pingora::http::RequestHeader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The header, lower-case as HTTP/2 requires.
pub const HEADER: &str = "x-request-id";

/// The longest client-sent id kept; longer ones are replaced.
pub const MAX_LEN: usize = 128;

/// The request's id: the client's if it is 1 to [`MAX_LEN`] visible characters, else new.
pub fn of(req: &RequestHeader) -> HeaderValue {
    match req.headers.get(HEADER) {
        Some(v) if !v.is_empty() && v.len() <= MAX_LEN && v.to_str().is_ok() => v.clone(),
        _ => new_id(),
    }
}

fn prefix() -> u64 {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    *PREFIX.get_or_init(rand::random)
}

/// A new id: prefix, then the next count.
pub fn new_id() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 32];
    hex(prefix(), &mut buf[..16]);
    hex(n, &mut buf[16..]);
    // Only hex digits: always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn hex(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate().take(16) {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_32_hex_digits_and_differ() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(
            a.as_bytes()[..16],
            b.as_bytes()[..16],
            "one prefix per process"
        );
    }

    #[test]
    fn a_client_id_is_kept_unless_empty_or_too_long() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header(HEADER, "abc-123").unwrap();
        assert_eq!(of(&req), "abc-123");
        req.insert_header(HEADER, "x".repeat(MAX_LEN + 1)).unwrap();
        assert_eq!(of(&req).len(), 32);
        req.insert_header(HEADER, "").unwrap();
        assert_eq!(of(&req).len(), 32);
    }
}
