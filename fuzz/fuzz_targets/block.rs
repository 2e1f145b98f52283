//! Fuzzes `tsdb_backend::fuzz::block`: see its documentation for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tsdb_backend::fuzz::block(data));
