//! Choosing a backend of a pool. One file per algorithm; the pool's runtime state holds
//! the chooser its policy names.

pub mod round_robin;

pub use round_robin::RoundRobin;
