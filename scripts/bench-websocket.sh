#!/usr/bin/env bash
# WebSocket messages/s through the gateway against direct to the same echo server, same
# machine, same run.
#   scripts/bench-websocket.sh    env: ROUNDS=3 DURATION=10 WARMUP=2 CONNS=32 SIZE=128
#                                      WINDOWS="1 16" PIN=0 OUT=<dir> BENCH_NO_BUILD=1
# The ends are tests/examples/ws_bench.rs (tokio-tungstenite, one thread each):
#   echo  a WebSocket echo server (each message sent back as it came);
#   load  $CONNS WebSockets, each keeping W binary messages of $SIZE bytes in flight (a
#         new one sent as each echo arrives), echoes counted for $DURATION s after a
#         $WARMUP s warm-up; W is each of $WINDOWS in turn: 1 is request-response (every
#         message waits for the one before it: each costs its own reads and writes at each
#         hop), 16 a stream (several messages may share a read or a write).
# Targets, one after the other, interleaved over $ROUNDS rounds:
#   direct   the echo server itself;
#   nginx    nginx as the WebSocket proxy (one worker, master_process off, `proxy_pass`
#            with `proxy_http_version 1.1` and the Upgrade/Connection headers set, as its
#            documentation says, no access log): what any proxy costs on this machine;
#   pingora  Pingora with nothing of the gateway's (gateway/examples/bare_pingora.rs, set
#            up as the gateway sets Pingora up): Pingora's own upgrade pipe, the floor the
#            gateway is built on;
#   gateway  the release gateway (threads: 1), one route `/ws` with `websocket: true` to
#            a pool of the echo server.
# Columns: messages/s (echoes per second over all connections), p50 and p99 round trip
# (µs), errors (failed connections or wrong echoes), CPU seconds the proxy (nginx's worker,
# Pingora, the gateway) and the echo server spent during the run (utime + stime), and
# per round the ratio to direct. Only ratios inside one round mean anything: client, proxy
# and echo server share the machine's 2 cores (direct: two busy processes; through a
# proxy: three), and a proxied message costs twice the socket reads and writes.
# With PIN=1 (taskset), the load client and the echo server share CPU 0 and every proxy
# has CPU 1 to itself, as a proxy on its own host would: direct is then the two ends on
# one core, and a proxy's ratio says whether it keeps up, not what its CPU takes from the
# ends.
# Everything listens on 127.0.0.1 on free ports; every process is killed by PID at exit.
# Raw outputs and logs go to $OUT (default: a new temp dir, printed, kept).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
PIN=${PIN:-0}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-32}
SIZE=${SIZE:-128}
WINDOWS=${WINDOWS:-1 16}
OUT=${OUT:-$(mktemp -d /tmp/bench-websocket.XXXXXX)}
mkdir -p "$OUT"
echo "bench-websocket: raw outputs in $OUT"
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway --bins
  cargo build --release -q -p tests --example ws_bench
  cargo build --release -q -p gateway --example bare_pingora
fi
bash scripts/install-bench-deps.sh
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
bin=${CARGO_TARGET_DIR:-target}/release
for b in "$bin/gateway" "$bin/examples/ws_bench" "$bin/examples/bare_pingora"; do
  [ -x "$b" ] || { echo "bench-websocket: $b missing" >&2; exit 1; }
done
source scripts/bench-lib.sh
ends=() proxy=()
if [ "$PIN" = 1 ]; then ends=(taskset -c 0) proxy=(taskset -c 1); fi

echo_port=$(free_port) gw=$(free_port) admin=$(free_port) ngx=$(free_port) bare=$(free_port)
"${ends[@]}" "$bin/examples/ws_bench" echo --listen "127.0.0.1:$echo_port" >"$work/echo.log" 2>&1 &
echo_pid=$!; pids+=("$echo_pid"); disown "$echo_pid"

mkdir -p "$work/policies"
cat > "$work/gw.yaml" <<CONF
listeners: [ { name: public, address: 127.0.0.1:$gw } ]
admin: { address: 127.0.0.1:$admin }
policies: policies/
threads: 1
CONF
cat > "$work/policies/bench.yaml" <<CONF
pools:
  echo:
    backends: [ { address: 127.0.0.1:$echo_port } ]
routes:
  - name: ws
    match: { path_prefix: /ws }
    pool: echo
    websocket: true
CONF
"${proxy[@]}" "$bin/gateway" run --config "$work/gw.yaml" >"$work/gateway.log" 2>&1 &
gw_pid=$!; pids+=("$gw_pid"); disown "$gw_pid"

mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/b; proxy_temp_path $work/nginx/p;
  fastcgi_temp_path $work/nginx/f; uwsgi_temp_path $work/nginx/u; scgi_temp_path $work/nginx/s;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream echo { server 127.0.0.1:$echo_port; }
  server {
    listen 127.0.0.1:$ngx;
    location /ws {
      proxy_pass http://echo;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 1h;
    }
  }
}
CONF
"${proxy[@]}" "$NGINX" -p "$work/nginx/" -e "$work/nginx/error.log" -c "$work/nginx/nginx.conf" >/dev/null 2>&1 &
ngx_pid=$!; pids+=("$ngx_pid"); disown "$ngx_pid"

"${proxy[@]}" "$bin/examples/bare_pingora" "127.0.0.1:$bare" "127.0.0.1:$echo_port" >"$work/pingora.log" 2>&1 &
bare_pid=$!; pids+=("$bare_pid"); disown "$bare_pid"

# Each answers a plain GET (the echo server with `ok`); bounded wait for each.
ready() {
  for _ in $(seq 1 150); do
    [ "$(curl -s --max-time 1 "$1" || true)" = ok ] && return 0
    sleep 0.1
  done
  echo "bench-websocket: $1 did not answer" >&2; tail -n 20 "$work/gateway.log" >&2; return 1
}
ready "http://127.0.0.1:$echo_port/"
ready "http://127.0.0.1:$gw/ws/"
ready "http://127.0.0.1:$ngx/ws/"
ready "http://127.0.0.1:$bare/ws/"

cpu() { # pid -> CPU seconds used so far (utime + stime)
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

run() { # target url round proxy-pid window -> one row of results.tsv
  local target=$1 url=$2 round=$3 proxy=$4 window=$5 g0 e0 line
  g0=$(cpu "$proxy"); e0=$(cpu "$echo_pid")
  line=$(timeout $((WARMUP + DURATION + 60)) "${ends[@]}" "$bin/examples/ws_bench" load --url "$url" \
    --connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" --size "$SIZE" \
    --window "$window" 2>>"$work/load.log")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$window" "$round" "$target" "$line" \
    "$(minus "$(cpu "$proxy")" "$g0")" "$(minus "$(cpu "$echo_pid")" "$e0")" \
    | tee -a "$OUT/results.tsv" >/dev/null
}

echo "$CONNS connections, messages of $SIZE bytes, ${DURATION} s per run after ${WARMUP} s"
printf '%-6s %-6s %-8s %11s %9s %9s %7s %9s %9s %7s\n' window round target "msg/s" "p50 µs" "p99 µs" errors "proxy cpu" "echo cpu" "ratio"
: > "$OUT/results.tsv"
for w in $WINDOWS; do
  for r in $(seq 1 "$ROUNDS"); do
    # The direct run's proxy column reads the gateway's (idle) CPU.
    run direct "ws://127.0.0.1:$echo_port/ws" "$r" "$gw_pid" "$w"
    run nginx "ws://127.0.0.1:$ngx/ws" "$r" "$ngx_pid" "$w"
    run pingora "ws://127.0.0.1:$bare/ws" "$r" "$bare_pid" "$w"
    run gateway "ws://127.0.0.1:$gw/ws" "$r" "$gw_pid" "$w"
    python3 - "$OUT/results.tsv" "$w" "$r" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
rows = [x for x in rows if x[0] == sys.argv[2] and x[1] == sys.argv[3]]
direct = next(float(x[3]) for x in rows if x[2] == "direct")
for x in rows:
    ratio = float(x[3]) / direct if direct else 0.0
    print(f"{x[0]:<6} {x[1]:<6} {x[2]:<8} {float(x[3]):>11.0f} {x[4]:>9} {x[5]:>9} {x[6]:>7} {x[7]:>9} {x[8]:>9} {ratio:>7.2f}")
PY
  done
done
python3 - "$OUT/results.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
runs = {}
for x in rows:
    runs.setdefault(x[0], {}).setdefault(x[1], {})[x[2]] = float(x[3])
for window, rounds in runs.items():
    for a, b in (("gateway", "direct"), ("nginx", "direct"), ("pingora", "direct"),
                 ("gateway", "nginx"), ("gateway", "pingora")):
        ratios = [r[a] / r[b] for r in rounds.values() if r.get(b) and a in r]
        if ratios:
            print(f"window {window}: {a} / {b}, median over {len(ratios)} round(s): {statistics.median(ratios):.2f}")
PY
cp "$work/gateway.log" "$OUT/gateway.log" 2>/dev/null || true
