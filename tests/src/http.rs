//! A small blocking HTTP client (ureq v3) for the InfluxDB 1.x API.
//!
//! 4xx/5xx answers are returned as values, never as errors; only transport failures are `Err`.

use std::fmt::Display;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// HTTP method of a `/query` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET /query?q=...`
    #[default]
    Get,
    /// `POST /query` with `q` in an `application/x-www-form-urlencoded` body.
    Post,
}

/// A fully read HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body, decoded as UTF-8 (lossy), gunzipped if the server compressed it.
    pub body: String,
}

/// First value of header `name` (case-insensitive) in a list whose names are lower-case.
pub fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

impl Response {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The body as JSON: `Null` when empty, a JSON string holding the raw text when it is not
    /// JSON (so comparisons still show what came back).
    pub fn json(&self) -> Value {
        if self.body.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&self.body).unwrap_or_else(|_| Value::String(self.body.clone()))
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .build()
            .new_agent()
    })
}

/// Percent-encodes a query-string / form value (`application/x-www-form-urlencoded`).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Builds `k1=v1&k2=v2` from pairs, encoding values.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Sends one request and reads the whole answer. `body: None` sends no body at all.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<Response> {
    let send = || -> anyhow::Result<Result<ureq::http::Response<ureq::Body>, ureq::Error>> {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        Ok(match body {
            Some(b) => agent().run(builder.body(b)?),
            None => agent().run(builder.body(())?),
        })
    };
    let mut result = send()?;
    // A server may close an idle kept-alive connection just as the pool hands it out; an
    // idempotent request is then sent again once, on a new connection, as HTTP clients do
    // (RFC 9112, 9.3.1).
    if matches!(result, Err(ureq::Error::Io(_))) && matches!(method, "GET" | "HEAD") {
        result = send()?;
    }
    let resp = result.map_err(|e| anyhow::anyhow!("{method} {url}: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = resp.into_body();
    let bytes = body
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()
        .map_err(|e| anyhow::anyhow!("{method} {url}: reading body: {e}"))?;
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// `POST /write?db=DB[&precision=P]` with a line-protocol body. Returns status and raw body.
pub fn write(
    addr: impl Display,
    db: &str,
    body: &str,
    precision: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let mut params = vec![("db", db)];
    if let Some(p) = precision {
        params.push(("precision", p));
    }
    let url = format!("http://{addr}/write?{}", form(&params));
    let r = request(
        "POST",
        &url,
        &[("Content-Type", "text/plain; charset=utf-8")],
        Some(body.as_bytes()),
    )?;
    Ok((r.status, r.body))
}

/// `/query` with `q`, optional `db` and `epoch`. Returns status and the JSON body
/// (see [`Response::json`] for non-JSON bodies).
pub fn query(
    addr: impl Display,
    db: Option<&str>,
    q: &str,
    epoch: Option<&str>,
    method: Method,
) -> anyhow::Result<(u16, Value)> {
    let r = query_response(addr, db, q, epoch, method)?;
    Ok((r.status, r.json()))
}

/// Like [`query`] but returns the whole [`Response`].
pub fn query_response(
    addr: impl Display,
    db: Option<&str>,
    q: &str,
    epoch: Option<&str>,
    method: Method,
) -> anyhow::Result<Response> {
    let mut params: Vec<(&str, &str)> = Vec::new();
    if let Some(db) = db {
        params.push(("db", db));
    }
    if let Some(e) = epoch {
        params.push(("epoch", e));
    }
    match method {
        Method::Get => {
            params.push(("q", q));
            let url = format!("http://{addr}/query?{}", form(&params));
            request("GET", &url, &[], None)
        }
        Method::Post => {
            let url = format!("http://{addr}/query?{}", form(&params));
            let body = form(&[("q", q)]);
            request(
                "POST",
                &url,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                Some(body.as_bytes()),
            )
        }
    }
}

/// `GET /ping`; returns the status code.
pub fn ping(addr: impl Display) -> anyhow::Result<u16> {
    Ok(request("GET", &format!("http://{addr}/ping"), &[], None)?.status)
}

/// Sends one HTTP/1.1 request over a fresh socket (`Connection: close`) and reads the answer,
/// tolerating a server that answers and closes before the whole body was sent (as for a 413
/// decided on `Content-Length`): sending stops at the first write error and the answer is read
/// anyway. [`request`] cannot see such answers, since the client fails on the broken pipe.
///
/// `headers` are sent as given (add `Content-Length` or `Transfer-Encoding` yourself when the
/// body should carry one; `chunks` bodies are sent as they are). Only `Content-Length` and
/// read-to-close bodies are decoded, which is what the servers under test send for errors.
pub fn raw_request(
    addr: impl Display,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Response> {
    use std::io::{Read, Write};
    let addr = addr.to_string();
    let mut s = std::net::TcpStream::connect(&addr)
        .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head =
        format!("{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // A write error means the server stopped reading: its answer may still be waiting.
    if s.write_all(head.as_bytes()).is_ok() {
        for chunk in body.chunks(64 * 1024) {
            if s.write_all(chunk).is_err() {
                break;
            }
        }
    }
    let mut raw = Vec::new();
    let read = s.take(256 * 1024 * 1024).read_to_end(&mut raw);
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        anyhow::bail!(
            "{method} {path_and_query}: no complete answer head ({} bytes read, {read:?})",
            raw.len()
        );
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = &raw[split + 4..];
    if let Some(n) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest = &rest[..n.min(rest.len())];
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(rest).into_owned(),
    })
}

/// Sends `bytes` exactly as given over a fresh connection, then reads until the server
/// closes or `quiet` passes without a byte (bounded to 16 MiB and to 30 s in all): the raw
/// exchange hostile-input tests need, where a client library would fix the request first.
pub fn raw_exchange(addr: impl Display, bytes: &[u8], quiet: Duration) -> anyhow::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let addr = addr.to_string();
    let mut s = std::net::TcpStream::connect(&addr)
        .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.set_read_timeout(Some(quiet))?;
    // A server that refuses early may close before it read everything: still read its answer.
    let _ = s.write_all(bytes);
    let start = crate::clock::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while out.len() < 16 << 20
        && crate::clock::now().duration_since(start) < Duration::from_secs(30)
    {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    Ok(out)
}

/// The answers in a raw HTTP/1.1 byte stream, in order: status, headers (names lower-cased)
/// and body, each body delimited by its `Content-Length` (what the gateway and the test
/// upstreams send). Stops at the first incomplete answer.
pub fn parse_answers(mut raw: &[u8]) -> Vec<Response> {
    let mut answers = Vec::new();
    for _ in 0..1_000 {
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let Some(status) = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse::<u16>().ok())
        else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let rest = &raw[split + 4..];
        let len = header_in(&headers, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            .min(rest.len());
        answers.push(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&rest[..len]).into_owned(),
        });
        raw = &rest[len..];
    }
    answers
}
