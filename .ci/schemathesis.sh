#!/usr/bin/env bash
# A bounded schemathesis pass (every check, stateful links included) against the real server,
# on SQLite and on PostgreSQL: any 5xx, undocumented status, schema mismatch or refused valid
# request fails CI. Usage: .ci/schemathesis.sh [examples per operation, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-20}
# The test build's binary (the contract does not depend on optimisation); BIN=… for another.
bin=${BIN:-target/debug/latchkey}
[ -n "${BIN:-}" ] || cargo build --locked --bin latchkey
if ! command -v schemathesis >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "schemathesis==4.32.5" \
    || python3 -m pip install --quiet --break-system-packages --disable-pip-version-check "schemathesis==4.32.5"
fi
token=schemathesis-admin-token-0123456789abcdef
run() {
  local store=$1; shift
  local dir; dir=$(mktemp -d)
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # Argon2 at its minimum: the pass measures the contract, not the hash. Passkeys on, so a
  # schema-valid `{"passkey": true}` sign-in is served (without them it is a 400, documented).
  LATCHKEY_ADMIN_TOKEN=$token LATCHKEY_LOG_LEVEL=warn LATCHKEY_ARGON2__M_KIB=8 LATCHKEY_ARGON2__T=1 \
    LATCHKEY_POLICY__PASSKEYS__RP_ID=localhost \
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" "$@" 2>"$dir/serve.log" &
  local pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.2; done
  echo "-- $store"
  local rc=0
  timeout 600 schemathesis --config-file .ci/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
    --checks all --max-examples "$examples" --seed 1 --no-color \
    -H "Authorization: Bearer $token" || rc=$?
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if grep -q '"level":"ERROR"' "$dir/serve.log"; then
    echo "the server logged errors during the pass:"; grep '"level":"ERROR"' "$dir/serve.log" | head -20; rc=1
  fi
  rm -rf "$dir"
  return $rc
}
run sqlite
url=${LATCHKEY_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
db=latchkey_schemathesis
psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
run postgres --database-url "${url%/*}/$db"
