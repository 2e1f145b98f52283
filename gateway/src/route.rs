//! The route step: the request matched against the routes of the policy in service, whose
//! snapshot the request then keeps to its end (a reload meanwhile does not change what
//! it sees).

use crate::config::policy::Route;
use crate::normalize;
use crate::refusal::Refusal;
use crate::runtime::{PoolState, Snapshot};
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

    /// The route's position in its policy.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The route's pool (`None` only if a policy names a pool it lacks, which compiling
    /// it refuses).
    pub fn pool(&self) -> Option<&PoolState> {
        self.snapshot.pools.get(&self.route().pool)
    }
}

/// Matches the request (host, path, method) against the snapshot's routes: 404 when none
/// does, 400 for a `Host` the listener's rules refuse.
pub fn resolve(snapshot: Arc<Snapshot>, req: &RequestHeader) -> Result<Routed, Refusal> {
    let host = normalize::routing_host(req)?;
    let index = snapshot
        .policy
        .route_index(host.as_deref(), req.uri.path(), req.method.as_str())
        .filter(|&i| i < snapshot.policy.routes.len())
        .ok_or_else(|| Refusal::NoRoute {
            method: req.method.to_string(),
            path: req.uri.path().to_string(),
        })?;
    Ok(Routed { snapshot, index })
}
