#!/usr/bin/env bash
# The operator's account list with 100,000 accounts: latency of GET /admin/v1/users pages, the
# server on core 0 and curl on core 1, each query timed over `reps` requests (three runs).
# Usage: bench/admin-list.sh [sqlite|postgres] [accounts] [reps]
# Prints one JSON line per query and run: median and p99 in milliseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-sqlite}; accounts=${2:-100000}; reps=${3:-50}
bin=target/release/latchkey
[ -x "$bin" ] || cargo build --release --bin latchkey
dir=$(mktemp -d); port=18183; token=bench-admin-token-0123456789abcdef0123456789
export LATCHKEY_LOG_LEVEL=warn LATCHKEY_ADMIN_TOKEN=$token
db_args=()
if [ "$store" = postgres ]; then
  url=${LATCHKEY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/latchkey_bench}
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${url##*/}" -c "CREATE DATABASE ${url##*/}"
  db_args=(--database-url "$url")
fi
# The server first: it creates its key files (a database with accounts and no keys is refused).
taskset -c 0 "$bin" serve --listen 127.0.0.1:$port --data-dir "$dir" "${db_args[@]}" 2>"$dir/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:$port/health/ready >/dev/null && break; sleep 0.2; done
# Accounts straight into the table: every tenth with a phone, every third with a TOTP factor.
now_us=$(( $(date +%s) * 1000000 ))
if [ "$store" = postgres ]; then
  psql "$url" -q <<SQL
INSERT INTO users (id, username, username_canonical, email, email_verified, phone, phone_verified, status, must_change_password, created_at, updated_at)
SELECT gen_random_uuid(), 'user' || i, 'user' || i, 'user' || i || '@example.com', true,
       CASE WHEN i % 10 = 0 THEN '+4915' || lpad(i::text, 9, '0') END, i % 10 = 0, 'active', false,
       $now_us - i::bigint * 1000000, $now_us - i::bigint * 1000000
FROM generate_series(1, $accounts) AS i;
INSERT INTO factors (id, user_id, kind, state, secret_sealed, created_at)
SELECT gen_random_uuid(), id, 'totp', 'active', 'sealed', created_at FROM users WHERE substr(username, 5)::int % 3 = 0;
ANALYZE;
SQL
else
  python3 - "$dir/latchkey.db" "$accounts" "$now_us" <<'PY'
import sqlite3, sys, uuid
db, n, now = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db)
c.executemany(
    "INSERT INTO users (id, username, username_canonical, email, email_verified, phone, phone_verified, status, must_change_password, created_at, updated_at) VALUES (?,?,?,?,1,?,?,'active',0,?,?)",
    ((uuid.uuid4().bytes, f"user{i}", f"user{i}", f"user{i}@example.com", f"+4915{i:09d}" if i % 10 == 0 else None, i % 10 == 0, now - i * 1000000, now - i * 1000000) for i in range(1, n + 1)))
c.execute("INSERT INTO factors (id, user_id, kind, state, secret_sealed, created_at) SELECT randomblob(16), id, 'totp', 'active', 'sealed', created_at FROM users WHERE CAST(substr(username, 5) AS INTEGER) % 3 = 0")
c.commit()
c.execute("ANALYZE")
c.close()
PY
fi
base=http://127.0.0.1:$port/admin/v1/users
deep=$(curl -sS -H "authorization: Bearer $token" "$base?limit=100" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')
for _ in $(seq 50); do
  next=$(curl -sS -H "authorization: Bearer $token" "$base?limit=100&cursor=$deep" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"] or "")')
  [ -n "$next" ] || break
  deep=$next
done
for run in 1 2 3; do
  for q in "limit=50" "query=user4242" "query=%2B49150000" "query=user9&factor=totp" "factor=none&status=active" "limit=50&cursor=$deep"; do
    taskset -c 1 python3 - "$base?$q" "$token" "$reps" "$store" "$run" "$q" <<'PY'
import json, subprocess, sys, time, urllib.request
url, token, reps, store, run, q = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
times = []
for _ in range(reps):
    t = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        body = json.load(r)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
shown = "cursor 5,100 deep" if "cursor" in q else q
print(json.dumps({"store": store, "run": int(run), "query": shown, "users": len(body["users"]),
                  "median_ms": round(times[len(times) // 2], 2), "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2)}))
PY
  done
done
