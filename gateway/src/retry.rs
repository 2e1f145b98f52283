//! Retries that cannot become a storm: a budget (retries at most a share of requests over a
//! window) and exponential backoff with full jitter between tries.

pub mod backoff;
pub mod budget;
pub mod condition;
