//! The API gateway: an L7 proxy that routes by operator-written policies to pools of
//! backends.
//!
//! ```text
//! config/      bootstrap + policies: raw YAML -> compiled Policy (file:line:column errors)
//! runtime.rs   the snapshot the data plane reads (policy + pool states), swapped whole
//! balance/     choosing a backend (one file per algorithm)
//! health/      backend health: state machine, registry, active checks
//! proxy.rs     the request pipeline (Pingora ProxyHttp), and nothing else
//! respond.rs   the gateway's own JSON error answers
//! admin.rs     /healthz, /readyz, /admin/status, POST /admin/reload on the admin port
//! reload.rs    validate-then-swap policy reloads; health checkers follow the backends
//! ```

pub mod admin;
pub mod balance;
pub mod config;
pub mod health;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod runtime;
