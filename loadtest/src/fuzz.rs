//! The body of the `scenario_yaml` fuzz target, callable on stable.
//!
//! It passes arbitrary bytes to the scenario compiler the `loadtest` command runs and
//! panics only when an invariant breaks. The `fuzz/` crate (cargo-fuzz, nightly) calls it
//! from its target, and the `fuzz_replay` test in `tests/` calls it on stable for every saved
//! input under `fuzz/corpus/scenario_yaml` and `fuzz/regressions/scenario_yaml`.

use crate::scenario::parse_str;
use std::path::Path;

/// `scenario_yaml`: scenario text, compiled with one variable set and an empty environment.
/// The origin lies in a directory that does not exist, so a relative `body_file` or
/// `client_tokens_file` names no file; an absolute one is read, as the command would.
pub fn scenario_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = [("TARGET".to_string(), "http://127.0.0.1:8080".to_string())];
    let origin = Path::new("/nonexistent/scenarios/fuzz.yaml");
    if let Err(errors) = parse_str(text, origin, &set, &|_| None) {
        assert!(!errors.0.is_empty());
        let _ = errors.to_string();
    }
}
