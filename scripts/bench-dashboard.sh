#!/usr/bin/env bash
# A Grafana dashboard played through the gateway (loadtest/scenarios/dashboard.yaml: 10
# panels over the last hour, 50 viewers refreshing every 5 s, 100 queries/s, every answer
# checked), three times in one run: no cache, the text cache, the bucket cache.
#   scripts/bench-dashboard.sh     env: SECONDS_RUN=30 HOSTS=10 THREADS=2 BENCH_NO_BUILD=1
# The backend: one tsdb-backend (--fsync never) with database `telemetry`: measurements
# cpu (usage_user, usage_system, usage_idle), mem (used_percent), disk (used_percent, tag
# path), net (bytes_recv, tag interface) and system (load1) for $HOSTS hosts, one point
# every 10 s over the last 65 minutes, and a writer adding a point per host and
# measurement every 2 s at the current time, straight to the node as a collector would,
# while the dashboard plays.
# Three gateways, identical but for the cache, one route `path: /query` to the node:
#   off     no cache;
#   text    `cache: { use: queries, key: [method, path, query], buckets: { enabled: false } }`,
#           the cache `queries: { max_size: 256MiB, ttl: 5s }`: keyed by the query's text;
#   bucket  the same with the default `buckets:` (settle 1m, ttl 10m).
# For each: the node's query requests over the run (tsdb_query_requests_total, after minus
# before, per second of the run), the dashboard's p50/p99 and errors and checks
# (report.json), and the cache's counters (/admin/status). Goals (issue 22): the bucket
# cache sends the nodes at least 10x fewer queries/s than the text cache, and its p99 is
# at most half the no-cache run's.
# Everything listens on 127.0.0.1 on free ports; every process is killed by PID at exit.
# Figures of one run only: 2 shared cores run the node, the gateways, the writer and the
# load generator at once.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${SECONDS_RUN:-30}
HOSTS=${HOSTS:-10}
THREADS=${THREADS:-2}
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway -p tsdb-backend -p loadtest
fi
for b in gateway tsdb-backend loadtest; do
  [ -x "target/release/$b" ] || { echo "bench-dashboard: target/release/$b missing" >&2; exit 1; }
done
source scripts/bench-lib.sh
die() { echo "bench-dashboard: $*" >&2; exit 1; }

# ---- the node and its data ---------------------------------------------------------------
tsdb=$(free_port)
target/release/tsdb-backend --listen "127.0.0.1:$tsdb" --data-dir "$work/tsdb" \
  --create-database telemetry --fsync never --log warn >"$work/tsdb.log" 2>&1 &
pids+=($!); disown $!
wait_ping "$tsdb"
cat > "$work/points.py" <<'PY'
import os, random, sys, time
random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
hosts = int(os.environ["HOSTS"])
def lines(t):
    for h in range(hosts):
        host = f"h{h}"
        yield (f"cpu,host={host} usage_user={random.uniform(0, 60):.2f},"
               f"usage_system={random.uniform(0, 20):.2f},usage_idle={random.uniform(20, 100):.2f} {t}")
        yield f"mem,host={host} used_percent={random.uniform(30, 90):.2f} {t}"
        for path in ("/", "/var"):
            yield f"disk,host={host},path={path} used_percent={random.uniform(10, 95):.2f} {t}"
        for nic in ("eth0", "lo"):
            yield f"net,host={host},interface={nic} bytes_recv={random.randint(0, 10**9)}i {t}"
        yield f"system,host={host} load1={random.uniform(0, 4):.2f} {t}"
now = int(time.time())
if sys.argv[1] == "history":
    for t in range(now - 65 * 60, now, 10):
        print("\n".join(lines(t)))
else:
    print("\n".join(lines(now)))
PY
HOSTS=$HOSTS python3 "$work/points.py" history > "$work/history.lp"
code=$(curl -s --max-time 60 -o "$work/write.out" -w '%{http_code}' -X POST \
  --data-binary @"$work/history.lp" "http://127.0.0.1:$tsdb/write?db=telemetry&precision=s")
[ "$code" = 204 ] || die "writing the history answered $code: $(cat "$work/write.out")"
echo "node on $tsdb: $(wc -l < "$work/history.lp") points over the last 65 minutes, $HOSTS hosts"

# The collector: a point per host and measurement every 2 s, bounded by the runs' length.
(
  end=$(( $(date +%s) + 4 * (SECONDS_RUN + 30) ))
  i=0
  while [ "$(date +%s)" -lt "$end" ]; do
    i=$((i + 1))
    HOSTS=$HOSTS python3 "$work/points.py" now "$i" \
      | curl -s --max-time 5 -o /dev/null -X POST --data-binary @- \
          "http://127.0.0.1:$tsdb/write?db=telemetry&precision=s" || true
    sleep 2
  done
) 2>/dev/null &
pids+=($!); disown $!

# ---- the gateways ------------------------------------------------------------------------
declare -A port_of admin_of
pool="pools:
  tsdb:
    backends: [ { address: 127.0.0.1:$tsdb } ]
    health_check: { path: /ping, interval: 1s, timeout: 500ms }"
route="routes:
  - name: query
    match: { path: /query, methods: [GET] }
    pool: tsdb"
for name in off text bucket; do
  mkdir -p "$work/$name/policies"
  case $name in
    off) cache_block=""; route_cache="" ;;
    text) cache_block="caches: { queries: { max_size: 256MiB, ttl: 5s } }"
          route_cache="    cache: { use: queries, key: [method, path, query], buckets: { enabled: false } }" ;;
    bucket) cache_block="caches: { queries: { max_size: 256MiB, ttl: 5s } }"
            route_cache="    cache: { use: queries, key: [method, path, query] }" ;;
  esac
  printf '%s\n%s\n%s\n%s\n' "$cache_block" "$pool" "$route" "$route_cache" \
    > "$work/$name/policies/bench.yaml"
  start_gateway "$name"
done

# The node's query requests and the seconds it spent answering them, so far.
node_queries() {
  curl -sf --max-time 5 "http://127.0.0.1:$tsdb/metrics" \
    | awk '/^tsdb_query_requests_total/ { n += $2 } /^tsdb_query_duration_seconds_sum/ { t += $2 }
           END { printf "%d:%.6f\n", n, t }'
}

# ---- the runs ----------------------------------------------------------------------------
printf '\n| cache | node queries/s | node busy (ms/s) | dashboard p50 ms | p99 ms | errors | checks failed | X-Cache (HIT/PARTIAL/MISS) | buckets served / fetched |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---|---|\n'
declare -A qps busy p99
for name in off text bucket; do
  before=$(node_queries)
  target/release/loadtest run loadtest/scenarios/dashboard.yaml --quiet \
    --set "TARGET=http://127.0.0.1:${port_of[$name]}" --set "SECONDS=$SECONDS_RUN" \
    --out "$work/$name/report" > "$work/$name/summary.txt" 2>&1 \
    || true  # an SLO miss exits non-zero; the figures are what this reports
  after=$(node_queries)
  curl -sf --max-time 5 "http://127.0.0.1:${admin_of[$name]}/admin/status" > "$work/$name/status.json" || echo '{}' > "$work/$name/status.json"
  [ -f "$work/$name/report/report.json" ] || { cat "$work/$name/summary.txt" >&2; die "$name: no report"; }
  read -r q b p50 p tail_errors failed outcomes buckets < <(python3 - "$work/$name" "$before" "$after" <<'PY'
import json, sys
d = sys.argv[1]
(before, t0), (after, t1) = [(int(x.split(":")[0]), float(x.split(":")[1])) for x in sys.argv[2:4]]
r = json.load(open(f"{d}/report/report.json"))
o = r["overall"]
secs = r["duration_s"] or 1
failed = sum(c.get("failed", 0) for req in r.get("requests", []) for c in req.get("checks", []))
caches = json.load(open(f"{d}/status.json")).get("caches", {})
c = caches.get("queries", {})
outcomes = f"{c.get('hits', 0)}/{c.get('partial', 0)}/{c.get('misses', 0)}" if c else "-"
buckets = f"{c.get('bucket_hits', 0)}/{c.get('buckets_fetched', 0)}" if c else "-"
errors = o["server_errors"] + o["transport_errors"]
print(f"{(after - before) / secs:.1f} {1000 * (t1 - t0) / secs:.1f} {o['latency']['p50_ms']:.2f} {o['latency']['p99_ms']:.2f} {errors} {failed} {outcomes} {buckets}")
PY
)
  qps[$name]=$q busy[$name]=$b p99[$name]=$p
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$q" "$b" "$p50" "$p" "$tail_errors" "$failed" "$outcomes" "$buckets"
done
python3 - "${qps[text]}" "${qps[bucket]}" "${busy[text]}" "${busy[bucket]}" "${p99[off]}" "${p99[bucket]}" <<'PY'
import sys
text_q, bucket_q, text_b, bucket_b, off_p99, bucket_p99 = map(float, sys.argv[1:])
ratio = lambda a, b: a / b if b else float("inf")
print(f"\nnode queries/s, text cache / bucket cache: {ratio(text_q, bucket_q):.1f}x (goal >= 10x)")
print(f"node time answering queries, text cache / bucket cache: {ratio(text_b, bucket_b):.1f}x")
print(f"dashboard p99, bucket cache / no cache: {ratio(bucket_p99, off_p99):.2f} (goal <= 0.5)")
PY
