//! Cache keys: the parts a route names, read from the request and written unambiguously
//! (each part tagged and length-prefixed), so two requests share a key only when every part
//! is equal. Query strings and form bodies are normalised first: parameter order and
//! percent-encoding do not make two keys of one question.

use crate::config::cache::{KeyPart, RouteCache};
use http::HeaderMap;
use std::borrow::Cow;
use std::sync::Arc;

/// A cache key: compared whole, never by a hash alone.
pub type Key = Arc<[u8]>;

/// What a key may be built from.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    /// The pool that answers: two pools never share an entry.
    pub pool: &'a str,
    pub tenant: Option<&'a str>,
    pub identity: Option<&'a str>,
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a Params<'a>>,
    pub body: Option<&'a [u8]>,
    /// The body as parameters, when it is `application/x-www-form-urlencoded` (normalised
    /// like a query string).
    pub form: Option<&'a Params<'a>>,
    pub headers: &'a HeaderMap,
}

/// A query string or form body, parsed once: its pairs decoded and stably sorted by name
/// (values of one name keep their order: `tag=a&tag=b` may not mean `tag=b&tag=a`).
#[derive(Debug, Default)]
pub struct Params<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Params<'a> {
    pub fn parse(raw: &'a [u8]) -> Params<'a> {
        let mut pairs: Vec<_> = form_urlencoded::parse(raw).collect();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Params { pairs }
    }

    /// Sorted pairs, as they are.
    pub fn from_pairs(mut pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>) -> Params<'a> {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        Params { pairs }
    }

    /// The pairs, decoded, sorted by name.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// The first value of `name`, decoded.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.pairs.partition_point(|(k, _)| k.as_ref() < name);
        self.pairs
            .get(i)
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The canonical form: the sorted pairs encoded again one way.
    pub fn canonical(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.pairs.iter())
            .finish()
    }
}

fn push(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&value[..len as usize]);
}

/// The key of a request on a route with `cache`.
pub fn build(cache: &RouteCache, input: &KeyInput<'_>) -> Key {
    let mut out = Vec::with_capacity(128 + input.path.len());
    push(&mut out, b'P', input.pool.as_bytes());
    if cache.per_caller {
        // Whatever the key lists: the caller's tenant, or the caller when it has none.
        match (input.tenant, input.identity) {
            (Some(t), _) => push(&mut out, b'T', t.as_bytes()),
            (None, i) => push(&mut out, b'I', i.unwrap_or_default().as_bytes()),
        }
    }
    for part in &cache.key {
        match part {
            // The tenant is in every key of an authenticated route already.
            KeyPart::Tenant => {}
            KeyPart::Identity => push(
                &mut out,
                b'i',
                input.identity.unwrap_or_default().as_bytes(),
            ),
            KeyPart::Method => push(&mut out, b'm', input.method.as_bytes()),
            KeyPart::Host => {
                let host = input.host.unwrap_or_default().to_ascii_lowercase();
                push(&mut out, b'h', host.as_bytes());
            }
            KeyPart::Path => push(&mut out, b'p', input.path.as_bytes()),
            KeyPart::Query => {
                let q = input.query.map(Params::canonical).unwrap_or_default();
                push(&mut out, b'q', q.as_bytes());
            }
            KeyPart::Body => match input.form {
                Some(form) => push(&mut out, b'f', form.canonical().as_bytes()),
                None => push(&mut out, b'b', input.body.unwrap_or_default()),
            },
            KeyPart::Header(name) => {
                out.push(b'H');
                push(&mut out, b'n', name.as_str().as_bytes());
                // Every value, in order: a header sent twice is not the same as once.
                for v in input.headers.get_all(name) {
                    push(&mut out, b'v', v.as_bytes());
                }
            }
        }
    }
    Arc::from(out)
}

/// The request's host as a key holds it: its `Host` header, or the authority of an
/// absolute target.
pub fn host(req: &pingora::http::RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())
}

/// `key` with one more part, tagged `tag` (one no route part uses).
pub fn with_part(key: &Key, tag: u8, value: &[u8]) -> Key {
    let mut out = Vec::with_capacity(key.len() + value.len() + 5);
    out.extend_from_slice(key);
    push(&mut out, tag, value);
    Arc::from(out)
}

/// A query string (or form body) in canonical form (see [`Params`]).
pub fn normalize_query(raw: &[u8]) -> String {
    Params::parse(raw).canonical()
}

/// The first value of parameter `name` in a query string or form body, decoded.
pub fn param(raw: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(raw)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn route(key: Vec<KeyPart>, per_caller: bool) -> RouteCache {
        RouteCache {
            cache: "q".into(),
            key,
            ttl: Duration::from_secs(5),
            stale_while_revalidate: Duration::ZERO,
            per_caller,
            buckets: None,
        }
    }

    /// The parsed query strings of a test, kept alive for the inputs that borrow them.
    fn params(q: &'static str) -> &'static Params<'static> {
        Box::leak(Box::new(Params::parse(q.as_bytes())))
    }

    fn input<'a>(headers: &'a HeaderMap, query: &'static str) -> KeyInput<'a> {
        KeyInput {
            pool: "tsdb",
            tenant: None,
            identity: None,
            method: "GET",
            host: Some("Example.com"),
            path: "/query",
            query: Some(params(query)),
            body: None,
            form: None,
            headers,
        }
    }

    fn line() -> Vec<KeyPart> {
        vec![KeyPart::Method, KeyPart::Path, KeyPart::Query]
    }

    #[test]
    fn parameter_order_and_encoding_do_not_change_the_key() {
        let h = HeaderMap::new();
        let r = route(line(), false);
        let a = build(&r, &input(&h, "db=bar&q=SELECT%20mean(v)%20FROM%20m"));
        let b = build(&r, &input(&h, "q=SELECT+mean%28v%29+FROM+m&db=b%61r"));
        assert_eq!(a, b);
        assert_eq!(normalize_query(b"b=2&a=1"), normalize_query(b"a=1&b=%32"));
    }

    #[test]
    fn different_values_and_repeated_parameters_in_another_order_are_different_keys() {
        let h = HeaderMap::new();
        let r = route(line(), false);
        let one = build(&r, &input(&h, "q=SELECT+1&db=a"));
        assert_ne!(one, build(&r, &input(&h, "q=SELECT+1&db=b")));
        // Values of one name keep their order: `tag=a&tag=b` may mean something else.
        assert_ne!(
            normalize_query(b"tag=a&tag=b"),
            normalize_query(b"tag=b&tag=a")
        );
        assert_eq!(normalize_query(b"x=1&tag=a&tag=b"), "tag=a&tag=b&x=1");
    }

    #[test]
    fn parts_cannot_run_into_each_other() {
        let h = HeaderMap::new();
        let r = route(vec![KeyPart::Path, KeyPart::Query], false);
        let mut a = input(&h, "b");
        a.path = "/a";
        let mut b = input(&h, "");
        b.path = "/ab";
        assert_ne!(build(&r, &a), build(&r, &b));
    }

    #[test]
    fn an_authenticated_route_keys_by_tenant_even_when_the_key_does_not_say_so() {
        let h = HeaderMap::new();
        let r = route(line(), true);
        let mut a = input(&h, "q=SELECT+1");
        a.tenant = Some("acme");
        a.identity = Some("alice");
        let mut b = a;
        b.tenant = Some("globex");
        assert_ne!(build(&r, &a), build(&r, &b));
        // Two callers of one tenant share answers unless the key names the identity.
        let mut c = a;
        c.identity = Some("bob");
        assert_eq!(build(&r, &a), build(&r, &c));
        let per_user = route(vec![KeyPart::Identity, KeyPart::Query], true);
        assert_ne!(build(&per_user, &a), build(&per_user, &c));
        // A caller without a tenant is keyed by who it is.
        let mut d = a;
        d.tenant = None;
        let mut e = d;
        e.identity = Some("bob");
        assert_ne!(build(&r, &d), build(&r, &e));
    }

    #[test]
    fn pools_never_share_an_entry() {
        let h = HeaderMap::new();
        let r = route(line(), false);
        let a = input(&h, "q=1");
        let mut b = a;
        b.pool = "other";
        assert_ne!(build(&r, &a), build(&r, &b));
    }

    #[test]
    fn a_form_body_is_normalised_and_a_raw_body_is_not() {
        let h = HeaderMap::new();
        let r = route(vec![KeyPart::Body], false);
        let mut a = input(&h, "");
        a.body = Some(b"q=SELECT+1&db=a");
        a.form = Some(params("q=SELECT+1&db=a"));
        let mut b = a;
        b.body = Some(b"db=a&q=SELECT%201");
        b.form = Some(params("db=a&q=SELECT%201"));
        assert_eq!(build(&r, &a), build(&r, &b));
        a.form = None;
        b.form = None;
        assert_ne!(build(&r, &a), build(&r, &b));
    }

    #[test]
    fn a_header_part_reads_every_value_and_the_host_ignores_case() {
        let mut h1 = HeaderMap::new();
        h1.append("accept", "text/csv".parse().unwrap());
        let h2 = HeaderMap::new();
        let r = route(
            vec![KeyPart::Host, KeyPart::Header(http::header::ACCEPT)],
            false,
        );
        assert_ne!(build(&r, &input(&h1, "")), build(&r, &input(&h2, "")));
        let mut lower = input(&h1, "");
        lower.host = Some("example.com");
        assert_eq!(build(&r, &input(&h1, "")), build(&r, &lower));
    }

    #[test]
    fn param_reads_a_decoded_value() {
        assert_eq!(param(b"db=my%20db&q=x", "db").as_deref(), Some("my db"));
        assert_eq!(param(b"q=x", "db"), None);
        let p = Params::parse(b"z=1&tag=b&db=my+db&tag=a");
        assert_eq!(p.get("db"), Some("my db"));
        assert_eq!(p.get("tag"), Some("b"), "the first of a repeated name");
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("zz"), None);
    }
}
