#!/usr/bin/env bash
# A stand-in for the tsdb-backend binary that runs a real influxd with the same CLI
# (`--listen ADDR --data-dir DIR`). Used to prove the harness and the differential suite:
#   TSDB_BACKEND_BIN=tests/support/influxd-as-tsdb-backend.sh \
#     cargo test -p tests -- --include-ignored
# With it every differential case must match (influxd against itself).
set -euo pipefail
listen="" data=""
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=$2; shift 2 ;;
    --data-dir) data=$2; shift 2 ;;
    *) shift ;;
  esac
done
[ -n "$listen" ] && [ -n "$data" ] || { echo "usage: $0 --listen ADDR --data-dir DIR" >&2; exit 2; }
mkdir -p "$data"
cat > "$data/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:0"
[meta]
  dir = "$data/meta"
[data]
  dir = "$data/data"
  wal-dir = "$data/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "$listen"
  log-enabled = false
CONF
exec /usr/bin/influxd run -config "$data/influxdb.conf"
