#!/usr/bin/env bash
# Installs what the benchmark scripts need, when it is missing; does nothing when present.
#   Debian: nginx-light (or nginx when nginx-light has no candidate), haproxy, wrk
#           (scripts/bench-gateway.sh), victoria-metrics (scripts/bench-tsdb.sh),
#           linux-perf (only with --perf)
# The packages' services are not started: while installing, a temporary
# /usr/sbin/policy-rc.d refuses every service start (only when none exists already; it is
# removed afterwards). The benchmarks run their own instances with their own config files
# and data directories.
# Idempotent; runs as root without sudo (uses sudo only when not root and sudo exists).
# Prints one line per thing it installed, nothing else on the "all present" path.
set -euo pipefail

want_perf=0
[ "${1:-}" = "--perf" ] && want_perf=1

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-bench-deps: not root and no sudo; cannot install packages" >&2
    exit 1
  fi
fi

present() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
# Debian's victoria-metrics ships /usr/bin/victoria-metrics; upstream builds name it
# victoria-metrics-prod.
present_vm() { present victoria-metrics || present victoria-metrics-prod; }

missing=()
present nginx || missing+=(nginx)
present haproxy || missing+=(haproxy)
present wrk || missing+=(wrk)
present_vm || missing+=(victoria-metrics)
[ "$want_perf" = 1 ] && { present perf || missing+=(linux-perf); }
[ "${#missing[@]}" -eq 0 ] && exit 0

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >/dev/null

# Keep the packages' init scripts from starting the system nginx/haproxy.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  trap '"${SUDO[@]}" rm -f "$policy"' EXIT
fi

has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$c" ] && [ "$c" != "(none)" ]
}

for what in "${missing[@]}"; do
  pkg=$what probe=$what
  case $what in
    nginx) if has_candidate nginx-light; then pkg=nginx-light; else pkg=nginx; fi ;;
    linux-perf) probe=perf ;;
  esac
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  if [ "$what" = victoria-metrics ] && present_vm; then
    echo "installed $pkg"
    continue
  fi
  if ! present "$probe"; then
    echo "install-bench-deps: installed $pkg but $probe is still missing" >&2
    exit 1
  fi
  echo "installed $pkg"
done
