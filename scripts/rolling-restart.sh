#!/usr/bin/env bash
# Restarts the TSDB nodes of the pool scripts/start.sh runs, one at a time, without a failed
# request: for each node, drain it at the gateway, wait until it has no request in flight,
# stop it (SIGTERM: it syncs its WAL), start it again (the new binary, if one was built),
# wait until it answers and has caught up with its peers (replication lag 0 both ways),
# undrain it, wait until the gateway sees it healthy, then the next.
#
#   scripts/rolling-restart.sh                          # every node of the pool in ./data
#   DATA=/var/tmp/pool scripts/rolling-restart.sh       # the pool start.sh runs with that DATA
#   NODES="n1" scripts/rolling-restart.sh               # only these nodes (brings a dead one back)
#   TSDB_BIN=/opt/tsdb/tsdb-backend scripts/rolling-restart.sh   # start this binary instead
#
# It reads what scripts/start.sh wrote in $DATA: pool.env (the gateway's admin address and
# pool), n<i>.env (address, data directory, log, command line) and n<i>.pid, which it
# rewrites with the new PID. Needs curl and jq.
#
# Every wait has a deadline (seconds; environment): DRAIN_TIMEOUT=30 (requests in flight to
# finish), STOP_TIMEOUT=30 (then SIGKILL: the WAL keeps every acknowledged write),
# START_TIMEOUT=60 (/ping answers), CATCHUP_TIMEOUT=120 (replication lag 0),
# HEALTHY_TIMEOUT=30 (the gateway's health checks pass again).
#
# Exit status: 0 every node restarted, caught up and back in service; 1 a node did not stop,
# come back, catch up or turn healthy in time (the message says which; the rest are not
# touched); 2 a usage or state error (nothing was touched). A node it drained is undrained
# whatever happens, Ctrl-C included.
#
# With the admin port's token set (admin: { token_file }), give the same file as
# ADMIN_TOKEN_FILE=<path>: drains and undrains send it as a bearer token.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-data}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-30}
STOP_TIMEOUT=${STOP_TIMEOUT:-30}
START_TIMEOUT=${START_TIMEOUT:-60}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-120}
HEALTHY_TIMEOUT=${HEALTHY_TIMEOUT:-30}

started_ms=$(date +%s%3N)
elapsed() { printf '%6.1fs' "$(( $(date +%s%3N) - started_ms ))e-3"; }
say() { printf '%s %s\n' "$(elapsed)" "$*"; }
usage() { printf 'rolling-restart: %s\n' "$*" >&2; exit 2; }
fail() { printf '%s rolling-restart: %s\n' "$(elapsed)" "$*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || usage "curl is needed"
command -v jq >/dev/null 2>&1 || usage "jq is needed (Debian: apt-get install jq)"
[ -f "$DATA/pool.env" ] || usage "$DATA/pool.env not found: is scripts/start.sh running with DATA=$DATA?"
asked=${NODES:-}
# shellcheck source=/dev/null
. "$DATA/pool.env"   # ADMIN, POOL, NODES (every node of the pool)
ALL_NODES=$NODES
NODES=${asked:-$ALL_NODES}

# `curl` of a URL: prints the body, then the status code on its own last line. Transport
# failures print code 000.
AUTH=()
if [ -n "${ADMIN_TOKEN_FILE:-}" ]; then
  [ -r "$ADMIN_TOKEN_FILE" ] || usage "ADMIN_TOKEN_FILE=$ADMIN_TOKEN_FILE cannot be read"
  AUTH=(-H "Authorization: Bearer $(tr -d '[:space:]' <"$ADMIN_TOKEN_FILE")")
fi
http() {
  local method=$1 url=$2
  curl -sS --max-time 2 "${AUTH[@]}" -X "$method" -w '\n%{http_code}' "$url" 2>/dev/null || printf '\n000'
}
status_of() { tail -n 1 <<<"$1"; }
body_of() { sed '$d' <<<"$1"; }

# Reads node $1's n<i>.env into NODE ADDRESS DATA_DIR LOG NODE_HOME CMD.
load_node() {
  local env="$DATA/$1.env"
  [ -f "$env" ] || usage "$env not found: $1 is not a node scripts/start.sh started"
  NODE="" ADDRESS="" DATA_DIR="" LOG="" NODE_HOME="" CMD=()
  # shellcheck source=/dev/null
  . "$env"
  [ -n "$ADDRESS" ] && [ "${#CMD[@]}" -gt 0 ] || usage "$env does not say how $1 was started"
}
node_pid() { cat "$DATA/$1.pid" 2>/dev/null || true; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# The gateway's view of a backend of the pool: its entry in /admin/status, as JSON.
backend_status() {
  local r
  r=$(http GET "$ADMIN/admin/status")
  [ "$(status_of "$r")" = 200 ] || return 1
  body_of "$r" | jq -ce --arg pool "$POOL" --arg addr "$1" \
    '.pools[$pool].backends[] | select(.address == $addr)'
}

# Drains (drain) or undrains (undrain) a backend at the gateway; fails unless it says so.
set_drain() {
  local action=$1 addr=$2 r
  r=$(http POST "$ADMIN/admin/pools/$POOL/backends/$addr/$action")
  [ "$(status_of "$r")" = 200 ] || {
    printf '%s of %s answered %s: %s\n' "$action" "$addr" "$(status_of "$r")" "$(body_of "$r")" >&2
    return 1
  }
}

drained=""
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [ -n "$drained" ]; then
    if set_drain undrain "$drained"; then
      say "undrained $drained (the restart did not finish: it serves again once its health checks pass)"
    else
      printf 'rolling-restart: could not undrain %s: run curl -XPOST %s/admin/pools/%s/backends/%s/undrain\n' \
        "$drained" "$ADMIN" "$POOL" "$drained" >&2
    fi
  fi
  for n in $ALL_NODES; do rm -f "$DATA/$n.restarting"; done
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls `$2...` (a command) every 0.2 s until it succeeds or $1 seconds passed.
within() {
  local seconds=$1; shift
  local deadline=$(( $(date +%s%3N) + seconds * 1000 ))
  while true; do
    "$@" && return 0
    [ "$(date +%s%3N)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# --- checks before anything is touched ----------------------------------------------------
[ "$(status_of "$(http GET "$ADMIN/readyz")")" != 000 ] \
  || usage "the gateway's admin port $ADMIN does not answer"
for n in $NODES; do
  case " $ALL_NODES " in *" $n "*) ;; *) usage "$n is not a node of the pool ($ALL_NODES)";; esac
  load_node "$n"
  backend_status "$ADDRESS" >/dev/null \
    || usage "pool $POOL at $ADMIN has no backend $ADDRESS ($n): is the gateway in front of this pool?"
done
if [ -n "${TSDB_BIN:-}" ]; then
  [ -x "$TSDB_BIN" ] || usage "TSDB_BIN=$TSDB_BIN is not an executable"
fi

# --- the checks of one node ---------------------------------------------------------------
in_flight_zero() {
  local b
  b=$(backend_status "$1") || return 1
  [ "$(jq -r '.in_flight' <<<"$b")" = 0 ]
}
exited() { ! alive "$1"; }
answers_ping() { alive "$1" && [ "$(status_of "$(http GET "http://$2/ping")")" = 204 ]; }

# Whether node $1 (address $2) has caught up: every other node has shipped it everything
# (its link to $2 shows lag_entries 0 and no failing state) and $1 has shipped its own
# entries to every peer. Leaves what it saw in $lag_note.
lag_note=""
caught_up() {
  local me=$1 addr=$2 other r link
  for other in $ALL_NODES; do
    [ "$other" != "$me" ] || continue
    local oaddr
    oaddr=$(. "$DATA/$other.env"; printf '%s' "$ADDRESS")
    r=$(http GET "http://$oaddr/health")
    if [ "$(status_of "$r")" != 200 ]; then lag_note="$other: /health answered $(status_of "$r")"; return 1; fi
    link=$(body_of "$r" | jq -c --arg url "http://$addr" '.peers[] | select(.url == $url)')
    if [ -z "$link" ]; then lag_note="$other lists no peer http://$addr"; return 1; fi
    if ! jq -e '.lag_entries == 0 and (.state == "ok" or .state == "connecting")' <<<"$link" >/dev/null; then
      lag_note="$other -> $me: $(jq -r '"\(.lag_entries) entries behind, \(.state)"' <<<"$link")"
      return 1
    fi
  done
  r=$(http GET "http://$addr/health")
  if [ "$(status_of "$r")" != 200 ]; then lag_note="$me: /health answered $(status_of "$r")"; return 1; fi
  if ! body_of "$r" | jq -e '[.peers[].lag_entries] | all(. == 0)' >/dev/null; then
    lag_note="$me -> peers: $(body_of "$r" | jq -r '[.peers[] | "\(.url) \(.lag_entries)"] | join(", ")')"
    return 1
  fi
}
healthy_in_service() {
  local b
  b=$(backend_status "$1") || return 1
  jq -e '.healthy and (.draining | not)' <<<"$b" >/dev/null
}

# --- one node at a time -------------------------------------------------------------------
say "rolling restart of $NODES (pool $POOL at $ADMIN)"
for n in $NODES; do
  load_node "$n"
  node_started=$(date +%s%3N)
  if [ -n "${TSDB_BIN:-}" ]; then CMD[0]=$TSDB_BIN; fi
  # Never take out a node while no other one serves.
  others=0
  for o in $ALL_NODES; do
    [ "$o" != "$n" ] || continue
    oaddr=$(. "$DATA/$o.env"; printf '%s' "$ADDRESS")
    if healthy_in_service "$oaddr"; then others=$((others + 1)); fi
  done
  [ "$others" -gt 0 ] || fail "$n: no other node of pool $POOL is healthy and in service; not draining it"

  set_drain drain "$ADDRESS" || fail "$n: could not drain $ADDRESS"
  drained=$ADDRESS
  say "$n: drained at the gateway; waiting for its requests in flight"
  within "$DRAIN_TIMEOUT" in_flight_zero "$ADDRESS" \
    || fail "$n: requests still in flight after ${DRAIN_TIMEOUT}s: $(backend_status "$ADDRESS" || true)"

  touch "$DATA/$n.restarting"
  pid=$(node_pid "$n")
  if alive "$pid"; then
    say "$n: no request in flight; stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    if ! within "$STOP_TIMEOUT" exited "$pid"; then
      say "$n: still running after ${STOP_TIMEOUT}s; SIGKILL (its WAL keeps what it acknowledged)"
      kill -KILL "$pid" 2>/dev/null || true
      within 10 exited "$pid" || fail "$n: pid $pid does not exit"
    fi
  else
    say "$n: not running; starting it"
  fi

  HOME=${NODE_HOME:-${HOME:-}} nohup "${CMD[@]}" >>"$LOG" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$DATA/$n.pid"
  within "$START_TIMEOUT" answers_ping "$pid" "$ADDRESS" \
    || fail "$n: did not answer /ping within ${START_TIMEOUT}s$(alive "$pid" || printf ' (it exited)'): see $LOG"
  say "$n: started (pid $pid); waiting until it has caught up with its peers"
  within "$CATCHUP_TIMEOUT" caught_up "$n" "$ADDRESS" \
    || fail "$n: not caught up after ${CATCHUP_TIMEOUT}s: $lag_note"
  rm -f "$DATA/$n.restarting"

  set_drain undrain "$ADDRESS" || fail "$n: could not undrain $ADDRESS"
  drained=""
  within "$HEALTHY_TIMEOUT" healthy_in_service "$ADDRESS" \
    || fail "$n: undrained, but the gateway does not see it healthy after ${HEALTHY_TIMEOUT}s"
  say "$n: caught up, undrained and healthy at the gateway ($(( ($(date +%s%3N) - node_started) / 1000 ))s)"
done
say "done: $(wc -w <<<"$NODES") node(s) restarted"
