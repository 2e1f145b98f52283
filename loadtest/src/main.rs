//! Placeholder: this crate is filled by a later issue.

fn main() {}
