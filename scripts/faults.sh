#!/usr/bin/env bash
# The whole fault matrix (tests/tests/faults.rs): each fault run against three TSDB nodes,
# two gateways, Redis and a client in network namespaces of their own, then the checker;
# every fault's figures written to docs/reliability.md (the tables between its markers).
#
#   scripts/faults.sh                     # every fault, the report rewritten
#   FAULTS=isolate scripts/faults.sh      # only the tests whose name contains this
#   REPORT=0 scripts/faults.sh            # run, but leave docs/reliability.md as it is
#
# Needs root (namespaces, iptables, mounts), iproute2, iptables and keepalived
# (scripts/install-test-deps.sh installs them). Builds the release binaries the lab runs.
# CI runs three of these faults (scripts/test.sh); this runs them all, one at a time so that
# timings are not shared with another fault's processes.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
cargo build --release --locked -p gateway -p tsdb-backend --bins
cargo build --locked -p tests --bin link-shaper --tests

OUT=target/faults
rm -rf "$OUT"
mkdir -p "$OUT"
filter=()
if [ -n "${FAULTS:-}" ]; then
  filter=("$FAULTS")
fi
status=0
FAULTS_REPORT_DIR="$PWD/$OUT" cargo nextest run --locked -p tests --test faults \
  --run-ignored all --test-threads 1 --no-fail-fast "${filter[@]}" || status=$?

if [ "${REPORT:-1}" != 0 ]; then
  python3 scripts/faults-report.py "$OUT" docs/reliability.md
fi
exit "$status"
