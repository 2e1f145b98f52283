//! Scenario errors that name the file, the line, the column and the field, printed as
//! `file:line:column: field: message` (the gateway's configuration errors, shared through
//! `operator-config`).

pub use operator_config::error::position;

/// One problem in a scenario (or a file it names).
pub type ScenarioError = operator_config::ConfigError;

/// Every problem found in a scenario, one per line when displayed; a scenario with any is
/// not run.
pub type ScenarioErrors = operator_config::ConfigErrors;
