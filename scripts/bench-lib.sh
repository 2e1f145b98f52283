# Shared by the benchmark scripts (sourced): a work dir removed at exit, every started
# process killed by PID at exit, free ports, readiness by /ping with a bounded wait, an
# nginx origin, and the figures of a wrk run.
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; pids=(); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ping() {
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$1/ping" && return 0
    sleep 0.1
  done
  echo "server on $1 did not start" >&2; return 1
}

# A private nginx on 127.0.0.1:$1 answering every path with 200 and a 1 KiB body, one
# process, keep-alive on, no access log; waits (bounded) until it answers.
start_origin() {
  local port=$1 body
  body=$(head -c 1024 /dev/zero | tr '\0' 'x')
  mkdir -p "$work/origin"
  cat > "$work/origin/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $work/origin/nginx.pid; error_log $work/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_timeout 120s; keepalive_requests 100000000;
  client_body_temp_path $work/origin/b; proxy_temp_path $work/origin/p;
  fastcgi_temp_path $work/origin/f; uwsgi_temp_path $work/origin/u; scgi_temp_path $work/origin/s;
  server { listen 127.0.0.1:$port; location / { return 200 "$body"; } }
}
CONF
  local nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  "$nginx" -p "$work/origin/" -e "$work/origin/error.log" -c "$work/origin/nginx.conf" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && return 0; sleep 0.1; done
  echo "nginx origin on $port did not start" >&2; return 1
}

# A release gateway named $1 with its policies in $work/$1/policies/, $THREADS threads,
# listening and administered on free ports (port_of[$1], admin_of[$1]: associative arrays
# the caller declares), waited for (bounded) until /readyz; `die` is the caller's.
start_gateway() { # name, with its policy in $work/<name>/policies/bench.yaml
  local d=$work/$1 port admin
  port=$(free_port); admin=$(free_port)
  cat > "$d/gateway.yaml" <<CONF
listeners: [ { name: public, address: 127.0.0.1:$port } ]
admin: { address: 127.0.0.1:$admin }
policies: policies/
threads: $THREADS
CONF
  target/release/gateway run --config "$d/gateway.yaml" >"$d/gateway.log" 2>&1 &
  pids+=($!); disown $!
  for _ in $(seq 1 150); do
    curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$admin/readyz" && break
    sleep 0.1
  done
  curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$admin/readyz" \
    || { tail -n 20 "$d/gateway.log" >&2; die "gateway $1 not ready"; }
  port_of[$1]=$port admin_of[$1]=$admin
}

# wrk's --latency output -> "rps p50_ms p99_ms errors" (tab-separated; errors: non-2xx/3xx
# answers and socket errors).
parse_wrk() { # file -> "rps p50_ms p99_ms errors"
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", v)
    n, u = float(m.group(1)), m.group(2)
    return n * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
err = 0
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
if m: err += int(m.group(1))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m: err += sum(int(x) for x in m.groups())
print(f"{rps:.1f}\t{p50:.3f}\t{p99:.3f}\t{err}")
PY
}
