//! Replays every saved fuzz input on stable: the seed corpora under `fuzz/corpus/<target>`
//! and the findings kept under `fuzz/regressions/<target>`, each through the same function
//! its cargo-fuzz target calls, so a parser bug fuzzing found stays fixed without nightly.
//!
//! A directory whose name is not a target here fails the test: a new target must be added
//! to [`TARGETS`] (and to `fuzz/Cargo.toml`) to have its inputs replayed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A fuzz target's body: bytes in, a panic if the parser or an invariant breaks.
type Body = fn(&[u8]);

/// Every fuzz target, by its name in `fuzz/Cargo.toml`, with the body it runs.
const TARGETS: &[(&str, Body)] = &[
    ("lineproto", tsdb_backend::fuzz::lineproto),
    ("influxql", tsdb_backend::fuzz::influxql),
    ("tsdb_query_params", tsdb_backend::fuzz::query_params),
    ("replication_frames", tsdb_backend::fuzz::replication_frames),
    ("wal", tsdb_backend::fuzz::wal),
    ("snapshot", tsdb_backend::fuzz::snapshot),
    ("block", tsdb_backend::fuzz::block),
    ("gateway_query_params", gateway::fuzz::query_params),
    ("cache_buckets", gateway::fuzz::cache_buckets),
    ("written_times", gateway::fuzz::written_times),
    ("jwt", gateway::fuzz::jwt),
    ("jwks", gateway::fuzz::jwks),
    ("policy_yaml", gateway::fuzz::policy_yaml),
    ("request_head", gateway::fuzz::request_head),
    ("proxy_header", gateway::fuzz::proxy_header),
    ("scenario_yaml", loadtest::fuzz::scenario_yaml),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted, or none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_saved_input_replays_through_its_target_without_a_panic() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for kind in ["corpus", "regressions"] {
        for dir in subdirectories(&fuzz_dir().join(kind)) {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let Some((_, target)) = TARGETS.iter().find(|(n, _)| *n == name) else {
                failures.push(format!("{}: no such fuzz target", dir.display()));
                continue;
            };
            for file in files(&dir) {
                let data = std::fs::read(&file).unwrap();
                if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                    failures.push(format!("{}: panicked", file.display()));
                }
                replayed += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        replayed > 0,
        "no saved fuzz inputs found under {:?}",
        fuzz_dir()
    );
    eprintln!("replayed {replayed} saved fuzz inputs");
}

#[test]
fn every_target_has_a_seed_corpus() {
    for (name, _) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        assert!(!files(&dir).is_empty(), "{} has no seeds", dir.display());
    }
}

/// The subdirectories of `dir`, sorted.
fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}
