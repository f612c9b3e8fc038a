#!/usr/bin/env bash
# Outbox drain rate: the server on core 0 delivering SMS messages to the generator's webhook on
# core 1, which queues a burst straight into the server's database and times the arrivals.
# Usage: bench/outbox.sh [sqlite|postgres] [runs] [messages] [sink latency ms, default 40]
#   BIN=path/to/latchkey runs another server binary (an older one, for a before/after figure);
#   the generator is always this tree's.
# Prints one JSON line per run, with the server's CPU time per message.
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-sqlite}; runs=${2:-3}; messages=${3:-2000}; latency=${4:-40}
gen=target/release/latchkey
[ -x "$gen" ] || cargo build --release --bin latchkey
bin=${BIN:-$gen}
dir=$(mktemp -d); port=18181; sink=127.0.0.1:18182
export LATCHKEY_LOG_LEVEL=warn LATCHKEY_SMS_WEBHOOK_URL=http://$sink/sms LATCHKEY_SMS_WEBHOOK_SECRET=bench-secret
db_args=()
if [ "$store" = postgres ]; then
  url=${LATCHKEY_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/latchkey_bench}
  psql "${url%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${url##*/}" -c "CREATE DATABASE ${url##*/}"
  db_args=(--database-url "$url")
fi
taskset -c 0 "$bin" serve --listen 127.0.0.1:$port --data-dir "$dir" "${db_args[@]}" 2>"$dir/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:$port/health/ready >/dev/null && break; sleep 0.2; done
ticks() { awk '{print $14 + $15}' /proc/$pid/stat; }
hz=$(getconf CLK_TCK)
for run in $(seq "$runs"); do
  before=$(ticks)
  out=$(taskset -c 1 "$gen" bench outbox --data-dir "$dir" "${db_args[@]}" --sink "$sink" --messages "$messages" --sink-latency-ms "$latency")
  after=$(ticks)
  cpu_ms=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$messages" 'BEGIN { printf "%.3f", t / hz * 1000 / n }')
  echo "${out%\}},\"store\":\"$store\",\"run\":$run,\"server_cpu_ms_per_message\":$cpu_ms}"
done
