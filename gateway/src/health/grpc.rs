//! The gRPC health-checking protocol (`grpc.health.v1.Health/Check`), as much of it as a
//! probe needs: the request message framed for the wire, and the verdict read from the
//! answer's message. Hand-written protobuf (two messages of one field each) rather than
//! generated code: `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { ServingStatus status = 1; }`, SERVING being 1.

use bytes::Bytes;

/// The method's path.
pub const PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckResponse.status` of a serving service.
const SERVING: u64 = 1;

/// The request for `service` ("" for the server as a whole) as one uncompressed gRPC
/// message: a zero flag byte, the length (4 bytes, big-endian), the protobuf message.
pub fn check_request(service: &str) -> Bytes {
    let mut msg = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(msg.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(&msg);
    Bytes::from(frame)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*at`, moving past it.
fn varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or("a truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a varint longer than 10 bytes".into())
}

/// Whether the answer's body (one gRPC message) says SERVING; `Err` names what is wrong
/// with it.
pub fn serving(body: &[u8]) -> Result<bool, String> {
    let (head, rest) = body
        .split_first_chunk::<5>()
        .ok_or("the answer holds no gRPC message")?;
    if head[0] != 0 {
        return Err("the answer's message is compressed".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let msg = rest
        .get(..len)
        .ok_or("the answer's message is shorter than its length")?;
    let mut at = 0;
    let mut status = 0;
    while at < msg.len() {
        let tag = varint(msg, &mut at)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => status = varint(msg, &mut at)?,
            (_, 0) => {
                varint(msg, &mut at)?;
            }
            (_, 1) => at += 8,
            (_, 5) => at += 4,
            (_, 2) => {
                let n = varint(msg, &mut at)?;
                at = at.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            }
            (_, w) => return Err(format!("a field of wire type {w}")),
        }
    }
    if at > msg.len() {
        return Err("the answer's message is truncated".into());
    }
    Ok(status == SERVING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_one_framed_message_naming_its_service() {
        assert_eq!(&check_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &check_request("db")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
        let long = "s".repeat(200);
        let r = check_request(&long);
        assert_eq!(&r[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
    }

    #[test]
    fn only_a_serving_status_passes() {
        assert_eq!(serving(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(true));
        assert_eq!(serving(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(false), "NOT_SERVING");
        assert_eq!(serving(&[0, 0, 0, 0, 0]), Ok(false), "UNKNOWN is left out");
        // Unknown fields are skipped; a truncated one is an error.
        assert_eq!(serving(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 1]), Ok(true));
        assert!(
            serving(&[0, 0, 0, 0, 6, 0x12, 1, b'x', 0x08, 1, 0x18]).is_err(),
            "a truncated trailing field"
        );
    }

    #[test]
    fn a_malformed_answer_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0, 0, 0][..],
            &[1, 0, 0, 0, 0][..],
            &[0, 0, 0, 0, 9, 0x08][..],
            &[0, 0, 0, 0, 2, 0x08, 0x80][..],
            &[0, 0, 0, 0, 1, 0x0f][..],
        ] {
            assert!(serving(bad).is_err(), "{bad:?}");
        }
    }
}
