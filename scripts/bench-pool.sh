#!/usr/bin/env bash
# Replication benchmark: rows/s a 3-node pool accepts with writes spread over its nodes,
# against one node alone (same run, same data), and the replication lag at a steady
# 50k rows/s. Prints one JSON line per run. Usage: scripts/bench-pool.sh [--steps N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tsdb-backend -p loadtest

source scripts/bench-lib.sh

# 1. one node alone
p=$(free_port)
target/release/tsdb-backend --listen "127.0.0.1:$p" --data-dir "$work/single" --log warn >"$work/single.log" 2>&1 &
pids+=($!); wait_ping "$p"
target/release/tsdb-bench --url "http://127.0.0.1:$p" --label single --ingest-only "$@"
stop_all

# 2. a 3-node pool, writes spread round-robin over the nodes, as fast as it takes them
start_pool() {
  ports=("$(free_port)" "$(free_port)" "$(free_port)")
  for i in 0 1 2; do
    peers=()
    for j in 0 1 2; do [ "$i" != "$j" ] && peers+=("http://127.0.0.1:${ports[$j]}"); done
    target/release/tsdb-backend --listen "127.0.0.1:${ports[$i]}" --data-dir "$work/$1-n$i" \
      --node-id "n$i" --peers "$(IFS=,; echo "${peers[*]}")" --log warn >"$work/$1-n$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 0 1 2; do wait_ping "${ports[$i]}"; done
  urls=()
  for i in 0 1 2; do urls+=(--url "http://127.0.0.1:${ports[$i]}"); done
}
start_pool max
target/release/tsdb-bench "${urls[@]}" --label pool-3 --ingest-only --lag "$@"
stop_all

# 3. the same pool at a steady 50k rows/s: replication lag while it runs
start_pool steady
target/release/tsdb-bench "${urls[@]}" --label pool-3-50k --ingest-only --lag --rate 50000 --steps 5000
