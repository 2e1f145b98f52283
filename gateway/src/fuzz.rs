//! The bodies of the fuzz targets over the gateway's parsers, callable on stable.
//!
//! Each function takes arbitrary bytes, passes them to the entry point the gateway itself
//! uses (the cache's plan, the JWT verifier, the JWKS loader, the config loader, the
//! request normalisation), and panics
//! only when an invariant the gateway relies on breaks. The `fuzz/` crate (cargo-fuzz,
//! nightly) calls them from its targets, and the `fuzz_replay` test in `tests/` calls them
//! on stable for every saved input under `fuzz/corpus` and `fuzz/regressions`. Anything a
//! target needs that does not depend on the input (a key set, a verifier, a route's cache
//! settings) is built once, so each run measures the parser and nothing else.

use crate::auth::jwks::{Jwks, JwksSource, KeySet};
use crate::auth::jwt::{JwtConfig, JwtVerifier};
use crate::cache::influxql;
use crate::cache::key::{self, Params};
use crate::cache::request::{self, Caller, Plan};
use crate::config::hardening::{EscapedSlashes, Hardening, Underscores};
use crate::config::{self, cache::KeyPart, cache::RouteCache};
use crate::normalize::{self, path};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use pingora::http::RequestHeader;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// `gateway_query_params`: a query string, a newline, then a form body, read as the cache
/// reads a `POST /query` to build its key. The canonical form is a fixed point.
pub fn query_params(data: &[u8]) {
    let (query, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let params = Params::parse(query);
    let canonical = params.canonical();
    assert_eq!(key::normalize_query(canonical.as_bytes()), canonical);
    if let Some(q) = params.get("q") {
        influxql::is_read_only(q);
    }
    let _ = key::param(query, "db");

    // The whole plan, when the bytes make a request target the proxy could have received.
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(mut req) = RequestHeader::build("POST", format!("/query?{query}").as_bytes(), None)
    else {
        return;
    };
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("host", "gateway.example"),
    ];
    for (name, value) in headers {
        if req.insert_header(name, value).is_err() {
            return;
        }
    }
    let plan = request::plan(route_cache(), "tsdb", &req, Some(body), Caller::default());
    if let Plan::Use { key, .. } = plan {
        assert!(!key.is_empty());
    }
}

/// `cache_buckets`: 8 bytes of "now" (nanoseconds, little-endian), 8 of the settle window,
/// 2 bytes per held bucket run (offsets from the query's first bucket), a newline, then a
/// query as a client sends it. A query that splits is planned against those held buckets,
/// and the plan must account for every bucket of the range exactly once: from the cache
/// (held, and whole or the last of a range ending after now) or inside a fetched range; what
/// it keeps must be fetched, whole and settled, and what it keeps briefly fetched and not
/// settled; and each fetched range's statement must read back as the same shape over that
/// range.
pub fn cache_buckets(data: &[u8]) {
    use crate::cache::buckets::{self, Held, MAX_FETCHES};
    use crate::cache::shape;
    let word = |at: usize| {
        let mut b = [0u8; 8];
        if let Some(s) = data.get(at..at + 8) {
            b.copy_from_slice(s);
        }
        i64::from_le_bytes(b)
    };
    let (now, settle) = (word(0), word(8).rem_euclid(1 << 40));
    let rest = data.get(16..).unwrap_or_default();
    let (runs, query) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&[][..], rest),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(s) = shape::shape(query, now) else {
        return;
    };
    let (grid, range) = (s.grid, s.range);
    let first = grid.bucket_of(range.start_ns);
    let mut held = Held::default();
    for pair in runs.chunks_exact(2).take(32) {
        let f = first.saturating_add(i64::from(pair[0]));
        held.insert(f, f.saturating_add(i64::from(pair[1] % 16)));
    }
    let Some(plan) = buckets::plan(grid, range, &held, now, settle) else {
        return;
    };
    let last = grid.bucket_of(range.end_ns - 1);
    let settled_last = grid.bucket_of(now.saturating_sub(settle)) - 1;
    let whole = |k: i64| grid.start_of(k) >= range.start_ns && grid.end_of(k) <= range.end_ns;
    // The last bucket of a range ending after now is as whole as it can be yet.
    let open_last = |k: i64| k == last && range.end_ns > now && grid.start_of(k) >= range.start_ns;
    assert!(plan.fetch.len() <= MAX_FETCHES, "{plan:?}");
    for w in plan.fetch.windows(2) {
        assert!(
            w[0].end_ns <= w[1].start_ns,
            "fetches in order, apart: {plan:?}"
        );
    }
    for r in &plan.fetch {
        assert!(r.start_ns < r.end_ns, "{plan:?}");
        assert!(
            r.start_ns >= range.start_ns && r.end_ns <= range.end_ns,
            "{plan:?}"
        );
        // The statement asking for it reads back as the same shape over that range.
        let again = shape::shape(&s.statement_for(*r), now)
            .unwrap_or_else(|e| panic!("{}: {e}", s.statement_for(*r)));
        // (fetched as fill(null) answers, when the fill is applied after the merge)
        let fetched_shape = s.statement.to_string();
        assert_eq!(
            (again.key.as_str(), again.range),
            (fetched_shape.as_str(), *r)
        );
    }
    let cached = |k: i64| plan.cached.iter().any(|(f, l)| (*f..=*l).contains(&k));
    let fetched = |k: i64| {
        plan.fetch
            .iter()
            .any(|r| r.start_ns < grid.end_of(k) && grid.start_of(k) < r.end_ns)
    };
    for k in first..=last {
        assert!(cached(k) != fetched(k), "bucket {k} once: {plan:?}");
        if cached(k) {
            assert!(
                held.contains(k) && (whole(k) || open_last(k)),
                "{k}: {plan:?}"
            );
        }
    }
    for (f, l) in &plan.keep {
        for k in *f..=*l {
            assert!(
                fetched(k) && whole(k) && k <= settled_last,
                "keep {k}: {plan:?}"
            );
        }
    }
    for (f, l) in &plan.keep_briefly {
        for k in *f..=*l {
            assert!(
                fetched(k) && (whole(k) || open_last(k)) && k > settled_last,
                "keep briefly {k}: {plan:?}"
            );
        }
    }
}

/// `written_times`: a byte choosing the write's precision, a byte of chunk size, then a
/// `/write` body. The times a write touches (`cache::written`) must be read the same from
/// the body in one piece and in chunks of that size (a body streams in as it comes), and a
/// span read runs from its earliest time to its latest.
pub fn written_times(data: &[u8]) {
    use crate::cache::written::WrittenReader;
    const PRECISIONS: [Option<&str>; 8] = [
        None,
        Some("n"),
        Some("u"),
        Some("ms"),
        Some("s"),
        Some("m"),
        Some("h"),
        Some("fortnight"),
    ];
    let [p, chunk, body @ ..] = data else {
        return;
    };
    let precision = PRECISIONS[usize::from(*p) % PRECISIONS.len()];
    let Some(mut whole) = WrittenReader::new(precision) else {
        assert_eq!(
            precision,
            Some("fortnight"),
            "a known precision has a reader"
        );
        return;
    };
    let mut pieces = whole.clone();
    whole.feed(body);
    for piece in body.chunks(usize::from(*chunk).max(1)) {
        pieces.feed(piece);
    }
    let (whole, pieces) = (whole.finish(), pieces.finish());
    assert_eq!(whole, pieces, "chunks of {chunk}");
    if let Some((lo, hi)) = whole.span {
        assert!(lo <= hi, "{whole:?}");
    }
}

/// A route that keys on everything a query string and a form body can change.
fn route_cache() -> &'static RouteCache {
    static ROUTE: OnceLock<RouteCache> = OnceLock::new();
    ROUTE.get_or_init(|| RouteCache {
        cache: "queries".to_owned(),
        key: vec![
            KeyPart::Method,
            KeyPart::Path,
            KeyPart::Query,
            KeyPart::Body,
        ],
        ttl: Duration::from_secs(5),
        stale_while_revalidate: Duration::ZERO,
        per_caller: false,
        buckets: None,
    })
}

/// One key of each kind the gateway accepts (HMAC, RSA, P-256, Ed25519), public parts only;
/// the HMAC secret also signs the tokens [`jwt`] builds.
const JWKS: &str = r#"{"keys": [
{"kty": "oct", "kid": "hs", "k": "ZnV6ei10YXJnZXQtaG1hYy1zZWNyZXQtMzItYnl0ZXMhIQ"},
{"kty": "RSA", "kid": "rs", "use": "sig", "e": "AQAB", "n": "w4tVvqQXPp7mi3oTuaGowo9_023bpXioG7edCB7jrKlGC-SjaLjSTi1NlHDcp75fze_Met1AS1zVFMxVUHcJxwLwZs8wo6i2aaioolMaiPuS_OuDd1GNasNcT83Z-dew_xPct_l9YkbDm_CjoKM5L7emfhfQGnlQurKOsVHsJAieWanO93bTI-RGUlR4upobr_rZhQ4pHvHjHMWcPLV9giE9eSKH4B_l6jMGC1qO7RsYXZ11s1cYqPhOnOBajbeD1nUvcCZI_g3mVQ1YPHaWDsUIEofkxLRU7ddf4gfPg_L4RLYAuioIc2dYoqn-z8B_zm9cUT5AutxCumX6fRBzww"},
{"kty": "EC", "kid": "es", "crv": "P-256", "x": "H9IGzewgdxIO3bMwp7Yobti7WaK4U9WPgdqnB0y7_lo", "y": "_pP56o8NVNqOgjMmMZz5ZGH94gynte_0WcuMgekWXXA"},
{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "oCB7CIaNIU3M2JDa3vFhbQvkmVxlWFvzMYuykQScT-4"}
]}"#;

/// The secret of the `hs` key above.
const HMAC_SECRET: &[u8] = b"fuzz-target-hmac-secret-32-bytes!!";

/// The verification time: tokens in the corpus expire after it.
const NOW_UNIX: u64 = 1_700_000_000;

/// The verifier, built once: loading keys per input would measure the key parsing (the
/// `jwks` target's job) instead of the token's.
fn verifier() -> Option<&'static (JwtVerifier, EncodingKey)> {
    static VERIFIER: OnceLock<Option<(JwtVerifier, EncodingKey)>> = OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let source = JwksSource::File("fuzz.jwks.json".into());
            let jwks =
                Jwks::from_json(source.clone(), Duration::from_secs(300), JWKS.as_bytes()).ok()?;
            let all = [
                Algorithm::HS256,
                Algorithm::HS384,
                Algorithm::HS512,
                Algorithm::RS256,
                Algorithm::PS256,
                Algorithm::ES256,
                Algorithm::EdDSA,
            ];
            let mut config = JwtConfig::new(source, all.to_vec());
            config.issuer = Some("https://issuer.example".to_owned());
            config.audience = Some("gateway".to_owned());
            config.tenant_claim = Some("tenant".to_owned());
            config.kept_claims = vec!["plan".to_owned()];
            let signing = EncodingKey::from_secret(HMAC_SECRET).ok()?;
            Some((JwtVerifier::new("fuzz", config, Arc::new(jwks)), signing))
        })
        .as_ref()
}

/// `jwt`: a bearer token, verified against a fixed key set at a fixed time. If the input
/// holds a NUL byte, it is a JSON header, NUL, JSON claims instead, signed with the set's
/// HMAC key first, so the claim checks behind the signature are reached too.
pub fn jwt(data: &[u8]) {
    let Some((verifier, signing)) = verifier() else {
        panic!("the fixed key set does not load");
    };
    let token = match data.iter().position(|&b| b == 0) {
        None => String::from_utf8_lossy(data).into_owned(),
        Some(i) => {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(&data[..i]),
                URL_SAFE_NO_PAD.encode(&data[i + 1..])
            );
            let Ok(signature) =
                jsonwebtoken::crypto::sign(input.as_bytes(), signing, Algorithm::HS256)
            else {
                return;
            };
            format!("{input}.{signature}")
        }
    };
    if let Ok(identity) = verifier.verify_uncached(&token, NOW_UNIX) {
        assert!(!identity.subject.is_empty());
    }
}

/// `jwks`: a JWKS document, parsed as a load or refresh parses it. Every key is either kept
/// or reported as rejected.
pub fn jwks(data: &[u8]) {
    let Ok(set) = KeySet::from_json(data) else {
        return;
    };
    assert!(!set.is_empty());
    for kid in set.kids() {
        assert!(set.get(kid).is_some());
    }
}

/// `policy_yaml`: operator YAML, compiled as a policy file and as the bootstrap file (one
/// input, both loaders: they share the YAML reader and the error reporting).
pub fn policy_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = Path::new("/nonexistent/policies/fuzz.yaml");
    if let Err(errors) = config::parse_policy(text, origin) {
        assert!(!errors.0.is_empty());
        let _ = errors.to_string();
    }
    if let Err(errors) = config::parse_bootstrap(text, Path::new("/nonexistent/gateway.yaml")) {
        assert!(!errors.0.is_empty());
        let _ = errors.to_string();
    }
}

/// `request_head`: a request as Pingora hands it to the pipeline (a target on the first
/// line, `name: value` headers on the next ones), normalised under each listener setting.
/// What passes is a fixed point: its path normalises to itself and never climbs or holds an
/// empty or dot segment, its framing is one `Content-Length` (digits) or `chunked` alone,
/// no dropped underscore name survives, and its routing host is lower case without a port
/// or trailing dot.
pub fn request_head(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let Some(target) = lines.next() else {
        return;
    };
    let headers: Vec<(&[u8], &[u8])> = lines
        .filter_map(|l| {
            let i = l.iter().position(|&b| b == b':')?;
            Some((&l[..i], l[i + 1..].trim_ascii()))
        })
        .collect();
    let settings = [
        (EscapedSlashes::Reject, Underscores::Drop),
        (EscapedSlashes::Keep, Underscores::Allow),
        (EscapedSlashes::Reject, Underscores::Reject),
    ];
    for (escaped_slashes, headers_with_underscores) in settings {
        let Ok(mut req) = RequestHeader::build("GET", target, None) else {
            return;
        };
        for (name, value) in &headers {
            let Ok(name) = std::str::from_utf8(name) else {
                return;
            };
            if req.append_header(name.to_string(), *value).is_err() {
                return;
            }
        }
        let rules = Hardening {
            escaped_slashes,
            headers_with_underscores,
            ..Hardening::default()
        };
        if normalize::request(&mut req, &rules).is_err() {
            continue;
        }
        let path = req.uri.path();
        if path != "*" {
            assert_eq!(path::normalize(path, escaped_slashes), Ok(None), "{path}");
            assert!(!path.contains("//") && !path.contains("/./") && !path.contains("/../"));
            assert_eq!(
                req.raw_path(),
                req.uri
                    .path_and_query()
                    .map_or(b"/".as_slice(), |p| p.as_str().as_bytes())
            );
        }
        let lengths: Vec<_> = req
            .headers
            .get_all(http::header::CONTENT_LENGTH)
            .iter()
            .collect();
        let codings: Vec<_> = req
            .headers
            .get_all(http::header::TRANSFER_ENCODING)
            .iter()
            .collect();
        assert!(lengths.len() <= 1 && codings.len() <= 1);
        assert!(lengths
            .iter()
            .all(|v| v.as_bytes().iter().all(u8::is_ascii_digit)));
        assert!(codings
            .iter()
            .all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked")));
        if headers_with_underscores != Underscores::Allow {
            assert!(req.headers.keys().all(|k| !k.as_str().contains('_')));
        }
        if let Ok(Some(host)) = normalize::routing_host(&req) {
            assert!(!host.bytes().any(|b| b.is_ascii_uppercase()) && !host.ends_with('.'));
            assert!(host.starts_with('[') || !host.contains(':'), "{host}");
        }
        forwarded_for(&req);
        trace_and_log(&req);
    }
}

/// The head's `traceparent` and its target as the access log writes it: a trace kept from
/// the client has its trace id and a new span; what the gateway sends on parses back to
/// that trace; a redacted target keeps its path and never a credential's value.
fn trace_and_log(req: &RequestHeader) {
    use crate::trace_context::{self, TraceContext};
    let t = TraceContext::of(req);
    assert!(t.trace_id != 0 && t.span_id != 0);
    let sent = t.header();
    let back = trace_context::parse(sent.as_bytes());
    assert_eq!(
        back.map(|p| (p.trace_id, p.parent_id)),
        Some((t.trace_id, t.span_id))
    );
    if let Some(p) = req
        .headers
        .get(trace_context::TRACEPARENT)
        .and_then(|v| trace_context::parse(v.as_bytes()))
    {
        if req
            .headers
            .get_all(trace_context::TRACEPARENT)
            .iter()
            .count()
            == 1
        {
            assert_eq!(t.trace_id, p.trace_id);
        }
    }
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let logged = crate::access_log::redact(target);
    assert!(logged.starts_with(target.split('?').next().unwrap_or("")));
    if let Some((_, query)) = logged.split_once('?') {
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                let name = form_urlencoded::parse(name.as_bytes())
                    .next()
                    .map(|(n, _)| n.to_ascii_lowercase())
                    .unwrap_or_default();
                if ["p", "u", "password", "token"].contains(&name.as_str()) {
                    assert_eq!(value, "REDACTED", "{logged}");
                }
            }
        }
    }
}

/// `X-Forwarded-For` as the client sent it: the client found is the peer or one of the
/// header's own addresses, and a caller that is not a trusted proxy is never believed.
fn forwarded_for(req: &RequestHeader) {
    use crate::config::hardening::TrustedProxies;
    use crate::forwarded;
    let trusted = TrustedProxies::new(vec![
        "127.0.0.0/8".parse().unwrap_or_default(),
        "10.0.0.0/8".parse().unwrap_or_default(),
    ]);
    let xff = req.headers.get(forwarded::FOR);
    let proxy = std::net::IpAddr::from([10, 1, 2, 3]);
    let caller = std::net::IpAddr::from([198, 51, 100, 7]);
    let client = forwarded::client(proxy, xff, &trusted);
    let text = xff.and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(
        client == proxy
            || text
                .split(',')
                .filter_map(|h| h.trim().parse::<std::net::IpAddr>().ok())
                .any(|h| h == client),
        "{client} from {text:?}"
    );
    assert_eq!(forwarded::client(caller, xff, &trusted), caller);
    assert_eq!(
        forwarded::for_value(xff, caller, &trusted),
        caller.to_string()
    );
}

/// `proxy_header`: the first bytes of a connection on a listener with `proxy_protocol`,
/// framed by `connection::proxy_protocol::header::decode` as the listener reads them (one
/// byte while undecided, then exactly what the header needs). Reading so never takes a
/// byte past a valid header, never grows past the version's bound, and decides as the
/// whole input does.
pub fn proxy_header(data: &[u8]) {
    use crate::connection::proxy_protocol::header::{decode, Progress, Version, V1_MAX};
    use crate::connection::proxy_protocol::header::{V2_MAX_PAYLOAD, V2_SIGNATURE};
    let mut taken = 0;
    let decided = loop {
        let progress = decode(&data[..taken]);
        let more = match &progress {
            Progress::Undecided => 1,
            Progress::Incomplete { need, .. } => need.get(),
            _ => break progress,
        };
        if taken + more > data.len() {
            return;
        }
        taken += more;
        assert!(taken <= 16 + V2_MAX_PAYLOAD, "read {taken} bytes");
    };
    assert_eq!(decode(data), decided, "whole input against {taken} bytes");
    match decided {
        Progress::Complete { version, len, .. } => {
            assert_eq!(len, taken, "the header is exactly what was read");
            match version {
                Version::V1 => assert!(len <= V1_MAX && data[..len].ends_with(b"\r\n")),
                Version::V2 => assert!(len <= 16 + V2_MAX_PAYLOAD),
            }
        }
        Progress::Absent => assert!(taken <= V2_SIGNATURE.len()),
        _ => {}
    }
}
