//! The load-test suite (filled by a later issue); `src/bin/tsdb-bench.rs` benchmarks a TSDB endpoint.
