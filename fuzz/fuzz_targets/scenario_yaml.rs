//! Fuzzes `loadtest::fuzz::scenario_yaml`: see its documentation for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| loadtest::fuzz::scenario_yaml(data));
