#!/usr/bin/env bash
# The whole test suite: installs what the tests need (idempotently), checks formatting and
# lints, builds the binaries the end-to-end tests start, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

# A CI checkout builds once: incremental state would only double what target/ holds.
export CARGO_INCREMENTAL=0

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# End-to-end tests start the real binaries; build them first (same profile as the tests).
cargo build --workspace --bins --locked
# The fault tests (tests/tests/faults.rs) run the gateway and the nodes as they ship.
cargo build --release --locked -p gateway -p tsdb-backend --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
