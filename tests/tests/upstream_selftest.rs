//! Checks of the fake upstream (`tests::upstream`) itself, with raw sockets where the framing
//! matters and `tests::http` elsewhere: behaviours, keep-alive, body counting and drop.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tests::http;
use tests::upstream::{Behaviour, FakeUpstream};
use tests::{clock, eventually};

const MIB: usize = 1024 * 1024;

/// A raw connection with generous timeouts, so a broken upstream fails the test, not hangs it.
fn connect(up: &FakeUpstream) -> TcpStream {
    let s = TcpStream::connect(up.addr).expect("connecting to the upstream");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    s
}

/// Reads one answer: status, headers (lower-case names) and a `content-length` body.
fn read_answer(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 64 * 1024, "answer head too long");
        s.read_exact(&mut byte).expect("reading the answer head");
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).expect("UTF-8 answer head");
    let mut lines = text.trim_end().split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| l.split_once(':').expect("header line with a colon"))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len = header(&headers, "content-length")
        .map_or(0, |v| v.parse().expect("numeric content-length"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("reading the answer body");
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Everything the server sends until it closes; `Err` kind if the connection was reset.
fn read_all(s: &mut TcpStream) -> Result<Vec<u8>, ErrorKind> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).map(|_| out).map_err(|e| e.kind())
}

#[test]
fn ok_answers_with_the_configured_body_size_and_headers() {
    let up = FakeUpstream::new()
        .body_size(1024)
        .name("b1")
        .start()
        .unwrap();
    let r = http::request(
        "GET",
        &format!("{}/x?y=1", up.url()),
        &[("x-request-id", "req-7"), ("X-Custom", "v")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1024);
    assert!(r.body.starts_with("okok"), "{}", &r.body[..16]);
    assert_eq!(r.header("content-length"), Some("1024"));
    assert_eq!(r.header("x-upstream"), Some("b1"));
    assert_eq!(r.header("x-request-id"), Some("req-7"));
    assert_eq!(up.requests(), 1);
    let last = up.last_request().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("GET", "/x?y=1")
    );
    assert_eq!(last.header("x-custom"), Some("v"));
    assert_eq!(last.body_len, 0);
}

#[test]
fn the_default_answer_is_200_with_a_two_byte_body() {
    let up = FakeUpstream::new().start().unwrap();
    let r = http::request("GET", &format!("{}/", up.url()), &[], None).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(r.header("x-upstream"), Some("upstream"));
    assert_eq!(r.header("x-request-id"), None);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection_until_close_is_asked() {
    let up = FakeUpstream::new().body_size(10).start().unwrap();
    let mut s = connect(&up);
    for i in 0..2 {
        write!(
            s,
            "GET /r{i} HTTP/1.1\r\nHost: x\r\nx-request-id: id-{i}\r\n\r\n"
        )
        .unwrap();
        let (status, headers, body) = read_answer(&mut s);
        assert_eq!((status, body.len()), (200, 10));
        assert_eq!(
            header(&headers, "x-request-id"),
            Some(format!("id-{i}").as_str())
        );
        assert_eq!(header(&headers, "connection"), None);
    }
    assert_eq!((up.connections(), up.requests()), (1, 2));
    s.write_all(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, headers, _) = read_answer(&mut s);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(read_all(&mut s), Ok(Vec::new()), "closed after the answer");
    assert_eq!((up.connections(), up.requests()), (1, 3));
}

#[test]
fn fail_times_resets_the_first_connections_then_answers() {
    let up = FakeUpstream::new().fail_times(2).start().unwrap();
    for i in 1..=2 {
        let mut s = connect(&up);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        match read_all(&mut s) {
            Ok(bytes) => assert!(bytes.is_empty(), "connection {i} got {bytes:?}"),
            Err(kind) => assert_eq!(kind, ErrorKind::ConnectionReset, "connection {i}"),
        }
        assert_eq!(up.requests(), i);
    }
    let r = http::request("GET", &format!("{}/", up.url()), &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!((up.connections(), up.requests()), (3, 3));
}

#[test]
fn reset_sends_a_rst_after_the_request_head() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Reset)
        .start()
        .unwrap();
    let mut s = connect(&up);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_all(&mut s), Err(ErrorKind::ConnectionReset));
    assert_eq!(up.requests(), 1);
}

#[test]
fn close_sends_a_fin_without_any_answer() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Close)
        .start()
        .unwrap();
    let mut s = connect(&up);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_all(&mut s), Ok(Vec::new()));
    assert_eq!(up.requests(), 1);
}

#[test]
fn hang_never_answers_and_drop_still_returns_promptly() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Hang)
        .start()
        .unwrap();
    let addr = up.addr;
    let mut s = connect(&up);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let start = clock::now();
    let mut buf = [0u8; 64];
    let err = s
        .read(&mut buf)
        .expect_err("a hanging upstream sends nothing");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(290),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(up.requests(), 1);

    let start = clock::now();
    drop(up);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(
        read_all(&mut s),
        Ok(Vec::new()),
        "drop shuts the connection down"
    );
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

#[test]
fn slow_answers_only_after_its_delay() {
    let delay = Duration::from_millis(400);
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Slow(delay))
        .start()
        .unwrap();
    let start = clock::now();
    let r = http::request("GET", &format!("{}/", up.url()), &[], None).unwrap();
    let took = start.elapsed();
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert!(took >= delay, "answered after {took:?}");
}

#[test]
fn status_answers_its_code_until_the_behaviour_is_changed() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::Status(503))
        .name("b2")
        .start()
        .unwrap();
    let url = format!("{}/", up.url());
    let r = http::request("GET", &url, &[("x-request-id", "r1")], None).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-upstream"), Some("b2"));
    assert_eq!(r.header("x-request-id"), Some("r1"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    up.set_behaviour(Behaviour::Ok);
    let r = http::request("GET", &url, &[], None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(up.requests(), 2);
}

#[test]
fn fail_every_answers_its_status_to_every_nth_request_and_ok_to_the_others() {
    let up = FakeUpstream::new()
        .behaviour(Behaviour::FailEvery {
            every: 4,
            status: 500,
        })
        .start()
        .unwrap();
    let url = format!("{}/", up.url());
    let statuses: Vec<u16> = (0..8)
        .map(|_| http::request("GET", &url, &[], None).unwrap().status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 500, 200, 200, 200, 500]);
}

#[test]
fn echo_describes_the_request_it_received() {
    let up = FakeUpstream::new().start().unwrap();
    let r = http::request(
        "POST",
        &format!("{}/echo?a=1", up.url()),
        &[("x-request-id", "e1"), ("X-Foo", "bar")],
        Some(b"hello"),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-request-id"), Some("e1"));
    let j = r.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["path"], "/echo?a=1");
    assert_eq!(j["headers"]["x-foo"], "bar");
    assert_eq!(j["body_len"], 5);
    let last = up.last_request().unwrap();
    assert_eq!((last.body_len, last.header("x-foo")), (5, Some("bar")));
    assert_eq!(up.body_bytes(), 5);
}

#[test]
fn expect_100_continue_gets_an_interim_answer_before_the_body() {
    let up = FakeUpstream::new().start().unwrap();
    let mut s = connect(&up);
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let (status, _, body) = read_answer(&mut s);
    assert_eq!((status, body.len()), (100, 0));
    s.write_all(b"abc").unwrap();
    let (status, _, body) = read_answer(&mut s);
    assert_eq!(status, 200);
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["body_len"], 3);
}

#[test]
fn a_malformed_request_head_gets_400() {
    let up = FakeUpstream::new().start().unwrap();
    let mut s = connect(&up);
    s.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let (status, headers, _) = read_answer(&mut s);
    assert_eq!(status, 400);
    assert_eq!(header(&headers, "connection"), Some("close"));
}

#[test]
fn a_20_mb_chunked_body_is_counted_exactly() {
    let total = 20 * MIB;
    let up = FakeUpstream::new().start().unwrap();
    let mut s = connect(&up);
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // Uneven chunk sizes, so chunk boundaries fall everywhere relative to the server's reads.
    let data = vec![b'z'; 100_000];
    let sizes = [65_536, 1, 4_097, 100_000, 333];
    let mut sent = 0;
    for size in sizes.iter().cycle() {
        if sent == total {
            break;
        }
        let n = (*size).min(total - sent);
        write!(s, "{n:x}\r\n").unwrap();
        s.write_all(&data[..n]).unwrap();
        s.write_all(b"\r\n").unwrap();
        sent += n;
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    let (status, _, body) = read_answer(&mut s);
    assert_eq!(status, 200);
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["body_len"], total);
    assert_eq!(up.body_bytes(), total as u64);
    assert_eq!(up.last_request().unwrap().body_len, total as u64);
}

#[test]
fn body_bytes_grows_while_the_client_is_still_sending() {
    let total = 2 * MIB;
    let up = FakeUpstream::new().start().unwrap();
    let mut s = connect(&up);
    write!(
        s,
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    let data = vec![b'q'; MIB];
    s.write_all(&data).unwrap();
    let seen = eventually("the first MiB counted by the upstream", |last| {
        let n = up.body_bytes();
        *last = format!("{n} bytes");
        Ok((n >= MIB as u64).then_some(n))
    })
    .unwrap();
    assert_eq!(seen, MIB as u64, "only the first MiB was sent");
    assert_eq!(
        up.last_request().unwrap().body_len,
        0,
        "body not finished yet"
    );
    s.write_all(&data).unwrap();
    let (status, _, _) = read_answer(&mut s);
    assert_eq!(status, 200);
    assert_eq!(up.body_bytes(), total as u64);
    assert_eq!(up.last_request().unwrap().body_len, total as u64);
}
