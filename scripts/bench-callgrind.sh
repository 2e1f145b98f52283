#!/usr/bin/env bash
# CPU per proxied request in instructions, which valgrind's callgrind counts the same on a
# noisy machine (wall-clock figures here move by 10% run to run). Usage:
#   scripts/bench-callgrind.sh
#   env: BASELINE=<a gateway binary> (an older build, counted the same way beside the current
#        one), OBSERVED=1 (also count the gateway with the access log on and every trace
#        exported, as bench-gateway.sh's `observed` target), REQUESTS=2000 CONNS=10 OUT=<dir>
#        BENCH_NO_BUILD=1
#
# What it measures: the gateway (target/release/gateway, threads: 1, one pool with a private
# nginx origin answering a 1 KiB body, a catch-all route, health checks once an hour so no
# timer runs during the count) is started under `valgrind --tool=callgrind`, sent
# $REQUESTS keep-alive GETs over $CONNS connections by a Python client, and stopped; then
# again with 3 × $REQUESTS. Instructions per request are the difference of the two totals
# over the difference of the request counts, so the start, the stop and the connections
# cancel out. With BASELINE, the older binary is counted the same way, and the ratio of the
# two is printed. With OBSERVED=1 the current binary is counted once more with
# `access_log: { format: json, to: access.log }` and `tracing: { otlp: <sink>, sample: 100% }`
# (every thread counts: the access log's writer and the span export's included), the sink
# being the tests' `otlp-sink`. The callgrind outputs stay in $OUT for `callgrind_annotate`.
# Nothing listens outside 127.0.0.1; ports are free ones picked at run time; every process
# started here is killed by PID at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-2000}
CONNS=${CONNS:-10}
OUT=${OUT:-$(mktemp -d /tmp/bench-callgrind.XXXXXX)}
mkdir -p "$OUT"
echo "bench-callgrind: outputs in $OUT"

command -v valgrind >/dev/null 2>&1 || { echo "bench-callgrind: valgrind missing (Debian: valgrind)" >&2; exit 1; }
bash scripts/install-bench-deps.sh
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway --bins
  [ "${OBSERVED:-}" = 1 ] && cargo build --release -q -p tests --bin otlp-sink
fi
source scripts/bench-lib.sh

origin_port=$(free_port)
start_origin "$origin_port"

# A client that sends exactly $2 GETs over $3 keep-alive connections to port $1, round
# robin, and checks that each got 200.
client() {
  python3 - "$@" <<'PY'
import socket, sys
port, n, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
req = f"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
socks = [socket.create_connection(("127.0.0.1", port), timeout=120) for _ in range(conns)]
bufs = [b""] * conns
def answer(i):
    while b"\r\n\r\n" not in bufs[i]:
        chunk = socks[i].recv(65536)
        if not chunk: raise SystemExit("connection closed")
        bufs[i] += chunk
    head, rest = bufs[i].split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200"): raise SystemExit(head[:60])
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(rest) < length:
        chunk = socks[i].recv(65536)
        if not chunk: raise SystemExit("connection closed")
        rest += chunk
    bufs[i] = rest[length:]
for k in range(n):
    i = k % conns
    socks[i].sendall(req)
    answer(i)
print(f"{n} answers")
PY
}

# Bootstrap lines added to every counted gateway's configuration (OBSERVED sets them).
extra_bootstrap=""

# Counts the instructions of one gateway binary serving $2 requests: prints the total.
count() { # binary requests label
  local bin=$1 n=$2 label=$3 d=$work/$3 port admin
  port=$(free_port); admin=$(free_port); mkdir -p "$d/policies"
  cat > "$d/gateway.yaml" <<CONF
listeners:
  - { name: public, address: 127.0.0.1:$port }
admin: { address: 127.0.0.1:$admin }
policies: policies/
threads: 1
shutdown: { drain_timeout: 1s }
$extra_bootstrap
CONF
  cat > "$d/policies/bench.yaml" <<CONF
pools:
  origin:
    backends:
      - { address: 127.0.0.1:$origin_port }
    health_check: { path: /, interval: 1h, timeout: 5s }
routes:
  - name: all
    match: { path_prefix: / }
    pool: origin
CONF
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$label.out" \
    "$bin" run --config "$d/gateway.yaml" >"$OUT/$label.log" 2>&1 &
  local p=$!; pids+=($p)
  local ok=0
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$admin/readyz" && { ok=1; break; }
    kill -0 "$p" 2>/dev/null || break
    sleep 0.2
  done
  [ "$ok" = 1 ] || { echo "bench-callgrind: $label did not get ready; see $OUT/$label.log" >&2; exit 1; }
  client "$port" "$n" "$CONNS" >/dev/null
  kill -TERM "$p"
  for _ in $(seq 1 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  # Threads write their own totals: sum every "summary:" line of the outputs.
  cat "$OUT"/callgrind."$label".out* | awk '/^summary:/ {s += $2} END {print s}'
}

per_request() { # binary label -> instructions per request
  local a b
  a=$(count "$1" "$REQUESTS" "$2-small")
  b=$(count "$1" $((REQUESTS * 3)) "$2-large")
  python3 -c "print(round(($b - $a) / ($REQUESTS * 2)))"
}

current=$(per_request target/release/gateway current)
echo "gateway: $current instructions per request"
printf 'target\tinstructions_per_request\n' > "$OUT/results.tsv"
printf 'gateway\t%s\n' "$current" >> "$OUT/results.tsv"
if [ -n "${BASELINE:-}" ]; then
  base=$(per_request "$BASELINE" baseline)
  printf 'baseline\t%s\n' "$base" >> "$OUT/results.tsv"
  echo "baseline: $base instructions per request"
  python3 -c "print(f'gateway / baseline: {$current / $base:.3f} ({($current - $base):+d} instructions per request)')" | tee "$OUT/ratio.txt"
fi
if [ "${OBSERVED:-}" = 1 ]; then
  target/release/otlp-sink >"$OUT/otlp-sink.out" 2>&1 &
  pids+=($!)
  sink_url=""
  for _ in $(seq 1 100); do
    sink_url=$(awk '/^listening/ {print $2; exit}' "$OUT/otlp-sink.out")
    [ -n "$sink_url" ] && break
    sleep 0.1
  done
  [ -n "$sink_url" ] || { echo "bench-callgrind: the OTLP sink did not start" >&2; exit 1; }
  extra_bootstrap="access_log: { format: json, to: access.log }
tracing: { otlp: \"$sink_url\", sample: 100% }"
  observed=$(per_request target/release/gateway observed)
  printf 'observed\t%s\n' "$observed" >> "$OUT/results.tsv"
  echo "observed: $observed instructions per request"
  python3 -c "print(f'observed / gateway: {$observed / $current:.3f} ({($observed - $current):+d} instructions per request)')" | tee "$OUT/observed-ratio.txt"
fi
