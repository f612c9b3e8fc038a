#!/usr/bin/env bash
# `latchkey import` of a large JSON Lines file (issue 15): rows per second and peak memory,
# the import on core 1 (nothing else runs). Every row has an email and a bcrypt hash; every
# third a TOTP secret. Then the same file again (everything "already there", the resume path).
# Usage: bench/import.sh [sqlite|postgres] [rows]
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-sqlite}; rows=${2:-1000000}
bin=target/release/latchkey
[ -x "$bin" ] || cargo build --release --bin latchkey
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export LATCHKEY_LOG_LEVEL=warn
db_args=(--data-dir "$dir")
if [ "$store" = postgres ]; then
  url=${LATCHKEY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/latchkey_bench}
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${url##*/}" -c "CREATE DATABASE ${url##*/}"
  db_args+=(--database-url "$url")
fi
python3 - "$dir/users.jsonl" "$rows" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
h = "$2b$10$RD3O9tErYQGB/MB2j.c43e3Pm.yFiobf.8zfQ8Z.W5QhM8VdHtO8C"
with open(path, "w") as f:
    for i in range(n):
        row = {"username": f"user{i:07d}", "email": f"user{i:07d}@example.com", "email_verified": True, "password_hash": h}
        if i % 3 == 0:
            row["totp_secret"] = "JBSWY3DPEHPK3PXP"
        f.write(json.dumps(row) + "\n")
PY
ls -l "$dir/users.jsonl" | awk '{printf "file: %.0f MB\n", $5/1048576}'
for pass in first again; do
  start=$(date +%s.%N)
  /usr/bin/time -f "peak_rss_kb=%M" taskset -c 1 "$bin" import "${db_args[@]}" "$dir/users.jsonl" 2>"$dir/time.log" >"$dir/out.log"
  end=$(date +%s.%N)
  python3 - "$store" "$pass" "$rows" "$start" "$end" "$(grep -o 'peak_rss_kb=[0-9]*' "$dir/time.log" | cut -d= -f2)" "$(head -1 "$dir/out.log")" <<'PY'
import json, sys
store, pas, rows, start, end, rss, said = sys.argv[1:]
secs = float(end) - float(start)
print(json.dumps({"store": store, "pass": pas, "rows": int(rows), "seconds": round(secs, 1),
                  "rows_per_s": round(int(rows) / secs), "peak_rss_mb": round(int(rss) / 1024), "said": said}))
PY
done
