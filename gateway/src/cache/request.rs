//! One request's way through the cache: whether it may use it at all (the plan), and, when
//! it goes to a backend, how its answer is taken into the cache as it passes.

use super::control::{self, Storable};
use super::entry::{self, Entry};
use super::flight::Leader;
use super::influxql;
use super::key::{self, Key, KeyInput, Params};
use super::{Outcome, QueryCache, WriteMark};
use crate::config::cache::RouteCache;
use bytes::{Bytes, BytesMut};
use http::{Method, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use std::sync::Arc;
use std::time::Duration;

/// The largest request body read to build a key: what Pingora can still replay to the
/// backend after the gateway read it.
pub const MAX_KEYED_BODY: u64 = 64 << 10;

/// What the cache does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Not looked up, and its answer not stored (why, for the log).
    Bypass(&'static str),
    /// Looked up (unless `skip_lookup`: the client said no-cache) and its answer stored.
    Use {
        key: Key,
        db: Option<String>,
        skip_lookup: bool,
    },
}

/// Who is asking, on an authenticated route.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caller<'a> {
    pub tenant: Option<&'a str>,
    pub identity: Option<&'a str>,
}

/// Whether the route's body must be read before the request can be planned: a POST on a
/// route whose key holds the body, with a declared length the gateway can replay.
pub fn wants_body(settings: &RouteCache, req: &RequestHeader) -> bool {
    req.method == Method::POST && settings.keys_body() && declared_length(req).is_some()
}

/// The request's `Content-Length`, if it has one within [`MAX_KEYED_BODY`] and no
/// `Transfer-Encoding`.
fn declared_length(req: &RequestHeader) -> Option<u64> {
    if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return None;
    }
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n <= MAX_KEYED_BODY)
}

fn is_form(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// What the cache does with `req` on a route with `settings` to `pool`; `body` is the
/// request's body when [`wants_body`] said to read it.
pub fn plan(
    settings: &RouteCache,
    pool: &str,
    req: &RequestHeader,
    body: Option<&[u8]>,
    caller: Caller<'_>,
) -> Plan {
    let post = req.method == Method::POST;
    if !(req.method == Method::GET || post && settings.keys_body()) {
        return Plan::Bypass("method not cached");
    }
    if post && body.is_none() {
        return Plan::Bypass("body not replayable (no Content-Length, or above 64 KiB)");
    }
    let directives = control::request(&req.headers);
    if directives.no_store {
        return Plan::Bypass("Cache-Control: no-store");
    }
    let query = req.uri.query().map(|q| Params::parse(q.as_bytes()));
    let form = body.filter(|_| is_form(req)).map(Params::parse);
    let param = |name: &str| {
        query
            .as_ref()
            .and_then(|q| q.get(name))
            .or_else(|| form.as_ref().and_then(|f| f.get(name)))
    };
    let path = req.uri.path();
    if path.ends_with("/query") {
        if let Some(q) = param("q") {
            if !influxql::is_read_only(q) {
                return Plan::Bypass("the query writes");
            }
        }
    }
    let db = param("db").map(str::to_string);
    let input = KeyInput {
        pool,
        tenant: caller.tenant,
        identity: caller.identity,
        method: req.method.as_str(),
        host: key::host(req),
        path,
        query: query.as_ref(),
        body,
        form: form.as_ref(),
        headers: &req.headers,
    };
    Plan::Use {
        key: key::build(settings, &input),
        db,
        skip_lookup: directives.no_cache,
    }
}

/// A request the cache may store the answer of, on its way to a backend.
#[derive(Debug)]
pub struct Storing {
    pub cache: Arc<QueryCache>,
    pub key: Key,
    pub db: Option<String>,
    pub pool: Arc<str>,
    pub ttl: Duration,
    pub stale_for: Duration,
    pub mark: WriteMark,
    /// Held by the request that fetches for the waiters; released when its answer is
    /// stored or known not to be.
    pub leader: Option<Leader>,
    /// The answer's head and the body so far, once the head said it may be stored.
    pending: Option<(ResponseHeader, Duration, BytesMut)>,
}

impl Storing {
    pub fn new(
        cache: Arc<QueryCache>,
        key: Key,
        db: Option<String>,
        pool: &str,
        settings: &RouteCache,
        leader: Option<Leader>,
    ) -> Storing {
        let mark = cache.write_mark(pool, db.as_deref());
        Storing {
            cache,
            key,
            db,
            pool: Arc::from(pool),
            ttl: settings.ttl,
            stale_for: settings.stale_while_revalidate,
            mark,
            leader,
            pending: None,
        }
    }

    /// The answer's head: kept if it may be stored; otherwise the waiters are released now
    /// (they go to a backend themselves) instead of after the body.
    pub fn head(&mut self, resp: &ResponseHeader) {
        match control::response(resp.status.as_u16(), &resp.headers, self.ttl) {
            Storable::For(fresh_for) => {
                self.pending = Some((resp.clone(), fresh_for, BytesMut::new()));
            }
            Storable::No(_) => {
                self.leader = None;
            }
        }
    }

    /// A piece of the answer's body; at its end the answer is stored (in the background,
    /// the leader released after it).
    pub fn body(&mut self, chunk: Option<&Bytes>, end: bool) {
        let Some((_, _, buf)) = self.pending.as_mut() else {
            return;
        };
        if let Some(c) = chunk {
            if (buf.len() + c.len()) as u64 > self.cache.config.max_entry_size {
                self.pending = None;
                self.leader = None;
                return;
            }
            buf.extend_from_slice(c);
        }
        if !end {
            return;
        }
        let Some((head, fresh_for, buf)) = self.pending.take() else {
            return;
        };
        let entry = Entry {
            headers: entry::stored_headers(&head),
            body: buf.freeze(),
            stored_at: self.cache.now(),
            fresh_for,
            stale_for: self.stale_for,
            pool: self.pool.clone(),
            db: self.db.clone(),
        };
        let cache = self.cache.clone();
        let key = self.key.clone();
        let mark = std::mem::take(&mut self.mark);
        let leader = self.leader.take();
        tokio::spawn(async move {
            cache.store(key, entry, &mark).await;
            drop(leader);
        });
    }
}

/// The request a background refresh sends: the client's, as the gateway forwards it,
/// spoken as HTTP/1.1 with a Host header.
pub fn refresh_request(mut req: RequestHeader) -> RequestHeader {
    req.set_version(Version::HTTP_11);
    if !req.headers.contains_key(http::header::HOST) {
        if let Some(host) = req.uri.authority().map(|a| a.as_str().to_string()) {
            // Cannot fail: an authority is a valid header value.
            let _ = req.insert_header(http::header::HOST, host);
        }
    }
    req
}

/// The outcome the answer's `X-Cache` names, for a request with `plan`.
pub fn outcome_of(plan: &Plan) -> Outcome {
    match plan {
        Plan::Bypass(_)
        | Plan::Use {
            skip_lookup: true, ..
        } => Outcome::Bypass,
        Plan::Use { .. } => Outcome::Miss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cache::KeyPart;

    fn settings(key: Vec<KeyPart>) -> RouteCache {
        RouteCache {
            cache: "q".into(),
            key,
            ttl: Duration::from_secs(5),
            stale_while_revalidate: Duration::ZERO,
            per_caller: false,
            buckets: None,
        }
    }

    fn req(method: &str, uri: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    fn line() -> Vec<KeyPart> {
        vec![KeyPart::Method, KeyPart::Path, KeyPart::Query]
    }

    #[test]
    fn gets_are_planned_and_other_methods_bypass() {
        let s = settings(line());
        let get = plan(
            &s,
            "p",
            &req("GET", "/query?q=SELECT+v+FROM+m&db=a", &[]),
            None,
            Caller::default(),
        );
        assert!(matches!(&get, Plan::Use { db: Some(d), skip_lookup: false, .. } if d == "a"));
        for m in ["PUT", "DELETE", "HEAD", "POST"] {
            let p = plan(
                &s,
                "p",
                &req(m, "/query?q=SELECT+v+FROM+m", &[]),
                Some(b""),
                Caller::default(),
            );
            assert!(matches!(p, Plan::Bypass(_)), "{m}");
        }
    }

    #[test]
    fn a_post_is_planned_only_when_its_body_is_keyed_and_replayable() {
        let s = settings(vec![KeyPart::Method, KeyPart::Path, KeyPart::Body]);
        let form = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", "22"),
        ];
        let r = req("POST", "/query", &form);
        assert!(wants_body(&s, &r));
        let p = plan(
            &s,
            "p",
            &r,
            Some(b"q=SELECT+v+FROM+m&db=a"),
            Caller::default(),
        );
        assert!(matches!(&p, Plan::Use { db: Some(d), .. } if d == "a"));
        let chunked = req("POST", "/query", &[("transfer-encoding", "chunked")]);
        assert!(!wants_body(&s, &chunked));
        assert!(matches!(
            plan(&s, "p", &chunked, None, Caller::default()),
            Plan::Bypass(_)
        ));
        let big = req("POST", "/query", &[("content-length", "70000")]);
        assert!(!wants_body(&s, &big));
    }

    #[test]
    fn writing_queries_bypass_in_the_query_string_or_the_form_body() {
        let s = settings(vec![KeyPart::Method, KeyPart::Query, KeyPart::Body]);
        let get = req("GET", "/query?q=DROP+DATABASE+a", &[]);
        assert_eq!(
            plan(&s, "p", &get, None, Caller::default()),
            Plan::Bypass("the query writes")
        );
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let post = req("POST", "/query", &form);
        let p = plan(
            &s,
            "p",
            &post,
            Some(b"q=SELECT+*+INTO+b+FROM+a"),
            Caller::default(),
        );
        assert_eq!(p, Plan::Bypass("the query writes"));
        // Not an InfluxDB query path: `q` means nothing special.
        let other = req("GET", "/search?q=drop", &[]);
        assert!(matches!(
            plan(&s, "p", &other, None, Caller::default()),
            Plan::Use { .. }
        ));
    }

    #[test]
    fn the_clients_cache_control_is_respected() {
        let s = settings(line());
        let no_store = req(
            "GET",
            "/query?q=SELECT+v+FROM+m",
            &[("cache-control", "no-store")],
        );
        assert!(matches!(
            plan(&s, "p", &no_store, None, Caller::default()),
            Plan::Bypass(_)
        ));
        let no_cache = req(
            "GET",
            "/query?q=SELECT+v+FROM+m",
            &[("cache-control", "no-cache")],
        );
        let p = plan(&s, "p", &no_cache, None, Caller::default());
        assert!(matches!(
            p,
            Plan::Use {
                skip_lookup: true,
                ..
            }
        ));
        assert_eq!(outcome_of(&p), Outcome::Bypass);
    }

    #[test]
    fn a_refresh_speaks_http1_with_a_host() {
        let mut r = RequestHeader::build("GET", b"/query?q=1", None).unwrap();
        r.set_uri("https://tsdb.local/query?q=1".parse().unwrap());
        r.set_version(Version::HTTP_2);
        let r = refresh_request(r);
        assert_eq!(r.version, Version::HTTP_11);
        assert_eq!(r.headers.get("host").unwrap(), "tsdb.local");
    }
}
