//! The API gateway: an L7 proxy that routes by operator-written policies to pools of
//! backends. Built so far: the configuration (bootstrap and policies, compiled and checked
//! with errors that name file, line, column and field) and `gateway check`.

pub mod config;
