#!/usr/bin/env bash
# Pool balancing with one slow backend in the pool, and failover when a backend dies.
#   scripts/bench-balancing.sh     env: ROUNDS=3 RATE=500 DURATION=10 FAILOVER_DURATION=20
#                                       KILL_AT=8 BENCH_NO_BUILD=1
# The backends are scripted upstreams (loadtest/src/bin/scripted-upstream.rs): each answers
# every request after a fixed delay with its name as the body; /ping at once.
# 1. A slow backend: fast1 and fast2 answer after 1 ms, slow after 50 ms. One gateway
#    (threads: 2) has five pools over the same three backends, each with a route of its
#    name: rr (round_robin), lc (least_connections), p2c (p2c, by requests awaiting their
#    answer), p2c_ewma (p2c, by peak-EWMA latency), ewma (least expected wait, EWMA latency
#    times requests queued). Health checks GET /ping every 1 s. For each pool in turn,
#    interleaved over $ROUNDS rounds: `loadtest run` (one thread) in an open loop, a 2 s
#    warm-up then $DURATION s at $RATE req/s, GET /<pool>/x. Columns: p50 and p99 (ms,
#    from each request's scheduled send time), error rate (5xx and transport errors), and
#    the share of the pool's tries that went to the slow backend (the per-backend `tries`
#    of /admin/status, after the run minus before). Summary: per algorithm, the median
#    over rounds of p99(rr) / p99(algorithm) in the same round (higher is better).
# 2. Failover: pool fo of three fast scripted upstreams (1 ms), algorithm p2c, retries
#    (3 attempts on connect, reset and 503, backoff 5-50 ms), outlier detection (3
#    consecutive failures, 30 s, at most 50% ejected), health checks every 500 ms (down
#    after 2 failures). An open loop at $RATE req/s of GETs (idempotent): a 2 s warm-up
#    then $FAILOVER_DURATION s; $KILL_AT s into the measured part one of the three is
#    killed with kill -9 (a loadtest event). Requests, and the failed ones (any answer but
#    2xx/3xx, or none), over the whole run, warm-up included.
# Everything listens on 127.0.0.1 on free ports; every process is killed by PID at exit.
# Only figures of one run (and ratios inside one round) mean anything: 2 shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-500}
DURATION=${DURATION:-10}
FAILOVER_DURATION=${FAILOVER_DURATION:-20}
KILL_AT=${KILL_AT:-8}
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway -p loadtest
fi
for b in gateway loadtest scripted-upstream; do
  [ -x "target/release/$b" ] || { echo "bench-balancing: target/release/$b missing" >&2; exit 1; }
done
source scripts/bench-lib.sh

algos=(rr lc p2c p2c_ewma ewma)
gw=$(free_port) admin=$(free_port)
f1=$(free_port) f2=$(free_port) slow=$(free_port)
fo=("$(free_port)" "$(free_port)" "$(free_port)")
upstream() { # port name delay-ms -> sets upstream_pid
  target/release/scripted-upstream --listen "127.0.0.1:$1" --name "$2" --delay-ms "$3" \
    >"$work/$2.log" 2>&1 &
  upstream_pid=$!; pids+=("$upstream_pid"); disown "$upstream_pid"  # no "Killed" notices
}
upstream "$f1" fast1 1; upstream "$f2" fast2 1; upstream "$slow" slow 50
fo_pids=()
for i in 0 1 2; do upstream "${fo[$i]}" "fo$((i + 1))" 1; fo_pids+=("$upstream_pid"); done
for p in "$f1" "$f2" "$slow" "${fo[@]}"; do wait_ping "$p"; done

mkdir -p "$work/policies"
cat > "$work/gw.yaml" <<CONF
listeners: [ { name: public, address: 127.0.0.1:$gw } ]
admin: { address: 127.0.0.1:$admin }
policies: policies/
threads: 2
CONF
{
  echo "pools:"
  for a in "${algos[@]}"; do
    case $a in
      rr) alg="algorithm: round_robin" ;;
      lc) alg="algorithm: least_connections" ;;
      p2c) alg="algorithm: p2c" ;;
      p2c_ewma) alg=$'algorithm: p2c\n    p2c: { by: ewma }' ;;
      ewma) alg="algorithm: ewma" ;;
    esac
    cat <<CONF
  $a:
    $alg
    backends: [ { address: 127.0.0.1:$f1 }, { address: 127.0.0.1:$f2 }, { address: 127.0.0.1:$slow } ]
    health_check: { path: /ping, interval: 1s, timeout: 500ms }
CONF
  done
  cat <<CONF
  fo:
    algorithm: p2c
    backends: [ { address: 127.0.0.1:${fo[0]} }, { address: 127.0.0.1:${fo[1]} }, { address: 127.0.0.1:${fo[2]} } ]
    health_check: { path: /ping, interval: 500ms, timeout: 250ms, unhealthy_threshold: 2 }
    retries: { attempts: 3, on: [connect, reset, 503], backoff: { base: 5ms, max: 50ms } }
    outlier_detection: { consecutive_failures: 3, base_ejection: 30s, max_ejected: 50% }
routes:
CONF
  for a in "${algos[@]}" fo; do
    echo "  - { name: $a, match: { path_prefix: /$a }, pool: $a }"
  done
} > "$work/policies/bench.yaml"
target/release/gateway run --config "$work/gw.yaml" >"$work/gateway.log" 2>&1 &
pids+=($!); disown $!

status() { curl -sf --max-time 2 "http://127.0.0.1:$admin/admin/status"; }
ready=0
for _ in $(seq 1 150); do
  if curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$admin/readyz"; then
    # Ready means each pool has a healthy backend; wait until every backend is.
    status | python3 -c 'import json,sys; s=json.load(sys.stdin)["pools"]
sys.exit(any(not b["healthy"] for p in s.values() for b in p["backends"]))' && { ready=1; break; }
  fi
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "bench-balancing: gateway not ready" >&2; tail -n 20 "$work/gateway.log" >&2; exit 1; }
for a in "${algos[@]}" fo; do
  code=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gw/$a/x")
  [ "$code" = 200 ] || { echo "bench-balancing: /$a/x answered $code" >&2; exit 1; }
done

open_loop() { # name path duration [events line]
  cat > "$work/$1.yaml" <<YAML
name: $1
target: http://127.0.0.1:$gw
stages:
  - { duration: 2s, rate: $RATE }
  - { duration: ${3}s, rate: $RATE }
requests: [ { method: GET, path: $2 } ]
max_connections: 256
${4:-}
YAML
}
run() { # name -> report in $work/out-<name>; 2 is an SLO missed, not a failure to run
  timeout $((DURATION + FAILOVER_DURATION + 120)) target/release/loadtest run --quiet \
    --threads 1 "$work/$1.yaml" --out "$work/out-$1" >/dev/null \
    || [ $? -eq 2 ] || { echo "bench-balancing: loadtest $1 failed" >&2; exit 1; }
}
for a in "${algos[@]}"; do open_loop "$a" "/$a/x" "$DURATION"; done
open_loop fo /fo/x "$FAILOVER_DURATION" \
  "events: [ { at: $((2 + KILL_AT))s, run: \"kill -9 ${fo_pids[1]}\" } ]"

echo "1. one slow backend (50 ms) and two fast (1 ms): open loop at $RATE req/s for ${DURATION} s per pool"
printf '%-6s %-9s %9s %9s %9s %11s\n' round algorithm "p50 ms" "p99 ms" "errors" "to slow"
: > "$work/results.tsv"
for r in $(seq 1 "$ROUNDS"); do
  for a in "${algos[@]}"; do
    status > "$work/before.json"
    run "$a"
    status > "$work/after.json"
    python3 - "$work" "$a" "$r" "127.0.0.1:$slow" <<'PY'
import json, sys
work, pool, rnd, slow = sys.argv[1:]
tries = lambda f: {b["address"]: b["tries"] for b in json.load(open(f"{work}/{f}"))["pools"][pool]["backends"]}
before, after = tries("before.json"), tries("after.json")
delta = {k: after[k] - before[k] for k in after}
share = delta[slow] / max(sum(delta.values()), 1) * 100
o = json.load(open(f"{work}/out-{pool}/report.json"))["overall"]
lat = o["latency"]
print(f"{rnd:<6} {pool:<9} {lat['p50_ms']:9.2f} {lat['p99_ms']:9.2f} {o['error_rate'] * 100:8.2f}% {share:10.2f}%")
with open(f"{work}/results.tsv", "a") as t:
    t.write(f"{rnd}\t{pool}\t{lat['p99_ms']}\n")
PY
  done
done
echo
echo "median over $ROUNDS rounds of p99(rr) / p99(algorithm), same round (goal: p2c and ewma >= 3):"
python3 - "$work/results.tsv" <<'PY'
import statistics, sys
p99 = {}
for line in open(sys.argv[1]):
    r, pool, v = line.split("\t")
    p99[(r, pool)] = float(v)
rounds = sorted({r for r, _ in p99}, key=int)
for pool in ["lc", "p2c", "p2c_ewma", "ewma"]:
    ratios = [p99[(r, "rr")] / p99[(r, pool)] for r in rounds if p99[(r, pool)] > 0]
    each = " ".join(f"{x:.2f}" for x in ratios)
    print(f"  {pool:<9} {statistics.median(ratios):6.2f}x   (rounds: {each})")
PY

echo
echo "2. failover: pool fo (p2c, retries, outlier detection), $RATE req/s for ${FAILOVER_DURATION} s, one of 3 killed -9 at ${KILL_AT} s"
status > "$work/before.json"
run fo
status > "$work/after.json"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
r = json.load(open(f"{work}/out-fo/report.json"))
stages = [s["summary"] for s in r["stages"]]
total = sum(s["requests"] for s in stages)
failed = sum(s["requests"] - s["ok"] for s in stages)
o = r["overall"]
ev = r["events"][0] if r["events"] else {}
pool = lambda f: json.load(open(f"{work}/{f}"))["pools"]["fo"]
before, after = pool("before.json"), pool("after.json")
tries = sum(a["tries"] - b["tries"] for a, b in zip(after["backends"], before["backends"]))
ejected = sum(1 for b in after["backends"] if b["ejected"])
healthy = sum(1 for b in after["backends"] if b["healthy"])
print(f"  requests {total}, failed {failed} (5xx {o['server_errors']}, transport {o['transport_errors']}, "
      f"other non-2xx {o['client_errors'] + o['rate_limited']} in the measured part)")
print(f"  p50 {o['latency']['p50_ms']:.2f} ms, p99 {o['latency']['p99_ms']:.2f} ms, max {o['latency']['max_ms']:.2f} ms; "
      f"kill ran at {ev.get('started_s', 0):.1f} s (exit {ev.get('exit_code')})")
print(f"  tries {tries} for {total} requests (retries: {tries - total}); after the run {healthy} of 3 "
      f"backends healthy, {ejected} ejected, retry budget exhausted {after['retries']['budget_exhausted']} times")
print("  goal (zero failed):", "met" if failed == 0 else "NOT met")
PY
