//! Active health checks: one probe of a backend (`GET <path>`, any 2xx within the
//! timeout). The threads that probe every backend each interval are the reloader's
//! (`reload/checkers.rs`), which starts and stops them as backends come and go.

use crate::config::policy::HealthCheck;
use std::net::SocketAddr;

/// Whether one check of `addr` succeeds: any 2xx answer within the timeout.
pub fn probe(agent: &ureq::Agent, addr: SocketAddr, check: &HealthCheck) -> bool {
    let url = format!("http://{addr}{}", check.path);
    match agent
        .get(&url)
        .config()
        .timeout_global(Some(check.timeout))
        .build()
        .call()
    {
        Ok(res) => res.status().is_success(),
        Err(_) => false,
    }
}
