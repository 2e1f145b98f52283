#!/usr/bin/env bash
# Ingest and query benchmark: our tsdb-backend against real InfluxDB 1.x, same machine,
# same run, same data (TSBS cpu-only shape). Prints one JSON line per server and a table of
# ratios. Usage: scripts/bench-tsdb.sh [extra tsdb-bench flags, e.g. --steps 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh >/dev/null
cargo build --release -q -p tsdb-backend -p loadtest

source scripts/bench-lib.sh

influx_http=$(free_port); influx_bind=$(free_port)
cat > "$work/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$influx_bind"
[meta]
  dir = "$work/influx/meta"
[data]
  dir = "$work/influx/data"
  wal-dir = "$work/influx/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$influx_http"
  log-enabled = false
CONF
influxd run -config "$work/influxdb.conf" >"$work/influxd.log" 2>&1 &
pids+=($!); influx_pid=$!
ours=$(free_port)
target/release/tsdb-backend --listen "127.0.0.1:$ours" --data-dir "$work/ours" --log warn >"$work/ours.log" 2>&1 &
pids+=($!); ours_pid=$!
wait_ping "$influx_http"; wait_ping "$ours"

# One server at a time, so they never compete for the two cores.
influx_json=$(target/release/tsdb-bench --url "http://127.0.0.1:$influx_http" --pid "$influx_pid" --label influxdb "$@")
kill -9 "$influx_pid"
ours_json=$(target/release/tsdb-bench --url "http://127.0.0.1:$ours" --pid "$ours_pid" --label tsdb-backend "$@")
echo "$influx_json"
echo "$ours_json"
python3 - "$influx_json" "$ours_json" <<'PY'
import json, sys
base, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{'figure':40} {'influxdb':>12} {'tsdb-backend':>12} {'ratio':>8}")
for k in base:
    if isinstance(base[k], (int, float)) and k in ours and base[k]:
        r = ours[k] / base[k]
        print(f"{k:40} {base[k]:12.2f} {ours[k]:12.2f} {r:8.2f}")
PY
