//! InfluxQL execution: statements parsed by the `influxql` crate run against the storage,
//! and their answers printed as InfluxDB 1.x prints them.

pub mod executor;
pub mod result;
pub mod zone;
