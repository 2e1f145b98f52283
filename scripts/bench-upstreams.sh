#!/usr/bin/env bash
# What TLS and HTTP/2 to the upstream cost: the gateway's req/s through three pools that
# differ only in how they reach the same origin, in the same run.
#   scripts/bench-upstreams.sh     env: ROUNDS=3 DURATION=10s WARMUP=2s CONNS=50 BENCH_NO_BUILD=1
# One private nginx (one process) answering every path with a 1 KiB body on three ports:
#   plain  HTTP/1.1 in plaintext
#   tls    HTTP/1.1 over TLS (the certificate of `gateway dev-certs`, TLS 1.3)
#   h2     HTTP/2 over TLS (ALPN h2)
# One gateway (threads: 1) with three pools, one per port (`tls: { ca }`, and
# `protocol: h2` for the last), and a route to each (/plain, /tls, /h2). The client is
# `wrk -t1 -c$CONNS` over plaintext HTTP/1.1 keep-alive to the gateway, the same for all
# three; the gateway keeps its upstream connections (HTTP/1.1: one per request in flight,
# reused; HTTP/2: requests multiplexed on few connections). Rounds interleave the three
# targets; the ratios are tls/plain and h2/plain inside a round. Only ratios inside one
# run mean anything: the machine is shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
bash scripts/install-bench-deps.sh
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway
fi
gateway="${CARGO_TARGET_DIR:-target}/release/gateway"
source scripts/bench-lib.sh

plain=$(free_port) tls=$(free_port) h2=$(free_port) gw=$(free_port) admin=$(free_port)
"$gateway" dev-certs --out "$work/certs" >/dev/null
mkdir -p "$work/origin" "$work/policies"
body=$(head -c 1024 /dev/zero | tr '\0' 'x')
# nginx 1.25.1 and later say `http2 on`; older ones `listen ... http2`.
nginx=$(command -v nginx || echo /usr/sbin/nginx)
nginx_version=$("$nginx" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
if printf '1.25.1\n%s\n' "$nginx_version" | sort -V -C; then
  h2_listen="listen 127.0.0.1:$h2 ssl; http2 on;"
else
  h2_listen="listen 127.0.0.1:$h2 ssl http2;"
fi
cat > "$work/origin/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $work/origin/nginx.pid; error_log $work/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_timeout 120s; keepalive_requests 100000000;
  http2_max_concurrent_streams 1000;
  client_body_temp_path $work/origin/b; proxy_temp_path $work/origin/p;
  fastcgi_temp_path $work/origin/f; uwsgi_temp_path $work/origin/u; scgi_temp_path $work/origin/s;
  ssl_certificate $work/certs/server.pem; ssl_certificate_key $work/certs/server.key;
  ssl_protocols TLSv1.3;
  server { listen 127.0.0.1:$plain; location / { return 200 "$body"; } }
  server { listen 127.0.0.1:$tls ssl; location / { return 200 "$body"; } }
  server { $h2_listen location / { return 200 "$body"; } }
}
CONF
"$nginx" -p "$work/origin/" -e "$work/origin/error.log" -c "$work/origin/nginx.conf" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$plain/" && break; sleep 0.1; done

cat > "$work/gateway.yaml" <<CONF
listeners:
  - { name: plain, address: 127.0.0.1:$gw }
admin: { address: 127.0.0.1:$admin }
policies: policies/
threads: 1
CONF
cat > "$work/policies/bench.yaml" <<CONF
pools:
  plain:
    backends: [ { address: 127.0.0.1:$plain } ]
    health_check: { path: /, interval: 1s, timeout: 500ms }
  tls:
    tls: { ca: ../certs/ca.pem }
    backends: [ { address: 127.0.0.1:$tls } ]
    health_check: { path: /, interval: 1s, timeout: 500ms }
  h2:
    protocol: h2
    tls: { ca: ../certs/ca.pem }
    backends: [ { address: 127.0.0.1:$h2 } ]
    health_check: { path: /, interval: 1s, timeout: 500ms }
routes:
  - { name: plain, match: { path_prefix: /plain }, pool: plain }
  - { name: tls, match: { path_prefix: /tls }, pool: tls }
  - { name: h2, match: { path_prefix: /h2 }, pool: h2 }
CONF
"$gateway" run --config "$work/gateway.yaml" >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$admin/readyz" && break; sleep 0.1; done
for path in plain tls h2; do
  curl -sf -o /dev/null "http://127.0.0.1:$gw/$path" \
    || { echo "bench-upstreams: /$path does not answer" >&2; cat "$work/gateway.log" >&2; exit 1; }
done

rate() { # path -> "rps p50_ms p99_ms errors"
  wrk -t1 -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:$gw/$1" >/dev/null
  wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$gw/$1" >"$work/wrk-$1.txt"
  parse_wrk "$work/wrk-$1.txt"
}

printf '%-6s %10s %10s %10s %8s %8s   %s\n' round plain tls h2 tls/pl h2/pl 'p99 ms (plain tls h2)'
for r in $(seq 1 "$ROUNDS"); do
  read -r p pp50 pp99 perr <<<"$(rate plain)"
  read -r t tp50 tp99 terr <<<"$(rate tls)"
  read -r h hp50 hp99 herr <<<"$(rate h2)"
  if [ "$perr" != 0 ] || [ "$terr" != 0 ] || [ "$herr" != 0 ]; then
    echo "bench-upstreams: errors in round $r (plain $perr, tls $terr, h2 $herr)" >&2
  fi
  python3 -c "print(f'{$r:<6} {$p:10.0f} {$t:10.0f} {$h:10.0f} {$t/$p:8.2f} {$h/$p:8.2f}   {$pp99:.2f} {$tp99:.2f} {$hp99:.2f}')"
done
