//! A time-series database node that speaks the InfluxDB 1.x HTTP API.
//!
//! Layout, following the path of a write and of a query:
//!
//! ```text
//! http.rs          InfluxDB 1.x (and 2.x write) HTTP API, the thin I/O edge
//!  ├─ lineproto/   line-protocol parser: bytes -> Points, one Result per line
//!  ├─ storage/     catalog (databases, retention), WAL with group commit,
//!  │               in-memory series, snapshots (checkpoints), retention sweeps
//!  └─ query/       InfluxQL lexer, parser (AST with canonical Display), executor
//! model.rs         Point, FieldValue, Precision: the vocabulary of all of the above
//! clock.rs         the one place that reads wall-clock and monotonic time
//! ```

pub mod cli;
pub mod clock;
pub mod fuzz;
pub mod http;

pub mod lineproto;
pub mod metrics;
pub mod model;
pub mod query;
pub mod replication;
pub mod storage;
