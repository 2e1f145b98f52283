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
//! listener.rs      plain or TLS connections, and who is on the other end
//! peer_auth.rs     the pool's shared secret; tls.rs: HTTPS and the peers' TLS
//! replication/     shipping accepted writes to every peer (client.rs: how peers are called)
//! ```

pub mod cli;
pub mod clock;
pub mod fuzz;
pub mod http;

pub mod lineproto;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod peer_auth;
pub mod query;
pub mod replication;
pub mod storage;
pub mod tls;
