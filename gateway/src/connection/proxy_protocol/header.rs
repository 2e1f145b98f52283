//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, version 1 text and version 2
//! binary) as its bytes arrive: whether one starts, exactly how many more bytes it needs,
//! and the client address it carries.
//!
//! The `ppp` crate parses a complete header; this module frames it, so that a reader that
//! takes exactly [`Progress::Incomplete::need`] more bytes at each step never reads past a
//! valid header into the HTTP or TLS bytes behind it:
//!
//! - nothing is known until the first bytes match or leave a signature (`PROXY ` for v1,
//!   `\r\n\r\n\0\r\nQUIT\n` for v2), one byte at a time ([`Progress::Undecided`]);
//! - v1 ends at the first LF, at most 107 bytes (the spec's bound); no valid line is
//!   shorter than `PROXY UNKNOWN\r\n`, so the first 15 bytes are taken at once;
//! - v2 is 16 fixed bytes, then the length they announce (addresses and TLVs), which the
//!   gateway caps at [`V2_MAX_PAYLOAD`] bytes, not the 65535 the field allows.
//!
//! What the header says of the client:
//!
//! | header                                  | client                                   |
//! |-----------------------------------------|------------------------------------------|
//! | v1 `TCP4`/`TCP6`, v2 PROXY over TCP     | its source address ([`Header::Proxied`]) |
//! | v2 LOCAL (the balancer's health checks) | the TCP peer ([`Header::Local`])         |
//! | v1 `UNKNOWN`, v2 `AF_UNSPEC`, v2 unix   | the TCP peer ([`Header::Local`])         |
//! | v2 over UDP, or any other family        | none: the header is malformed            |

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;

/// The first bytes of a v1 header.
pub const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The first bytes of a v2 header.
pub const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included (the spec's bound).
pub const V1_MAX: usize = 107;
/// The shortest valid v1 header: `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;
/// The fixed part of a v2 header: signature, version and command, family and protocol,
/// length.
const V2_FIXED: usize = 16;
/// The most address and TLV bytes a v2 header may announce here. Addresses take at most
/// 216 bytes (unix); balancers add a few TLVs (AWS's VPC endpoint id, Azure's link id,
/// HAProxy's ALPN or unique id) of tens of bytes. 4 KiB leaves room and bounds what a
/// trusted peer makes the gateway hold before the first request.
pub const V2_MAX_PAYLOAD: usize = 4096;

/// The protocol's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    fn signature(self) -> &'static [u8] {
        match self {
            Version::V1 => V1_SIGNATURE,
            Version::V2 => V2_SIGNATURE,
        }
    }
}

/// What a complete, valid header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The connection was proxied: its client, and the address that client connected to
    /// (the balancer's).
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The proxy speaks for itself (v2 LOCAL, its health checks) or gives no IP addresses
    /// (v1 UNKNOWN, v2 UNSPEC or unix): the TCP peer stays the client.
    Local,
}

/// Why a header that started is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// v1 without its LF within 107 bytes, or v2 announcing more than [`V2_MAX_PAYLOAD`].
    #[error("longer than the gateway takes ({0} bytes or more)")]
    TooLong(usize),
    /// The parser refused it, or it names what a TCP connection cannot carry.
    #[error("{0}")]
    Invalid(String),
}

/// What the bytes received so far make of a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Nothing yet, or a proper beginning of a signature: one more byte decides.
    Undecided,
    /// No PROXY header: the bytes belong to the application (HTTP, TLS).
    Absent,
    /// A header whose end has not arrived: exactly `need` more bytes may be read without
    /// reading past it.
    Incomplete {
        version: Version,
        need: NonZeroUsize,
    },
    /// The first `len` bytes are a valid header.
    Complete {
        version: Version,
        header: Header,
        len: usize,
    },
    /// A header that started (its signature is whole) and is not valid.
    Malformed { version: Version, error: Malformed },
}

/// Reads the start of a connection, `bytes` being everything received so far.
///
/// ```
/// use gateway::connection::proxy_protocol::header::{decode, Header, Progress, Version};
/// let line = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nGET / HTTP/1.1\r\n";
/// let Progress::Complete { version, header, len } = decode(line) else { panic!() };
/// assert_eq!((version, len), (Version::V1, 44));
/// assert_eq!(header, Header::Proxied {
///     source: "203.0.113.7:51000".parse().unwrap(),
///     destination: "192.0.2.1:443".parse().unwrap(),
/// });
/// assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Progress::Absent);
/// ```
pub fn decode(bytes: &[u8]) -> Progress {
    let Some(version) = started(bytes) else {
        let maybe = |sig: &[u8]| sig.starts_with(bytes);
        return if maybe(V1_SIGNATURE) || maybe(V2_SIGNATURE) {
            Progress::Undecided
        } else {
            Progress::Absent
        };
    };
    let framed = match version {
        Version::V1 => v1(bytes),
        Version::V2 => v2(bytes),
    };
    match framed {
        Framed::Need(need) => Progress::Incomplete {
            version,
            need: NonZeroUsize::new(need).unwrap_or(NonZeroUsize::MIN),
        },
        Framed::Whole(len, Ok(header)) => Progress::Complete {
            version,
            header,
            len,
        },
        Framed::Whole(_, Err(error)) => Progress::Malformed { version, error },
    }
}

/// The version whose whole signature `bytes` begin with.
fn started(bytes: &[u8]) -> Option<Version> {
    [Version::V1, Version::V2]
        .into_iter()
        .find(|v| bytes.starts_with(v.signature()))
}

/// Where a header's end is.
enum Framed {
    /// Not within the bytes: this many more are needed before it may be.
    Need(usize),
    /// The first this many bytes, and what they say.
    Whole(usize, Result<Header, Malformed>),
}

/// A v1 line: up to its LF.
fn v1(bytes: &[u8]) -> Framed {
    let Some(lf) = bytes.iter().position(|&b| b == b'\n') else {
        if bytes.len() >= V1_MAX {
            return Framed::Whole(V1_MAX, Err(Malformed::TooLong(V1_MAX)));
        }
        // No valid line ends before V1_MIN bytes, so those may be read at once.
        return Framed::Need(V1_MIN.saturating_sub(bytes.len()).max(1));
    };
    let line = &bytes[..=lf];
    if line.len() > V1_MAX {
        return Framed::Whole(V1_MAX, Err(Malformed::TooLong(V1_MAX)));
    }
    // The spec ends the line with CRLF; the parser also takes `... \n` (a space before a
    // bare LF).
    if !line.ends_with(b"\r\n") {
        return Framed::Whole(
            line.len(),
            Err(Malformed::Invalid("no CR before the LF".into())),
        );
    }
    let parsed = match ppp::v1::Header::try_from(line) {
        // The parser reads up to the first CR: a line with more after it is not one header.
        Ok(h) if h.header.len() == line.len() => from_v1(h.addresses),
        Ok(_) => Err(Malformed::Invalid("a CR before the end of the line".into())),
        Err(e) => Err(Malformed::Invalid(e.to_string())),
    };
    Framed::Whole(line.len(), parsed)
}

fn from_v1(addresses: ppp::v1::Addresses) -> Result<Header, Malformed> {
    use ppp::v1::Addresses;
    Ok(match addresses {
        Addresses::Tcp4(a) => proxied(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        ),
        Addresses::Tcp6(a) => proxied(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        ),
        Addresses::Unknown => Header::Local,
    })
}

/// A v2 header: 16 bytes, then the length they announce.
fn v2(bytes: &[u8]) -> Framed {
    let Some(fixed) = bytes.get(..V2_FIXED) else {
        return Framed::Need(V2_FIXED - bytes.len());
    };
    let payload = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Framed::Whole(V2_FIXED, Err(Malformed::TooLong(V2_FIXED + payload)));
    }
    let len = V2_FIXED + payload;
    let Some(whole) = bytes.get(..len) else {
        return Framed::Need(len - bytes.len());
    };
    let parsed = match ppp::v2::Header::try_from(whole) {
        Ok(h) => from_v2(&h),
        Err(e) => Err(Malformed::Invalid(e.to_string())),
    };
    Framed::Whole(len, parsed)
}

fn from_v2(h: &ppp::v2::Header<'_>) -> Result<Header, Malformed> {
    use ppp::v2::{Addresses, Command, Protocol};
    if h.command == Command::Local {
        return Ok(Header::Local);
    }
    match (h.addresses, h.protocol) {
        (Addresses::Unspecified | Addresses::Unix(_), _) => Ok(Header::Local),
        (Addresses::IPv4(a), Protocol::Stream) => Ok(proxied(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        )),
        (Addresses::IPv6(a), Protocol::Stream) => Ok(proxied(
            a.source_address.into(),
            a.source_port,
            a.destination_address.into(),
            a.destination_port,
        )),
        (_, protocol) => Err(Malformed::Invalid(format!(
            "an IP connection over {protocol:?}: only TCP (stream) is proxied here"
        ))),
    }
}

fn proxied(source: IpAddr, source_port: u16, destination: IpAddr, port: u16) -> Header {
    Header::Proxied {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, port),
    }
}

#[cfg(test)]
mod tests;
