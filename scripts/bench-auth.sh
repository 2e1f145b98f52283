#!/usr/bin/env bash
# What authentication costs: the gateway's req/s with and without it, in the same run.
#   scripts/bench-auth.sh        env: ROUNDS=3 DURATION=10 CONNS=50 BENCH_NO_BUILD=1
# One gateway (threads: 1) in front of a private nginx answering 1 KiB, two listeners:
#   plaintext  /open (no auth)  against  /svc (JWT, ES256, one hot token: the cache path)
#   TLS        /open (no client certificate, no auth)  against  /dev (mTLS, the device
#              certificate of `gateway dev-certs`, client_auth: optional on the listener)
# Each figure is `loadtest run` in a closed loop of $CONNS keep-alive connections for
# $DURATION s with one worker thread; rounds interleave the four, and the ratios are
# with auth / without, inside a round. Then the per-verification cost of HS256, ES256,
# RS256 and EdDSA without the cache (`cargo bench -p gateway --bench jwt_verify`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
bash scripts/install-bench-deps.sh
python3 -c 'import jwt, cryptography' 2>/dev/null || python3 -m pip install --quiet pyjwt cryptography
if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  cargo build --release -q -p gateway -p loadtest
fi
source scripts/bench-lib.sh

origin=$(free_port) plain=$(free_port) tls=$(free_port) admin=$(free_port)
mkdir -p "$work/policies"
start_origin "$origin"

target/release/gateway dev-certs --out "$work/certs" >/dev/null
# An ES256 key, its JWKS and one token valid for an hour.
token=$(python3 - "$work" <<'PY'
import base64, json, sys, time, jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization
work = sys.argv[1]
key = ec.generate_private_key(ec.SECP256R1())
nums = key.public_key().public_numbers()
b64 = lambda n: base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()
jwk = {"kty": "EC", "crv": "P-256", "x": b64(nums.x), "y": b64(nums.y), "kid": "bench", "alg": "ES256", "use": "sig"}
open(f"{work}/jwks.json", "w").write(json.dumps({"keys": [jwk]}))
pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
now = int(time.time())
claims = {"iss": "https://bench", "aud": "gateway", "sub": "svc-bench", "roles": ["reader"], "iat": now, "exp": now + 3600}
print(jwt.encode(claims, pem, algorithm="ES256", headers={"kid": "bench"}))
PY
)

cat > "$work/gateway.yaml" <<CONF
listeners:
  - { name: plain, address: 127.0.0.1:$plain }
  - name: tls
    address: 127.0.0.1:$tls
    tls: { cert: certs/server.pem, key: certs/server.key, client_ca: certs/ca.pem, client_auth: optional }
admin: { address: 127.0.0.1:$admin }
policies: policies/
threads: 1
CONF
cat > "$work/policies/bench.yaml" <<CONF
authenticators:
  services:
    jwt: { jwks_file: ../jwks.json, algorithms: [ES256], issuer: https://bench, audience: gateway }
  devices:
    mtls: { identity: san_uri }
pools:
  origin:
    backends: [ { address: 127.0.0.1:$origin } ]
    health_check: { path: /, interval: 1s, timeout: 500ms }
routes:
  - { name: open, match: { path_prefix: /open }, pool: origin }
  - { name: svc, match: { path_prefix: /svc }, pool: origin, auth: { any_of: [services] } }
  - { name: dev, match: { path_prefix: /dev }, pool: origin, auth: { any_of: [devices] } }
CONF
target/release/gateway run --config "$work/gateway.yaml" >"$work/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$admin/readyz" && break; sleep 0.1; done
curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$plain/svc" \
  || { echo "bench-auth: the token is refused" >&2; cat "$work/gateway.log" >&2; exit 1; }

scenario() { # name target path [tls block] [header]
  cat > "$work/$1.yaml" <<YAML
name: $1
target: $2
$4
concurrency: $CONNS
duration: ${DURATION}s
warmup: 2s
requests:
  - { method: GET, path: $3 }
$5
max_connections: $CONNS
slo:
  - error_rate <= 0
YAML
}
scenario open-plain "http://127.0.0.1:$plain" /open "" ""
scenario jwt "http://127.0.0.1:$plain" /svc "" "headers: { Authorization: \"Bearer $token\" }"
scenario open-tls "https://localhost:$tls" /open "tls: { ca: $work/certs/ca.pem }" ""
scenario mtls "https://localhost:$tls" /dev "tls: { ca: $work/certs/ca.pem, client_cert: $work/certs/device.pem, client_key: $work/certs/device.key }" ""

rate() { # scenario -> achieved req/s (and fails on any error)
  timeout 120 target/release/loadtest run --quiet --threads 1 "$work/$1.yaml" --out "$work/out-$1" >/dev/null \
    || { echo "bench-auth: $1 had errors" >&2; exit 1; }
  python3 -c "import json; print(json.load(open('$work/out-$1/report.json'))['overall']['achieved_rate'])"
}

printf '%-6s %12s %12s %7s %12s %12s %7s\n' round plain jwt ratio tls mtls ratio
for r in $(seq 1 "$ROUNDS"); do
  p=$(rate open-plain); j=$(rate jwt); t=$(rate open-tls); m=$(rate mtls)
  python3 -c "print(f'{$r:<6} {$p:12.0f} {$j:12.0f} {$j/$p:7.2f} {$t:12.0f} {$m:12.0f} {$m/$t:7.2f}')"
done

echo
echo "per verification, without the cache (cargo bench -p gateway --bench jwt_verify):"
cargo bench -q -p gateway --bench jwt_verify 2>/dev/null | grep -v '^$'
