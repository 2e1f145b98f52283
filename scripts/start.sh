#!/usr/bin/env bash
# The main job, in one command: builds the release binaries, starts a replicated pool of
# three tsdb-backend nodes (data in ./data/n0..n2, database `telemetry` created), writes
# development TLS certificates (config/dev-certs/, kept once made), and runs the gateway
# on config/gateway.yaml with the policies in policies/. Prints the URLs and a curl
# example; Ctrl-C (or SIGTERM) stops everything it started.
#
#   scripts/start.sh            # gateway on :8080 (HTTP) and :8443 (TLS, HTTP/2), admin :9090
#   DATA=/var/tmp/pool scripts/start.sh   # pool data elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-data}
NODES=(8086 8087 8088)   # as in policies/tsdb.yaml
GATEWAY_PORTS=(8080 8443 9090)   # as in config/gateway.yaml

say() { printf '%s\n' "$*"; }
die() { printf 'start: %s\n' "$*" >&2; exit 1; }

# Pingora builds zlib-ng with cmake: install it once if missing (Debian).
if ! command -v cmake >/dev/null 2>&1; then
  say "installing cmake (needed to build Pingora)"
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null \
    || die "cannot install cmake; install it and run again"
fi

for p in "${NODES[@]}" "${GATEWAY_PORTS[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p on 127.0.0.1 is taken (another gateway or an InfluxDB?): stop it, or change config/gateway.yaml and policies/tsdb.yaml"
  fi
done

say "building (release)..."
cargo build --release --locked -q -p tsdb-backend -p gateway
target/release/gateway dev-certs --out config/dev-certs
# dev-certs also writes a development API key for the authenticated route of
# policies/tsdb.yaml: the key in dev-certs/api-key, its hash in dev-certs/api-keys.yaml.
api_key=$(cat config/dev-certs/api-key)

pids=()
stop() {
  trap - INT TERM EXIT
  say ""
  say "stopping..."
  # The gateway drains its requests; the nodes sync their WAL before they exit.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  say "stopped"
}
trap stop EXIT
trap 'exit 130' INT TERM

mkdir -p "$DATA"
for i in 0 1 2; do
  peers=""
  for j in 0 1 2; do
    [ "$j" = "$i" ] || peers+="http://127.0.0.1:${NODES[$j]},"
  done
  target/release/tsdb-backend --listen "127.0.0.1:${NODES[$i]}" --data-dir "$DATA/n$i" \
    --node-id "n$i" --peers "${peers%,}" --create-database telemetry \
    >>"$DATA/n$i.log" 2>&1 &
  pids+=($!)
  echo $! >"$DATA/n$i.pid"   # for chaos scenarios: kill -9 $(cat data/n1.pid)
done

ready() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2>/dev/null || true; }
for i in 0 1 2; do
  for _ in $(seq 1 100); do
    [ "$(ready "http://127.0.0.1:${NODES[$i]}/ping")" = 204 ] && break
    kill -0 "${pids[$i]}" 2>/dev/null || die "node n$i exited: see $DATA/n$i.log"
    sleep 0.1
  done
  [ "$(ready "http://127.0.0.1:${NODES[$i]}/ping")" = 204 ] || die "node n$i did not answer /ping: see $DATA/n$i.log"
done

target/release/gateway run --config config/gateway.yaml >>"$DATA/gateway.log" 2>&1 &
gw=$!
pids+=("$gw")
echo "$gw" >"$DATA/gateway.pid"
for _ in $(seq 1 100); do
  [ "$(ready http://127.0.0.1:9090/readyz)" = 200 ] && break
  kill -0 "$gw" 2>/dev/null || die "the gateway exited: see $DATA/gateway.log"
  sleep 0.1
done
[ "$(ready http://127.0.0.1:9090/readyz)" = 200 ] || die "the gateway is not ready: see $DATA/gateway.log"

cat <<EOF

Running: gateway in front of a 3-node TSDB pool (logs and data in $DATA/).

  gateway   http://127.0.0.1:8080      https://localhost:8443 (HTTP/2; CA config/dev-certs/ca.pem)
  admin     http://127.0.0.1:9090/admin/status   /metrics   /readyz
  nodes     http://127.0.0.1:${NODES[0]}  http://127.0.0.1:${NODES[1]}  http://127.0.0.1:${NODES[2]}

Write and query through the gateway:

  curl -i -XPOST 'http://127.0.0.1:8080/write?db=telemetry&precision=s' \\
       --data-binary "cpu,host=a usage=0.64 \$(date +%s)"
  curl -G 'http://127.0.0.1:8080/query?db=telemetry&pretty=true' \\
       --data-urlencode 'q=SELECT * FROM cpu'
  curl --cacert config/dev-certs/ca.pem --http2 -G 'https://localhost:8443/query?db=telemetry' \\
       --data-urlencode 'q=SELECT count(usage) FROM cpu'

An authenticated route (API key; 401 without it), as InfluxDB 2.x clients and Telegraf send it:

  curl -i -XPOST 'http://127.0.0.1:8080/api/v2/write?bucket=telemetry&precision=s' \\
       -H "Authorization: Token $api_key" --data-binary "cpu,host=b usage=0.5 \$(date +%s)"

Edit policies/*.yaml and save: the gateway reloads by itself. Ctrl-C stops everything.
EOF

# Runs until Ctrl-C (the trap above stops everything) or until the gateway ends. A node that
# ends (a chaos scenario kills one, see loadtest/scenarios/failover.yaml) leaves the rest
# running; the line printed says how to bring it back.
reported=()
while kill -0 "$gw" 2>/dev/null; do
  wait -n "${pids[@]}" 2>/dev/null || true
  for i in 0 1 2; do
    if [ -z "${reported[$i]:-}" ] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
      reported[$i]=1
      say "node n$i ended (see $DATA/n$i.log); the pool serves on without it. To bring it back:"
      say "  target/release/tsdb-backend --listen 127.0.0.1:${NODES[$i]} --data-dir $DATA/n$i --node-id n$i --peers $(for j in 0 1 2; do [ "$j" = "$i" ] || printf 'http://127.0.0.1:%s,' "${NODES[$j]}"; done | sed 's/,$//') &"
    fi
  done
done
die "the gateway ended by itself: see $DATA/gateway.log"
