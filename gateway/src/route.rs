//! The route step: the request matched against the routes of the policy in service, whose
//! snapshot the request then keeps to its end (a reload meanwhile does not change what
//! it sees), and the pool of the route it goes to (`split.rs`: a header rule, else the
//! weights), chosen once: its retries and cache entries stay with that pool.

use crate::config::policy::{Route, Target};
use crate::config::resilience::RetryPolicy;
use crate::normalize;
use crate::refusal::Refusal;
use crate::runtime::{PoolState, RouteLinks, Snapshot};
use crate::split;
use pingora::http::RequestHeader;
use std::sync::Arc;

/// A request's route, within the snapshot it was matched in, and the route's pool it goes
/// to.
#[derive(Debug, Clone)]
pub struct Routed {
    snapshot: Arc<Snapshot>,
    index: usize,
    /// Which of the route's targets.
    target: usize,
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

    /// What the route refers to (its pools, limits and cache), resolved in the snapshot.
    pub fn links(&self) -> &RouteLinks {
        &self.snapshot.links[self.index]
    }

    /// The pool the request goes to, with its weight and the retries it follows there.
    pub fn target(&self) -> &Target {
        // `resolve` only picks a target the route has.
        &self.route().targets[self.target]
    }

    /// The name of the pool the request goes to.
    pub fn pool_name(&self) -> &str {
        &self.target().pool
    }

    /// The retries of the request: its route's over its pool's.
    pub fn retries(&self) -> &RetryPolicy {
        &self.target().retries
    }

    /// The pool the request goes to (`None` only if a policy names a pool it lacks, which
    /// compiling it refuses).
    pub fn pool(&self) -> Option<&PoolState> {
        self.links().pools.get(self.target)?.as_deref()
    }
}

/// Matches the request (host, path, method) against the snapshot's routes: 404 when none
/// does, 400 for a `Host` the listener's rules refuse. Then picks the route's pool: the
/// first header rule the request matches, else the route's weights.
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
    let route = &snapshot.policy.routes[index];
    let target = split::by_header(&route.by_header, &req.headers)
        .unwrap_or_else(|| snapshot.links[index].split.pick())
        .min(route.targets.len().saturating_sub(1));
    Ok(Routed {
        snapshot,
        index,
        target,
    })
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
    fn a_split_route_deals_its_pools_by_weight_and_a_header_rule_comes_first() {
        let text = "\
pools:
  v1: { backends: [{ address: 127.0.0.1:8086 }], retries: { attempts: 3 } }
  v2: { backends: [{ address: 127.0.0.1:9086 }] }
routes:
  - name: query
    match: { path_prefix: /query }
    split: [ { pool: v1, weight: 3 }, { pool: v2, weight: 1 } ]
    route_by_header: [ { header: X-Canary, value: \"1\", pool: v2 } ]
";
        let policy = parse_policy(text, std::path::Path::new("p.yaml")).unwrap();
        let snap = Snapshot::new(policy, 1, &Registry::default());
        let pick = |canary: bool| {
            let mut req = request("GET", "/query", Some("x"));
            if canary {
                req.insert_header("x-canary", "1").unwrap();
            }
            let routed = resolve(snap.clone(), &req).unwrap();
            let name = routed.pool().map(|p| p.pool.name.clone()).unwrap();
            assert_eq!(name, routed.pool_name());
            (name, routed.retries().attempts.get())
        };
        let dealt: Vec<String> = (0..8).map(|_| pick(false).0).collect();
        // Stride 3 of 4 positions: 0 3 2 1, position 3 is v2's.
        assert_eq!(dealt, ["v1", "v2", "v1", "v1", "v1", "v2", "v1", "v1"]);
        assert_eq!(
            pick(true),
            ("v2".to_string(), 1),
            "the header's pool, its retries"
        );
        // The header rule took no turn of the weights: request 8 (v1), then 9 (v2).
        assert_eq!(pick(false), ("v1".to_string(), 3));
        assert_eq!(pick(false), ("v2".to_string(), 1));
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
