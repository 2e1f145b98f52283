//! Addresses and ids as text, without `fmt`'s width and padding machinery.
//!
//! `Ipv4Addr`'s `Display` honours width and padding, so it formats into a buffer first and
//! then pads: about 1,200 instructions an address. Each traced request writes two to four
//! (the client's and the backend's, in the span and the access log); these write the four
//! octets directly. IPv6 goes through `Display`, whose compression rules are not worth
//! repeating.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

/// `value`'s low `out.len() * 4` bits as lower-case hex, zero-padded, into `out` (what
/// `{:032x}` writes, for an id in a `traceparent` or a log line, at a tenth of the cost).
pub fn put_hex(out: &mut [u8], value: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut v = value;
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// `ip` as `Display` writes it, appended to `out`.
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `addr` as `Display` writes it (`1.2.3.4:80`, `[::1]:80`), appended to `out`.
pub fn write_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(_) => {
            write_ip(out, addr.ip());
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(addr.port()).as_bytes());
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// `ip` as `Display` writes it.
pub fn ip_string(ip: IpAddr) -> String {
    let mut out = Vec::with_capacity(15);
    write_ip(&mut out, ip);
    // Digits, dots and colons only.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_what_format_writes() {
        for v in [0, 1, 0xabc, u128::from(u64::MAX), u128::MAX] {
            let mut out = [0u8; 32];
            put_hex(&mut out, v);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{v:032x}"));
        }
        let mut short = [0u8; 2];
        put_hex(&mut short, 0x1ff);
        assert_eq!(&short, b"ff");
    }

    #[test]
    fn addresses_read_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.4",
            "::1",
            "fe80::1:2",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_string(ip), ip.to_string());
            for port in [0, 80, 65535] {
                let addr = SocketAddr::new(ip, port);
                let mut out = Vec::new();
                write_socket_addr(&mut out, addr);
                assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
            }
        }
    }
}
