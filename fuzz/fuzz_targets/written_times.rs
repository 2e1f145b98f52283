//! Fuzzes `gateway::fuzz::written_times`: see its documentation for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzz::written_times(data));
