//! Hostile requests over raw sockets against a real gateway in front of a recording upstream
//! (issue 16): path tricks around an authenticated route, framing that could be read two
//! ways, look-alike and underscored header names, ambiguous hosts, slow clients, connection
//! limits, pipelining and keep-alive. Each class is a table of cases; after each table the
//! upstream's record is checked: it never received a request the client did not send as its
//! own, nor a framing header the gateway did not write.

// Fixtures and assertions: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tests::clock;
use tests::gateway::{GatewayBuilder, GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::{parse_answers, raw_exchange, request, Response};
use tests::jwt::{self, Key};
use tests::upstream::{FakeUpstream, RecordedRequest};
use tests::wait::{eventually, patience};

/// How long a raw exchange waits for more bytes before it takes the answer as complete.
const QUIET: Duration = Duration::from_secs(3);

/// A gateway with routes `admin` (`/admin`, JWT), `internal` (host `internal.example`, JWT),
/// `small` (`/small`, at most 16 bytes of body) and `open` (everything else), all to `up`.
struct Setup {
    gw: GatewayProcess,
    up: FakeUpstream,
    token: String,
    _dir: tempfile::TempDir,
}

fn policy(up: &FakeUpstream, jwks: &std::path::Path) -> String {
    format!(
        "authenticators:
  services:
    jwt: {{ jwks_file: {}, algorithms: [ES256] }}
pools:
  up:
    backends:
      - {{ address: {} }}
    {QUIET_HEALTH_CHECK}
routes:
  - name: admin
    match: {{ path_prefix: /admin }}
    pool: up
    auth: {{ any_of: [services] }}
  - name: internal
    match: {{ host: internal.example, path_prefix: / }}
    pool: up
    auth: {{ any_of: [services] }}
  - name: small
    match: {{ path_prefix: /small }}
    pool: up
    max_body_size: 16B
  - name: open
    match: {{ path_prefix: / }}
    pool: up
    timeouts: {{ request: 10s }}
",
        jwks.display(),
        up.addr
    )
}

fn setup_with(options: &[(&str, &str)]) -> Setup {
    let up = FakeUpstream::new().start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = Key::es256("k1").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwt::jwks_json(&[&key])).unwrap();
    let mut claims = jwt::claims("https://issuer.test", "gateway", "svc", 600);
    claims["roles"] = serde_json::json!([]);
    let token = key.sign(&claims).unwrap();
    let mut builder: GatewayBuilder = GatewayProcess::builder(&policy(&up, &jwks));
    for (k, v) in options {
        builder = builder.listener_option(k, v);
    }
    let gw = builder.start().unwrap();
    Setup {
        gw,
        up,
        token,
        _dir: dir,
    }
}

fn setup() -> Setup {
    setup_with(&[])
}

/// One request over its own connection, exactly these bytes; the first answer.
fn exchange(gw: &GatewayProcess, bytes: &[u8]) -> Response {
    let raw = raw_exchange(gw.addr, bytes, QUIET).unwrap();
    parse_answers(&raw).into_iter().next().unwrap_or_else(|| {
        panic!(
            "no answer to {:?}: {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&raw)
        )
    })
}

fn get(s: &Setup, target: &str) -> Response {
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.gw.addr
    );
    exchange(&s.gw, head.as_bytes())
}

/// What a backend that decodes, un-backslashes, merges slashes, resolves dot segments and
/// drops `;` parameters (a servlet container) would make of a target's path.
fn resolved(target: &str) -> String {
    let path = target.split('?').next().unwrap_or("");
    let mut decoded = Vec::new();
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                decoded.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                decoded.push(c);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// The upstream's record holds no framing the gateway did not write, and no underscored
/// or duplicated framing header.
fn assert_clean_framing(recorded: &[RecordedRequest]) {
    for r in recorded {
        let count = |n: &str| r.headers.iter().filter(|(k, _)| k == n).count();
        assert!(count("content-length") <= 1, "{r:?}");
        assert!(count("transfer-encoding") <= 1, "{r:?}");
        assert!(
            count("content-length") == 0 || count("transfer-encoding") == 0,
            "both framings reached the upstream: {r:?}"
        );
        for (k, v) in &r.headers {
            assert!(
                !k.contains('_'),
                "an underscored header reached the upstream: {r:?}"
            );
            if k == "content-length" {
                assert!(v.bytes().all(|b| b.is_ascii_digit()), "{r:?}");
            }
            if k == "transfer-encoding" {
                assert!(v.eq_ignore_ascii_case("chunked"), "{r:?}");
            }
        }
    }
}

fn metrics(gw: &GatewayProcess) -> String {
    request("GET", &format!("{}/metrics", gw.admin_url()), &[], None)
        .unwrap()
        .body
}

fn refusals(gw: &GatewayProcess, reason: &str) -> u64 {
    let needle = format!("gateway_refusals_total{{listener=\"public\",reason=\"{reason}\"}} ");
    metrics(gw)
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn path_tricks_around_an_authenticated_route_are_refused_or_authenticated() {
    let s = setup();
    assert_eq!(get(&s, "/public/control").status, 200, "control");
    assert_eq!(get(&s, "/admin/control").status, 401, "control");
    // Each of these is /admin/x to some backend; the gateway must see that too.
    let tricks = [
        "/%61dmin/x",
        "/adm%69n/x",
        "/%41DMIN/../admin/x",
        "//admin/x",
        "///admin//x",
        "/./admin/x",
        "/%2e/admin/x",
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/.%2E/admin/x",
        "/public/%2E./admin/x",
        "/public/a/b/../../../admin/x",
        "/public/./../admin/./x",
        "/public/..%2fadmin/x",
        "/public/..%2Fadmin/x",
        "/public/..%5cadmin/x",
        "/public/..%5Cadmin/x",
        "/public/..;/admin/x",
        "/public/.;x/../admin/x",
        "/public;/../admin/x",
        "/admin%2fx",
        "/public/%2e%2e%2fadmin/x",
        "/admin/../admin/x",
        "/public\\..\\admin/x",
    ];
    let mut walked = Vec::new();
    for t in tricks {
        let r = get(&s, t);
        if r.status != 400 && r.status != 401 {
            walked.push(format!("{t} -> {} {}", r.status, r.body));
        }
    }
    assert!(walked.is_empty(), "walked around /admin's JWT: {walked:#?}");
    let leaked: Vec<String> =
        s.up.recorded()
            .into_iter()
            .map(|r| r.path)
            .filter(|p| resolved(p).starts_with("/admin"))
            .collect();
    assert!(
        leaked.is_empty(),
        "the upstream received /admin paths: {leaked:?}"
    );
    // With a token, the normalised spelling is the authenticated route's.
    let with_token = format!(
        "GET /public/%2e%2e/%61dmin/x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        s.token
    );
    assert_eq!(exchange(&s.gw, with_token.as_bytes()).status, 200);
    assert_eq!(s.up.last_request().unwrap().path, "/admin/x");
    assert!(refusals(&s.gw, "escaped_slash") >= 5);
}

#[test]
fn the_upstream_receives_the_normalised_path_and_the_query_as_sent() {
    let s = setup();
    let cases = [
        ("/public/norm/./a//b/../c?x=1", "/public/norm/a/c?x=1"),
        ("/public/%7Euser/%41b%63", "/public/~user/Abc"),
        ("/public/caf%c3%a9?q=%2e%2e/", "/public/caf%C3%A9?q=%2e%2e/"),
        // Double-encoded: `%25` is the escape, `2e` plain text; nothing to decode.
        ("/public/double%252e%252e/x", "/public/double%252e%252e/x"),
        ("/public/trailing/.", "/public/trailing/"),
        ("/public/Case/Stays", "/public/Case/Stays"),
    ];
    for (sent, want) in cases {
        assert_eq!(get(&s, sent).status, 200, "{sent}");
        assert_eq!(s.up.last_request().unwrap().path, want, "{sent}");
    }
    for above in ["/..", "/public/../../x", "/%2e%2e/x"] {
        assert_eq!(get(&s, above).status, 400, "{above}");
    }
    for bad in ["/public/a%zz", "/public/a%4", "/public/a%00b"] {
        assert_eq!(get(&s, bad).status, 400, "{bad}");
    }
}

#[test]
fn encoded_slashes_stay_encoded_when_the_listener_keeps_them() {
    let s = setup_with(&[("escaped_slashes", "keep")]);
    assert_eq!(get(&s, "/public/a%2fb/c").status, 200);
    assert_eq!(s.up.last_request().unwrap().path, "/public/a%2Fb/c");
    // Kept encoded, `..%2F` is a segment of its own, not a step up.
    assert_eq!(get(&s, "/public/..%2Fx").status, 200);
    assert_eq!(s.up.last_request().unwrap().path, "/public/..%2Fx");
}

#[test]
fn framing_that_could_be_read_two_ways_is_refused_before_the_upstream() {
    let s = setup();
    let host = format!("Host: {}\r\n", s.gw.addr);
    let post = |marker: &str, headers: &str, body: &str| {
        format!("POST /public/{marker} HTTP/1.1\r\n{host}{headers}Connection: close\r\n\r\n{body}")
    };
    let cases = [
        (
            "cl-list",
            post("cl-list", "Content-Length: 5,5\r\n", "hello"),
            400,
        ),
        (
            "cl-list2",
            post("cl-list2", "Content-Length: 1000,1000\r\n", "hello"),
            400,
        ),
        (
            "cl-two",
            post(
                "cl-two",
                "Content-Length: 5\r\nContent-Length: 7\r\n",
                "hello!!",
            ),
            400,
        ),
        (
            "cl-plus",
            post("cl-plus", "Content-Length: +5\r\n", "hello"),
            400,
        ),
        (
            "cl-hex",
            post("cl-hex", "Content-Length: 0x5\r\n", "hello"),
            400,
        ),
        (
            "te-gzip",
            post(
                "te-gzip",
                "Transfer-Encoding: gzip, chunked\r\n",
                "0\r\n\r\n",
            ),
            501,
        ),
        (
            "te-twice",
            post(
                "te-twice",
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            501,
        ),
        (
            "te-identity",
            post("te-identity", "Transfer-Encoding: identity\r\n", "hello"),
            400,
        ),
        (
            "te-lookalike",
            post(
                "te-lookalike",
                "Content-Length: 5\r\nTransfer_Encoding: chunked\r\n",
                "hello",
            ),
            400,
        ),
        (
            "cl-lookalike",
            post(
                "cl-lookalike",
                "Content-Length: 5\r\nContent_Length: 0\r\n",
                "hello",
            ),
            400,
        ),
        (
            "conn-cl",
            post(
                "conn-cl",
                "Content-Length: 5\r\nConnection: Content-Length\r\n",
                "hello",
            ),
            400,
        ),
        // The smuggling seen from outside: behind a backend that maps `_` to `-`, this body
        // was a second request to a protected path.
        (
            "smuggle",
            post(
                "smuggle",
                "Content-Length: 44\r\nTransfer_Encoding: chunked\r\n",
                "0\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: h\r\n\r\n",
            ),
            400,
        ),
    ];
    for (marker, bytes, want) in &cases {
        let r = exchange(&s.gw, bytes.as_bytes());
        assert_eq!(r.status, *want, "{marker}: {}", r.body);
        assert_eq!(r.header("connection"), Some("close"), "{marker}");
    }
    let recorded = s.up.recorded();
    for (marker, _, _) in &cases {
        assert!(
            !recorded.iter().any(|r| r.path.ends_with(marker)),
            "{marker} reached the upstream"
        );
    }
    assert!(
        !recorded.iter().any(|r| r.path.contains("/admin")),
        "a smuggled request reached the upstream: {recorded:?}"
    );
    // Pingora refuses differing and unparsable lengths itself (a plain 400, not counted
    // here); the lists it would have taken are the gateway's.
    assert!(refusals(&s.gw, "bad_content_length") >= 2);
    assert!(refusals(&s.gw, "framing_lookalike") >= 3);
}

#[test]
fn framing_the_gateway_takes_reaches_the_upstream_in_one_form() {
    let s = setup();
    let host = format!("Host: {}\r\n", s.gw.addr);
    // Two equal lengths: sent on once.
    let r = exchange(
        &s.gw,
        format!("POST /public/cl-equal HTTP/1.1\r\n{host}Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").as_bytes(),
    );
    assert_eq!(r.status, 200);
    let got = s.up.last_request().unwrap();
    assert_eq!(got.path, "/public/cl-equal");
    assert_eq!(
        got.headers
            .iter()
            .filter(|(k, _)| k == "content-length")
            .count(),
        1
    );
    assert_eq!(got.body_len, 5);
    // Both framings: the chunks frame the body, Content-Length is dropped, and the
    // connection is closed after the answer (RFC 9112 §6.1), even though the client asked
    // to keep it.
    let raw = raw_exchange(
        s.gw.addr,
        format!("POST /public/te-cl HTTP/1.1\r\n{host}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /public/after HTTP/1.1\r\n{host}\r\n").as_bytes(),
        QUIET,
    )
    .unwrap();
    let answers = parse_answers(&raw);
    assert_eq!(answers.len(), 1, "{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].header("connection"), Some("close"));
    let got = s.up.last_request().unwrap();
    assert_eq!((got.path.as_str(), got.body_len), ("/public/te-cl", 5));
    assert_eq!(s.up.requests_for("/public/after"), 0);
    assert_clean_framing(&s.up.recorded());
}

#[test]
fn header_names_with_underscores_follow_the_listener_setting() {
    let head = |addr| {
        format!(
            "GET /public/u HTTP/1.1\r\nHost: {addr}\r\nX_Custom: 1\r\nX_Gateway_Identity: admin\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n"
        )
    };
    // drop (the default): none reaches the upstream.
    let s = setup();
    assert_eq!(exchange(&s.gw, head(s.gw.addr).as_bytes()).status, 200);
    let got = s.up.last_request().unwrap();
    assert!(got.headers.iter().all(|(k, _)| !k.contains('_')), "{got:?}");
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    // allow: ordinary names pass, look-alikes of the gateway's own headers never do.
    let s = setup_with(&[("headers_with_underscores", "allow")]);
    assert_eq!(exchange(&s.gw, head(s.gw.addr).as_bytes()).status, 200);
    let got = s.up.last_request().unwrap();
    assert_eq!(got.header("x_custom"), Some("1"));
    assert_eq!(got.header("x_gateway_identity"), None);
    assert_eq!(got.header("x_forwarded_for"), None);
    // reject: a 400 naming the header.
    let s = setup_with(&[("headers_with_underscores", "reject")]);
    let r = exchange(&s.gw, head(s.gw.addr).as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.body.contains("underscore"), "{}", r.body);
    assert_eq!(s.up.requests_for("/public/u"), 0);
}

#[test]
fn a_request_without_exactly_one_valid_host_is_refused_and_hosts_match_in_one_form() {
    let s = setup();
    let cases: [(&str, String, u16); 12] = [
        ("no Host", "GET /h HTTP/1.1\r\n".into(), 400),
        (
            "two Host",
            format!(
                "GET /h HTTP/1.1\r\nHost: {}\r\nHost: other.example\r\n",
                s.gw.addr
            ),
            400,
        ),
        (
            "a comma",
            "GET /h HTTP/1.1\r\nHost: a.example, internal.example\r\n".into(),
            400,
        ),
        (
            "userinfo",
            "GET /h HTTP/1.1\r\nHost: user@internal.example\r\n".into(),
            400,
        ),
        (
            "a space",
            "GET /h HTTP/1.1\r\nHost: a.example b\r\n".into(),
            400,
        ),
        (
            "a bad port",
            "GET /h HTTP/1.1\r\nHost: a.example:99999\r\n".into(),
            400,
        ),
        (
            "absolute-form against Host",
            "GET http://internal.example/h HTTP/1.1\r\nHost: a.example\r\n".into(),
            400,
        ),
        // The host-matched, authenticated route cannot be skipped by spelling.
        (
            "a trailing dot",
            "GET /h HTTP/1.1\r\nHost: internal.example.\r\n".into(),
            401,
        ),
        (
            "upper case",
            "GET /h HTTP/1.1\r\nHost: INTERNAL.Example\r\n".into(),
            401,
        ),
        (
            "a port",
            "GET /h HTTP/1.1\r\nHost: internal.example:8080\r\n".into(),
            401,
        ),
        (
            "absolute-form",
            "GET http://internal.example/h HTTP/1.1\r\nHost: internal.example\r\n".into(),
            401,
        ),
        (
            "HTTP/1.0 without Host",
            "GET /public/h10 HTTP/1.0\r\n".into(),
            200,
        ),
    ];
    for (name, head, want) in &cases {
        let r = exchange(&s.gw, format!("{head}Connection: close\r\n\r\n").as_bytes());
        assert_eq!(r.status, *want, "{name}: {}", r.body);
    }
    assert_eq!(s.up.requests_for("/h"), 0, "{:?}", s.up.recorded());
    // The upstream always gets a Host, even for an HTTP/1.0 client that sent none.
    let h10 = s.up.last_request().unwrap();
    assert_eq!(h10.path, "/public/h10");
    assert_eq!(h10.header("host"), Some(s.up.addr.to_string().as_str()));
}

#[test]
fn a_slowloris_client_is_cut_at_the_head_deadline_while_others_are_served() {
    let s = setup_with(&[("request_head_timeout", "2s")]);
    let deadline = Duration::from_secs(2);
    let mut slow = TcpStream::connect(s.gw.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = clock::now();
    slow.write_all(format!("GET /public/slow HTTP/1.1\r\nHost: {}\r\n", s.gw.addr).as_bytes())
        .unwrap();
    let mut served = Vec::new();
    let mut cut = None;
    let mut byte = [0u8; 1];
    // One header byte every 200 ms: each read is quick, the head never ends.
    for i in 0..100 {
        if clock::now().duration_since(start) > deadline + patience() {
            break;
        }
        if slow.write_all(b"a").is_err() {
            cut = Some(clock::now().duration_since(start));
            break;
        }
        match slow.read(&mut byte) {
            Ok(0) => {
                cut = Some(clock::now().duration_since(start));
                break;
            }
            Ok(_) => panic!("the slow client got an answer"),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut = Some(clock::now().duration_since(start));
                break;
            }
        }
        if i % 4 == 0 {
            served.push(get(&s, "/public/normal").status);
        }
    }
    let cut = cut.expect("the slowloris client was never cut");
    assert!(
        cut >= deadline,
        "cut after {cut:?}, before the {deadline:?} deadline"
    );
    assert!(
        served.len() >= 2 && served.iter().all(|&st| st == 200),
        "{served:?}"
    );
    assert_eq!(s.up.requests_for("/public/slow"), 0);
    assert_eq!(refusals(&s.gw, "head_timeout"), 1);

    // A connection that sends nothing at all is cut the same way.
    let mut silent = TcpStream::connect(s.gw.addr).unwrap();
    silent
        .set_read_timeout(Some(deadline + patience()))
        .unwrap();
    let start = clock::now();
    let n = silent.read(&mut byte).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(clock::now().duration_since(start) >= deadline - Duration::from_millis(100));
}

#[test]
fn a_slow_head_on_a_kept_connection_is_cut_by_its_first_byte_after_the_deadline() {
    let s = setup_with(&[("request_head_timeout", "1s")]);
    let deadline = Duration::from_secs(1);
    let mut c = TcpStream::connect(s.gw.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    c.write_all(format!("GET /public/first HTTP/1.1\r\nHost: {}\r\n\r\n", s.gw.addr).as_bytes())
        .unwrap();
    let n = eventually("the first answer", |_| match c.read(&mut buf) {
        Ok(n) => Ok(Some(n)),
        Err(_) => Ok(None),
    })
    .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The second head trickles, one byte every 200 ms.
    let start = clock::now();
    let mut cut = None;
    let trickle = format!(
        "GET /public/slow2 HTTP/1.1\r\nHost: {}\r\nX-Slow: {}",
        s.gw.addr,
        "a".repeat(200)
    );
    for b in trickle.bytes() {
        if clock::now().duration_since(start) > deadline + patience() {
            break;
        }
        if c.write_all(&[b]).is_err() {
            cut = Some(clock::now().duration_since(start));
            break;
        }
        match c.read(&mut buf) {
            Ok(0) => {
                cut = Some(clock::now().duration_since(start));
                break;
            }
            Ok(_) => panic!("the slow head got an answer"),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut = Some(clock::now().duration_since(start));
                break;
            }
        }
    }
    let cut = cut.expect("the slow second head was never cut");
    assert!(
        cut >= deadline,
        "cut after {cut:?}, before the {deadline:?} deadline"
    );
    assert_eq!(s.up.requests_for("/public/slow2"), 0);
    assert_eq!(refusals(&s.gw, "head_timeout"), 1);
}

#[test]
fn an_idle_keep_alive_connection_has_no_head_deadline_between_requests() {
    let s = setup_with(&[("request_head_timeout", "1s"), ("idle_timeout", "30s")]);
    let mut c = TcpStream::connect(s.gw.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET /public/ka HTTP/1.1\r\nHost: {}\r\n\r\n", s.gw.addr);
    let mut buf = [0u8; 4096];
    c.write_all(req.as_bytes()).unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle for longer than the head deadline: the connection stays, the next head is timed
    // from its own first byte.
    // The idling is what is under test, not a wait for a condition.
    std::thread::sleep(Duration::from_millis(1500));
    c.write_all(req.as_bytes()).unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(s.up.requests_for("/public/ka"), 2);
}

#[test]
fn a_body_that_stops_midway_is_cut_at_the_body_idle_timeout() {
    let s = setup_with(&[("body_idle_timeout", "1s")]);
    let mut c = TcpStream::connect(s.gw.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(1) + patience()))
        .unwrap();
    let start = clock::now();
    c.write_all(
        format!(
            "POST /public/stalled HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\nhalf",
            s.gw.addr
        )
        .as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let took = clock::now().duration_since(start);
    let answers = parse_answers(&raw);
    assert_eq!(
        answers.first().map(|a| a.status),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(refusals(&s.gw, "body_timeout"), 1);
}

#[test]
fn a_body_larger_than_the_route_takes_is_refused_with_413() {
    let s = setup();
    let host = format!("Host: {}\r\n", s.gw.addr);
    let declared = exchange(
        &s.gw,
        format!(
            "POST /small/a HTTP/1.1\r\n{host}Content-Length: 17\r\nConnection: close\r\n\r\n{}",
            "x".repeat(17)
        )
        .as_bytes(),
    );
    assert_eq!(declared.status, 413, "{}", declared.body);
    assert_eq!(s.up.requests_for("/small/a"), 0);
    let fits = exchange(
        &s.gw,
        format!(
            "POST /small/b HTTP/1.1\r\n{host}Content-Length: 16\r\nConnection: close\r\n\r\n{}",
            "x".repeat(16)
        )
        .as_bytes(),
    );
    assert_eq!(fits.status, 200);
    // Chunked, the limit holds as the body passes.
    let chunked = exchange(
        &s.gw,
        format!("POST /small/c HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\n{}\r\n10\r\n{}\r\n0\r\n\r\n", "x".repeat(16), "y".repeat(16)).as_bytes(),
    );
    assert_eq!(chunked.status, 413, "{}", chunked.body);
    assert!(refusals(&s.gw, "body_too_large") >= 2);
}

#[test]
fn connections_beyond_the_per_client_limit_are_refused_and_places_come_back() {
    let s = setup_with(&[("max_connections_per_client", "3")]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut c = TcpStream::connect(s.gw.addr).unwrap();
            // A first byte, so each connection is surely accepted and counted.
            c.write_all(b"G").unwrap();
            c
        })
        .collect();
    let refused = eventually("a fourth connection refused", |last| {
        let r = get(&s, "/public/fourth");
        *last = format!("{} {}", r.status, r.body);
        Ok((r.status == 503).then_some(r))
    })
    .unwrap();
    assert!(
        refused.body.contains("max_connections_per_client"),
        "{}",
        refused.body
    );
    drop(held);
    eventually("a place comes back", |last| {
        let r = get(&s, "/public/fifth");
        *last = r.status.to_string();
        Ok((r.status == 200).then_some(()))
    })
    .unwrap();
    assert!(refusals(&s.gw, "max_connections_per_client") >= 1);
}

#[test]
fn a_connection_carries_at_most_max_requests_per_connection() {
    let s = setup_with(&[("max_requests_per_connection", "3")]);
    let one = format!("GET /public/r HTTP/1.1\r\nHost: {}\r\n\r\n", s.gw.addr);
    let raw = raw_exchange(s.gw.addr, one.repeat(5).as_bytes(), QUIET).unwrap();
    let answers = parse_answers(&raw);
    assert_eq!(answers.len(), 3, "{:?}", String::from_utf8_lossy(&raw));
    assert_eq!(answers[2].header("connection"), Some("close"));
    assert!(answers[..2]
        .iter()
        .all(|a| a.header("connection") == Some("keep-alive")));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let s = setup();
    let host = format!("Host: {}\r\n", s.gw.addr);
    let raw = raw_exchange(
        s.gw.addr,
        format!("GET /public/p1 HTTP/1.1\r\n{host}\r\nPOST /public/p2 HTTP/1.1\r\n{host}Content-Length: 3\r\n\r\nabcGET /public/p3 HTTP/1.1\r\n{host}Connection: close\r\n\r\n").as_bytes(),
        QUIET,
    )
    .unwrap();
    let answers = parse_answers(&raw);
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 200, 200],
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    let order: Vec<String> =
        s.up.recorded()
            .into_iter()
            .map(|r| r.path)
            .filter(|p| p.starts_with("/public/"))
            .collect();
    assert_eq!(order, ["/public/p1", "/public/p2", "/public/p3"]);
    assert_eq!(answers[2].header("connection"), Some("close"));
}

#[test]
fn headers_named_in_connection_are_removed_and_the_request_served() {
    let s = setup();
    let r = exchange(
        &s.gw,
        format!("GET /public/hop HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive, X-Forwarded-For, X-Hop\r\nX-Forwarded-For: 6.6.6.6\r\nX-Hop: 1\r\nX-Kept: 2\r\nConnection: close\r\n\r\n", s.gw.addr).as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("connection"), Some("close"));
    let got = s.up.last_request().unwrap();
    assert_eq!(got.header("x-hop"), None);
    assert_eq!(got.header("x-kept"), Some("2"));
    // The client's own X-Forwarded-For was hop-by-hop: only the gateway's view remains.
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
}

#[test]
fn path_tricks_over_http2_meet_the_same_rules() {
    let up = FakeUpstream::new().start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = Key::es256("k1").unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, jwt::jwks_json(&[&key])).unwrap();
    let gw = GatewayProcess::builder(&policy(&up, &jwks))
        .h2c()
        .start()
        .unwrap();
    let client = tests::h2::h2c_client().unwrap();
    let base = format!("http://{}", gw.h2c_addr.unwrap());
    // The URL parser of the client resolves dot segments itself; escapes and slashes it sends.
    for (path, want) in [
        ("/%61dmin/x", 401),
        ("//admin/x", 401),
        ("/public/..%2fadmin/x", 400),
        ("/public/x", 200),
    ] {
        let r = client.get(format!("{base}{path}")).send().unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
    }
    assert!(up
        .recorded()
        .iter()
        .all(|r| !resolved(&r.path).starts_with("/admin")));
}

#[test]
fn every_request_the_upstream_saw_was_one_the_client_sent_as_its_own() {
    // A mix of everything above on one gateway: afterwards, the record holds only the
    // requests the clients meant, each framed once.
    let s = setup();
    let host = format!("Host: {}\r\n", s.gw.addr);
    let hostile = [
        format!("POST /public/m1 HTTP/1.1\r\n{host}Content-Length: 44\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: h\r\n\r\n"),
        format!("POST /public/m2 HTTP/1.1\r\n{host}Content-Length: 6,6\r\n\r\n0\r\n\r\nG"),
        format!("POST /public/m3 HTTP/1.1\r\n{host}Content-Length: 0\r\nContent-Length: 40\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: h\r\n\r\n"),
        format!("POST /public/m4 HTTP/1.1\r\n{host}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: h\r\n\r\n"),
        format!("GET /public/m5 HTTP/1.1\r\n{host}Content_Length: 40\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: h\r\n\r\n"),
    ];
    for h in &hostile {
        let _ = raw_exchange(s.gw.addr, h.as_bytes(), Duration::from_millis(500)).unwrap();
    }
    let recorded = s.up.recorded();
    assert!(
        recorded.iter().all(|r| !r.path.contains("smuggled")),
        "{recorded:?}"
    );
    assert_clean_framing(&recorded);
}

#[test]
fn a_forwarded_for_is_believed_from_trusted_proxies_only() {
    let head = |addr| {
        format!(
            "GET /public/f HTTP/1.1\r\nHost: {addr}\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n"
        )
    };
    // No trusted proxies (the default): the caller's own header is dropped.
    let s = setup();
    assert_eq!(exchange(&s.gw, head(s.gw.addr).as_bytes()).status, 200);
    let got = s.up.last_request().unwrap();
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"), "{got:?}");
    let port = s.gw.addr.port().to_string();
    assert_eq!(got.header("x-forwarded-port"), Some(port.as_str()));
    assert_eq!(
        got.header("x-forwarded-host"),
        Some(s.gw.addr.to_string().as_str())
    );
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    // From a trusted proxy: the header is kept, the proxy appended.
    let s = setup_with(&[("trusted_proxies", "[127.0.0.0/8]")]);
    assert_eq!(exchange(&s.gw, head(s.gw.addr).as_bytes()).status, 200);
    let got = s.up.last_request().unwrap();
    assert_eq!(got.header("x-forwarded-for"), Some("6.6.6.6, 127.0.0.1"));
}
