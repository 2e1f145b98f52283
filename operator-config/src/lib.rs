//! What the gateway's policies and the load-test scenarios share: durations as operators
//! write them (`500ms`, `1s`, `2m`, `1h`), and errors that name the file, the line, the
//! column and the field (`file:line:column: field: message`), all reported at once, and
//! the `Collector` both compilers gather them with.

pub mod collect;
pub mod duration;
pub mod error;

pub use collect::Collector;
pub use duration::parse_duration;
pub use error::{position, ConfigError, ConfigErrors};
