//! Turning the scenario's request templates into requests: the weighted mix and the
//! client are drawn from a seeded RNG, `${client}`/`${token}`/`${now_ms}` are filled in, and
//! every part that has no placeholder is built once, not per request.

use crate::client::Request;
use crate::scenario::{Mix, Scenario, Template};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http_body_util::Full;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A template's part: built once when it has no placeholder, else rendered per request.
#[derive(Debug, Clone)]
enum Part {
    Fixed(Bytes),
    PerRequest(Template),
}

impl Part {
    fn of(t: &Template) -> Part {
        if t.is_static() {
            let mut out = Vec::new();
            t.render(0, "", 0, &mut out);
            Part::Fixed(Bytes::from(out))
        } else {
            Part::PerRequest(t.clone())
        }
    }

    fn bytes(&self, client: u32, token: &str, now_ns: i64) -> Bytes {
        match self {
            Part::Fixed(b) => b.clone(),
            Part::PerRequest(t) => {
                let mut out = Vec::with_capacity(64);
                t.render(client, token, now_ns, &mut out);
                Bytes::from(out)
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Prepared {
    method: http::Method,
    /// The whole request target, parsed once, when the path has no placeholder.
    uri: Option<http::Uri>,
    path: Part,
    headers: Vec<(HeaderName, Part)>,
    body: Part,
    client: Option<u32>,
    /// A check reads the answer's body: the request is marked so it is kept.
    keep_body: bool,
}

/// The request target: the scenario's base path, then the request's path. Both were checked
/// when the scenario compiled, and a client number or token only adds characters a path
/// may hold; `/` stands in should one not parse.
fn target_uri(base_path: &str, path: &[u8]) -> http::Uri {
    let uri = if base_path.is_empty() {
        http::Uri::from_maybe_shared(Bytes::copy_from_slice(path))
    } else {
        let mut full = Vec::with_capacity(base_path.len() + path.len());
        full.extend_from_slice(base_path.as_bytes());
        full.extend_from_slice(path);
        http::Uri::from_maybe_shared(Bytes::from(full))
    };
    uri.unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// Builds the run's requests in order; deterministic for a given seed.
#[derive(Debug)]
pub struct Factory {
    templates: Vec<Prepared>,
    mix: Mix,
    clients: u32,
    tokens: Vec<String>,
    base_path: String,
    host: HeaderValue,
    rng: SmallRng,
}

impl Factory {
    /// The factory of an open-loop run: one sequence from the scenario's seed.
    pub fn new(scenario: &Scenario) -> anyhow::Result<Factory> {
        Factory::seeded(scenario, scenario.seed)
    }

    /// The factory of closed-loop worker `worker`: its own sequence, derived from the seed.
    pub fn new_for_worker(scenario: &Scenario, worker: u64) -> anyhow::Result<Factory> {
        let seed = scenario
            .seed
            .wrapping_add(worker.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Factory::seeded(scenario, seed)
    }

    fn seeded(scenario: &Scenario, seed: u64) -> anyhow::Result<Factory> {
        let templates = scenario
            .requests
            .iter()
            .map(|r| {
                // Scenario headers first; a request's own header of the same name wins.
                let mut headers: Vec<(HeaderName, Part)> = scenario
                    .headers
                    .iter()
                    .filter(|(n, _)| !r.headers.iter().any(|(m, _)| m == n))
                    .map(|(n, t)| (n.clone(), Part::of(t)))
                    .collect();
                headers.extend(r.headers.iter().map(|(n, t)| (n.clone(), Part::of(t))));
                let path = Part::of(&r.path);
                let uri = match &path {
                    Part::Fixed(p) => Some(target_uri(&scenario.target.base_path, p)),
                    Part::PerRequest(_) => None,
                };
                Prepared {
                    method: r.method.clone(),
                    uri,
                    path,
                    headers,
                    body: Part::of(&r.body),
                    client: r.client,
                    keep_body: r.checks.iter().any(crate::check::Check::needs_body),
                }
            })
            .collect();
        Ok(Factory {
            templates,
            mix: scenario.mix(),
            clients: scenario.clients.get(),
            tokens: scenario.tokens.clone(),
            base_path: scenario.target.base_path.clone(),
            host: HeaderValue::from_str(&scenario.target.authority)?,
            rng: SmallRng::seed_from_u64(seed),
        })
    }

    /// The next request of the mix, for the next client, with the index of its template;
    /// `now_ns` (Unix nanoseconds) is what `${now_...}` is filled with.
    pub fn next_request(&mut self, now_ns: i64) -> (usize, Request) {
        let i = self.mix.pick(self.rng.random());
        let t = &self.templates[i];
        let client = t
            .client
            .unwrap_or_else(|| self.rng.random_range(0..self.clients.max(1)));
        let token = if self.tokens.is_empty() {
            ""
        } else {
            &self.tokens[client as usize % self.tokens.len()]
        };
        let uri = match &t.uri {
            Some(u) => u.clone(),
            None => target_uri(&self.base_path, &t.path.bytes(client, token, now_ns)),
        };
        let body = t.body.bytes(client, token, now_ns);
        let mut builder = http::Request::builder()
            .method(t.method.clone())
            .uri(uri)
            .header(HOST, self.host.clone());
        let mut typed = false;
        for (name, value) in &t.headers {
            typed |= name == CONTENT_TYPE;
            if let Ok(v) = HeaderValue::from_maybe_shared(value.bytes(client, token, now_ns)) {
                builder = builder.header(name, v);
            }
        }
        if !body.is_empty() && !typed {
            builder = builder.header(CONTENT_TYPE, "application/octet-stream");
        }
        // Every part was checked when the scenario compiled; a request that still does not
        // build becomes an empty GET rather than stopping the run.
        let mut req = builder
            .body(Full::new(body))
            .unwrap_or_else(|_| http::Request::new(Full::new(Bytes::new())));
        if t.keep_body {
            req.extensions_mut().insert(crate::client::KeepBody);
        }
        (i, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_time_placeholder_is_filled_with_the_time_each_request_is_made_at() {
        let text = "\
name: dashboard
target: http://gw.example
concurrency: 1
duration: 1s
requests:
  - path: \"/query?q=SELECT+count(v)+FROM+cpu+WHERE+time+%3E%3D+${now_ms - 1h}ms\"
    headers: { x-sent-at: \"${now_s}\" }
";
        let scenario = crate::scenario::parse_str(text, Path::new("s.yaml"), &[], &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut factory = Factory::new(&scenario).unwrap();
        for now_s in [1_700_003_600i64, 1_700_003_605] {
            let (_, req) = factory.next_request(now_s * 1_000_000_000);
            let from_ms = (now_s - 3600) * 1000;
            assert_eq!(
                req.uri().path_and_query().map(|p| p.as_str()),
                Some(&*format!(
                    "/query?q=SELECT+count(v)+FROM+cpu+WHERE+time+%3E%3D+{from_ms}ms"
                ))
            );
            assert_eq!(req.headers()["x-sent-at"], now_s.to_string().as_str());
        }
    }
}
