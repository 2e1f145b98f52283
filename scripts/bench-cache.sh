#!/usr/bin/env bash
# Hot queries through the response cache: dashboards asking the same 5 queries over and
# over from 200 clients, answered from the gateway's cache and, for comparison, by the
# backend every time.
#   scripts/bench-cache.sh     env: ROUNDS=3 DURATION=10 WARMUP=2 CONNS=200 RATE=5000
#                                   THREADS=2 HOSTS=10 BENCH_NO_BUILD=1
# The backend: one tsdb-backend (--fsync never: the writes are set-up only) with database
# `bench`, given 360 points per host before the runs ($HOSTS hosts: 3600 points by
# default): measurement cpu, tags host (h0, h1, ...) and region (r0, r1), fields usage and
# idle, one point per host every 10 s over the last hour. The uncached figure is the
# backend's cost of the queries, so it falls as HOSTS grows; the cached one does not.
# The 5 queries (GET /query?db=bench&q=..., URL-encoded):
#   SELECT mean(usage) FROM cpu WHERE time > now() - 1h GROUP BY time(1m), host   (~25 KB)
#   SELECT max(usage) FROM cpu WHERE time > now() - 1h GROUP BY time(5m), region
#   SELECT count(usage) FROM cpu WHERE time > now() - 1h GROUP BY host
#   SELECT last(usage) FROM cpu WHERE time > now() - 1h GROUP BY host
#   SHOW TAG VALUES FROM cpu WITH KEY = host
# Two gateways (threads: $THREADS), identical but for the cache, each with one pool holding
# the tsdb-backend (health checks GET /ping every 1 s) and one route `path: /query`, GET:
#   cached  the route has `cache: { use: queries, key: [method, path, query] }`, the cache
#           `queries: { max_size: 256MiB, ttl: 5s, stale_while_revalidate: 10s }`;
#   plain   no cache: every request goes to the backend.
# (Two gateways rather than two `host` routes on one: loadtest sets Host from its target,
# and a Host header in a scenario would be a second one.) Only the gateway under test gets
# traffic; the other one's health checks are all it does meanwhile.
# Before each run on the cached gateway the cache is purged (POST /admin/cache/purge), each
# query is asked once (a MISS, stored), and the next try of each must say `X-Cache: HIT`:
# the script fails otherwise.
# 1. Throughput: `wrk -t2 -c$CONNS --latency` with a Lua script cycling through the 5 query
#    paths, a ${WARMUP} s warm-up then ${DURATION} s, on cached and then plain, interleaved
#    over $ROUNDS rounds. Columns: req/s of each, cached/plain in the same round, and the
#    share of the cached run's requests answered from the cache (HIT or STALE, from the
#    cache's counters in /admin/status, after the run minus before; the warm-up included).
#    Summary: the median ratio over rounds; goal >= 10x.
# 2. Latency: `loadtest run` (one thread) in an open loop on the cached gateway, a 2 s
#    warm-up then $DURATION s at $RATE req/s, the 5 queries mixed with equal weights (picked
#    at random, not in turn), at most $CONNS connections: p50, p99, max (ms, from each
#    request's scheduled send time), errors (5xx and transport errors); goal p99 <= 2 ms.
# Everything listens on 127.0.0.1 on free ports; every process is killed by PID at exit.
# Only figures of one run (and ratios inside one round) mean anything: 2 shared cores run
# the tsdb-backend, the gateway and the client at once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-200}
RATE=${RATE:-5000}
THREADS=${THREADS:-2}
HOSTS=${HOSTS:-10}
command -v wrk >/dev/null 2>&1 || { echo "bench-cache: wrk missing (scripts/install-bench-deps.sh installs it)" >&2; exit 1; }
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway -p tsdb-backend -p loadtest
fi
for b in gateway tsdb-backend loadtest; do
  [ -x "target/release/$b" ] || { echo "bench-cache: target/release/$b missing" >&2; exit 1; }
done
source scripts/bench-lib.sh
die() { echo "bench-cache: $*" >&2; exit 1; }

# ---- the backend and its data ------------------------------------------------------------
tsdb=$(free_port)
target/release/tsdb-backend --listen "127.0.0.1:$tsdb" --data-dir "$work/tsdb" \
  --create-database bench --fsync never --log warn >"$work/tsdb.log" 2>&1 &
pids+=($!); disown $!
wait_ping "$tsdb"
HOSTS=$HOSTS python3 - > "$work/points.lp" <<'PY'
import os, random, time
random.seed(1)
now = int(time.time())
for h in range(int(os.environ["HOSTS"])):
    for i in range(360):
        print(f"cpu,host=h{h},region=r{h % 2} usage={random.uniform(0, 100):.2f},"
              f"idle={random.uniform(0, 100):.2f} {now - 3600 + 10 * i}")
PY
code=$(curl -s --max-time 30 -o "$work/write.out" -w '%{http_code}' -X POST \
  --data-binary @"$work/points.lp" "http://127.0.0.1:$tsdb/write?db=bench&precision=s")
[ "$code" = 204 ] || die "writing the points answered $code: $(cat "$work/write.out")"

queries=(
  "SELECT mean(usage) FROM cpu WHERE time > now() - 1h GROUP BY time(1m), host"
  "SELECT max(usage) FROM cpu WHERE time > now() - 1h GROUP BY time(5m), region"
  "SELECT count(usage) FROM cpu WHERE time > now() - 1h GROUP BY host"
  "SELECT last(usage) FROM cpu WHERE time > now() - 1h GROUP BY host"
  "SHOW TAG VALUES FROM cpu WITH KEY = host"
)
mapfile -t paths < <(python3 -c '
import sys, urllib.parse
for q in sys.argv[1:]:
    print("/query?db=bench&q=" + urllib.parse.quote(q, safe=""))' "${queries[@]}")
for p in "${paths[@]}"; do  # each query does real work: 200 with series in the answer
  curl -s --max-time 5 -o "$work/answer.json" -w '%{http_code}' "http://127.0.0.1:$tsdb$p" \
    > "$work/code"
  [ "$(cat "$work/code")" = 200 ] && grep -q '"series"' "$work/answer.json" \
    || die "the backend answered $p with $(cat "$work/code"): $(head -c 300 "$work/answer.json")"
done

# ---- the gateways ------------------------------------------------------------------------
declare -A port_of admin_of
pool="pools:
  tsdb:
    algorithm: round_robin
    backends: [ { address: 127.0.0.1:$tsdb, weight: 1 } ]
    health_check: { path: /ping, interval: 1s, timeout: 500ms }"
mkdir -p "$work/cached/policies" "$work/plain/policies"
cat > "$work/cached/policies/bench.yaml" <<CONF
caches:
  queries: { max_size: 256MiB, ttl: 5s, stale_while_revalidate: 10s }
$pool
routes:
  - name: cached
    match: { path: /query, methods: [GET] }
    pool: tsdb
    cache: { use: queries, key: [method, path, query] }
CONF
cat > "$work/plain/policies/bench.yaml" <<CONF
$pool
routes:
  - name: plain
    match: { path: /query, methods: [GET] }
    pool: tsdb
CONF
start_gateway cached
start_gateway plain

x_cache() { # url -> the X-Cache of its answer (empty without one); fails unless 200
  local head code
  head=$(curl -s --max-time 5 -D - -o /dev/null "$1" | tr -d '\r')
  code=$(echo "$head" | awk 'NR == 1 {print $2}')
  [ "$code" = 200 ] || die "$1 answered ${code:-nothing}"
  echo "$head" | awk -F': *' 'tolower($1) == "x-cache" {print $2}'
}
for p in "${paths[@]}"; do
  x=$(x_cache "http://127.0.0.1:${port_of[plain]}$p")
  [ -z "$x" ] || die "the plain gateway answered $p with X-Cache: $x"
done
warm_cache() { # purge; one request per query (a MISS); the second try must be a HIT
  curl -sf --max-time 5 -o /dev/null -X POST "http://127.0.0.1:${admin_of[cached]}/admin/cache/purge" \
    || die "POST /admin/cache/purge failed"
  local p x
  for p in "${paths[@]}"; do
    x=$(x_cache "http://127.0.0.1:${port_of[cached]}$p")
    [ "$x" = MISS ] || die "first try of $p after the purge: X-Cache: ${x:-<none>}, not MISS"
    x=$(x_cache "http://127.0.0.1:${port_of[cached]}$p")
    [ "$x" = HIT ] || die "second try of $p: X-Cache: ${x:-<none>}, not HIT"
  done
}
cache_stats() { # -> "hits stale misses bypass" of cache `queries`
  curl -sf --max-time 5 "http://127.0.0.1:${admin_of[cached]}/admin/status" | python3 -c '
import json, sys
c = json.load(sys.stdin)["caches"]["queries"]
print(c["hits"], c["stale"], c["misses"], c["bypass"])'
}

# ---- 1. throughput -----------------------------------------------------------------------
{
  echo "local paths = {"
  for p in "${paths[@]}"; do echo "  \"$p\","; done
  echo "}"
  cat <<'LUA'
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
LUA
} > "$work/hot.lua"

echo "1. throughput: wrk -t2 -c$CONNS, the 5 queries in turn, ${WARMUP} s warm-up then ${DURATION} s per gateway"
printf '%-6s %-7s %10s %9s %9s %8s %11s\n' round gateway req/s "p50 ms" "p99 ms" errors "from cache"
results=$work/results.tsv
: > "$results"
for r in $(seq 1 "$ROUNDS"); do
  for g in cached plain; do
    url="http://127.0.0.1:${port_of[$g]}"
    if [ "$g" = cached ]; then warm_cache; before=$(cache_stats); fi
    timeout $((WARMUP + 60)) wrk -t2 -c"$CONNS" -d"${WARMUP}s" -s "$work/hot.lua" "$url" \
      >"$work/warmup-r$r-$g.txt" 2>&1 || die "wrk warm-up on $g failed: $(cat "$work/warmup-r$r-$g.txt")"
    timeout $((DURATION + 60)) wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$work/hot.lua" "$url" \
      >"$work/wrk-r$r-$g.txt" 2>&1 || die "wrk on $g failed: $(cat "$work/wrk-r$r-$g.txt")"
    line=$(parse_wrk "$work/wrk-r$r-$g.txt") || { cat "$work/wrk-r$r-$g.txt" >&2; die "cannot read wrk's output"; }
    share=-
    if [ "$g" = cached ]; then
      share=$(python3 -c '
import sys
b, a = (list(map(int, s.split())) for s in sys.argv[1:3])
d = [x - y for x, y in zip(a, b)]
print(f"{(d[0] + d[1]) / max(sum(d), 1) * 100:.2f}%")' "$before" "$(cache_stats)")
    fi
    printf '%s\t%s\t%s\t%s\n' "$r" "$g" "$line" "$share" >> "$results"
    echo "$line" | awk -F'\t' -v r="$r" -v g="$g" -v s="$share" \
      '{printf "%-6s %-7s %10.0f %9.3f %9.3f %8d %11s\n", r, g, $1, $2, $3, $4, s}'
  done
done

# ---- 2. latency --------------------------------------------------------------------------
{
  cat <<YAML
name: hot-queries
target: http://127.0.0.1:${port_of[cached]}
stages:
  - { duration: 2s, rate: $RATE }
  - { duration: ${DURATION}s, rate: $RATE }
requests:
YAML
  for p in "${paths[@]}"; do echo "  - { method: GET, path: \"$p\" }"; done
  echo "max_connections: $CONNS"
} > "$work/hot.yaml"
echo
echo "2. latency: loadtest open loop on the cached gateway, 2 s warm-up then ${DURATION} s at $RATE req/s"
warm_cache
before=$(cache_stats)
timeout $((DURATION + 120)) target/release/loadtest run --quiet --threads 1 "$work/hot.yaml" \
  --out "$work/out-latency" >"$work/loadtest.txt" 2>&1 \
  || [ $? -eq 2 ] || { cat "$work/loadtest.txt" >&2; die "loadtest failed"; }
after=$(cache_stats)

# ---- the table ---------------------------------------------------------------------------
echo
python3 - "$results" "$work/out-latency/report.json" "$before" "$after" \
  "$CONNS" "$DURATION" "$RATE" "$THREADS" "$HOSTS" <<'PY'
import json, statistics, sys
res, report, before, after, conns, dur, rate, threads, hosts = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(res)]
by = {(r[0], r[1]): r for r in rows}
rounds = sorted({r[0] for r in rows}, key=int)
print(f"summary: hot queries (5 queries, {hosts} hosts, {int(hosts) * 360} points), gateways with threads: {threads}")
print(f"throughput, wrk -t2 -c{conns} -d{dur}s")
print(f"{'round':>5} {'cached req/s':>13} {'plain req/s':>12} {'ratio':>8} {'from cache':>11} {'errors c/p':>11}")
ratios = []
for r in rounds:
    c, p = by[(r, "cached")], by[(r, "plain")]
    ratio = float(c[2]) / float(p[2])
    ratios.append(ratio)
    print(f"{r:>5} {float(c[2]):13.0f} {float(p[2]):12.0f} {ratio:7.1f}x {c[6]:>11} "
          f"{c[5] + '/' + p[5]:>11}")
med = statistics.median(ratios)
print(f"  median ratio cached/plain over {len(rounds)} round(s): {med:.1f}x   "
      f"(goal >= 10x: {'met' if med >= 10 else 'NOT met'})")
o = json.load(open(report))
ov, lat, gen = o["overall"], o["overall"]["latency"], o["generator"]
b, a = (list(map(int, s.split())) for s in (before, after))
d = [x - y for x, y in zip(a, b)]
errors = ov["server_errors"] + ov["transport_errors"]
print(f"latency, loadtest open loop at {rate} req/s for {dur} s, cached gateway")
print(f"  achieved {ov['achieved_rate']:.0f} req/s, {ov['requests']} requests, p50 {lat['p50_ms']:.3f} ms, "
      f"p99 {lat['p99_ms']:.3f} ms, max {lat['max_ms']:.3f} ms, errors {errors} "
      f"({ov['error_rate'] * 100:.2f}%), other non-2xx {ov['client_errors'] + ov['rate_limited']}")
print(f"  from cache {(d[0] + d[1]) / max(sum(d), 1) * 100:.2f}% (hit {d[0]}, stale {d[1]}, miss {d[2]}, "
      f"bypass {d[3]}; warm-up included); generator kept its schedule: "
      f"{'yes' if gen['kept_schedule'] else 'no'} (late {gen['late_requests']}, max lag {gen['max_lag_ms']:.1f} ms)")
print(f"  goal p99 <= 2 ms: {'met' if lat['p99_ms'] <= 2 else 'NOT met'}")
print("Only figures of this run (and ratios inside one round) mean anything: 2 shared cores run\n"
      "the tsdb-backend, the gateway and the client at once.")
PY
