#!/usr/bin/env bash
# Storage, ingest, query and restart benchmark: our tsdb-backend against real InfluxDB 1.6
# and VictoriaMetrics 1.79 (Debian packages), same machine, same run, same data (TSBS
# cpu-only shape: HOSTS hosts × ROWS/HOSTS steps of 10 s from 2016-01-01, 10 float fields
# per row). Usage:
#   scripts/bench-tsdb.sh [extra tsdb-bench flags, e.g. --repeat 5 --batch 10000]
#   env: ROWS=500000 HOSTS=100 SHAPES="tsbs random" OUT=<dir> BENCH_NO_BUILD=1
#        ENGINES="influxdb victoriametrics tsdb-backend" MEMORY_LIMIT=256MiB
#   e.g. ROWS=10000000 MEMORY_LIMIT=256MiB scripts/bench-tsdb.sh   (the memory figure)
#
# The engines run one after the other, never two at once (2 cores), each on a fresh data
# directory, once per value shape in $SHAPES (`tsdb-bench --values`):
#   tsbs    TSBS's random walk per host and field, written with two decimals (58.17);
#   random  uniform floats at full precision (the data of the older figures).
# For every engine and shape:
# 1. ingest: `tsdb-bench --ingest-only` (5,000-row batches, 2 writers): rows/s, peak RSS
#    during ingest (VmHWM) and RSS after it (VmRSS).
# 2. flush: ours `POST /debug/flush` (204 once durable; a 404 from an older binary is
#    noted and the data directory is measured as it is); VictoriaMetrics
#    `GET /internal/force_flush`; InfluxDB has no such call: it is configured with
#    cache-snapshot-write-cold-duration and compact-full-write-cold-duration of 1s, and
#    the script waits until its WAL holds no bytes and every shard has one TSM file.
#    VictoriaMetrics 1.79 keeps what force_flush made in memory for up to 5 s more: the
#    script waits until the part directories on disk hold every value written.
#    Then, for every engine, until the data directory's size has not changed for 2 s
#    (polled every 200 ms, bounded by a deadline that grows with ROWS).
# 3. disk: the bytes allocated to every file under the engine's data directory (WAL,
#    index, blocks, metadata; sparse files count what they use: InfluxDB's series file
#    preallocates 32 MiB it does not use), divided by the values written (rows × 10).
#    RSS after the flush. A count of usage_user checks that every row was stored.
# 4. queries (ours and InfluxDB; VictoriaMetrics answers no InfluxQL): `tsdb-bench
#    --queries-only` after the flush, so our node reads from blocks: p50 and p95 of
#    mean-1h-by-host, lastpoint, high-cpu, rate-by-host (non_negative_derivative of the
#    hourly mean per host) and subquery-2 (the largest hourly sum of 10-minute means per
#    host, two deep),
#    each 20 times after one checked run.
# 5. restart: SIGKILL, start again on the same data directory, time from the start until
#    the first 204 on /ping (polled every 10 ms, bounded), then the count once more
#    (`SELECT count(usage_user) FROM cpu` must equal the rows; VictoriaMetrics: the
#    PromQL count_over_time of cpu_usage_user) and the RSS.
# MEMORY_LIMIT is passed to our node as --memory-limit when its --help lists that flag
# (otherwise it is ignored, with a note). Prints a markdown table (figure × engine, with
# ours / InfluxDB and ours / VictoriaMetrics ratios) and writes it to $OUT/table.md;
# $OUT (default: a new temp dir, printed, kept) also holds results.tsv, every tsdb-bench
# JSON line and every server log. Data directories live in a temp dir removed at exit.
# Nothing listens outside 127.0.0.1; ports are free ones picked at run time; every process
# started here is killed by PID at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

for a in "$@"; do
  case $a in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    --url*|--pid*|--label*|--hosts*|--steps*|--values*|--ingest-only|--queries-only)
      echo "bench-tsdb: $a is set by the script (sizes: ROWS, HOSTS; values: SHAPES)" >&2
      exit 2 ;;
  esac
done

ROWS=${ROWS:-500000}
HOSTS=${HOSTS:-100}
SHAPES=${SHAPES:-tsbs random}
ENGINES=${ENGINES:-influxdb victoriametrics tsdb-backend}
MEMORY_LIMIT=${MEMORY_LIMIT:-}
case "$ROWS$HOSTS" in *[!0-9]*) echo "bench-tsdb: ROWS and HOSTS must be whole numbers" >&2; exit 2 ;; esac
if [ "$HOSTS" -eq 0 ] || [ "$ROWS" -lt "$HOSTS" ] || [ $((ROWS % HOSTS)) -ne 0 ]; then
  echo "bench-tsdb: ROWS ($ROWS) must be a multiple of HOSTS ($HOSTS)" >&2; exit 2
fi
STEPS=$((ROWS / HOSTS))
for s in $SHAPES; do
  case $s in tsbs|random) ;; *) echo "bench-tsdb: unknown shape $s (tsbs, random)" >&2; exit 2 ;; esac
done
for e in $ENGINES; do
  case $e in influxdb|victoriametrics|tsdb-backend) ;;
    *) echo "bench-tsdb: unknown engine $e (influxdb, victoriametrics, tsdb-backend)" >&2; exit 2 ;;
  esac
done
# Deadlines that grow with the data: InfluxDB's full compaction of 10 M rows takes minutes.
SETTLE_DEADLINE_S=$((60 + ROWS / 10000))
RESTART_DEADLINE_S=$((60 + ROWS / 20000))

OUT=${OUT:-$(mktemp -d /tmp/bench-tsdb.XXXXXX)}
mkdir -p "$OUT"
echo "bench-tsdb: raw outputs in $OUT"

bash scripts/install-test-deps.sh >/dev/null
bash scripts/install-bench-deps.sh
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p tsdb-backend -p loadtest
fi
BIN=${CARGO_TARGET_DIR:-target}/release
for b in tsdb-backend tsdb-bench; do
  [ -x "$BIN/$b" ] || { echo "bench-tsdb: $BIN/$b missing" >&2; exit 1; }
done
VM=$(command -v victoria-metrics || command -v victoria-metrics-prod || true)
[ -n "$VM" ] || { echo "bench-tsdb: victoria-metrics missing" >&2; exit 1; }

source scripts/bench-lib.sh

ours_args=()
notes=()
if [ -n "$MEMORY_LIMIT" ]; then
  # (grep reads a string: `--help | grep -q` could fail under pipefail with SIGPIPE)
  if grep -q -- '--memory-limit' <<<"$("$BIN/tsdb-backend" --help 2>&1)"; then
    ours_args+=(--memory-limit "$MEMORY_LIMIT")
  else
    notes+=("MEMORY_LIMIT=$MEMORY_LIMIT ignored: this tsdb-backend has no --memory-limit")
  fi
fi
version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null | sed 's/[+~-].*//'; }
echo "bench-tsdb: $ROWS rows ($HOSTS hosts × $STEPS steps, $((ROWS * 10)) values), shapes: $SHAPES;" \
  "engines: $ENGINES (InfluxDB $(version influxdb), VictoriaMetrics $(version victoria-metrics));" \
  "tsdb-backend ${ours_args[*]:-without --memory-limit}"

printf 'engine\tshape\tfigure\tvalue\n' > "$OUT/results.tsv"
record() { printf '%s\t%s\t%s\t%s\n' "$engine" "$shape" "$1" "$2" >> "$OUT/results.tsv"; }
# The numbers of a tsdb-bench JSON line, one record each.
record_json() {
  python3 - "$1" <<'PY' | while IFS=$'\t' read -r k v; do record "$k" "$v"; done
import json, sys
for k, v in json.loads(sys.argv[1]).items():
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        print(f"{k}\t{v}")
PY
}

now_ms() { date +%s%3N; }
# Bytes allocated to the files under $1 (find's %b counts 512-byte blocks); files that a
# compaction removes while find walks are skipped.
dir_bytes() { { find "$1" -type f -printf '%b\n' 2>/dev/null || true; } | awk '{s += $1} END {printf "%d\n", s * 512}'; }
# Apparent size (st_size) of the files under $1.
file_bytes() { { find "$1" -type f -printf '%s\n' 2>/dev/null || true; } | awk '{s += $1} END {printf "%d\n", s}'; }
# A kB figure of /proc/<pid>/status in MiB ("VmRSS", "VmHWM").
status_mib() { awk -v k="$2:" '$1 == k {printf "%.1f\n", $2 / 1024}' "/proc/$1/status" 2>/dev/null || true; }
# Kills a server started here and forgets its PID (so the exit trap cannot hit a reused one).
kill_server() {
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# --- the three engines: launch on $port (and $port2) with everything under $dir/data ---
launch_influxdb() {
  cat > "$dir/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$port2"
[meta]
  dir = "$dir/data/meta"
[data]
  dir = "$dir/data/data"
  wal-dir = "$dir/data/wal"
  query-log-enabled = false
  # Write the cache into TSM files 1 s after the last write, and compact a shard fully
  # 1 s after that (defaults: 10m and 4h), so the disk figure is the compacted one.
  cache-snapshot-write-cold-duration = "1s"
  compact-full-write-cold-duration = "1s"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
CONF
  influxd run -config "$dir/influxdb.conf" >>"$log" 2>&1 &
  pid=$!; pids+=("$pid")
}
launch_victoriametrics() {
  # -influx.databaseNames: /query lists the database, as tsdb-bench waits for it.
  "$VM" -httpListenAddr="127.0.0.1:$port" -storageDataPath="$dir/data" -retentionPeriod=100y \
    -search.disableCache -influx.databaseNames=bench >>"$log" 2>&1 &
  pid=$!; pids+=("$pid")
}
launch_tsdb-backend() {
  "$BIN/tsdb-backend" --listen "127.0.0.1:$port" --data-dir "$dir/data" --log warn \
    "${ours_args[@]}" >>"$log" 2>&1 &
  pid=$!; pids+=("$pid")
}
pick_ports() { port=$(free_port); port2=$(free_port); }

# Asks the engine to write what it holds in memory to disk; prints what happened.
flush() {
  local code
  case $engine in
    tsdb-backend)
      code=$(curl -s -o "$dir/flush.body" -w '%{http_code}' -X POST --max-time "$SETTLE_DEADLINE_S" \
        "http://127.0.0.1:$port/debug/flush" || true)
      case $code in
        204) echo "POST /debug/flush: 204" ;;
        404) echo "POST /debug/flush: 404 (an older binary): measured as it is"
             notes+=("tsdb-backend ($shape) answered 404 to /debug/flush: its disk figure is its WAL and snapshots, not blocks") ;;
        *) echo "POST /debug/flush: $code $(head -c 200 "$dir/flush.body" 2>/dev/null)"
           notes+=("tsdb-backend ($shape): /debug/flush answered $code") ;;
      esac ;;
    victoriametrics)
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time "$SETTLE_DEADLINE_S" \
        "http://127.0.0.1:$port/internal/force_flush" || true)
      echo "GET /internal/force_flush: $code" ;;
    influxdb) echo "no flush call: waiting for the cache snapshot and the full compaction" ;;
  esac
}
# InfluxDB is flushed when its WAL holds no bytes, no compaction output (*.tmp) is being
# written, and every shard directory holds exactly one TSM file.
influxdb_flushed() {
  [ "$(file_bytes "$dir/data/wal")" = 0 ] || return 1
  [ -z "$(find "$dir/data/data" -name '*.tmp' -print -quit 2>/dev/null)" ] || return 1
  local shards
  shards=$({ find "$dir/data/data" -name '*.tsm' -printf '%h\n' 2>/dev/null || true; } | sort | uniq -c)
  [ -n "$shards" ] && ! awk '$1 != 1 {bad = 1} END {exit !bad}' <<<"$shards"
}
# VictoriaMetrics 1.79 answers /internal/force_flush once the data is searchable, but keeps
# the parts it made in memory for up to 5 s more (a SIGKILL before that lost them all in a
# trial). A part's directory name starts with its row count (data: `rows_blocks_...`;
# indexdb: `items_blocks_...`): flushed when the data parts on disk hold every value
# written and the indexdb parts on disk every item of vm_rows{type="indexdb"}.
victoriametrics_flushed() {
  local on_disk idx_disk idx_want
  on_disk=$({ find "$dir/data/data" -mindepth 3 -maxdepth 3 -type d -printf '%f\n' 2>/dev/null || true; } |
    awk -F_ '/^[0-9]+_[0-9]+_/ {s += $1} END {printf "%d\n", s}')
  [ "$on_disk" = $((ROWS * 10)) ] || return 1
  idx_want=$(curl -s --max-time 10 "http://127.0.0.1:$port/metrics" |
    awk '$1 == "vm_rows{type=\"indexdb\"}" {printf "%d\n", $2}')
  idx_disk=$({ find "$dir/data/indexdb" -mindepth 2 -maxdepth 2 -type d -printf '%f\n' 2>/dev/null || true; } |
    awk -F_ '/^[0-9]+_[0-9]+_/ {s += $1} END {printf "%d\n", s}')
  [ -n "$idx_want" ] && [ "$idx_disk" = "$idx_want" ]
}
# Waits until the data directory's size has not changed for 2 s (and, for InfluxDB and
# VictoriaMetrics, until the check above says it is flushed), at most $SETTLE_DEADLINE_S; sets $settled to the seconds it waited, or
# "timeout" (a global, not printed: a note added in a $(...) subshell would be lost).
settle() {
  local t0 deadline last=-1 same=0 size
  t0=$(now_ms); deadline=$((t0 + SETTLE_DEADLINE_S * 1000))
  while [ "$(now_ms)" -lt "$deadline" ]; do
    size=$(dir_bytes "$dir/data")
    if [ "$size" = "$last" ]; then same=$((same + 1)); else same=0; last=$size; fi
    if [ "$same" -ge 10 ] && case $engine in
         influxdb) influxdb_flushed ;;
         victoriametrics) victoriametrics_flushed ;;
         *) true ;;
       esac; then
      settled=$(awk -v ms="$(( $(now_ms) - t0 ))" 'BEGIN {printf "%.1f\n", ms / 1000}')
      return 0
    fi
    sleep 0.2
  done
  notes+=("$engine ($shape) was still changing its data directory after ${SETTLE_DEADLINE_S} s: its disk figure is what it was then")
  settled=timeout
}
# The number of usage_user values the engine answers for, or an error text.
count_values() {
  if [ "$engine" = victoriametrics ]; then
    # Every sample of cpu_usage_user: a window over all steps, ending at the last one.
    local end=$((1451606400 + (STEPS - 1) * 10)) window=$((STEPS * 10 + 10))
    curl -s --max-time 120 "http://127.0.0.1:$port/api/v1/query" \
      --data-urlencode "query=sum(count_over_time(cpu_usage_user{db=\"bench\"}[${window}s]))" \
      --data-urlencode "time=$end" |
      python3 -c 'import json,sys
try: print(json.load(sys.stdin)["data"]["result"][0]["value"][1])
except Exception as e: print(f"error:{e!r}")'
  else
    curl -s -G --max-time 120 "http://127.0.0.1:$port/query" --data-urlencode db=bench \
      --data-urlencode 'q=SELECT count(usage_user) FROM cpu' |
      python3 -c 'import json,sys
try: print(json.load(sys.stdin)["results"][0]["series"][0]["values"][0][1])
except Exception as e: print(f"error:{e!r}")'
  fi
}
# Milliseconds from $2 (epoch ns) until the first 204 on /ping of port $1, polled every
# 10 ms; fails after $3 seconds.
ms_until_ping() {
  python3 - "$1" "$2" "$3" <<'PY'
import http.client, sys, time
port, t0, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
while time.time_ns() - t0 < limit * 1e9:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/ping")
        r = c.getresponse()
        r.read()
        c.close()
        if r.status == 204:
            print(f"{(time.time_ns() - t0) / 1e6:.1f}")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.01)
sys.exit(1)
PY
}

# --- one engine, one shape ---
run_one() {
  dir="$work/$shape-$engine"; log="$OUT/$shape-$engine.log"
  mkdir -p "$dir/data"
  echo "== $engine, $shape values"
  pick_ports; "launch_$engine"; wait_ping "$port"

  local json
  json=$("$BIN/tsdb-bench" --url "http://127.0.0.1:$port" --pid "$pid" --label "$engine" \
    --hosts "$HOSTS" --steps "$STEPS" --values "$shape" --ingest-only "$@")
  echo "$json" | tee "$OUT/$shape-$engine.ingest.json"
  record_json "$json"

  local t0 flush_ms bytes
  t0=$(now_ms)
  flush
  flush_ms=$(( $(now_ms) - t0 ))
  settle
  bytes=$(dir_bytes "$dir/data")
  record flush_request_ms "$flush_ms"
  record settle_seconds "$settled"
  record disk_bytes "$bytes"
  record disk_file_bytes "$(file_bytes "$dir/data")"
  record disk_bytes_per_value "$(awk -v b="$bytes" -v v="$((ROWS * 10))" 'BEGIN {printf "%.3f\n", b / v}')"
  record rss_after_flush_mib "$(status_mib "$pid" VmRSS)"
  local count
  count=$(count_values)
  record count_after_flush "$count"
  echo "flushed (${flush_ms} ms, settled after ${settled} s): $bytes bytes on disk," \
    "$(awk -v b="$bytes" -v v="$((ROWS * 10))" 'BEGIN {printf "%.2f", b / v}') bytes/value;" \
    "count $count of $ROWS"
  [ "$count" = "$ROWS" ] || notes+=("$engine ($shape) counted $count values of usage_user after the flush, not $ROWS")

  if [ "$engine" != victoriametrics ]; then
    json=$("$BIN/tsdb-bench" --url "http://127.0.0.1:$port" --label "$engine" \
      --hosts "$HOSTS" --steps "$STEPS" --values "$shape" --queries-only "$@")
    echo "$json" | tee "$OUT/$shape-$engine.queries.json"
    record_json "$json"
  fi

  kill_server "$pid"
  pick_ports
  local ms
  t0=$(date +%s%N)
  "launch_$engine"
  if ms=$(ms_until_ping "$port" "$t0" "$RESTART_DEADLINE_S"); then
    count=$(count_values)
    record restart_ping_ms "$ms"
    record count_after_restart "$count"
    record rss_after_restart_mib "$(status_mib "$pid" VmRSS)"
    echo "restart: first 204 on /ping after $ms ms; count $count of $ROWS"
    [ "$count" = "$ROWS" ] || notes+=("$engine ($shape) counted $count values of usage_user after the restart, not $ROWS")
  else
    record restart_ping_ms timeout
    notes+=("$engine ($shape) did not answer /ping within $RESTART_DEADLINE_S s of its restart")
    echo "restart: no 204 on /ping within $RESTART_DEADLINE_S s"
  fi
  kill_server "$pid"
  rm -rf "$dir"
}

for shape in $SHAPES; do
  for engine in $ENGINES; do
    run_one "$@"
  done
done

printf '%s\n' "${notes[@]}" > "$OUT/notes.txt"
echo
python3 - "$OUT/results.tsv" "$OUT/notes.txt" "$ROWS" "$HOSTS" "$STEPS" \
  "$(version influxdb)" "$(version victoria-metrics)" > "$OUT/table.md" <<'PY'
import csv, sys
path, notes_path, rows, hosts, steps, v_influx, v_vm = sys.argv[1:8]
data, shapes, engines = {}, [], []
for r in csv.DictReader(open(path), delimiter="\t"):
    data[(r["engine"], r["shape"], r["figure"])] = r["value"]
    if r["shape"] not in shapes:
        shapes.append(r["shape"])
    if r["engine"] not in engines:
        engines.append(r["engine"])
names = {"influxdb": f"InfluxDB {v_influx}", "victoriametrics": f"VictoriaMetrics {v_vm}",
         "tsdb-backend": "tsdb-backend"}
order = [e for e in ("influxdb", "victoriametrics", "tsdb-backend") if e in engines]
# figure key, label, format, whether a higher value is better (None: no ratio)
figures = [
    ("rows_per_second", "ingest rows/s", "{:,.0f}", True),
    ("disk_bytes_per_value", "disk bytes per value after flush", "{:.2f}", False),
    ("disk_bytes", "disk MiB after flush", "mib", False),
    ("peak_rss_mib", "peak RSS during ingest, MiB", "{:.1f}", False),
    ("rss_mib", "RSS after ingest, MiB", "{:.1f}", False),
    ("rss_after_flush_mib", "RSS after flush, MiB", "{:.1f}", False),
    ("mean-1h-by-host_p50_ms", "mean-1h-by-host p50, ms", "{:.1f}", False),
    ("mean-1h-by-host_p95_ms", "mean-1h-by-host p95, ms", "{:.1f}", False),
    ("lastpoint_p50_ms", "lastpoint p50, ms", "{:.2f}", False),
    ("lastpoint_p95_ms", "lastpoint p95, ms", "{:.2f}", False),
    ("high-cpu_p50_ms", "high-cpu p50, ms", "{:.1f}", False),
    ("high-cpu_p95_ms", "high-cpu p95, ms", "{:.1f}", False),
    ("rate-by-host_p50_ms", "rate-by-host p50, ms", "{:.1f}", False),
    ("rate-by-host_p95_ms", "rate-by-host p95, ms", "{:.1f}", False),
    ("subquery-2_p50_ms", "subquery-2 p50, ms", "{:.1f}", False),
    ("subquery-2_p95_ms", "subquery-2 p95, ms", "{:.1f}", False),
    ("restart_ping_ms", "restart: first 204 on /ping, ms", "{:.0f}", False),
    ("count_after_restart", "count after restart", "count", None),
    ("rss_after_restart_mib", "RSS after restart, MiB", "{:.1f}", False),
]
def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None
def cell(engine, shape, key, fmt):
    v = data.get((engine, shape, key))
    if v is None:
        return "n/a"
    x = num(v)
    if fmt == "count":
        return "ok" if v == rows else f"**{v}** of {rows}"
    if x is None:
        return v
    if fmt == "mib":
        return f"{x / 1048576:,.1f}"
    return fmt.format(x)
def ratio(shape, key, other):
    a, b = num(data.get(("tsdb-backend", shape, key))), num(data.get((other, shape, key)))
    return f"{a / b:.2f}" if a is not None and b else "n/a"
head = ["figure", "values"] + [names[e] for e in order]
ratios = [e for e in ("influxdb", "victoriametrics") if e in order and "tsdb-backend" in order]
head += [f"ours / {names[e].split()[0]}" for e in ratios]
print(f"{int(rows):,} rows ({hosts} hosts × {steps} steps), {int(rows) * 10:,} values; "
      "ratio = ours / theirs (above 1 is better for rows/s, below 1 for everything else)")
print()
print("| " + " | ".join(head) + " |")
print("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|")
for key, label, fmt, _ in figures:
    for shape in shapes:
        if not any((e, shape, key) in data for e in order):
            continue
        line = [label, shape] + [cell(e, shape, key, fmt) for e in order]
        line += [ratio(shape, key, e) if fmt != "count" else "" for e in ratios]
        print("| " + " | ".join(line) + " |")
notes = [n for n in open(notes_path).read().splitlines() if n.strip()]
# The same query must give the same answer on both InfluxQL engines: compare the sizes.
for shape in shapes:
    keys = sorted({k for (e, s, k) in data if s == shape and k.endswith("_bytes")
                   and not k.startswith("disk")})
    pairs = [(k, data.get(("influxdb", shape, k)), data.get(("tsdb-backend", shape, k)))
             for k in keys]
    pairs = [(k, a, b) for k, a, b in pairs if a is not None and b is not None]
    if not pairs:
        continue
    differ = [f"{k[:-6]} {a} vs {b} bytes" for k, a, b in pairs if a != b]
    if differ:
        notes.append(f"answers differ from InfluxDB's ({shape}): " + "; ".join(differ))
    else:
        notes.append(f"the {len(pairs)} query answers ({shape}) were the same size on "
                     "InfluxDB and tsdb-backend, to the byte")
if notes:
    print()
    for n in notes:
        print(f"- {n}")
PY
cat "$OUT/table.md"
echo
echo "bench-tsdb: table in $OUT/table.md, raw figures in $OUT/results.tsv"
