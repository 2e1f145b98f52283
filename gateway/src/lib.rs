//! The API gateway: an L7 proxy that routes by operator-written policies to pools of
//! backends.
//!
//! ```text
//! config/      bootstrap + policies: raw YAML -> compiled Policy (file:line:column errors)
//! runtime.rs   the snapshot the data plane reads (policy + pool states), swapped whole
//! balance/     choosing a backend (one file per algorithm)
//! proxy.rs     the request pipeline (Pingora ProxyHttp), and nothing else
//! respond.rs   the gateway's own JSON error answers
//! ```

pub mod balance;
pub mod config;
pub mod proxy;
pub mod respond;
pub mod runtime;
