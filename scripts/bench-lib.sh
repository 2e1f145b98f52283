# Shared by the benchmark scripts (sourced): a work dir removed at exit, every started
# process killed by PID at exit, free ports, readiness by /ping with a bounded wait.
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
stop_all() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; pids=(); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ping() {
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$1/ping" && return 0
    sleep 0.1
  done
  echo "server on $1 did not start" >&2; return 1
}
