//! Durations as operators write them: `500ms`, `1s`, `2m`, `1h` (the gateway's notation,
//! shared through `operator-config`).

pub use operator_config::duration::parse_duration;
