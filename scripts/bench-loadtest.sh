#!/usr/bin/env bash
# Is the generator fast enough? loadtest's closed loop against wrk, same origin, same run.
#   scripts/bench-loadtest.sh        env: ROUNDS=3 DURATION=10 CONNS=50 BENCH_NO_BUILD=1
# The origin is a private nginx (one process) answering a fixed 1 KiB body, keep-alive on.
# Each round runs `wrk -t1 -c$CONNS -d${DURATION}s` and then `loadtest run` with
# `concurrency: $CONNS`, `duration: ${DURATION}s` and one worker thread, and prints both
# rates and their ratio. Only the ratio inside a round means anything on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
bash scripts/install-bench-deps.sh
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p loadtest
fi
source scripts/bench-lib.sh

port=$(free_port)
start_origin "$port"

cat > "$work/max.yaml" <<YAML
name: generator-ceiling
target: http://127.0.0.1:$port
concurrency: $CONNS
duration: ${DURATION}s
warmup: 2s
requests:
  - { method: GET, path: / }
max_connections: $CONNS
YAML

printf '%-6s %12s %12s %8s\n' round wrk loadtest ratio
for r in $(seq 1 "$ROUNDS"); do
  w=$(timeout 120 wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  l=$(timeout 120 target/release/loadtest run --quiet --threads 1 "$work/max.yaml" --out "$work/out" >/dev/null \
      && python3 -c "import json; print(json.load(open('$work/out/report.json'))['overall']['achieved_rate'])")
  python3 -c "print(f'{$r:<6} {$w:12.0f} {$l:12.0f} {$l/$w:8.2f}')"
done
