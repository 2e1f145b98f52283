//! Faults across real hosts: a network of namespaces on one machine ([`net`]), the system
//! under test in it ([`cluster`]), a workload of writers and readers ([`workload`]), the
//! checker that proves nothing acknowledged was lost ([`checker`]), and the report row each
//! fault test leaves for `scripts/faults.sh` ([`report`]).
//!
//! The tests are `tests/tests/faults.rs`; `docs/reliability.md` is their report.

pub mod checker;
pub mod cluster;
pub mod net;
pub mod report;
pub mod workload;
