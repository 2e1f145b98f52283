use super::*;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::ReadBuf;

/// A connection's bytes as they arrive, in segments; peeking reads and puts back, as
/// Pingora's L4 stream does. The end of the segments is the peer closing.
struct Segments {
    segments: VecDeque<Vec<u8>>,
    front: Vec<u8>,
}

fn segments(parts: &[&[u8]]) -> Segments {
    Segments {
        segments: parts.iter().map(|p| p.to_vec()).collect(),
        front: Vec::new(),
    }
}

impl AsyncRead for Segments {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.front.is_empty() {
            match this.segments.pop_front() {
                Some(s) => this.front = s,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.front.len().min(buf.remaining());
        buf.put_slice(&this.front[..n]);
        this.front.drain(..n);
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl Peek for Segments {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.read_exact(buf).await?;
        let mut front = buf.to_vec();
        front.extend_from_slice(&self.front);
        self.front = front;
        Ok(true)
    }
}

impl Segments {
    /// What the application reads after the header.
    async fn rest(mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.read_to_end(&mut rest).await.unwrap();
        rest
    }
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";

fn client(source: &str, destination: &str) -> Option<Header> {
    Some(Header::Proxied {
        source: source.parse().unwrap(),
        destination: destination.parse().unwrap(),
    })
}

#[tokio::test]
async fn a_trusted_header_split_across_segments_is_taken_and_the_request_behind_it_is_left() {
    let mut s = segments(&[
        b"PRO",
        b"XY TCP4 203.0.113.7",
        b" 192.0.2.1 51000 443\r",
        &[b"\n", REQUEST].concat(),
    ]);
    let header = take(&mut s, true).await.unwrap();
    assert_eq!(header, client("203.0.113.7:51000", "192.0.2.1:443"));
    assert_eq!(s.rest().await, REQUEST);

    let mut v2 = V2_SIGNATURE.to_vec();
    v2.extend([
        0x21, 0x11, 0, 12, 203, 0, 113, 7, 192, 0, 2, 1, 0xC7, 0x38, 1, 0xBB,
    ]);
    let (a, b) = v2.split_at(7);
    let mut s = segments(&[a, &b[..9], &[&b[9..], REQUEST].concat()]);
    let header = take(&mut s, true).await.unwrap();
    assert_eq!(header, client("203.0.113.7:51000", "192.0.2.1:443"));
    assert_eq!(s.rest().await, REQUEST);
}

#[tokio::test]
async fn a_peer_that_is_not_trusted_is_served_untouched_without_a_header_and_refused_with_one() {
    let mut s = segments(&[&REQUEST[..1], &REQUEST[1..]]);
    assert_eq!(take(&mut s, false).await.unwrap(), None);
    assert_eq!(s.rest().await, REQUEST, "nothing was taken");

    for header in [&b"PROXY TCP4 6.6.6.6 192.0.2.1 1 443\r\n"[..], V2_SIGNATURE] {
        let mut s = segments(&[header, REQUEST]);
        let why = take(&mut s, false).await.unwrap_err();
        assert_eq!(why.reason(), "untrusted");
    }
}

#[tokio::test]
async fn a_trusted_peer_without_a_valid_header_is_refused_with_the_reason() {
    let cases: [(&[&[u8]], &str); 5] = [
        (&[REQUEST], "missing"),
        // TLS without the header in front.
        (&[&[0x16, 0x03, 0x01]], "missing"),
        (
            &[b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 99999\r\n", REQUEST],
            "malformed",
        ),
        (&[b"PROXY TCP4 ", &[b'1'; 120]], "too_long"),
        // The peer leaves within the header.
        (&[b"PROXY TCP4 203.0.113.7 "], "closed"),
    ];
    for (parts, reason) in cases {
        let mut s = segments(parts);
        let why = take(&mut s, true).await.unwrap_err();
        assert_eq!(why.reason(), reason, "{why}");
    }
    // A v2 header announcing more than the cap: refused on its 16 fixed bytes.
    let mut v2 = V2_SIGNATURE.to_vec();
    v2.extend([0x21, 0x11, 0xFF, 0xFF]);
    let why = take(&mut segments(&[&v2]), true).await.unwrap_err();
    assert_eq!(why.reason(), "too_long");
}

#[tokio::test]
async fn local_and_unknown_headers_are_taken_and_keep_the_peer() {
    let mut local = V2_SIGNATURE.to_vec();
    local.extend([0x20, 0x00, 0, 0]);
    for header in [&local[..], b"PROXY UNKNOWN\r\n"] {
        let mut s = segments(&[header, REQUEST]);
        assert_eq!(take(&mut s, true).await.unwrap(), Some(Header::Local));
        assert_eq!(s.rest().await, REQUEST);
    }
}
