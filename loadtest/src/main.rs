//! `loadtest`: `run`, `compare` and `validate` (being built).

fn main() {}
