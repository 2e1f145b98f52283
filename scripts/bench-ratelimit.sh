#!/usr/bin/env bash
# What rate limiting costs, and what it buys: every figure against a baseline of the same run.
#   scripts/bench-ratelimit.sh     env: ROUNDS=3 DURATION=10 CONNS=50 GLOBAL_RATE=5000
#                                       NOISY_DURATION=20s NOISY_RATE=400 BENCH_NO_BUILD=1
# 1. Local limit, throughput: one gateway (threads: 1) in front of a private nginx
#    answering 1 KiB; `loadtest run` in a closed loop of $CONNS connections for $DURATION s
#    against /open (no limit) and /local (a local limit keyed by client_ip, so high that
#    every request is admitted: the decision is paid, never a 429). Ratio local / open.
# 2. Global limit, latency: an open loop at $GLOBAL_RATE req/s against /open and /global
#    (the same limit with scope: global, in a private redis-server on a free port). What
#    the global decision adds at p50 and p99 (ms), global − open in the same round.
# 3. Noisy neighbour: a tsdb-backend node behind two gateways, one whose /query route
#    has a per-client limit (key [header:x-client], 30/s, burst 30) and one without any.
#    loadtest/scenarios/noisy-neighbour.yaml for $NOISY_DURATION at $NOISY_RATE req/s:
#    the noisy client sends 20 times the share of each of 19 others. Runs: the baseline
#    (no noisy client: NOISY_WEIGHT=1, the others at the same rate) on the limited gateway,
#    the noisy run on the limited gateway, the noisy run on the unlimited one. The others'
#    success rate and p99 (the report's `requests[1]`), and the noisy client's 429s.
# 4. The cost of one local decision (cargo bench -p gateway --bench ratelimit).
# Rounds interleave the runs; only ratios inside one round mean anything (2 shared cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
GLOBAL_RATE=${GLOBAL_RATE:-5000}
NOISY_DURATION=${NOISY_DURATION:-20s}
NOISY_RATE=${NOISY_RATE:-400}
bash scripts/install-bench-deps.sh
command -v redis-server >/dev/null || bash scripts/install-test-deps.sh
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway -p loadtest -p tsdb-backend
fi
source scripts/bench-lib.sh

origin=$(free_port) gw=$(free_port) admin=$(free_port) redis=$(free_port)
node=$(free_port) limited=$(free_port) open_gw=$(free_port) a2=$(free_port) a3=$(free_port)
mkdir -p "$work/p1" "$work/p2" "$work/p3" "$work/node"
start_origin "$origin"
redis-server --port "$redis" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
target/release/tsdb-backend --listen "127.0.0.1:$node" --data-dir "$work/node" >"$work/node.log" 2>&1 &
pids+=($!)

bootstrap() { # file port admin policies [redis]
  {
    echo "listeners: [ { name: public, address: 127.0.0.1:$2 } ]"
    echo "admin: { address: 127.0.0.1:$3 }"
    echo "policies: $4"
    echo "threads: 1"
    [ -n "${5:-}" ] && echo "redis: { url: \"redis://127.0.0.1:$5/\" }"
    true
  } > "$1"
}
bootstrap "$work/gw.yaml" "$gw" "$admin" p1/ "$redis"
cat > "$work/p1/bench.yaml" <<CONF
rate_limits:
  local:  { key: [client_ip], rate: 1000000/s, burst: 1000000 }
  global: { key: [client_ip], rate: 1000000/s, burst: 1000000, scope: global }
pools:
  origin:
    backends: [ { address: 127.0.0.1:$origin } ]
    health_check: { path: /, interval: 1s, timeout: 500ms }
routes:
  - { name: open, match: { path_prefix: /open }, pool: origin }
  - { name: local, match: { path_prefix: /local }, pool: origin, rate_limit: [local] }
  - { name: global, match: { path_prefix: /global }, pool: origin, rate_limit: [global] }
CONF
tsdb_policy() { # file [limit]
  cat > "$1" <<CONF
rate_limits:
  per-client: { key: [header:x-client], rate: 30/s, burst: 30 }
pools:
  tsdb:
    backends: [ { address: 127.0.0.1:$node } ]
    health_check: { path: /ping, interval: 1s, timeout: 500ms }
routes:
  - name: query
    match: { path_prefix: /query }
    pool: tsdb
$2
CONF
}
bootstrap "$work/limited.yaml" "$limited" "$a2" p2/
tsdb_policy "$work/p2/tsdb.yaml" "    rate_limit: [per-client]"
bootstrap "$work/open.yaml" "$open_gw" "$a3" p3/
tsdb_policy "$work/p3/tsdb.yaml" ""
for c in gw limited open; do
  target/release/gateway run --config "$work/$c.yaml" >"$work/$c.log" 2>&1 &
  pids+=($!)
done
for a in "$admin" "$a2" "$a3"; do
  for _ in $(seq 1 150); do curl -sf -o /dev/null "http://127.0.0.1:$a/readyz" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$a/readyz" || { echo "bench-ratelimit: gateway on admin $a not ready" >&2; tail "$work"/*.log >&2; exit 1; }
done
curl -sf -o /dev/null -XPOST "http://127.0.0.1:$node/query" --data-urlencode "q=CREATE DATABASE telemetry"
for p in open local global; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gw/$p")
  [ "$code" = 200 ] || { echo "bench-ratelimit: /$p answered $code" >&2; exit 1; }
done

closed() { # name path
  cat > "$work/$1.yaml" <<YAML
name: $1
target: http://127.0.0.1:$gw
concurrency: $CONNS
duration: ${DURATION}s
warmup: 2s
requests: [ { method: GET, path: $2 } ]
max_connections: $CONNS
slo: [ "error_rate <= 0" ]
YAML
}
open_loop() { # name path
  cat > "$work/$1.yaml" <<YAML
name: $1
target: http://127.0.0.1:$gw
stages:
  - { duration: 2s, rate: $GLOBAL_RATE }
  - { duration: ${DURATION}s, rate: $GLOBAL_RATE }
requests: [ { method: GET, path: $2 } ]
max_connections: 256
slo: [ "error_rate <= 0" ]
YAML
}
closed c-open /open; closed c-local /local
open_loop o-open /open; open_loop o-global /global

run() { # scenario [--set ...] -> report dir
  local name=$1; shift
  timeout 300 target/release/loadtest run --quiet --threads 1 "$@" --out "$work/out-$name" >/dev/null \
    || [ $? -eq 2 ] || { echo "bench-ratelimit: $name failed" >&2; exit 1; }
}
field() { # report expression
  python3 -c "import json; r=json.load(open('$work/out-$1/report.json')); print($2)"
}

echo "1-2. local limit throughput (closed loop, $CONNS conns) and global decision latency (open loop, $GLOBAL_RATE/s)"
printf '%-6s %10s %10s %7s | %9s %9s %9s %9s %8s %8s\n' round open local ratio "p50 open" "p50 glob" "p99 open" "p99 glob" "+p50" "+p99"
for r in $(seq 1 "$ROUNDS"); do
  run c-open "$work/c-open.yaml"; run c-local "$work/c-local.yaml"
  run o-open "$work/o-open.yaml"; run o-global "$work/o-global.yaml"
  o=$(field c-open "r['overall']['achieved_rate']"); l=$(field c-local "r['overall']['achieved_rate']")
  p50o=$(field o-open "r['overall']['latency']['p50_ms']"); p50g=$(field o-global "r['overall']['latency']['p50_ms']")
  p99o=$(field o-open "r['overall']['latency']['p99_ms']"); p99g=$(field o-global "r['overall']['latency']['p99_ms']")
  errs=$(field o-global "r['overall']['server_errors'] + r['overall']['transport_errors'] + r['overall']['rate_limited']")
  [ "$errs" = 0 ] || echo "  (global run: $errs answers were not 200)"
  python3 -c "print(f'{$r:<6} {$o:10.0f} {$l:10.0f} {$l/$o:7.3f} | {$p50o:9.3f} {$p50g:9.3f} {$p99o:9.3f} {$p99g:9.3f} {$p50g-$p50o:8.3f} {$p99g-$p99o:8.3f}')"
done

echo
echo "3. noisy neighbour ($NOISY_RATE/s for $NOISY_DURATION, per-client limit 30/s): the 19 others, and the noisy client"
base_rate=$(( NOISY_RATE * 20 / 39 ))
printf '%-6s %-26s %9s %9s %9s %10s\n' round run "others ok" "others p99" "vs base" "noisy 429"
for r in $(seq 1 "$ROUNDS"); do
  scen=loadtest/scenarios/noisy-neighbour.yaml
  run n-base "$scen" --set "TARGET=http://127.0.0.1:$limited" --set NOISY_WEIGHT=1 --set "RATE=$base_rate" --set "DURATION=$NOISY_DURATION" --set WARMUP=2s
  run n-limited "$scen" --set "TARGET=http://127.0.0.1:$limited" --set "RATE=$NOISY_RATE" --set "DURATION=$NOISY_DURATION" --set WARMUP=2s
  run n-open "$scen" --set "TARGET=http://127.0.0.1:$open_gw" --set "RATE=$NOISY_RATE" --set "DURATION=$NOISY_DURATION" --set WARMUP=2s
  base=$(field n-base "r['requests'][1]['summary']['latency']['p99_ms']")
  for n in n-base n-limited n-open; do
    python3 - "$work/out-$n/report.json" "$r" "$n" "$base" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); others = r["requests"][1]["summary"]; noisy = r["requests"][0]["summary"]
label = {"n-base": "baseline (no noisy client)", "n-limited": "noisy, limited", "n-open": "noisy, no limit"}[sys.argv[3]]
ok = others["ok"] / max(others["requests"], 1) * 100
p99 = others["latency"]["p99_ms"]
print(f"{sys.argv[2]:<6} {label:<26} {ok:8.2f}% {p99:8.2f}ms {p99 / float(sys.argv[4]):9.2f} {noisy['rate_limited']:10d}")
PY
  done
done

echo
echo "4. one local decision (cargo bench -p gateway --bench ratelimit):"
cargo bench -q -p gateway --bench ratelimit 2>/dev/null | grep -E '^(local|around)|time:' | paste - - | sed -E 's/ +time: +/  /'
