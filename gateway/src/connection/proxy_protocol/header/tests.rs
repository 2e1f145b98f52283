use super::*;

/// A v2 header: signature, version and command, family and protocol, then `payload`.
fn v2_header(version_command: u8, family_protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(version_command);
    h.push(family_protocol);
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend(payload);
    h
}

/// TCP over IPv4 from 203.0.113.7:51000 to 192.0.2.1:443, with `tlvs` after the addresses.
fn v2_tcp4(tlvs: &[u8]) -> Vec<u8> {
    let mut payload = vec![203, 0, 113, 7, 192, 0, 2, 1];
    payload.extend(51000u16.to_be_bytes());
    payload.extend(443u16.to_be_bytes());
    payload.extend(tlvs);
    v2_header(0x21, 0x11, &payload)
}

/// Reads `stream` as the listener does: one byte at a time while undecided, then exactly
/// what the header needs. Returns the outcome and how many bytes were taken.
fn read(stream: &[u8]) -> (Progress, usize) {
    let mut taken = 0;
    loop {
        let progress = decode(&stream[..taken]);
        let more = match &progress {
            Progress::Undecided => 1,
            Progress::Incomplete { need, .. } => need.get(),
            _ => return (progress, taken),
        };
        if taken + more > stream.len() {
            return (progress, taken);
        }
        taken += more;
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(stream: &[u8]) -> (Version, Header, usize) {
    match read(stream) {
        (
            Progress::Complete {
                version,
                header,
                len,
            },
            taken,
        ) => {
            assert_eq!(len, taken, "the header is exactly what was read");
            (version, header, len)
        }
        other => panic!("{other:?} from {:?}", String::from_utf8_lossy(stream)),
    }
}

fn malformed(stream: &[u8]) -> Malformed {
    match read(stream) {
        (Progress::Malformed { error, .. }, _) => error,
        other => panic!("{other:?} from {:?}", String::from_utf8_lossy(stream)),
    }
}

#[test]
fn a_v1_line_gives_the_client_and_the_address_it_reached_and_nothing_after_it_is_read() {
    let request = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    for (line, source, destination) in [
        (
            "PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n",
            "203.0.113.7:51000",
            "192.0.2.1:443",
        ),
        (
            "PROXY TCP6 2001:db8::7 2001:db8::1 51000 8443\r\n",
            "[2001:db8::7]:51000",
            "[2001:db8::1]:8443",
        ),
        // The longest TCP6 line (104 bytes).
        (
            "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ),
    ] {
        let stream = [line.as_bytes(), request].concat();
        let (version, header, len) = complete(&stream);
        assert_eq!(version, Version::V1);
        assert_eq!(len, line.len());
        assert_eq!(
            header,
            Header::Proxied {
                source: addr(source),
                destination: addr(destination)
            }
        );
    }
}

#[test]
fn a_v2_header_gives_the_client_and_its_tlvs_are_read_and_skipped() {
    // A NOOP TLV and AWS's VPC endpoint TLV (type 0xEA), as a network balancer sends them.
    let tlvs = [
        &[0x04, 0x00, 0x02, 0, 0][..],
        &[0xEA, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e'],
    ]
    .concat();
    for tlv in [&[][..], &tlvs] {
        let header_bytes = v2_tcp4(tlv);
        // TLS right behind it: the ClientHello's first bytes.
        let stream = [&header_bytes[..], &[0x16, 0x03, 0x01, 0x02, 0x00]].concat();
        let (version, header, len) = complete(&stream);
        assert_eq!((version, len), (Version::V2, header_bytes.len()));
        assert_eq!(
            header,
            Header::Proxied {
                source: addr("203.0.113.7:51000"),
                destination: addr("192.0.2.1:443")
            }
        );
    }
    let mut payload = [0u8; 36];
    payload[..16].copy_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    payload[16..32].copy_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    payload[32..34].copy_from_slice(&51000u16.to_be_bytes());
    payload[34..].copy_from_slice(&443u16.to_be_bytes());
    let (_, header, _) = complete(&v2_header(0x21, 0x21, &payload));
    assert_eq!(
        header,
        Header::Proxied {
            source: addr("[2001:db8::7]:51000"),
            destination: addr("[2001:db8::1]:443")
        }
    );
}

#[test]
fn local_unknown_unspecified_and_unix_headers_keep_the_tcp_peer() {
    let addresses = &v2_tcp4(&[])[16..];
    let cases = [
        // v2 LOCAL (a balancer's health check), with or without addresses.
        v2_header(0x20, 0x00, &[]),
        v2_header(0x20, 0x11, addresses),
        // v2 PROXY with AF_UNSPEC, and a unix socket's 216 bytes of paths.
        v2_header(0x21, 0x00, &[]),
        v2_header(0x21, 0x31, &[0; 216]),
        b"PROXY UNKNOWN\r\n".to_vec(),
        b"PROXY UNKNOWN 203.0.113.7 192.0.2.1 51000 443\r\n".to_vec(),
    ];
    for stream in cases {
        assert_eq!(complete(&stream).1, Header::Local, "{stream:?}");
    }
}

#[test]
fn bytes_that_leave_both_signatures_are_no_header_and_are_decided_early() {
    let cases: [(&[u8], usize); 8] = [
        (b"GET / HTTP/1.1\r\n", 1),
        (b"POST /write HTTP/1.1\r\n", 2),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 3),
        (b"PROPFIND / HTTP/1.1\r\n", 4),
        (b"PROXY\r\n", 6),
        (&[0x16, 0x03, 0x01, 0x02, 0x00], 1),
        (b"\r\n\r\nGET / HTTP/1.1\r\n", 5),
        (b"\r\n\r\n\0\r\nQUIT\r", 12),
    ];
    for (stream, decided_after) in cases {
        assert_eq!(
            read(stream),
            (Progress::Absent, decided_after),
            "{:?}",
            String::from_utf8_lossy(stream)
        );
    }
}

#[test]
fn every_proper_beginning_of_a_signature_is_undecided() {
    for sig in [V1_SIGNATURE, V2_SIGNATURE] {
        for n in 0..sig.len() {
            assert_eq!(decode(&sig[..n]), Progress::Undecided, "{n}");
        }
    }
    assert_eq!(
        decode(V1_SIGNATURE),
        Progress::Incomplete {
            version: Version::V1,
            need: NonZeroUsize::new(9).unwrap()
        }
    );
    assert_eq!(
        decode(V2_SIGNATURE),
        Progress::Incomplete {
            version: Version::V2,
            need: NonZeroUsize::new(4).unwrap()
        }
    );
}

#[test]
fn a_v1_line_without_its_end_in_107_bytes_is_too_long() {
    let mut line = b"PROXY TCP4 ".to_vec();
    line.resize(106, b'1');
    // 106 bytes: one more may still be the LF.
    assert!(matches!(decode(&line), Progress::Incomplete { need, .. } if need.get() == 1));
    line.push(b'1');
    assert!(matches!(
        decode(&line),
        Progress::Malformed {
            error: Malformed::TooLong(107),
            ..
        }
    ));
}

#[test]
fn a_v2_header_announcing_more_than_the_cap_is_refused_before_its_payload_is_read() {
    let at_cap = v2_header(0x21, 0x11, &[0; V2_MAX_PAYLOAD]);
    assert_eq!(
        decode(&at_cap[..16]),
        Progress::Incomplete {
            version: Version::V2,
            need: NonZeroUsize::new(V2_MAX_PAYLOAD).unwrap()
        }
    );
    let mut over = at_cap[..16].to_vec();
    over[14..16].copy_from_slice(&(V2_MAX_PAYLOAD as u16 + 1).to_be_bytes());
    assert_eq!(
        decode(&over),
        Progress::Malformed {
            version: Version::V2,
            error: Malformed::TooLong(16 + V2_MAX_PAYLOAD + 1)
        }
    );
}

#[test]
fn headers_that_started_and_are_not_valid_are_malformed() {
    let mut bad_version = v2_tcp4(&[]);
    bad_version[12] = 0x11;
    let cases: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 203.0.113.999 192.0.2.1 51000 443\r\n".to_vec(),
        b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n".to_vec(),
        b"PROXY TCP4 203.0.113.7 192.0.2.1 051000 443\r\n".to_vec(),
        b"PROXY TCP4 2001:db8::7 192.0.2.1 51000 443\r\n".to_vec(),
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\n".to_vec(),
        // The parser alone takes a space before a bare LF (found by fuzzing).
        b"PROXY UNKNOWN \n".to_vec(),
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443 \n".to_vec(),
        b"PROXY TCP4 203.0.113.7\r192.0.2.1 51000 443\r\n".to_vec(),
        b"PROXY UDP4 203.0.113.7 192.0.2.1 51000 443\r\n".to_vec(),
        // A line that ends before the shortest valid one.
        b"PROXY TCP4\r\nGET / HTTP/1.1\r\n".to_vec(),
        bad_version,
        // UDP over IPv4, and TCP announcing fewer bytes than its addresses take.
        v2_header(0x21, 0x12, &v2_tcp4(&[])[16..]),
        v2_header(0x21, 0x11, &[1, 2, 3, 4]),
        // A command that is neither LOCAL nor PROXY.
        v2_header(0x22, 0x11, &v2_tcp4(&[])[16..]),
    ];
    for stream in cases {
        assert!(
            matches!(malformed(&stream), Malformed::Invalid(_)),
            "{:?}",
            String::from_utf8_lossy(&stream)
        );
    }
}

#[test]
fn a_header_decodes_the_same_whole_or_in_steps() {
    let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nGET /".to_vec();
    for stream in [v1, v2_tcp4(&[0x04, 0x00, 0x01, 0x00])] {
        let (stepped, taken) = read(&stream);
        assert_eq!(decode(&stream), stepped);
        assert_eq!(decode(&stream[..taken]), stepped);
    }
}
