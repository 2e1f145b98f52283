#!/usr/bin/env bash
# Installs what the end-to-end tests need, when it is missing; does nothing when it is present.
#   Debian: influxdb (/usr/bin/influxd, the reference server), influxdb-client (the `influx`
#           CLI), victoria-metrics (another engine behind the gateway), cmake, wrk,
#           redis-server, chromium (/usr/bin/chromium, headless, for loadtest/tests/html_report.rs),
#           prometheus (for /usr/bin/promtool: tests/tests/alert_rules.rs checks and unit-tests
#           deploy/prometheus/alerts.yml), jq (scripts/rolling-restart.sh reads JSON with it),
#           iproute2 (`ip netns`, `tc`), iptables (NFQUEUE and drops for the fault tests'
#           links), keepalived (the fault tests' VRRP gateway pair)
# The packages' services are not started: while installing, a temporary
# /usr/sbin/policy-rc.d refuses every service start (only when none exists already).
#   Python: influxdb==5.3.* (the client that tests/python/client_test.py drives)
# Idempotent; runs as root without sudo (uses sudo only when not root and sudo exists).
# Prints one line per thing it installed, nothing else on the "all present" path.
set -euo pipefail

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-test-deps: not root and no sudo; cannot install packages" >&2
    exit 1
  fi
fi

# package name -> a file or command that proves it is installed
declare -A PROBE=(
  [influxdb]=/usr/bin/influxd
  [influxdb-client]=/usr/bin/influx
  [victoria-metrics]=/usr/bin/victoria-metrics
  [cmake]=cmake
  [wrk]=wrk
  [redis-server]=redis-server
  [chromium]=/usr/bin/chromium
  [prometheus]=/usr/bin/promtool
  [jq]=jq
  [iproute2]=/usr/sbin/ip
  [iptables]=/usr/sbin/iptables
  [keepalived]=/usr/sbin/keepalived
)

is_present() {
  local probe=$1
  if [[ $probe == /* ]]; then
    [ -x "$probe" ]
  else
    command -v "$probe" >/dev/null 2>&1
  fi
}

missing=()
for pkg in influxdb influxdb-client victoria-metrics cmake wrk redis-server chromium prometheus jq iproute2 iptables keepalived; do
  if ! is_present "${PROBE[$pkg]}"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq >/dev/null
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    trap '"${SUDO[@]}" rm -f "$policy"' EXIT
  fi
  for pkg in "${missing[@]}"; do
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    if ! is_present "${PROBE[$pkg]}"; then
      echo "install-test-deps: installed $pkg but ${PROBE[$pkg]} is still missing" >&2
      exit 1
    fi
    echo "installed $pkg"
  done
fi

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "install-test-deps: $PYTHON not found; cannot install the Python influxdb client" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import influxdb' >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet 'influxdb==5.3.*'
  "$PYTHON" -c 'import influxdb' >/dev/null
  echo "installed python influxdb==5.3.*"
fi
