#!/usr/bin/env bash
# The main job, in one command: builds the release binaries, starts a replicated pool of
# three tsdb-backend nodes (data in ./data/n0..n2, database `telemetry` created), writes
# development TLS certificates (config/dev-certs/, kept once made), and runs the gateway
# on config/gateway.yaml with the policies in policies/. Prints the URLs and a curl
# example; Ctrl-C (or SIGTERM) stops everything it started.
#
#   scripts/start.sh            # gateway on :8080 (HTTP) and :8443 (TLS, HTTP/2), admin :9090
#   DATA=/var/tmp/pool scripts/start.sh   # pool data elsewhere
#
# What it started is written down in $DATA for scripts/rolling-restart.sh and chaos
# scenarios: each node's PID (n0.pid ...) and how it was started (n0.env: its address, data
# directory, log and command line), the gateway's PID and admin address (gateway.pid,
# pool.env). A node restarted by scripts/rolling-restart.sh is followed by its new PID.
#
# Overrides (environment), for a second stack beside the first or a test on free ports:
#   NODE_PORTS="8086 8087 8088"   the nodes' ports, as in the pool of the policies
#   CONFIG=config/gateway.yaml    the gateway's bootstrap file
#   GATEWAY_PORTS="8080 8443 9090" the listeners' ports in it, the admin port last
#   CERTS=<CONFIG's dir>/dev-certs where `gateway dev-certs` writes (as CONFIG reads it)
#   POOL=tsdb                     the gateway's pool of the nodes
#   BIN_DIR=target/release        use the binaries there and do not build
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-data}
read -r -a NODES <<<"${NODE_PORTS:-8086 8087 8088}"   # as in policies/tsdb.yaml
read -r -a GATEWAY_PORTS <<<"${GATEWAY_PORTS:-8080 8443 9090}"   # as in config/gateway.yaml
CONFIG=${CONFIG:-config/gateway.yaml}
CERTS=${CERTS:-$(dirname "$CONFIG")/dev-certs}
POOL=${POOL:-tsdb}
ADMIN_PORT=${GATEWAY_PORTS[${#GATEWAY_PORTS[@]}-1]}

say() { printf '%s\n' "$*"; }
die() { printf 'start: %s\n' "$*" >&2; exit 1; }

[ "${#NODES[@]}" = 3 ] || die "NODE_PORTS must name three ports, not: ${NODES[*]}"

# Pingora builds zlib-ng with cmake: install it once if missing (Debian).
if [ -z "${BIN_DIR:-}" ] && ! command -v cmake >/dev/null 2>&1; then
  say "installing cmake (needed to build Pingora)"
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null \
    || die "cannot install cmake; install it and run again"
fi

for p in "${NODES[@]}" "${GATEWAY_PORTS[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p on 127.0.0.1 is taken (another gateway or an InfluxDB?): stop it, or change $CONFIG and the policies (or NODE_PORTS, GATEWAY_PORTS)"
  fi
done

if [ -n "${BIN_DIR:-}" ]; then
  BIN_DIR=$(cd "$BIN_DIR" && pwd)
else
  say "building (release)..."
  cargo build --release --locked -q -p tsdb-backend -p gateway
  BIN_DIR=$PWD/target/release
fi
"$BIN_DIR/gateway" dev-certs --out "$CERTS"
# dev-certs also writes a development API key for the authenticated route of
# policies/tsdb.yaml: the key in dev-certs/api-key, its hash in dev-certs/api-keys.yaml.
api_key=$(cat "$CERTS/api-key")

mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)
# PIDs of an earlier run are not ours to stop.
rm -f "$DATA"/n[012].pid "$DATA"/n[012].restarting "$DATA/gateway.pid"

# The PID a node runs as now: its file is rewritten when scripts/rolling-restart.sh
# restarts it.
node_pid() { cat "$DATA/n$1.pid" 2>/dev/null || true; }

gw=""
stop() {
  trap - INT TERM EXIT
  say ""
  say "stopping..."
  # The gateway drains its requests; the nodes sync their WAL before they exit.
  local p i
  [ -z "$gw" ] || kill -TERM "$gw" 2>/dev/null || true
  for i in 0 1 2; do
    p=$(node_pid "$i")
    [ -z "$p" ] || kill -TERM "$p" 2>/dev/null || true
  done
  [ -z "$gw" ] || wait "$gw" 2>/dev/null || true
  # Nodes restarted by scripts/rolling-restart.sh are not this shell's children: poll them
  # (30 s at most).
  for i in 0 1 2; do
    p=$(node_pid "$i")
    for _ in $(seq 1 300); do
      [ -n "$p" ] && kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null || say "node n$i (pid $p) did not stop within 30s"
  done
  say "stopped"
}
trap stop EXIT
trap 'exit 130' INT TERM

pids=()
for i in 0 1 2; do
  peers=""
  for j in 0 1 2; do
    [ "$j" = "$i" ] || peers+="http://127.0.0.1:${NODES[$j]},"
  done
  cmd=("$BIN_DIR/tsdb-backend" --listen "127.0.0.1:${NODES[$i]}" --data-dir "$DATA/n$i"
       --node-id "n$i" --peers "${peers%,}" --create-database telemetry)
  "${cmd[@]}" >>"$DATA/n$i.log" 2>&1 &
  pids+=($!)
  echo $! >"$DATA/n$i.pid"   # for chaos scenarios: kill -9 $(cat data/n1.pid)
  # How to start it again, for scripts/rolling-restart.sh (shell-quoted, sourced there).
  {
    echo "# written by scripts/start.sh: node n$i of the pool, as it was started"
    printf 'NODE=%q\nADDRESS=%q\nDATA_DIR=%q\nLOG=%q\nNODE_HOME=%q\n' \
      "n$i" "127.0.0.1:${NODES[$i]}" "$DATA/n$i" "$DATA/n$i.log" "${HOME:-}"
    printf 'CMD=('; printf ' %q' "${cmd[@]}"; printf ' )\n'
  } >"$DATA/n$i.env"
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

"$BIN_DIR/gateway" run --config "$CONFIG" >>"$DATA/gateway.log" 2>&1 &
gw=$!
echo "$gw" >"$DATA/gateway.pid"
{
  echo "# written by scripts/start.sh: the gateway in front of the pool"
  printf 'ADMIN=%q\nPOOL=%q\nNODES=%q\n' "http://127.0.0.1:$ADMIN_PORT" "$POOL" "n0 n1 n2"
} >"$DATA/pool.env"
for _ in $(seq 1 100); do
  [ "$(ready "http://127.0.0.1:$ADMIN_PORT/readyz")" = 200 ] && break
  kill -0 "$gw" 2>/dev/null || die "the gateway exited: see $DATA/gateway.log"
  sleep 0.1
done
[ "$(ready "http://127.0.0.1:$ADMIN_PORT/readyz")" = 200 ] || die "the gateway is not ready: see $DATA/gateway.log"

http_port=${GATEWAY_PORTS[0]}
https_port=${GATEWAY_PORTS[1]:-8443}
cat <<EOF

Running: gateway in front of a 3-node TSDB pool (logs and data in $DATA/).

  gateway   http://127.0.0.1:$http_port      https://localhost:$https_port (HTTP/2; CA $CERTS/ca.pem)
  admin     http://127.0.0.1:$ADMIN_PORT/admin/status   /metrics   /readyz
  nodes     http://127.0.0.1:${NODES[0]}  http://127.0.0.1:${NODES[1]}  http://127.0.0.1:${NODES[2]}

Write and query through the gateway:

  curl -i -XPOST 'http://127.0.0.1:$http_port/write?db=telemetry&precision=s' \\
       --data-binary "cpu,host=a usage=0.64 \$(date +%s)"
  curl -G 'http://127.0.0.1:$http_port/query?db=telemetry&pretty=true' \\
       --data-urlencode 'q=SELECT * FROM cpu'
  curl --cacert $CERTS/ca.pem --http2 -G 'https://localhost:$https_port/query?db=telemetry' \\
       --data-urlencode 'q=SELECT count(usage) FROM cpu'

An authenticated route (API key; 401 without it), as InfluxDB 2.x clients and Telegraf send it:

  curl -i -XPOST 'http://127.0.0.1:$http_port/api/v2/write?bucket=telemetry&precision=s' \\
       -H "Authorization: Token $api_key" --data-binary "cpu,host=b usage=0.5 \$(date +%s)"

Edit policies/*.yaml and save: the gateway reloads by itself. Ctrl-C stops everything.
Restart the nodes one by one, without a failed request: DATA=$DATA scripts/rolling-restart.sh
EOF

# Runs until Ctrl-C (the trap above stops everything) or until the gateway ends. A node that
# ends (a chaos scenario kills one, see loadtest/scenarios/failover.yaml) leaves the rest
# running; the line printed says how to bring it back. A node scripts/rolling-restart.sh is
# restarting (n<i>.restarting) is not reported; its new PID is read from n<i>.pid.
reported=()
while kill -0 "$gw" 2>/dev/null; do
  sleep 1
  for i in 0 1 2; do
    p=$(node_pid "$i")
    if [ -e "$DATA/n$i.restarting" ] || { [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }; then
      reported[i]=""
      continue
    fi
    if [ -z "${reported[i]:-}" ]; then
      reported[i]=1
      say "node n$i ended (see $DATA/n$i.log); the pool serves on without it. To bring it back:"
      say "  NODES=n$i DATA=$DATA scripts/rolling-restart.sh"
    fi
  done
done
die "the gateway ended by itself: see $DATA/gateway.log"
