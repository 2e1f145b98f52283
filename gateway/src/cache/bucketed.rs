//! The bucket path of a request: a dashboard query (`GROUP BY time()` over a time range)
//! answered from the buckets the cache keeps for its shape, and one request to a backend
//! for the missing ones.
//!
//! ```text
//! ask       which requests take the path, and the key of their shape's store
//! prepare   the plan against the store: buckets cached, ranges to fetch
//! fetch_request  the one request for the missing ranges (a statement each, epoch=ns)
//! complete  the fetched buckets kept, the answer put together and rendered
//! ```
//!
//! Everything here is pure but for the store's lock; the pipeline (`proxy.rs`) sends the
//! fetch. Anything unexpected (a statement error, an answer that does not read) sends the
//! request on to a backend as it came, so the client sees what the backend says.

use super::assemble::{self, Stored};
use super::buckets::{self, Plan};
use super::key::{self, Key, KeyInput, Params};
use super::request::Caller;
use super::shape::{self, Shape};
use super::ShapeStore;
use crate::config::cache::{KeyPart, RouteCache};
use http::{Method, Version};
use pingora::http::RequestHeader;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

/// A request that takes the bucket path.
#[derive(Debug)]
pub struct Ask {
    pub shape: Shape,
    /// The key of the shape's store: the route's key parts with `q` and `epoch` left out
    /// and the shape in their place, so every refresh of a panel finds the same store.
    pub key: Key,
    pub db: Option<String>,
    /// The `epoch` the client asked its times in (`None`: RFC 3339).
    pub epoch: Option<String>,
    /// The parameters sent on with the fetch (the client's, without `q`, `epoch` and the
    /// ones the gateway sets).
    pub params: Vec<(String, String)>,
}

/// Parameters that change how an answer is written, which the path does not write.
const UNSUPPORTED_PARAMS: [&str; 3] = ["chunked", "chunk_size", "params"];

/// Whether `req` (with `body`, read when the route keys on it) takes the bucket path on a
/// route with `settings`, asked at `now_ns`; why not, for the log.
pub fn ask(
    settings: &RouteCache,
    pool: &str,
    req: &RequestHeader,
    body: Option<&[u8]>,
    caller: Caller<'_>,
    now_ns: i64,
) -> Result<Ask, &'static str> {
    if settings.buckets.is_none() {
        return Err("buckets off on this route");
    }
    if !req.uri.path().ends_with("/query") {
        return Err("not a query");
    }
    let is_form = req.method == Method::POST;
    if !(req.method == Method::GET || is_form) {
        return Err("method");
    }
    // The shape is keyed only if the route keys on where the query is.
    let holds_query = if is_form {
        KeyPart::Body
    } else {
        KeyPart::Query
    };
    if !settings.key.contains(&holds_query) {
        return Err("the route's key does not hold the query");
    }
    if !accepts_json(req) {
        return Err("an answer other than JSON asked for");
    }
    let query = req.uri.query().map(|q| Params::parse(q.as_bytes()));
    let form = if is_form {
        Some(Params::parse(body.unwrap_or_default()))
    } else {
        None
    };
    let param = |name: &str| {
        query
            .as_ref()
            .and_then(|q| q.get(name))
            .or_else(|| form.as_ref().and_then(|f| f.get(name)))
    };
    if UNSUPPORTED_PARAMS.iter().any(|p| param(p).is_some()) {
        return Err("chunked answers or bound parameters");
    }
    if param("pretty").is_some_and(|v| v == "true") {
        return Err("pretty answers");
    }
    let epoch = param("epoch").map(str::to_string);
    if let Some(e) = &epoch {
        if influxql::time::epoch_unit_ns(e).is_none() {
            return Err("an epoch InfluxDB does not know");
        }
    }
    let q = param("q").ok_or("no q")?;
    let shape = shape_of(q, now_ns)?;
    let db = param("db").map(str::to_string);

    // The parameters without the ones a refresh changes, as the key and the fetch use them.
    let kept = |p: &Params<'_>| -> Vec<(String, String)> {
        p.pairs()
            .filter(|(k, _)| !matches!(*k, "q" | "epoch"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let query_rest = query.as_ref().map(kept).unwrap_or_default();
    let form_rest = form.as_ref().map(kept).unwrap_or_default();
    let as_params = |pairs: &[(String, String)]| {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone())))
                .collect(),
        )
    };
    let (query_key, form_key) = (as_params(&query_rest), as_params(&form_rest));
    let input = KeyInput {
        pool,
        tenant: caller.tenant,
        identity: caller.identity,
        method: req.method.as_str(),
        host: key::host(req),
        path: req.uri.path(),
        query: Some(&query_key),
        body: None,
        form: Some(&form_key),
        headers: &req.headers,
    };
    let key = key::with_part(&key::build(settings, &input), b'S', shape.key.as_bytes());
    let mut params = query_rest;
    params.extend(form_rest);
    Ok(Ask {
        shape,
        key,
        db,
        epoch,
        params,
    })
}

/// Query texts that do not split: whether one does depends on its text alone (a range
/// relative to `now()` splits whatever now is), and every cached `/query` asks, a text cache
/// hit included, so a repeated text is parsed once.
static NEVER_SPLITS: LazyLock<moka::sync::Cache<Arc<str>, ()>> =
    LazyLock::new(super::influxql::text_memo);

/// The shape of `q` at `now_ns`, or why the request stays on the text cache.
fn shape_of(q: &str, now_ns: i64) -> Result<Shape, &'static str> {
    const NO: &str = "the query does not split into buckets";
    if q.len() > super::influxql::MAX_PARSED_LEN || NEVER_SPLITS.contains_key(q) {
        return Err(NO);
    }
    shape::shape(q, now_ns).map_err(|_| {
        NEVER_SPLITS.insert(Arc::from(q), ());
        NO
    })
}

/// Whether the client takes JSON (no `Accept`, or one that allows it).
fn accepts_json(req: &RequestHeader) -> bool {
    req.headers.get_all(http::header::ACCEPT).iter().all(|v| {
        let v = v.to_str().unwrap_or_default().to_ascii_lowercase();
        v.is_empty() || v.contains("json") || v.contains("*/*")
    })
}

/// What the store has for a request, taken under its lock.
#[derive(Debug)]
pub struct Prepared {
    pub plan: Plan,
    /// The store's invalidations when planned: a fetch is kept only if none came since.
    generation: u64,
    /// The kept buckets the plan uses, copied (the lock is not held across the fetch).
    cached: Stored,
}

/// Plans `ask` against `store` at `now_ns`, with buckets settled `settle_ns` after they
/// end; `None` when the range is not planned (empty, or too many buckets).
pub fn prepare(store: &ShapeStore, ask: &Ask, now_ns: i64, settle_ns: i64) -> Option<Prepared> {
    let range = ask.shape.range;
    let stored = store.lock();
    let plan = buckets::plan(
        ask.shape.grid,
        range,
        &stored.usable(now_ns),
        now_ns,
        settle_ns,
    )?;
    Some(Prepared {
        generation: stored.generation(),
        cached: stored.slice(&plan.cached),
        plan,
    })
}

/// The request for the missing ranges: `req` (as the gateway forwards it) turned into
/// `GET <path>?<params>&epoch=ns&q=<one statement per range>`.
pub fn fetch_request(
    mut req: RequestHeader,
    ask: &Ask,
    plan: &Plan,
) -> pingora::Result<RequestHeader> {
    let statements: Vec<String> = plan
        .fetch
        .iter()
        .map(|r| ask.shape.statement_for(*r))
        .collect();
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(ask.params.iter());
    query.append_pair("epoch", "ns");
    query.append_pair("q", &statements.join(";"));
    let uri = format!("{}?{}", req.uri.path(), query.finish());
    let uri: http::Uri = uri.parse().map_err(|_| {
        pingora::Error::explain(pingora::ErrorType::InternalError, "bucket fetch uri")
    })?;
    req.set_method(Method::GET);
    req.set_uri(uri);
    req.set_version(Version::HTTP_11);
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::CONTENT_TYPE,
        http::header::TRANSFER_ENCODING,
        http::header::EXPECT,
    ] {
        req.remove_header(&h);
    }
    Ok(req)
}

/// Why a fetched answer was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("the answer is not JSON")]
    NotJson,
    #[error("a statement failed: {0}")]
    Statement(String),
    #[error("{0}")]
    Series(#[from] assemble::AnswerError),
    #[error("{0} results for {1} statements")]
    Count(usize, usize),
}

/// Each statement's `series` from the backend's answer to [`fetch_request`].
pub fn read_fetched(body: &[u8], statements: usize) -> Result<Vec<Vec<Value>>, Unusable> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| Unusable::NotJson)?;
    if let Some(e) = doc.get("error").and_then(Value::as_str) {
        return Err(Unusable::Statement(e.to_string()));
    }
    let results = doc
        .get("results")
        .and_then(Value::as_array)
        .ok_or(Unusable::NotJson)?;
    if results.len() != statements {
        return Err(Unusable::Count(results.len(), statements));
    }
    results
        .iter()
        .map(|r| {
            if let Some(e) = r.get("error").and_then(Value::as_str) {
                return Err(Unusable::Statement(e.to_string()));
            }
            Ok(r.get("series")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default())
        })
        .collect()
}

/// Keeps what the plan says of `fetched` in `store` (unless a write came since the plan),
/// and renders the whole answer; `brief_until_ns`: when young buckets stop being served.
pub fn complete(
    store: &ShapeStore,
    ask: &Ask,
    prepared: &Prepared,
    fetched: &[Vec<Value>],
    now_ns: i64,
    brief_until_ns: i64,
) -> Result<Vec<u8>, Unusable> {
    let mut series = assemble::assemble(
        &ask.shape,
        ask.shape.range,
        &prepared.plan,
        &prepared.cached,
        fetched,
    )?;
    if !prepared.plan.fetch.is_empty() {
        let mut stored = store.lock();
        if stored.generation() == prepared.generation {
            stored.prune(now_ns);
            stored.absorb(
                &ask.shape,
                fetched,
                &prepared.plan.keep,
                &prepared.plan.keep_briefly,
                brief_until_ns,
            )?;
        }
    }
    assemble::apply_fill(&mut series, &ask.shape);
    // Cannot fail: the epoch was checked when the request was asked.
    assemble::with_times(&mut series, ask.epoch.as_deref());
    Ok(render(&series))
}

/// `{"results":[{"statement_id":0,"series":[...]}]}` and a newline, each series' keys in
/// the order InfluxDB writes them (name, tags, columns, values).
pub fn render(series: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + 64 * series.len());
    out.extend_from_slice(b"{\"results\":[{\"statement_id\":0");
    if !series.is_empty() {
        out.extend_from_slice(b",\"series\":[");
        for (i, s) in series.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            let mut first = true;
            for field in ["name", "tags", "columns", "values"] {
                let Some(v) = s.get(field) else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                // Writing JSON values into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, field);
                out.push(b':');
                let _ = serde_json::to_writer(&mut out, v);
            }
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}]}\n");
    out
}

/// How many buckets a plan serves from the cache and asks of a backend.
pub fn counts(grid: buckets::Grid, plan: &Plan) -> (u64, u64) {
    let span = |f: i64, l: i64| u64::try_from(l.saturating_sub(f).saturating_add(1)).unwrap_or(0);
    let cached = plan.cached.iter().map(|(f, l)| span(*f, *l)).sum();
    let fetched = plan
        .fetch
        .iter()
        .map(|r| span(grid.bucket_of(r.start_ns), grid.bucket_of(r.end_ns - 1)))
        .sum();
    (cached, fetched)
}

/// The shape store of `ask`, for a route with `settings`.
pub fn store_of(
    cache: &super::QueryCache,
    ask: &Ask,
    pool: &str,
    settings: &RouteCache,
) -> Option<Arc<ShapeStore>> {
    let b = settings.buckets?;
    Some(cache.shape_store(&ask.key, pool, ask.db.as_deref(), ask.shape.grid, b.ttl))
}

#[cfg(test)]
mod tests;
