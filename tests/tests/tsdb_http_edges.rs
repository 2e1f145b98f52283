//! The HTTP edges of `tsdb-backend`: every bad input gets a clear 400 (or 413/404), and
//! nothing stored before is lost. Each test starts its own node with a known good batch
//! (`good`, 10 points) and checks that batch after every bad request.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use tests::http::{self, Method, Response};
use tests::TsdbProcess;

const DB: &str = "d";
const GOOD_POINTS: u64 = 10;

/// A node with database `d` and the good batch in it.
struct Node {
    p: TsdbProcess,
}

impl Node {
    fn start() -> Node {
        Node::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Node {
        let mut b = TsdbProcess::builder().arg("--create-database").arg(DB);
        for a in args {
            b = b.arg(*a);
        }
        let node = Node {
            p: b.start().expect("starting tsdb-backend"),
        };
        let body: String = (0..GOOD_POINTS)
            .map(|i| format!("good,host=h{i} v={i}i {}\n", 1_000_000_000 + i))
            .collect();
        let (status, text) = http::write(node.p.addr, DB, &body, None).expect("good write");
        assert_eq!(status, 204, "the good batch is refused: {text}");
        node.assert_good_intact("after writing it");
        node
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.p.url())
    }

    /// `POST /write?<qs>` with raw bytes and extra headers.
    fn write_raw(&self, qs: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        http::request(
            "POST",
            &self.url(&format!("/write?{qs}")),
            headers,
            Some(body),
        )
        .expect("write reaches the node")
    }

    /// `POST /write?db=d` of a text body.
    fn write(&self, body: &str) -> Response {
        self.write_raw(&format!("db={DB}"), &[], body.as_bytes())
    }

    /// `SELECT count(<field>) FROM <m>`: 0 when nothing is stored.
    fn count(&self, m: &str, field: &str) -> u64 {
        let q = format!("SELECT count({field}) FROM {m}");
        let (status, json) =
            http::query(self.p.addr, Some(DB), &q, None, Method::Get).expect("query reaches node");
        assert_eq!(status, 200, "{q}: {json}");
        let result = &json["results"][0];
        assert!(result.get("error").is_none(), "{q}: {json}");
        match result["series"].as_array() {
            None => 0,
            Some(series) => series[0]["values"][0][1]
                .as_u64()
                .unwrap_or_else(|| panic!("{q}: count is not a number: {json}")),
        }
    }

    /// The node is up and the good batch is whole.
    fn assert_good_intact(&self, after: &str) {
        assert_eq!(
            http::ping(self.p.addr).ok(),
            Some(204),
            "node not answering /ping {after}\nlog:\n{}",
            self.p.log_tail(3000)
        );
        assert_eq!(
            self.count("good", "v"),
            GOOD_POINTS,
            "the good batch is not whole {after}"
        );
    }
}

/// The `error` text of an InfluxDB-style error body.
fn error_of(r: &Response) -> String {
    match r.json().get("error").and_then(Value::as_str) {
        Some(e) => e.to_owned(),
        None => panic!(
            "no {{\"error\": ...}} in a {} answer: {:?}",
            r.status, r.body
        ),
    }
}

/// Asserts a 400 whose error contains every needle.
fn assert_400(r: &Response, what: &str, needles: &[&str]) -> String {
    assert_eq!(
        r.status, 400,
        "{what}: expected 400, got {}: {}",
        r.status, r.body
    );
    let e = error_of(r);
    for n in needles {
        assert!(e.contains(n), "{what}: error {e:?} does not contain {n:?}");
    }
    e
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

// ---------------------------------------------------------------------------------------------
// Malformed line protocol

#[test]
fn a_truncated_body_is_a_partial_write_naming_the_cut_line_and_keeping_the_good_one() {
    let node = Node::start();
    let r = node.write("cpu,host=a value=1 1000\ncpu,host=b val");
    let e = assert_400(&r, "truncated body", &["partial write", "cpu,host=b val"]);
    assert!(
        e.contains("dropped=1"),
        "one line dropped, the error says: {e}"
    );
    assert_eq!(node.count("cpu", "value"), 1, "the complete line is kept");
    node.assert_good_intact("after a truncated body");

    // Cut inside a string field and inside the tag set, too.
    for (body, bad) in [
        (
            "cpu,host=c value=3 3000\ncpu,host=d s=\"unterminated",
            "cpu,host=d s=",
        ),
        ("cpu,host=e value=5 5000\ncpu,ho", "cpu,ho"),
    ] {
        let r = node.write(body);
        assert_400(&r, body, &["partial write", bad]);
        node.assert_good_intact(&format!("after {body:?}"));
    }
    assert_eq!(node.count("cpu", "value"), 3);
}

#[test]
fn invalid_utf8_in_one_line_is_refused_naming_it_and_the_other_lines_are_kept() {
    let node = Node::start();
    let mut body = b"utf,host=a v=1i 1000\nutf,host=b v=2i,s=\"ab".to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(b"cd\" 2000\nutf,host=c v=3i 3000\n");
    let r = node.write_raw(&format!("db={DB}"), &[], &body);
    assert_400(
        &r,
        "invalid UTF-8",
        &["partial write", "invalid UTF-8", "utf,host=b", "dropped=1"],
    );
    assert_eq!(node.count("utf", "v"), 2, "the two valid lines are kept");
    node.assert_good_intact("after invalid UTF-8");

    // Invalid UTF-8 in the measurement name of the only line: nothing stored.
    let r = node.write_raw(&format!("db={DB}"), &[], b"bad\xc3(,host=a v=1i 1000\n");
    assert_400(&r, "invalid UTF-8 only line", &["invalid UTF-8"]);
    node.assert_good_intact("after a lone invalid UTF-8 line");
}

#[test]
fn nan_and_infinite_values_are_refused_as_invalid() {
    let node = Node::start();
    for (value, kind) in [
        ("NaN", "invalid number"),
        ("-Inf", "invalid number"),
        ("-NaN", "invalid number"),
        // InfluxDB decides the type by the first byte: `I` is not a number, so this one is
        // an invalid boolean there.
        ("Inf", "invalid"),
        ("+Inf", "invalid"),
        ("inf", "invalid"),
    ] {
        let line = format!("num,host=a v={value} 1000");
        let r = node.write(&line);
        assert_400(&r, &line, &["unable to parse", &line, kind]);
        assert_eq!(node.count("num", "v"), 0, "{line}: nothing may be stored");
        node.assert_good_intact(&format!("after {line}"));
    }
}

#[test]
fn timestamps_out_of_range_are_refused_and_the_extremes_inside_are_kept() {
    let node = Node::start();
    for (precision, ts, needle) in [
        ("ns", "9223372036854775807", "time outside range"),
        ("ns", "9223372036854775808", "value out of range"),
        ("ns", "-9223372036854775808", "time outside range"),
        // Overflows i64 when scaled to nanoseconds.
        ("s", "10000000000", "time outside range"),
        ("s", "-10000000000", "time outside range"),
        ("ms", "9223372036855", "time outside range"),
        ("h", "2562048", "time outside range"),
    ] {
        let line = format!("ts,host=a v=1i {ts}");
        let r = node.write_raw(
            &format!("db={DB}&precision={precision}"),
            &[],
            line.as_bytes(),
        );
        assert_400(&r, &format!("{line} precision={precision}"), &[needle]);
        assert_eq!(node.count("ts", "v"), 0, "{line}: nothing may be stored");
        node.assert_good_intact(&format!("after {line} precision={precision}"));
    }
    // The largest representable times are fine.
    for (precision, ts) in [("ns", "9223372036854775806"), ("s", "9223372036")] {
        let line = format!("ts,host={precision} v=1i {ts}");
        let r = node.write_raw(
            &format!("db={DB}&precision={precision}"),
            &[],
            line.as_bytes(),
        );
        assert_eq!(r.status, 204, "{line} precision={precision}: {}", r.body);
    }
    assert_eq!(node.count("ts", "v"), 2);
}

#[test]
fn an_unknown_precision_is_refused() {
    let node = Node::start();
    for p in ["x", "sec", "NS"] {
        let r = node.write_raw(&format!("db={DB}&precision={p}"), &[], b"prec v=1i 1\n");
        assert_400(&r, &format!("precision={p}"), &["invalid precision"]);
        assert_eq!(node.count("prec", "v"), 0);
        node.assert_good_intact(&format!("after precision={p}"));
    }
}

#[test]
fn a_field_type_conflict_across_requests_is_a_partial_write_and_keeps_the_earlier_data() {
    let node = Node::start();
    let r = node.write("conf,host=a v=1i 1000");
    assert_eq!(r.status, 204, "{}", r.body);
    let r = node.write("conf,host=a v=1.5 2000");
    let e = assert_400(&r, "float after integer", &["dropped=1"]);
    assert!(
        e.starts_with("partial write: field type conflict"),
        "error: {e}"
    );
    // A mixed batch: the good point is kept, the conflicting one dropped.
    let r = node.write("conf,host=b v=2i 3000\nconf,host=c v=\"s\" 4000");
    let e = assert_400(&r, "string after integer", &["dropped=1"]);
    assert!(
        e.starts_with("partial write: field type conflict"),
        "error: {e}"
    );

    let (status, json) = http::query(
        node.p.addr,
        Some(DB),
        "SELECT v FROM conf",
        Some("ns"),
        Method::Get,
    )
    .expect("query");
    assert_eq!(status, 200);
    assert_eq!(
        json["results"][0]["series"][0]["values"],
        json!([[1000, 1], [3000, 2]]),
        "the earlier integers are intact: {json}"
    );
    node.assert_good_intact("after type conflicts");
}

// ---------------------------------------------------------------------------------------------
// Sizes and gzip

#[test]
fn a_five_megabyte_string_field_is_stored_or_refused_cleanly_never_a_crash() {
    let node = Node::start();
    let big = "x".repeat(5 << 20);
    let line = format!("huge,host=a s=\"{big}\",v=1i 1000\n");
    let r = node.write(&line);
    eprintln!("a 5 MB string field: {} {:.200}", r.status, r.body);
    match r.status {
        204 => {
            let (status, json) = http::query(
                node.p.addr,
                Some(DB),
                "SELECT s FROM huge",
                None,
                Method::Get,
            )
            .expect("query");
            assert_eq!(status, 200);
            let stored = json["results"][0]["series"][0]["values"][0][1]
                .as_str()
                .unwrap_or_default();
            assert!(
                stored == big,
                "the 5 MB string comes back changed ({} bytes)",
                stored.len()
            );
        }
        400 => {
            let e = error_of(&r);
            assert!(!e.is_empty(), "a 400 must say why");
            assert_eq!(node.count("huge", "v"), 0);
        }
        other => panic!(
            "a 5 MB line within the body limit: {other}: {:.300}",
            r.body
        ),
    }
    node.assert_good_intact("after a 5 MB line");
    let r = node.write("after_huge v=1i 1");
    assert_eq!(r.status, 204, "the node still takes writes: {}", r.body);
}

/// `POST /write?db=d` over a raw socket (see [`http::raw_request`]): the node may answer
/// 413 before the whole body is sent, which `ureq` reports as a broken pipe.
fn raw_write(node: &Node, headers: &[(&str, &str)], body: &[u8]) -> Response {
    http::raw_request(
        node.p.addr,
        "POST",
        &format!("/write?db={DB}"),
        headers,
        body,
    )
    .expect("an answer to an oversized write")
}

/// `data` in `chunk`-byte chunks of the chunked transfer coding.
fn chunked(data: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / chunk * 10 + 8);
    for c in data.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn bodies_over_max_body_size_are_413_plain_chunked_and_as_gzip_bombs() {
    let node = Node::start_with(&["--max-body-size", "1048576"]);
    let too_large = json!({"error": "http: request body too large"});

    // Plain, with Content-Length: 2 MB of valid lines.
    let line = "big,host=a v=1i 1000\n";
    let body = line.repeat((2 << 20) / line.len());
    let len = body.len().to_string();
    let r = raw_write(&node, &[("Content-Length", &len)], body.as_bytes());
    assert_eq!(r.status, 413, "2 MB body: {}", r.body);
    assert_eq!(r.json(), too_large);
    assert_eq!(node.count("big", "v"), 0);
    node.assert_good_intact("after a 2 MB body");

    // Chunked, so the limit is found while reading.
    let r = raw_write(
        &node,
        &[("Transfer-Encoding", "chunked")],
        &chunked(body.as_bytes(), 64 * 1024),
    );
    assert_eq!(r.status, 413, "chunked 2 MB body: {}", r.body);
    assert_eq!(r.json(), too_large);
    assert_eq!(node.count("big", "v"), 0);
    node.assert_good_intact("after a chunked 2 MB body");

    // A gzip bomb: 8 KiB on the wire, 8 MiB inflated.
    let bomb = gzip(&vec![b'a'; 8 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let r = node.write_raw(&format!("db={DB}"), &[("Content-Encoding", "gzip")], &bomb);
    assert_eq!(r.status, 413, "gzip bomb: {}", r.body);
    assert_eq!(r.json(), too_large);
    node.assert_good_intact("after a gzip bomb");

    // Just under the limit is fine, plain and gzipped.
    let lines: String = (0..20_000)
        .map(|i| format!("under,host=a v={i}i {i}\n"))
        .collect();
    assert!(lines.len() < 1 << 20, "{}", lines.len());
    let r = node.write(&lines);
    assert_eq!(r.status, 204, "{} bytes: {}", lines.len(), r.body);
    let r = node.write_raw(
        &format!("db={DB}"),
        &[("Content-Encoding", "gzip")],
        &gzip(lines.as_bytes()),
    );
    assert_eq!(r.status, 204, "gzipped {} bytes: {}", lines.len(), r.body);
    assert_eq!(node.count("under", "v"), 20_000);
    node.assert_good_intact("after writes under the limit");
}

#[test]
fn gzip_bodies_are_inflated_and_corrupt_gzip_is_refused() {
    let node = Node::start();
    let body = "gz,host=a v=1i 1000\ngz,host=b v=2i 2000\ngz,host=c v=3i 3000\n";
    let packed = gzip(body.as_bytes());
    let gz = [("Content-Encoding", "gzip")];
    let r = node.write_raw(&format!("db={DB}"), &gz, &packed);
    assert_eq!(r.status, 204, "gzip body: {}", r.body);
    assert_eq!(node.count("gz", "v"), 3);
    // The header value is case-insensitive.
    let r = node.write_raw(
        &format!("db={DB}"),
        &[("Content-Encoding", "GZIP")],
        &gzip(b"gz,host=d v=4i 4000\n"),
    );
    assert_eq!(r.status, 204, "Content-Encoding: GZIP: {}", r.body);
    assert_eq!(node.count("gz", "v"), 4);

    let mut flipped = packed.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let mut not_deflate = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    not_deflate.extend_from_slice(b"this is not deflate data at all");
    for (what, bytes) in [
        ("plain text labelled gzip", body.as_bytes().to_vec()),
        ("gzip header, garbage after it", not_deflate),
        ("gzip cut in half", packed[..packed.len() / 2].to_vec()),
        ("gzip with a flipped byte", flipped),
        ("empty body labelled gzip", Vec::new()),
    ] {
        let r = node.write_raw(&format!("db={DB}"), &gz, &bytes);
        assert_400(&r, what, &["gzip"]);
        assert_eq!(node.count("gz", "v"), 4, "{what}: nothing may be stored");
        node.assert_good_intact(&format!("after {what}"));
    }
}

#[test]
fn writes_without_a_database_or_to_an_unknown_one_are_refused() {
    let node = Node::start();
    let r = node.write_raw("", &[], b"nodb v=1i 1\n");
    assert_400(&r, "no db parameter", &["database is required"]);
    let r = node.write_raw("db=", &[], b"nodb v=1i 1\n");
    assert_400(&r, "empty db parameter", &["database is required"]);
    let r = node.write_raw("db=nope", &[], b"nodb v=1i 1\n");
    assert_eq!(r.status, 404, "unknown database: {}", r.body);
    assert!(
        error_of(&r).contains("database not found"),
        "unknown database: {}",
        r.body
    );
    node.assert_good_intact("after writes to missing databases");
}

// ---------------------------------------------------------------------------------------------
// The 2.x write path

#[test]
fn the_v2_write_path_maps_buckets_to_databases() {
    let node = Node::start();
    let auth = [("Authorization", "Token abc")];
    let r = http::request(
        "POST",
        &node.url(&format!("/api/v2/write?bucket={DB}&org=x&precision=s")),
        &auth,
        Some(b"v2m,host=a v=1i 1600000000\n"),
    )
    .expect("v2 write");
    assert_eq!(r.status, 204, "v2 write: {}", r.body);
    // `bucket=db/rp` names the database too.
    let r = http::request(
        "POST",
        &node.url(&format!(
            "/api/v2/write?bucket={DB}%2Fautogen&org=x&precision=s"
        )),
        &auth,
        Some(b"v2m,host=b v=2i 1600000001\n"),
    )
    .expect("v2 write with rp");
    assert_eq!(r.status, 204, "v2 write to db/rp: {}", r.body);
    // A policy the database lacks is a bucket that does not exist, not the default policy.
    let r = http::request(
        "POST",
        &node.url(&format!(
            "/api/v2/write?bucket={DB}%2Fnope&org=x&precision=s"
        )),
        &auth,
        Some(b"v2m,host=c v=3i 1600000002\n"),
    )
    .expect("v2 write with an unknown rp");
    assert_eq!(r.status, 404, "v2 write to db/nope: {}", r.body);
    assert!(r.body.contains("not found"), "{}", r.body);
    let (status, json) = http::query(
        node.p.addr,
        Some(DB),
        "SELECT v FROM v2m",
        Some("s"),
        Method::Get,
    )
    .expect("query");
    assert_eq!(status, 200);
    assert_eq!(
        json["results"][0]["series"][0]["values"],
        json!([[1_600_000_000i64, 1], [1_600_000_001i64, 2]]),
        "precision=s is honoured: {json}"
    );

    let r = http::request(
        "POST",
        &node.url("/api/v2/write?bucket=nope&org=x&precision=s"),
        &auth,
        Some(b"v2m,host=a v=1i 1600000000\n"),
    )
    .expect("v2 write to an unknown bucket");
    assert_eq!(r.status, 404, "unknown bucket: {}", r.body);
    let j = r.json();
    assert!(
        j["code"].is_string() && j["message"].as_str().is_some_and(|m| m.contains("nope")),
        "a 2.x error body has code and message naming the bucket: {}",
        r.body
    );

    let r = http::request(
        "POST",
        &node.url("/api/v2/write?org=x"),
        &auth,
        Some(b"v2m v=1i 1\n"),
    )
    .expect("v2 write without bucket");
    assert_eq!(r.status, 400, "missing bucket: {}", r.body);
    assert!(r.json()["code"].is_string(), "{}", r.body);
    node.assert_good_intact("after v2 writes");
}

// ---------------------------------------------------------------------------------------------
// Ping, health, metrics

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

#[test]
fn ping_health_and_metrics_answer() {
    let node = Node::start();
    let r = http::request("GET", &node.url("/ping"), &[], None).expect("GET /ping");
    assert_eq!(r.status, 204);
    assert!(
        r.header("x-influxdb-version")
            .is_some_and(|v| !v.is_empty()),
        "X-Influxdb-Version missing: {:?}",
        r.headers
    );
    let r = http::request("HEAD", &node.url("/ping"), &[], None).expect("HEAD /ping");
    assert_eq!(r.status, 204);

    let r = http::request("GET", &node.url("/health"), &[], None).expect("GET /health");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "pass", "{}", r.body);

    let get_metrics = || {
        let r = http::request("GET", &node.url("/metrics"), &[], None).expect("GET /metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/plain")),
            "{:?}",
            r.headers
        );
        r.body
    };
    let before = get_metrics();
    let written_before = metric(&before, "tsdb_points_written_total")
        .unwrap_or_else(|| panic!("no tsdb_points_written_total in:\n{before}"));
    let wal_before = metric(&before, "tsdb_wal_bytes")
        .unwrap_or_else(|| panic!("no tsdb_wal_bytes in:\n{before}"));
    assert!(
        written_before >= GOOD_POINTS as f64,
        "the good batch is counted: {written_before}"
    );
    let r = node.write("met,host=a v=1i 1\nmet,host=b v=2i 2\nmet,host=c v=3i 3");
    assert_eq!(r.status, 204, "{}", r.body);
    let after = get_metrics();
    assert_eq!(
        metric(&after, "tsdb_points_written_total"),
        Some(written_before + 3.0),
        "three more points written:\n{after}"
    );
    let wal_after = metric(&after, "tsdb_wal_bytes").unwrap_or_default();
    assert!(
        wal_after > wal_before,
        "the wal grew: {wal_before} -> {wal_after}"
    );
}

// ---------------------------------------------------------------------------------------------
// /query and unknown paths

#[test]
fn query_takes_a_post_form_body_and_refuses_missing_or_unparsable_queries() {
    let node = Node::start();
    let form = http::form(&[("q", "SELECT count(v) FROM good"), ("db", DB)]);
    let r = http::request(
        "POST",
        &node.url("/query"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    )
    .expect("POST /query");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["results"][0]["series"][0]["values"][0][1],
        json!(GOOD_POINTS),
        "{}",
        r.body
    );

    for (what, method, path, body) in [
        ("GET without q", "GET", format!("/query?db={DB}"), None),
        (
            "GET with an empty q",
            "GET",
            format!("/query?db={DB}&q="),
            None,
        ),
        (
            "POST form without q",
            "POST",
            "/query".to_string(),
            Some(format!("db={DB}")),
        ),
    ] {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let r = http::request(
            method,
            &node.url(&path),
            &headers,
            body.as_deref().map(str::as_bytes),
        )
        .expect("query request");
        assert_400(&r, what, &["q"]);
    }

    for q in [
        "SELEC * FROM good",
        "SELECT FROM",
        "SELECT v FROM good WHERE",
    ] {
        let (status, json) =
            http::query(node.p.addr, Some(DB), q, None, Method::Get).expect("query request");
        assert_eq!(status, 400, "{q}: {json}");
        let e = json["error"].as_str().unwrap_or_default();
        assert!(e.starts_with("error parsing query: "), "{q}: {json}");
    }
    node.assert_good_intact("after bad queries");
}

#[test]
fn an_unknown_path_is_404() {
    let node = Node::start();
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/write/extra"),
        ("GET", "/api/v2/query"),
        ("GET", "/"),
    ] {
        let r = http::request(method, &node.url(path), &[], None).expect("request");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
    }
    node.assert_good_intact("after unknown paths");
}
