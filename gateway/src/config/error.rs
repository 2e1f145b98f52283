//! Configuration errors that name the file, the line, the column and the field (shared
//! with the load-test scenarios, in `operator-config`).

pub use operator_config::error::{ConfigError, ConfigErrors};
