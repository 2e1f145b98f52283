#!/usr/bin/env bash
# Proxy benchmark: the gateway against nginx and HAProxy as reverse proxies, same machine,
# same run, same upstream. Usage:
#   scripts/bench-gateway.sh [--profile]
#   env: DURATION=10s CONNS=50 WARMUP=2s ROUNDS=1 OUT=<dir> BENCH_NO_BUILD=1 OBSERVED_PARTS=1
#        IDLE_CONNS=1000 PERF_CALLGRAPH=fp|dwarf (with --profile)
#        BASELINE=<a gateway binary> (an older build, measured as one more target)
#
# What it measures:
# 1. The origin: a private nginx (one process, master_process off) answering every path
#    with `return 200` of a fixed 1 KiB body, keep-alive on, access_log off.
# 2. Throughput and latency, `wrk -t1 -c$CONNS -d$DURATION --latency` after a $WARMUP
#    warm-up, against four targets, one after the other, interleaved for $ROUNDS rounds:
#      direct   the origin itself (the ceiling of this client on this machine);
#      nginx    nginx as reverse proxy, 1 worker, upstream keepalive 64, HTTP/1.1 upstream;
#      haproxy  HAProxy, mode http, nbthread 1, http-reuse always, no logging;
#      pingora  Pingora with nothing of ours (gateway/examples/bare_pingora.rs), set up as
#               the gateway sets it up: the floor the gateway is built on;
#      gateway  target/release/gateway, threads: 1, one pool (the origin), route `/`;
#      observed the same gateway with the access log on (JSON, to a file) and every trace
#               recorded (`tracing: { sample: 100% }`) and exported over OTLP to a local
#               sink (tests' `otlp-sink`, which decodes and counts the spans): what
#               observability costs; its row carries the ratio to `gateway` in the round;
#      logged   with OBSERVED_PARTS=1: the gateway with the access log alone, and
#      traced   with every trace exported alone: what each part of `observed` costs;
#      baseline with BASELINE set: that binary on the same configuration (a before/after
#               comparison of a change inside one run; its rows are left out of the memory
#               part, and its listener gets no setting the older build may not know).
#    Every proxy is given a high keepalive_requests (nginx's default of 1000 closes the
#    connection every 1000 requests, which no other target does).
#    Columns: req/s, p50 and p99 latency (wrk's latency distribution), and ratios against
#    nginx in the same round: req/s ratio > 1 is faster than nginx, p99 ratio < 1 is better.
#    For each target started here, the CPU time of each of its threads over the run
#    (utime + stime from /proc/<pid>/task/*/stat) per request goes to threads.tsv: where an
#    observed gateway's extra work runs (its listener, the access log's writer, the span
#    export).
#    Only ratios inside one run mean anything: the machine is shared and noisy (2 cores
#    serve origin, proxy and wrk at once). With ROUNDS > 1 the spread shows the noise,
#    and a median row per target is printed.
# 3. Memory at $IDLE_CONNS idle keep-alive client connections: each proxy is started
#    fresh, gets one request, and its RSS (VmRSS) is read ("before"); then a python client
#    opens $IDLE_CONNS connections, sends one request on each, reads the answer and keeps
#    them all open and idle; RSS is read again ("after"). nginx's RSS is master + worker
#    summed; HAProxy and the gateway are one process each. "open" is how many of the
#    client connections were still open when "after" was read.
# 5. The dashboard's cost: $VIEWERS viewers (default 10) each doing what the page does every
#    second (GET /admin/status?shared, /metrics?shared and /admin/replication) for
#    $VIEWER_SECONDS (default 30) against an idle gateway, and the gateway's CPU time
#    (utime + stime from /proc) over that window, as a share of one core, beside the same
#    window without viewers.
# 4. With --profile: `perf record -g` on the gateway during a wrk run, the top of
#    `perf report --stdio --no-children` in $OUT/perf-report.txt (a flat listing without
#    call chains and the share per binary in $OUT/perf-flat.txt). When the machine has no
#    hardware counters (`perf stat -e instructions` says not supported), it samples the
#    software cpu-clock event instead; when perf cannot sample at all, it says so and skips.
# Raw wrk outputs, configs, server logs, results.tsv and rss.tsv go to $OUT (default: a new temp dir,
# printed, kept). Nothing listens outside 127.0.0.1; ports are free ones picked at run time;
# every process started here is killed by PID at exit. The system nginx/haproxy services
# are neither enabled nor used.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=0
for a in "$@"; do
  case $a in
    --profile) profile=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "bench-gateway: unknown argument $a" >&2; exit 2 ;;
  esac
done

DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
IDLE_CONNS=${IDLE_CONNS:-1000}
OUT=${OUT:-$(mktemp -d /tmp/bench-gateway.XXXXXX)}
mkdir -p "$OUT"
echo "bench-gateway: raw outputs in $OUT"

if [ "$profile" = 1 ]; then
  bash scripts/install-bench-deps.sh --perf
else
  bash scripts/install-bench-deps.sh
fi
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway --bins --example bare_pingora
  cargo build --release -q -p tests --bin otlp-sink
fi
[ -x target/release/otlp-sink ] || { echo "bench-gateway: target/release/otlp-sink missing" >&2; exit 1; }
[ -x target/release/gateway ] || { echo "bench-gateway: target/release/gateway missing" >&2; exit 1; }
[ -x target/release/examples/bare_pingora ] || { echo "bench-gateway: target/release/examples/bare_pingora missing" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

source scripts/bench-lib.sh

# nginx with a master: its worker is a child of the PID we hold; kill those children too.
nginx_masters=()
bench_cleanup() {
  mkdir -p "$OUT/logs"  # the servers' logs survive the work dir
  for f in "$work"/*/*.log; do [ -f "$f" ] && cp "$f" "$OUT/logs/$(basename "$(dirname "$f")")-$(basename "$f")"; done
  for m in "${nginx_masters[@]}"; do
    for c in $(ps -o pid= --ppid "$m" 2>/dev/null); do kill -9 "$c" 2>/dev/null || true; done
  done
  cleanup
}
trap bench_cleanup EXIT

kill_pid() { # stops one process we started (and an nginx master's workers)
  local p=$1 c
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill -9 "$c" 2>/dev/null || true; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# Bounded wait until a URL answers 200 with a 1024-byte body.
wait_body() {
  local url=$1 size
  for _ in $(seq 1 100); do
    size=$(curl -s --max-time 1 -o /dev/null -w '%{http_code} %{size_download}' "$url" || true)
    [ "$size" = "200 1024" ] && return 0
    sleep 0.1
  done
  echo "bench-gateway: $url did not answer 200 with 1024 bytes (last: '$size')" >&2
  return 1
}

body=$(head -c 1024 /dev/zero | tr '\0' 'x')

# ---- the origin --------------------------------------------------------------------------
origin_port=$(free_port)
mkdir -p "$work/origin"
cat > "$work/origin/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  client_body_temp_path $work/origin/body;
  proxy_temp_path $work/origin/proxy;
  fastcgi_temp_path $work/origin/fastcgi;
  uwsgi_temp_path $work/origin/uwsgi;
  scgi_temp_path $work/origin/scgi;
  server {
    listen 127.0.0.1:$origin_port;
    default_type text/plain;
    location / { return 200 "$body"; }
  }
}
CONF
"$NGINX" -p "$work/origin/" -e "$work/origin/error.log" -c "$work/origin/nginx.conf" >"$work/origin/stdout.log" 2>&1 &
pids+=($!); origin_pid=$!
wait_body "http://127.0.0.1:$origin_port/"

# ---- the proxies (each start_* sets started_pid and started_port) ---------------------
start_nginx() {
  local d=$work/nginx-$1 port
  port=$(free_port); mkdir -p "$d"
  cat > "$d/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  upstream origin {
    server 127.0.0.1:$origin_port;
    keepalive 64;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
  cp "$d/nginx.conf" "$OUT/nginx-$1.conf"
  "$NGINX" -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
  pids+=($!); started_pid=$!; nginx_masters+=("$started_pid")
  started_port=$port
  wait_body "http://127.0.0.1:$port/"
}

start_haproxy() {
  local d=$work/haproxy-$1 port
  port=$(free_port); mkdir -p "$d"
  cat > "$d/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  maxconn 8192
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  http-reuse always
frontend fe
  bind 127.0.0.1:$port
  default_backend be
backend be
  server origin 127.0.0.1:$origin_port
CONF
  cp "$d/haproxy.cfg" "$OUT/haproxy-$1.cfg"
  "$HAPROXY" -db -f "$d/haproxy.cfg" >"$d/haproxy.log" 2>&1 &
  pids+=($!); started_pid=$!
  started_port=$port
  wait_body "http://127.0.0.1:$port/"
}

start_gateway() { # name [binary] [extra listener settings] [extra bootstrap lines]
  local d=$work/gateway-$1 bin=${2:-target/release/gateway} port admin
  local extra=${3-, max_requests_per_connection: 100000000, max_connections_per_client: 100000, max_connections: 100000}
  port=$(free_port); admin=$(free_port); mkdir -p "$d/policies"
  cat > "$d/gateway.yaml" <<CONF
listeners:
  - { name: public, address: 127.0.0.1:$port$extra }
admin: { address: 127.0.0.1:$admin }
policies: policies/
threads: 1
${4:-}
CONF
  cat > "$d/policies/bench.yaml" <<CONF
pools:
  origin:
    backends:
      - { address: 127.0.0.1:$origin_port }
    health_check: { path: /, interval: 1s, timeout: 500ms }
routes:
  - name: all
    match: { path_prefix: / }
    pool: origin
CONF
  cp "$d/gateway.yaml" "$OUT/gateway-$1.yaml"; cp "$d/policies/bench.yaml" "$OUT/gateway-$1-policy.yaml"
  "$bin" run --config "$d/gateway.yaml" >"$d/gateway.log" 2>&1 &
  pids+=($!); started_pid=$!
  started_port=$port started_admin=$admin
  wait_body "http://127.0.0.1:$port/"
}

# The OTLP sink the observed gateway exports to; it prints its URL, then its count.
sink_url=""
start_sink() {
  target/release/otlp-sink >"$work/otlp-sink.out" 2>&1 &
  pids+=($!); sink_pid=$!
  for _ in $(seq 1 100); do
    sink_url=$(awk '/^listening/ {print $2; exit}' "$work/otlp-sink.out")
    [ -n "$sink_url" ] && return 0
    sleep 0.1
  done
  echo "bench-gateway: the OTLP sink did not start" >&2; cat "$work/otlp-sink.out" >&2; return 1
}

start_observed() {
  [ -n "$sink_url" ] || start_sink
  start_gateway "observed-$1" target/release/gateway "" "access_log: { format: json, to: access.log }
tracing: { otlp: \"$sink_url\", sample: 100% }"
  observed_admin=$started_admin observed_dir=$work/gateway-observed-$1
}

start_logged() {
  start_gateway "logged-$1" target/release/gateway "" "access_log: { format: json, to: access.log }"
}

start_traced() {
  [ -n "$sink_url" ] || start_sink
  start_gateway "traced-$1" target/release/gateway "" "tracing: { otlp: \"$sink_url\", sample: 100% }"
}

start_baseline() {
  start_gateway "baseline-$1" "$BASELINE" ""
}

start_pingora() {
  local d=$work/pingora-$1 port
  port=$(free_port); mkdir -p "$d"
  target/release/examples/bare_pingora "127.0.0.1:$port" "127.0.0.1:$origin_port" >"$d/pingora.log" 2>&1 &
  pids+=($!); started_pid=$!
  started_port=$port
  wait_body "http://127.0.0.1:$port/"
}

# ---- 2. throughput and latency -----------------------------------------------------------
proxies=(nginx haproxy pingora gateway observed)
[ "${OBSERVED_PARTS:-}" = 1 ] && proxies+=(logged traced)
if [ -n "${BASELINE:-}" ]; then
  [ -x "$BASELINE" ] || { echo "bench-gateway: BASELINE=$BASELINE is not an executable" >&2; exit 1; }
  proxies+=(baseline)
fi
declare -A port_of pid_of
port_of[direct]=$origin_port
for t in "${proxies[@]}"; do
  "start_$t" bench
  port_of[$t]=$started_port; pid_of[$t]=$started_pid
done
for t in direct "${proxies[@]}"; do echo "$t: 127.0.0.1:${port_of[$t]}"; done

results=$OUT/results.tsv
printf 'round\ttarget\trps\tp50_ms\tp99_ms\terrors\n' > "$results"
printf 'round\ttarget\tthread\tticks\tus_per_request\n' > "$OUT/threads.tsv"
# "<tid>-<name> <utime+stime>" for each thread of process $1, sorted for join.
thread_ticks() {
  for task in /proc/"$1"/task/*; do
    echo "$(basename "$task")-$(tr ' ' _ < "$task/comm") $(awk '{print $14 + $15}' "$task/stat" 2>/dev/null || echo 0)"
  done | sort
}

for r in $(seq 1 "$ROUNDS"); do
  for t in direct "${proxies[@]}"; do
    url="http://127.0.0.1:${port_of[$t]}/"
    timeout 120 wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >"$OUT/warmup-r$r-$t.txt" 2>&1
    [ -n "${pid_of[$t]:-}" ] && thread_ticks "${pid_of[$t]}" > "$work/ticks-before"
    timeout 300 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url" >"$OUT/wrk-r$r-$t.txt" 2>&1
    line=$(parse_wrk "$OUT/wrk-r$r-$t.txt") || { cat "$OUT/wrk-r$r-$t.txt" >&2; exit 1; }
    printf '%s\t%s\t%s\n' "$r" "$t" "$line" >> "$results"
    if [ -n "${pid_of[$t]:-}" ]; then
      # CPU per request of each of the proxy's threads over the run (kernel time included).
      thread_ticks "${pid_of[$t]}" > "$work/ticks-after"
      requests=$(awk '/requests in/ {print $1}' "$OUT/wrk-r$r-$t.txt")
      join "$work/ticks-before" "$work/ticks-after" | awk -v r="$r" -v t="$t" -v n="$requests" -v hz="$(getconf CLK_TCK)" \
        '{d = $3 - $2; if (d > 0) { sub(/^[0-9]+-/, "", $1); printf "%s\t%s\t%s\t%d\t%.2f\n", r, t, $1, d, d * 1e6 / hz / n }}' >> "$OUT/threads.tsv"
    fi
    echo "round $r $t: $(echo "$line" | awk -F'\t' '{printf "%s req/s, p50 %s ms, p99 %s ms, errors %s", $1, $2, $3, $4}')"
  done
done

# What the observed gateway wrote and exported during the rounds.
obs=$OUT/observed.tsv
spans_line=$(curl -s "http://127.0.0.1:$observed_admin/metrics" | awk '/^gateway_trace_spans_total/ {printf "%s=%s ", $1, $2}')
access_lines=$(wc -l < "$observed_dir/access.log" || echo 0)
sink_spans=$(awk '/^spans/ {n=$2} END {print n+0}' "$work/otlp-sink.out")
printf 'access_log_lines\t%s\nsink_spans\t%s\ngateway_spans\t%s\n' "$access_lines" "$sink_spans" "$spans_line" > "$obs"
echo "observed: $access_lines access-log lines, $sink_spans spans at the sink ($spans_line)"

# ---- 4. profile of the gateway under load ------------------------------------------------
if [ "$profile" = 1 ]; then
  perf_event=() do_profile=1
  if ! command -v perf >/dev/null 2>&1; then
    do_profile=0 profile_note="perf not installed; profile skipped"
  elif perf stat -e instructions true 2>&1 | grep -q '<not supported>'; then
    if perf record -e cpu-clock -o "$work/perf-probe.data" true >/dev/null 2>&1; then
      perf_event=(-e cpu-clock)
      profile_note="no hardware counters here (perf stat -e instructions: not supported), sampled cpu-clock"
    else
      do_profile=0 profile_note="perf stat -e instructions: not supported, and perf cannot sample cpu-clock either; profile skipped"
    fi
  elif ! perf stat -e instructions true >/dev/null 2>&1; then
    do_profile=0 profile_note="perf stat -e instructions true failed; profile skipped"
  else
    profile_note="sampled the default event (cycles)"
  fi
  if [ "$do_profile" = 1 ]; then
    secs=${DURATION%s}; [[ $secs =~ ^[0-9]+$ ]] || secs=10
    url="http://127.0.0.1:${port_of[gateway]}/"
    timeout 120 wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null 2>&1
    # wrk runs 2 s longer than the recording, which starts 1 s in: perf sees load only.
    timeout 300 wrk -t1 -c"$CONNS" -d"$((secs + 2))s" --latency "$url" >"$OUT/wrk-profile-gateway.txt" 2>&1 &
    wrk_pid=$!; pids+=($wrk_pid)
    sleep 1
    if [ "${PERF_CALLGRAPH:-fp}" = fp ]; then cg=(-g); else cg=(--call-graph "$PERF_CALLGRAPH"); fi
    timeout $((secs + 60)) perf record "${perf_event[@]}" "${cg[@]}" -p "${pid_of[gateway]}" \
      -o "$OUT/perf.data" -- sleep "$secs" >"$OUT/perf-record.log" 2>&1 || true
    wait "$wrk_pid" || true
    { echo "# $profile_note; perf record ${perf_event[*]} ${cg[*]} -p <gateway pid> for ${secs}s under wrk -t1 -c$CONNS"
      perf report -i "$OUT/perf.data" --stdio --no-children 2>/dev/null | head -80 || true
    } > "$OUT/perf-report.txt"
    # The same samples without call chains, and the share per binary (kernel, libc, ours).
    { perf report -i "$OUT/perf.data" --stdio --no-children -g none --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$' || true
      echo; perf report -i "$OUT/perf.data" --stdio --no-children -g none --sort dso 2>/dev/null | grep -v '^#' | grep -v '^$' || true
    } > "$OUT/perf-flat.txt"
    echo "profile: $OUT/perf-report.txt, flat: $OUT/perf-flat.txt ($profile_note)"
  else
    echo "profile: $profile_note"
  fi
fi

# The throughput instances are done: stop them before the memory runs.
for t in "${proxies[@]}"; do kill_pid "${pid_of[$t]}"; done

# ---- 3. RSS at idle keep-alive connections -----------------------------------------------
rss_kib() { # PIDs -> summed VmRSS in KiB
  local sum=0 p v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
proc_set() { # a started PID and its children (nginx master + worker)
  echo "$1" $(ps -o pid= --ppid "$1" 2>/dev/null)
}
idle_client() { # port count hold_seconds: opens, requests once, holds idle, then checks
  python3 - "$@" <<'PY'
import socket, sys, time, select
port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
socks, failed = [], 0
for _ in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk: raise ConnectionError("closed")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length": length = int(v)
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk: raise ConnectionError("closed")
            rest += chunk
        if not head.startswith(b"HTTP/1.1 200"): raise ConnectionError(head[:40])
        socks.append(s)
    except Exception as e:
        failed += 1
print(f"ready {len(socks)} failed {failed}", flush=True)
time.sleep(hold)
closed = 0
poller = select.poll()  # not select(): more than 1024 descriptors
fds = {s.fileno(): s for s in socks}
for fd in fds: poller.register(fd, select.POLLIN)
for fd, ev in poller.poll(0):
    try:
        if ev & (select.POLLHUP | select.POLLERR) or fds[fd].recv(1, socket.MSG_PEEK) == b"":
            closed += 1
    except OSError:
        closed += 1
print(f"open {len(socks) - closed}", flush=True)
PY
}

mem=$OUT/rss.tsv
printf 'target\tbefore_kib\tafter_kib\topen\tprocesses\n' > "$mem"
for t in nginx haproxy pingora gateway; do
  "start_$t" rss
  p=$started_pid port=$started_port
  curl -s -o /dev/null "http://127.0.0.1:$port/"
  sleep 0.5
  procs=$(proc_set "$p")
  before=$(rss_kib $procs)
  idle_client "$port" "$IDLE_CONNS" 4 >"$OUT/idle-$t.txt" 2>&1 &
  client=$!; pids+=($client)
  ok=0
  for _ in $(seq 1 600); do
    grep -q '^ready' "$OUT/idle-$t.txt" && { ok=1; break; }
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  [ "$ok" = 1 ] || { echo "bench-gateway: idle client against $t did not get ready" >&2; cat "$OUT/idle-$t.txt" >&2; exit 1; }
  sleep 1
  procs=$(proc_set "$p")
  after=$(rss_kib $procs)
  for _ in $(seq 1 100); do kill -0 "$client" 2>/dev/null || break; sleep 0.1; done
  kill_pid "$client"
  open=$(awk '/^open/ {print $2}' "$OUT/idle-$t.txt"); open=${open:-?}
  printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$before" "$after" "$open" "$(echo $procs | wc -w)" >> "$mem"
  echo "rss $t: before $before KiB, after $after KiB, $(head -1 "$OUT/idle-$t.txt"), open $open"
  kill_pid "$p"
done

# ---- 5. the dashboard's cost -----------------------------------------------------------------
VIEWERS=${VIEWERS:-10}
VIEWER_SECONDS=${VIEWER_SECONDS:-30}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
start_gateway dashboard
dash_pid=$started_pid dash_admin=$started_admin
hz=$(getconf CLK_TCK)
sleep 1
t0=$(cpu_ticks "$dash_pid"); sleep "$VIEWER_SECONDS"; t1=$(cpu_ticks "$dash_pid")
idle_share=$(python3 -c "print(f'{100*($t1-$t0)/$hz/$VIEWER_SECONDS:.3f}')")
viewer() { # what the page does each second, for VIEWER_SECONDS
  local end=$(( $(date +%s) + VIEWER_SECONDS ))
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null "http://127.0.0.1:$dash_admin/admin/status?shared" &
    curl -s -o /dev/null "http://127.0.0.1:$dash_admin/metrics?shared" &
    curl -s -o /dev/null "http://127.0.0.1:$dash_admin/admin/replication" &
    wait; sleep 1
  done
}
viewer_pids=()
t0=$(cpu_ticks "$dash_pid")
for _ in $(seq 1 "$VIEWERS"); do viewer & viewer_pids+=($!); pids+=($!); done
for v in "${viewer_pids[@]}"; do wait "$v" 2>/dev/null || true; done
t1=$(cpu_ticks "$dash_pid")
viewers_share=$(python3 -c "print(f'{100*($t1-$t0)/$hz/$VIEWER_SECONDS:.3f}')")
printf 'viewers\tseconds\tidle_core_pct\tviewers_core_pct\n%s\t%s\t%s\t%s\n' "$VIEWERS" "$VIEWER_SECONDS" "$idle_share" "$viewers_share" > "$OUT/dashboard.tsv"
echo "dashboard: $VIEWERS viewers for ${VIEWER_SECONDS}s: gateway CPU ${viewers_share}% of a core (idle: ${idle_share}%)"
kill_pid "$dash_pid"

kill_pid "$origin_pid"

# ---- the table -----------------------------------------------------------------------------
python3 - "$results" "$mem" "$CONNS" "$DURATION" "$IDLE_CONNS" <<'PY' | tee "$OUT/table.txt"
import csv, statistics, sys
res, mem, conns, dur, idle = sys.argv[1:6]
rows = list(csv.DictReader(open(res), delimiter="\t"))
rounds = sorted({int(r["round"]) for r in rows})
order = ["direct", "nginx", "haproxy", "pingora", "gateway", "observed"]
order += [t for t in ("logged", "traced") if any(r["target"] == t for r in rows)]
if any(r["target"] == "baseline" for r in rows):
    order.append("baseline")
by = {(int(r["round"]), r["target"]): r for r in rows}
print(f"\nwrk -t1 -c{conns} -d{dur} --latency, 1 KiB body; ratios against nginx in the same round")
print(f"{'round':>5} {'target':8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'req/s ×':>8} {'p99 ×':>7} {'errors':>6}")
def line(label, t, rps, p50, p99, base_rps, base_p99, err):
    print(f"{label:>5} {t:8} {rps:10.0f} {p50:8.3f} {p99:8.3f} {rps/base_rps:8.2f} {p99/base_p99:7.2f} {err:>6}")
for rd in rounds:
    b = by[(rd, "nginx")]
    for t in order:
        r = by[(rd, t)]
        line(rd, t, float(r["rps"]), float(r["p50_ms"]), float(r["p99_ms"]),
             float(b["rps"]), float(b["p99_ms"]), r["errors"])
print("\nobserved (access log JSON to a file + every trace exported over OTLP) against gateway, same round:")
for rd in rounds:
    g, o = by[(rd, "gateway")], by[(rd, "observed")]
    print(f"  round {rd}: req/s {float(o['rps'])/float(g['rps']):.3f}x, p99 {float(o['p99_ms'])/float(g['p99_ms']):.2f}x")
    for part in ("logged", "traced"):
        if (rd, part) in by:
            p = by[(rd, part)]
            print(f"    {part} alone: req/s {float(p['rps'])/float(g['rps']):.3f}x")
if len(rounds) > 1:
    med = {t: {k: statistics.median(float(by[(rd, t)][k]) for rd in rounds)
               for k in ("rps", "p50_ms", "p99_ms")} for t in order}
    for t in order:
        m = med[t]
        line("med", t, m["rps"], m["p50_ms"], m["p99_ms"], med["nginx"]["rps"],
             med["nginx"]["p99_ms"], sum(int(by[(rd, t)]["errors"]) for rd in rounds))
threads = {}
for r in csv.DictReader(open(res.replace("results.tsv", "threads.tsv")), delimiter="\t"):
    if r["target"] in ("gateway", "observed", "logged", "traced", "baseline"):
        threads.setdefault((r["target"], r["thread"]), []).append(float(r["us_per_request"]))
if threads:
    print("\nCPU per request of each thread (µs, utime + stime, median of the rounds; threads under 0.05 µs left out)")
    for (t, name), v in sorted(threads.items()):
        m = statistics.median(v)
        if m >= 0.05:
            print(f"  {t:8} {name:24} {m:6.2f}")
print(f"\nRSS (VmRSS) before and after {idle} idle keep-alive client connections (fresh processes)")
print(f"{'target':8} {'before MiB':>10} {'after MiB':>10} {'KiB/conn':>9} {'open':>6}  note")
for r in csv.DictReader(open(mem), delimiter="\t"):
    b, a = int(r["before_kib"]), int(r["after_kib"])
    n = int(r["open"]) if r["open"].isdigit() else int(idle)
    note = f"sum of {r['processes']} processes (master + worker)" if r["target"] == "nginx" else "one process"
    print(f"{r['target']:8} {b/1024:10.1f} {a/1024:10.1f} {(a-b)/max(n,1):9.1f} {r['open']:>6}  {note}")
PY
echo "raw outputs: $OUT"
