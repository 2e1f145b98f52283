//! Fuzzes `gateway::fuzz::cache_buckets`: see its documentation for the input's shape and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gateway::fuzz::cache_buckets(data));
