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
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
"$NGINX" -p "$work/origin/" -e "$work/origin/error.log" -c "$work/origin/nginx.conf" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done

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
