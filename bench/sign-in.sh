#!/usr/bin/env bash
# Sign-in throughput: the server on core 0, the load generator on core 1.
# Usage: bench/sign-in.sh [sqlite|postgres] [runs] [seconds] [concurrency]
#   BENCH=sign-in (password, default), BENCH=device-sign-in (UNLOCK=biometric|pin), or
#   BENCH=totp (the TOTP step that completes a sign-in, alone; Argon2 at its minimum for the
#   password steps run first), BENCH=code (CHANNEL=sms|email: the SMS or email code step that
#   completes a sign-in, alone, prepared the same way), BENCH=push-approval (Argon2 at its minimum and the push limits raised, so the push path is
#   what is measured), BENCH=refresh or BENCH=me (BINDING=bearer|dpop: a password session's
#   tokens, or a device session's with a DPoP proof on each request)
#   STORM=N runs N clients of password sign-ins (the server's Argon2, on the same core) during
#   each measured run: how light flows fare beside a password storm (issue 17, item 3). With
#   totp, each run prepares its steps on a server with Argon2 at its minimum, then restarts it
#   on the same database with its real Argon2 for the storm and the measured steps. Not with
#   code or push-approval, which lower the server's Argon2 for the whole run.
#   FLOWS=N (totp, code): the steps each run prepares (default: 5,000 per second of the run).
#   SEED=N first imports N accounts (`latchkey import`, the fast path: no password hashes) so
#   the flows run against a database of that size (issue 17, item 5); on PostgreSQL the import
#   is then vacuumed, analysed and checkpointed before the runs.
# Prints one JSON line per run, with the server's CPU time per operation and its resident memory.
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-sqlite}; runs=${2:-3}; seconds=${3:-10}; conc=${4:-8}
bin=${LATCHKEY_BIN:-target/release/latchkey}   # LATCHKEY_BIN: another build, for a before/after
[ -x "$bin" ] || cargo build --release --bin latchkey
server_bin=${LATCHKEY_SERVER_BIN:-$bin}   # only the server from another build (an older one has fewer benches)
dir=$(mktemp -d); port=18181
export LATCHKEY_POLICY__LIMITS__SENDS_PER_IP=100000 LATCHKEY_LOG_LEVEL=warn
if [ "${STORM:-0}" -gt 0 ] && { [ "${BENCH:-sign-in}" = code ] || [ "${BENCH:-sign-in}" = push-approval ]; }; then
  # These lower the server's Argon2 to prepare their steps, so a storm beside them would be one
  # of cheap hashes: no storm at all.
  echo "STORM needs the server's own Argon2, which BENCH=${BENCH} lowers to prepare its steps" >&2
  exit 2
fi
cheap=(LATCHKEY_ARGON2__M_KIB=8 LATCHKEY_ARGON2__T=1)
prepare_apart=0   # totp beside a storm: steps prepared on a cheap-Argon2 server, then a restart
if [ "${BENCH:-sign-in}" = totp ] && [ "${STORM:-0}" -gt 0 ]; then
  prepare_apart=1
elif [ "${BENCH:-sign-in}" = totp ] || [ "${BENCH:-sign-in}" = code ]; then
  # The password steps are preparation, not what is measured.
  export "${cheap[@]}"
fi
if [ "${BENCH:-sign-in}" = code ] || [ "${BENCH:-sign-in}" = push-approval ]; then
  # Tens of thousands of texts (push-approval: a phone enrolled by SMS per account and run) from
  # one address: far past SMS-pumping's daily budgets.
  export LATCHKEY_POLICY__LIMITS__SMS_DAILY_BUDGET=100000000 LATCHKEY_POLICY__LIMITS__SMS_DAILY_PER_IP=100000000
fi
if [ "${BENCH:-sign-in}" = push-approval ]; then
  # The bench enrols each account's phone by SMS and signs in with it at once: no cooldown.
  export LATCHKEY_ARGON2__M_KIB=8 LATCHKEY_ARGON2__T=1 LATCHKEY_POLICY__PUSH__MAX_PER_WINDOW=100000000 \
    LATCHKEY_POLICY__RECOVERY__PHONE_CHANGE_COOLDOWN_SECS=0
fi
db_args=()
if [ "$store" = postgres ]; then
  url=${LATCHKEY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/latchkey_bench}
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${url##*/}" -c "CREATE DATABASE ${url##*/}"
  db_args=(--database-url "$url")
fi
seeded=0
if [ "${SEED:-0}" -gt 0 ]; then
  python3 - "$dir/seed.jsonl" "$SEED" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"username": f"seed{i:08d}", "email": f"seed{i:08d}@example.com", "email_verified": True}) + "\n")
PY
  "$bin" import --data-dir "$dir" "${db_args[@]}" "$dir/seed.jsonl" >/dev/null
  rm -f "$dir/seed.jsonl"; seeded=$SEED
  # The import's writes settled first, so the runs are not racing PostgreSQL's autovacuum and
  # checkpoint after a million inserts.
  if [ "$store" = postgres ]; then psql "$url" -qc "VACUUM ANALYZE" -c "CHECKPOINT"; fi
fi
# start_server [VAR=value…]: the server on core 0, with these variables besides the exported ones.
start_server() {
  env "$@" taskset -c 0 "$server_bin" serve --listen 127.0.0.1:$port --data-dir "$dir" "${db_args[@]}" 2>>"$dir/serve.log" &
  pid=$!
  for _ in $(seq 50); do curl -sf http://127.0.0.1:$port/health/ready >/dev/null && break; sleep 0.2; done
}
stop_server() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
start_server
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
sys_ticks() { awk '{print $15}' /proc/$pid/stat; }
hz=$(getconf CLK_TCK)
flows=${FLOWS:-$(( (seconds + 2) * 5000 ))}
for run in $(seq "$runs"); do
  storm_pid=""; storm_rate=0
  if [ "$prepare_apart" = 1 ]; then
    stop_server; start_server "${cheap[@]}"
    taskset -c 1 "$bin" bench totp --flows "$flows" --prepare-to "$dir/steps" --url http://127.0.0.1:$port \
      --data-dir "$dir" "${db_args[@]}" --concurrency "$conc" >/dev/null
    stop_server; start_server
  fi
  if [ "${STORM:-0}" -gt 0 ]; then
    taskset -c 1 "$bin" bench sign-in --url http://127.0.0.1:$port --data-dir "$dir" "${db_args[@]}" \
      --concurrency "$STORM" --seconds $((seconds + 6)) >"$dir/storm.json" 2>/dev/null &
    storm_pid=$!
    sleep 4  # its accounts made and its load started before the measured bench begins
  fi
  before=$(ticks); sys_before=$(sys_ticks)
  extra=(); [ "${BENCH:-sign-in}" = device-sign-in ] && extra=(--unlock "${UNLOCK:-biometric}")
  case "${BENCH:-sign-in}" in
    refresh|me) extra=(--binding "${BINDING:-bearer}") ;;
    code) extra=(--channel "${CHANNEL:-sms}") ;;
  esac
  # Each code or TOTP run prepares its steps first: enough for 5,000/s over the warm-up and the
  # window (FLOWS=N to set it); a run that spends them all reports an error, not a rate.
  case "${BENCH:-sign-in}" in
    totp|code) extra+=(--flows "$flows") ;;
  esac
  [ "$prepare_apart" = 1 ] && extra=(--prepared "$dir/steps")
  out=$(taskset -c 1 "$bin" bench "${BENCH:-sign-in}" "${extra[@]}" --url http://127.0.0.1:$port --data-dir "$dir" "${db_args[@]}" \
        --concurrency "$conc" --seconds "$seconds" --server-pid "$pid")
  after=$(ticks); sys_after=$(sys_ticks)
  if [ -n "$storm_pid" ]; then
    wait "$storm_pid"; storm_rate=$(sed 's/.*"per_second":\([0-9.]*\).*/\1/' "$dir/storm.json")
  fi
  n=$(echo "$out" | sed 's/.*"operations":\([0-9]*\).*/\1/')
  rss_mb=$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' /proc/$pid/status)
  # CPU over the whole run (warm-up and user creation included), per measured sign-in: an upper bound.
  cpu_ms=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1000 / (n > 0 ? n : 1) }')
  sys_ms=$(awk -v t=$((sys_after - sys_before)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1000 / (n > 0 ? n : 1) }')
  echo "${out%\}},\"store\":\"$store\",\"run\":$run,\"server_cpu_ms_per_operation_upper_bound\":$cpu_ms,\"of_which_kernel_ms\":$sys_ms,\"server_rss_mb\":$rss_mb,\"seeded_accounts\":$seeded,\"storm_clients\":${STORM:-0},\"storm_sign_ins_per_second\":$storm_rate}"
done
