//! Durations as operators write them: `500ms`, `1s`, `2m`, `1h` (shared with the load-test
//! scenarios, in `operator-config`).

pub use operator_config::duration::parse_duration;
