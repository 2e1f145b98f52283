//! W3C Trace Context (`traceparent`, `tracestate`): the trace a request belongs to, and the
//! span of the gateway's hop in it.
//!
//! A client's `traceparent` is kept when it is valid (its trace id and flags; the gateway's
//! hop gets a new span id, which the backend sees as its parent); otherwise a new trace
//! starts here. `tracestate` is vendors' data about the trace: passed on untouched with a
//! valid `traceparent`, dropped with an invalid one (the recommendation's rule, so a
//! backend never reads state of a trace it is not in). The answer echoes the gateway's
//! `traceparent`, so a caller without a tracer can still find the trace.
//!
//! Parsing follows the recommendation's rules for version `00` and for later versions
//! (their first four fields as version `00`'s, whatever follows after a `-`).

use http::HeaderValue;
use pingora::http::RequestHeader;

/// The headers, lower-case as HTTP/2 requires.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The length of a version-`00` `traceparent`: `vv-<32 hex>-<16 hex>-ff`.
const LEN: usize = 55;

/// The sampled flag: the caller may have recorded its span.
pub const SAMPLED: u8 = 0x01;

/// The trace of one request and the gateway's span in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// Never zero.
    pub trace_id: u128,
    /// The gateway's span for this hop (the backend's parent). Never zero.
    pub span_id: u64,
    /// The client's span, when the trace came from the client.
    pub parent_id: Option<u64>,
    /// Trace flags as the client sent them (only `sampled` is defined), `0` for a new trace.
    pub flags: u8,
}

/// What a valid `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: u128,
    pub parent_id: u64,
    pub flags: u8,
}

impl TraceContext {
    /// The trace of `req`: the client's, continued by a new span, when it sent exactly one
    /// valid `traceparent`; else a new trace.
    pub fn of(req: &RequestHeader) -> TraceContext {
        let mut values = req.headers.get_all(TRACEPARENT).iter();
        let parent = match (values.next(), values.next()) {
            (Some(v), None) => parse(v.as_bytes()),
            _ => None,
        };
        match parent {
            Some(p) => TraceContext {
                trace_id: p.trace_id,
                span_id: new_span_id(),
                parent_id: Some(p.parent_id),
                flags: p.flags,
            },
            None => TraceContext {
                trace_id: new_trace_id(),
                span_id: new_span_id(),
                parent_id: None,
                flags: 0,
            },
        }
    }

    /// Whether the trace came from the client (its `tracestate` then goes on with it).
    pub fn continued(&self) -> bool {
        self.parent_id.is_some()
    }

    /// Whether the client's tracer may have recorded the trace.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace id as 32 lower-case hex digits, for logs.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The `traceparent` of the gateway's hop: version `00`, the trace, the gateway's span,
    /// the flags (version `00` defines only the sampled bit; others are not passed on).
    pub fn header(&self) -> HeaderValue {
        self.header_for(self.span_id)
    }

    /// The `traceparent` of a span `span_id` of this trace (a try's, for its backend).
    pub fn header_for(&self, span_id: u64) -> HeaderValue {
        // Written digit by digit (`format!` with widths took ten times as long, on every
        // request twice).
        let mut text = [b'-'; LEN];
        text[..2].copy_from_slice(b"00");
        use telemetry::text::put_hex;
        put_hex(&mut text[3..35], self.trace_id);
        put_hex(&mut text[36..52], u128::from(span_id));
        put_hex(&mut text[53..55], u128::from(self.flags & SAMPLED));
        // Only hex digits and dashes: always a valid header value.
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A `traceparent` value, if valid: a known layout, lower-case hex, no all-zero ids,
/// version not `ff`; version `00` exactly [`LEN`] long, later versions at least that and
/// then a `-`.
pub fn parse(value: &[u8]) -> Option<Parent> {
    if value.len() < LEN {
        return None;
    }
    let version = hex_field(&value[0..2])?;
    if version == 0xff || (version == 0 && value.len() != LEN) {
        return None;
    }
    if value.len() > LEN && value[LEN] != b'-' {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = hex_field(&value[3..35])?;
    let parent_id = u64::try_from(hex_field(&value[36..52])?).ok()?;
    let flags = u8::try_from(hex_field(&value[53..55])?).ok()?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some(Parent {
        trace_id,
        parent_id,
        flags,
    })
}

/// Lower-case hex digits (at most 32) as a number; `None` for anything else.
fn hex_field(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    digits.iter().try_fold(0u128, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u128::from(v))
    })
}

/// A random, non-zero span id.
pub(crate) fn new_span_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// A random, non-zero trace id.
fn new_trace_id() -> u128 {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn request(traceparents: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for t in traceparents {
            req.append_header(TRACEPARENT, *t).unwrap();
        }
        req
    }

    #[test]
    fn a_valid_traceparent_is_read() {
        assert_eq!(
            parse(VALID.as_bytes()),
            Some(Parent {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                parent_id: 0x00f067aa0ba902b7,
                flags: 1
            })
        );
        // A later version may carry more fields after a dash.
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-comes";
        assert!(parse(future.as_bytes()).is_some());
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            // upper-case hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // version ff, and version 00 with more fields
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // a later version whose extra part does not start with a dash
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // wrong separators, non-hex
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn the_clients_trace_continues_with_a_new_span_for_the_gateways_hop() {
        let t = TraceContext::of(&request(&[VALID]));
        assert_eq!(t.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(t.parent_id, Some(0x00f067aa0ba902b7));
        assert_ne!(t.span_id, 0x00f067aa0ba902b7);
        assert!(t.continued() && t.sampled());
        let header = t.header();
        let text = header.to_str().unwrap();
        assert!(
            text.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{text}"
        );
        assert!(text.ends_with("-01"), "{text}");
        assert_eq!(
            parse(text.as_bytes()).map(|p| p.parent_id),
            Some(t.span_id),
            "the backend's parent is the gateway's span"
        );
    }

    #[test]
    fn without_one_valid_traceparent_a_new_trace_starts() {
        for sent in [
            &[][..],
            &["00-garbage"][..],
            &[
                VALID,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ][..],
        ] {
            let t = TraceContext::of(&request(sent));
            assert!(!t.continued(), "{sent:?}");
            assert_ne!(t.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
            assert_eq!(t.flags, 0);
            let header = t.header();
            let parsed = parse(header.as_bytes()).unwrap();
            assert_eq!(parsed.trace_id, t.trace_id);
            assert_eq!(parsed.parent_id, t.span_id);
        }
        let (a, b) = (
            TraceContext::of(&request(&[])),
            TraceContext::of(&request(&[])),
        );
        assert_ne!(a.trace_id, b.trace_id);
    }

    #[test]
    fn flags_other_than_sampled_are_not_passed_on() {
        let t = TraceContext::of(&request(&[
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
        ]));
        assert!(t.header().to_str().unwrap().ends_with("-01"));
    }

    #[test]
    fn a_header_is_the_w3c_layout_with_every_digit_in_place() {
        for (trace_id, span_id) in [
            (1, 1),
            (u128::MAX, u64::MAX),
            (0x0123_4567_89ab_cdef << 64, 0xf0),
        ] {
            let mut t = TraceContext::of(&request(&[]));
            t.trace_id = trace_id;
            t.flags = SAMPLED;
            let header = t.header_for(span_id);
            assert_eq!(
                header.to_str().unwrap(),
                format!("00-{trace_id:032x}-{span_id:016x}-01")
            );
        }
    }
}
