//! The route step: the request matched against the routes of the policy in service, whose
//! snapshot the request then keeps to its end (a reload meanwhile does not change what
//! it sees).

use crate::config::policy::Route;
use crate::normalize;
use crate::refusal::Refusal;
use crate::runtime::{PoolState, RouteLinks, Snapshot};
use pingora::http::RequestHeader;
use std::sync::Arc;

/// A request's route, within the snapshot it was matched in.
#[derive(Debug, Clone)]
pub struct Routed {
    snapshot: Arc<Snapshot>,
    index: usize,
}

impl Routed {
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub fn route(&self) -> &Route {
        // `resolve` only makes a `Routed` for an index of the snapshot's routes.
        &self.snapshot.policy.routes[self.index]
    }

    /// The route's position in its policy (what `route` reads).
    #[cfg(test)]
    fn index(&self) -> usize {
        self.index
    }

    /// What the route refers to (its pool, limits and cache), resolved in the snapshot.
    pub fn links(&self) -> &RouteLinks {
        &self.snapshot.links[self.index]
    }

    /// The route's pool (`None` only if a policy names a pool it lacks, which compiling
    /// it refuses).
    pub fn pool(&self) -> Option<&PoolState> {
        self.links().pool.as_deref()
    }
}

/// Matches the request (host, path, method) against the snapshot's routes: 404 when none
/// does, 400 for a `Host` the listener's rules refuse.
pub fn resolve(snapshot: Arc<Snapshot>, req: &RequestHeader) -> Result<Routed, Refusal> {
    let host = normalize::routing_host(req)?;
    let index = snapshot
        .policy
        .route_index(host.as_deref(), req.uri.path(), req.method.as_str())
        .filter(|&i| i < snapshot.policy.routes.len() && i < snapshot.links.len())
        .ok_or_else(|| Refusal::NoRoute {
            method: req.method.to_string(),
            path: req.uri.path().to_string(),
        })?;
    Ok(Routed { snapshot, index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Registry;
    use crate::config::parse_policy;

    const POLICY: &str = "\
pools:
  tsdb:
    backends: [{ address: 127.0.0.1:8086 }]
routes:
  - name: write
    match: { path_prefix: /write, methods: [POST] }
    pool: tsdb
  - name: query
    match: { host: db.example, path: /query }
    pool: tsdb
";

    fn snapshot() -> Arc<Snapshot> {
        let policy = parse_policy(POLICY, std::path::Path::new("p.yaml")).unwrap();
        Snapshot::new(policy, 1, &Registry::default())
    }

    fn request(method: &str, path: &str, host: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build(method, path.as_bytes(), None).unwrap();
        if let Some(h) = host {
            req.insert_header("host", h).unwrap();
        }
        req
    }

    #[test]
    fn a_request_gets_the_first_route_that_matches_and_its_pool() {
        let routed = resolve(snapshot(), &request("POST", "/write", Some("x"))).unwrap();
        assert_eq!(routed.route().name, "write");
        assert_eq!(
            routed.snapshot().policy.routes[routed.index()].name,
            "write"
        );
        assert_eq!(routed.pool().map(|p| p.pool.name.as_str()), Some("tsdb"));
        let routed = resolve(
            snapshot(),
            &request("GET", "/query", Some("DB.example:8080")),
        );
        assert_eq!(
            routed.unwrap().route().name,
            "query",
            "host matched in its routing form"
        );
    }

    #[test]
    fn no_matching_route_is_a_404_naming_the_request() {
        let err = resolve(snapshot(), &request("GET", "/write", Some("x"))).unwrap_err();
        assert_eq!(err.status(), 404);
        assert_eq!(err.to_string(), "no route for GET /write");
        let err = resolve(snapshot(), &request("GET", "/query", Some("other"))).unwrap_err();
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn a_host_the_rules_refuse_is_a_400_before_any_route_is_tried() {
        let err = resolve(snapshot(), &request("GET", "/query", Some("a b"))).unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
        assert!(matches!(err, Refusal::Malformed(_)));
    }
}
