#!/usr/bin/env bash
# A canary release of one route, driven from the gateway's own numbers: shifts the route's
# split from the old pool to the new one step by step, and after each step holds, reads
# /metrics and judges the new pool's answers since the step began. It proceeds when they
# are good and rolls back by itself (new pool weight 0, old pool 100) as soon as the new
# pool's error ratio or p99 passes its threshold.
#
#   scripts/canary.sh --admin http://127.0.0.1:9090 --policy policies/tsdb.yaml \
#       --route query --old tsdb --new tsdb-next [--steps 5,25,50,100] [--hold 60s] \
#       [--max-error-ratio 0.01] [--max-p99 500ms] [--min-requests 100]
#
# The route must already be written as a split of the two pools, in the file given:
#
#   split: [ { pool: tsdb, weight: 100 }, { pool: tsdb-next, weight: 0 } ]
#
# (flow or block style, `pool` before or after `weight`). Each step writes the weights into
# that file (a temporary file renamed over it, so a reload never reads half a file), asks
# the gateway to reload (POST /admin/reload, so it works whether or not the file is
# watched) and waits until /admin/status serves the new weights. The judgement reads
# gateway_pool_requests_total and gateway_pool_request_duration_seconds for the route and
# the new pool, as deltas from the moment the step's weights were in service.
#
# Exit status: 0 every step passed; 2 rolled back (the reason on stderr); 1 a usage error,
# an unreachable gateway, or a policy the gateway refuses (a mistake elsewhere in the
# files: the file is put back as it was before the step, and nothing changed in service).
# Ctrl-C or SIGTERM rolls back, then exits 130. Needs bash, curl and python3 (stdlib only).
# With the admin port's token set (admin: { token_file }), give the same file as
# ADMIN_TOKEN_FILE=<path> in the environment: reloads send it as a bearer token.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/canary.sh --admin URL --policy FILE --route NAME --old POOL --new POOL [options]

  --admin URL             the gateway's admin address, e.g. http://127.0.0.1:9090
  --policy FILE           the policy file that holds the route's split
  --route NAME            the route whose split is shifted
  --old POOL, --new POOL  the pool in service and the one being released
  --steps LIST            the new pool's weights in turn, out of 100 (default 5,25,50,100)
  --hold DURATION         how long each step is watched (default 60s; 500ms, 30s, 2m)
  --max-error-ratio R     roll back when the new pool's 5xx share passes R (default 0.01)
  --max-p99 DURATION      roll back when the new pool's p99 passes it (default 500ms)
  --min-requests N        answers of the new pool needed before judging (default 100)
  --judge-timeout DURATION  how much longer than --hold a step may wait for those
                          answers before it rolls back for want of traffic (default: --hold)
  --interval DURATION     how often /metrics is read during a hold (default 1s)
  --reload-timeout DURATION  the longest wait for a reload to be in service (default 10s)
EOF
}

die() { printf 'canary: %s\n' "$*" >&2; exit 1; }
say() { printf 'canary: %s\n' "$*"; }

ADMIN="" POLICY="" ROUTE="" OLD="" NEW=""
STEPS="5,25,50,100" HOLD="60s" MAX_ERROR_RATIO="0.01" MAX_P99="500ms" MIN_REQUESTS=100
JUDGE_TIMEOUT="" INTERVAL="1s" RELOAD_TIMEOUT="10s"
while [ $# -gt 0 ]; do
  case "$1" in
    --admin) ADMIN=${2:-}; shift 2 ;;
    --policy) POLICY=${2:-}; shift 2 ;;
    --route) ROUTE=${2:-}; shift 2 ;;
    --old) OLD=${2:-}; shift 2 ;;
    --new) NEW=${2:-}; shift 2 ;;
    --steps) STEPS=${2:-}; shift 2 ;;
    --hold) HOLD=${2:-}; shift 2 ;;
    --max-error-ratio) MAX_ERROR_RATIO=${2:-}; shift 2 ;;
    --max-p99) MAX_P99=${2:-}; shift 2 ;;
    --min-requests) MIN_REQUESTS=${2:-}; shift 2 ;;
    --judge-timeout) JUDGE_TIMEOUT=${2:-}; shift 2 ;;
    --interval) INTERVAL=${2:-}; shift 2 ;;
    --reload-timeout) RELOAD_TIMEOUT=${2:-}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[ -n "$ADMIN" ] && [ -n "$POLICY" ] && [ -n "$ROUTE" ] && [ -n "$OLD" ] && [ -n "$NEW" ] \
  || { usage >&2; die "--admin, --policy, --route, --old and --new are required"; }
[ "$OLD" != "$NEW" ] || die "--old and --new name the same pool"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"
[ -f "$POLICY" ] || die "$POLICY: no such file"
AUTH=()
if [ -n "${ADMIN_TOKEN_FILE:-}" ]; then
  [ -r "$ADMIN_TOKEN_FILE" ] || die "ADMIN_TOKEN_FILE=$ADMIN_TOKEN_FILE cannot be read"
  AUTH=(-H "Authorization: Bearer $(tr -d '[:space:]' <"$ADMIN_TOKEN_FILE")")
fi
[ -w "$POLICY" ] && [ -w "$(dirname "$POLICY")" ] || die "$POLICY: the file and its folder must be writable"
ADMIN=${ADMIN%/}

# Durations in milliseconds: 500ms, 30s, 2m, 1h, or a number of seconds.
ms() {
  case "$1" in
    *ms) v=${1%ms}; m=1 ;;
    *s) v=${1%s}; m=1000 ;;
    *m) v=${1%m}; m=60000 ;;
    *h) v=${1%h}; m=3600000 ;;
    *) v=$1; m=1000 ;;
  esac
  [[ "$v" =~ ^[0-9]+$ ]] || die "not a duration: $1 (write 500ms, 30s, 2m)"
  echo $((v * m))
}
HOLD_MS=$(ms "$HOLD")
JUDGE_MS=$(ms "${JUDGE_TIMEOUT:-$HOLD}")
INTERVAL_MS=$(ms "$INTERVAL")
RELOAD_MS=$(ms "$RELOAD_TIMEOUT")
MAX_P99_MS=$(ms "$MAX_P99")
[ "$INTERVAL_MS" -gt 0 ] || die "--interval must be more than 0"
[[ "$MIN_REQUESTS" =~ ^[0-9]+$ ]] || die "--min-requests: not a whole number: $MIN_REQUESTS"
[[ "$MAX_ERROR_RATIO" =~ ^(0|1|0?\.[0-9]+|1\.0*)$ ]] || die "--max-error-ratio: a share from 0 to 1, e.g. 0.01"
IFS=, read -r -a STEP_LIST <<<"$STEPS"
[ "${#STEP_LIST[@]}" -gt 0 ] || die "--steps: give at least one weight"
prev=0
for w in "${STEP_LIST[@]}"; do
  [[ "$w" =~ ^[0-9]+$ ]] && [ "$w" -le 100 ] && [ "$w" -gt "$prev" ] \
    || die "--steps: weights from 1 to 100, rising: $STEPS"
  prev=$w
done

now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
seconds() { awk -v m="$1" 'BEGIN { printf "%.1fs", m / 1000 }'; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/canary.XXXXXX")
ORIGINAL="$WORK/original"
cp -p "$POLICY" "$ORIGINAL"
STATE=starting   # starting | running | done
finish() { rm -rf "$WORK"; }
trap finish EXIT

# The helper: every YAML edit, JSON read and metrics sum, in Python's standard library.
helper() {
  python3 - "$@" <<'PY'
import json, math, os, re, sys, tempfile

def fail(msg):
    print(f"canary: {msg}", file=sys.stderr)
    sys.exit(1)

def route_block(lines, route):
    """The lines of the routes[] item named `route`: (first, end)."""
    name = re.compile(r'^(\s*)(-\s+)?name:\s*["\']?' + re.escape(route) + r'["\']?\s*(#.*)?$')
    for i, line in enumerate(lines):
        m = name.match(line)
        if not m:
            continue
        start = i
        if not m.group(2):  # name is not the item's first key: find the item's dash
            indent = len(m.group(1))
            for j in range(i - 1, -1, -1):
                s = lines[j]
                if s.strip() and len(s) - len(s.lstrip()) < indent and s.lstrip().startswith('-'):
                    start = j
                    break
            else:
                continue
        dash = len(lines[start]) - len(lines[start].lstrip())
        end = len(lines)
        for j in range(start + 1, len(lines)):
            s = lines[j]
            if s.strip() and not s.lstrip().startswith('#') and len(s) - len(s.lstrip()) <= dash:
                end = j
                break
        return start, end
    fail(f"no route named {route!r} in the file (write its name as `- name: {route}`)")

def set_weight(block, pool, weight):
    p = r'["\']?' + re.escape(pool) + r'["\']?(?![\w.-])'
    patterns = [
        r'(\{\s*pool:\s*' + p + r'\s*,\s*weight:\s*)(\d+)',
        r'(\{\s*weight:\s*)(\d+)(?=\s*,\s*pool:\s*' + p + r'\s*\})',
        r'(-\s+pool:[ \t]*' + p + r'[ \t]*(?:#[^\n]*)?\n[ \t]+weight:[ \t]*)(\d+)',
        r'(-\s+weight:[ \t]*)(\d+)(?=[ \t]*(?:#[^\n]*)?\n[ \t]+pool:[ \t]*' + p + r')',
    ]
    found = [(pat, m) for pat in patterns for m in re.finditer(pat, block)]
    if len(found) != 1:
        fail(f"the split of the route must list pool {pool!r} once with its weight "
             f"(found {len(found)}): write it as {{ pool: {pool}, weight: N }}")
    pat, m = found[0]
    return block[:m.start(2)] + str(weight) + block[m.end(2):]

def write_weights(path, route, weights):
    with open(path) as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    start, end = route_block(lines, route)
    block = ''.join(lines[start:end])
    for pool, w in weights:
        block = set_weight(block, pool, w)
    write_whole(path, ''.join(lines[:start]) + block + ''.join(lines[end:]))

def write_whole(path, text):
    """A temporary file beside it (not *.yaml, so a policy directory ignores it), renamed over it."""
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + base + '.', suffix='.canary-tmp')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

def serving(status_file, route, weights):
    """Exit 0 when the route in service splits with these weights."""
    st = json.load(open(status_file))
    r = next((r for r in st.get('routes', []) if r.get('name') == route), None)
    if r is None:
        fail(f"no route {route!r} in service")
    split = {s['pool']: s['weight'] for s in (r.get('split') or [])}
    have = ', '.join(f"{p}={split.get(p)}" for p, _ in weights)
    pol = st.get('policy') or {}
    print(f"version {pol.get('version')} digest {str(pol.get('digest'))[:12]}: {have}")
    sys.exit(0 if all(split.get(p) == w for p, w in weights) else 3)

def check_route(status_file, route, old, new):
    st = json.load(open(status_file))
    r = next((r for r in st.get('routes', []) if r.get('name') == route), None)
    if r is None:
        fail(f"the gateway serves no route named {route!r}")
    split = r.get('split')
    if not split:
        fail(f"route {route!r} is not a split: write it as "
             f"split: [ {{ pool: {old}, weight: 100 }}, {{ pool: {new}, weight: 0 }} ]")
    pools = {s['pool']: s['weight'] for s in split}
    for p in (old, new):
        if p not in pools:
            fail(f"route {route!r} splits between {', '.join(pools)}: no pool {p!r}")
    others = [p for p, w in pools.items() if p not in (old, new) and w > 0]
    if others:
        print(f"note: {', '.join(others)} keep their weight beside the two pools")
    print(f"{pools[old]} {pools[new]}")

LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

def read_metrics(path, route, pool):
    """(answers by class, histogram buckets by upper bound) of route and pool."""
    classes, buckets = {}, {}
    for line in open(path):
        if not line.startswith('gateway_pool_request'):
            continue
        head, _, value = line.rstrip().rpartition(' ')
        name, _, labels = head.partition('{')
        l = dict(LABELS.findall(labels))
        if l.get('route') != route or l.get('pool') != pool:
            continue
        v = float(value)
        if name == 'gateway_pool_requests_total':
            classes[l.get('class')] = v
        elif name == 'gateway_pool_request_duration_seconds_bucket':
            buckets[float('inf') if l['le'] == '+Inf' else float(l['le'])] = v
    return classes, buckets

def delta(now, base):
    # A counter that went down was reset (the gateway restarted): count from zero.
    return {k: (v - base.get(k, 0) if v >= base.get(k, 0) else v) for k, v in now.items()}

def quantile(q, buckets):
    """histogram_quantile over cumulative buckets (upper bound -> count), in seconds."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if math.isinf(b):
                return prev_bound  # past the last finite bucket: at least that
            if c == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (c - prev_count)
        prev_bound, prev_count = b, c
    return prev_bound

def judge(base_file, now_file, route, pool, max_ratio, max_p99_ms, min_requests):
    """Prints `verdict requests errors ratio p99_ms`; verdict ok | bad | wait."""
    c0, b0 = read_metrics(base_file, route, pool)
    c1, b1 = read_metrics(now_file, route, pool)
    dc, db = delta(c1, c0), delta(b1, b0)
    n = sum(dc.values())
    errors = dc.get('5xx', 0)
    ratio = errors / n if n else 0.0
    p99 = quantile(0.99, db)
    p99_ms = p99 * 1000 if p99 is not None else 0.0
    if n < min_requests:
        verdict = 'wait'
    elif ratio > max_ratio or p99_ms > max_p99_ms:
        verdict = 'bad'
    else:
        verdict = 'ok'
    print(f"{verdict} {int(n)} {int(errors)} {ratio:.4f} {p99_ms:.1f}")

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == 'write':
    path, route, *pairs = args
    write_weights(path, route, [(pairs[i], int(pairs[i + 1])) for i in range(0, len(pairs), 2)])
elif cmd == 'restore':
    write_whole(args[1], open(args[0]).read())
elif cmd == 'serving':
    status, route, *pairs = args
    serving(status, route, [(pairs[i], int(pairs[i + 1])) for i in range(0, len(pairs), 2)])
elif cmd == 'check':
    check_route(*args)
elif cmd == 'judge':
    base, now, route, pool, ratio, p99, minimum = args
    judge(base, now, route, pool, float(ratio), float(p99), int(minimum))
else:
    fail(f"unknown helper command {cmd}")
PY
}

fetch() {  # fetch PATH OUT: GET the admin endpoint into a file
  curl -fsS --max-time 5 -o "$2" "$ADMIN$1" 2>"$WORK/curl.err" \
    || { cat "$WORK/curl.err" >&2; return 1; }
}

# Asks for a reload and waits (bounded) until the route serves old=$1, new=$2.
reload_and_wait() {
  local want_old=$1 want_new=$2 code deadline seen=""
  code=$(curl -sS --max-time 30 -o "$WORK/reload.json" -w '%{http_code}' "${AUTH[@]}" -X POST "$ADMIN/admin/reload") \
    || { printf 'canary: the reload request failed\n' >&2; return 1; }
  if [ "$code" != 200 ]; then
    printf 'canary: the gateway refused the policy (%s): %s\n' "$code" "$(cat "$WORK/reload.json")" >&2
    return 2
  fi
  deadline=$(( $(now_ms) + RELOAD_MS ))
  while [ "$(now_ms)" -le "$deadline" ]; do
    if fetch /admin/status "$WORK/status.json"; then
      if seen=$(helper serving "$WORK/status.json" "$ROUTE" "$OLD" "$want_old" "$NEW" "$want_new"); then
        say "in service: $seen"
        return 0
      fi
    fi
    sleep 0.1
  done
  printf 'canary: %s did not serve %s=%s %s=%s within %s (last: %s)\n' \
    "$ROUTE" "$OLD" "$want_old" "$NEW" "$want_new" "$RELOAD_TIMEOUT" "${seen:-no answer}" >&2
  return 1
}

# Writes the weights and waits until they serve. A policy the gateway refuses (another
# mistake in the files) changed nothing in service: the file is put back as it was before
# this write, and the status is 2.
apply() {
  local rc=0
  cp "$POLICY" "$WORK/before"
  helper write "$POLICY" "$ROUTE" "$OLD" "$1" "$NEW" "$2" || return 1
  reload_and_wait "$1" "$2" || rc=$?
  if [ "$rc" = 2 ]; then
    helper restore "$WORK/before" "$POLICY" || true
    printf 'canary: %s is back as it was; the gateway serves what it served before\n' "$POLICY" >&2
  fi
  return "$rc"
}

rollback() {
  STATE=done
  printf 'canary: ROLLING BACK route %s: %s\n' "$ROUTE" "$1" >&2
  if apply 100 0; then
    printf 'canary: ROLLED BACK: %s serves %s=100 %s=0 (%s)\n' "$ROUTE" "$OLD" "$NEW" "$1" >&2
  else
    printf 'canary: ROLLBACK FAILED: set %s=100 %s=0 in %s and reload by hand\n' "$OLD" "$NEW" "$POLICY" >&2
  fi
  exit 2
}

interrupted() {
  trap - INT TERM
  if [ "$STATE" = running ]; then
    STATE=done
    printf 'canary: interrupted: rolling back route %s\n' "$ROUTE" >&2
    if apply 100 0; then
      printf 'canary: ROLLED BACK: %s serves %s=100 %s=0 (interrupted)\n' "$ROUTE" "$OLD" "$NEW" >&2
    else
      printf 'canary: ROLLBACK FAILED: set %s=100 %s=0 in %s and reload by hand\n' "$OLD" "$NEW" "$POLICY" >&2
    fi
  fi
  exit 130
}
trap interrupted INT TERM

fetch /admin/status "$WORK/status.json" || die "cannot read $ADMIN/admin/status"
current=$(helper check "$WORK/status.json" "$ROUTE" "$OLD" "$NEW") || exit 1
while IFS= read -r line; do say "$line"; done < <(head -n -1 <<<"$current")
# The file must hold the split as the gateway serves it: try the edit on a copy first.
mkdir "$WORK/dry"
cp "$POLICY" "$WORK/dry/policy"
helper write "$WORK/dry/policy" "$ROUTE" "$OLD" 100 "$NEW" 0 \
  || die "$POLICY: cannot set the weights of route $ROUTE (is it the file that holds the route?)"
say "route $ROUTE serves ${OLD}/${NEW} at $(tail -n1 <<<"$current" | tr ' ' /); steps ${STEPS}, hold $HOLD each"
say "thresholds: error ratio > $MAX_ERROR_RATIO or p99 > ${MAX_P99} over at least $MIN_REQUESTS answers of $NEW"

STATE=running
step=0
for w in "${STEP_LIST[@]}"; do
  step=$((step + 1))
  say "step $step/${#STEP_LIST[@]}: $OLD=$((100 - w)) $NEW=$w"
  rc=0
  apply $((100 - w)) "$w" || rc=$?
  if [ "$rc" = 2 ]; then
    STATE=done
    die "step $step not taken: fix the policy files, then run again (the route is where it was)"
  elif [ "$rc" != 0 ]; then
    rollback "step $step could not be put in service"
  fi
  fetch /metrics "$WORK/base.prom" || rollback "cannot read $ADMIN/metrics"
  started=$(now_ms)
  hold_end=$((started + HOLD_MS))
  judge_end=$((hold_end + JUDGE_MS))
  verdict=wait
  # One poll per interval, until the hold has passed with enough answers to judge.
  max_polls=$(( (HOLD_MS + JUDGE_MS) / INTERVAL_MS + 2 ))
  for ((poll = 0; poll < max_polls; poll++)); do
    sleep "$(awk -v m="$INTERVAL_MS" 'BEGIN { printf "%.3f", m / 1000 }')"
    fetch /metrics "$WORK/now.prom" || rollback "cannot read $ADMIN/metrics"
    judged=$(helper judge "$WORK/base.prom" "$WORK/now.prom" \
      "$ROUTE" "$NEW" "$MAX_ERROR_RATIO" "$MAX_P99_MS" "$MIN_REQUESTS") \
      || rollback "cannot read the metrics of $NEW"
    read -r verdict n errors ratio p99 <<<"$judged"
    t=$(now_ms)
    say "  $(seconds $((t - started))): $NEW answered $n, $errors errors (ratio $ratio), p99 ${p99}ms"
    if [ "$verdict" = bad ]; then
      rollback "at $NEW=$w: $n answers, $errors errors (ratio $ratio, max $MAX_ERROR_RATIO), p99 ${p99}ms (max $MAX_P99_MS ms)"
    fi
    if [ "$t" -ge "$hold_end" ] && [ "$verdict" = ok ]; then
      break
    fi
    if [ "$t" -ge "$judge_end" ]; then
      break
    fi
  done
  if [ "$verdict" != ok ]; then
    rollback "at $NEW=$w: only $n answers of $NEW in $(seconds $(( $(now_ms) - started ))), fewer than --min-requests $MIN_REQUESTS"
  fi
  say "step $step passed: $n answers, $errors errors, p99 ${p99}ms"
done
STATE=done
say "done: route $ROUTE serves $OLD=$((100 - w)) $NEW=$w"
