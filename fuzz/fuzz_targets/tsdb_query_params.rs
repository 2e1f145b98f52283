//! Fuzzes `tsdb_backend::fuzz::query_params`: see its documentation for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tsdb_backend::fuzz::query_params(data));
