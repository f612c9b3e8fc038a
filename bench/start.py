#!/usr/bin/env python3
"""Start time and idle memory with N accounts in the database (issue 17, item 5).

Imports N accounts into a fresh data directory (or PostgreSQL database) with `latchkey import`
(the benchmarks' fast path: no password hashes; never a way to make production accounts), then
starts `latchkey serve` on it `runs` times, pinned to core 0: milliseconds from the process's
start until `/health/ready` first answers 200 (polled every millisecond), and its resident
memory (VmRSS) two seconds later, idle. The first start of each store also applies the
migrations to an empty schema; it is reported apart and left out of the later runs.

Usage: bench/start.py BIN [sqlite|postgres] [accounts] [runs]
Prints one JSON line per run."""
import json, os, socket, subprocess, sys, tempfile, time
from resident import rss_mb

bin = sys.argv[1]
store = sys.argv[2] if len(sys.argv) > 2 else "sqlite"
accounts = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
url = os.environ.get("LATCHKEY_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/latchkey_bench")

env = dict(os.environ, LATCHKEY_LOG_LEVEL="warn")
data_dir = tempfile.mkdtemp(prefix="latchkey-start-")
db_args = ["--data-dir", data_dir]
if store == "postgres":
    base, name = url.rsplit("/", 1)
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}", "-c",
                    f"CREATE DATABASE {name}"], check=True)
    db_args += ["--database-url", url]


def ready(port):
    """Whether /health/ready answers 200 now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start(run):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    began = time.monotonic()
    p = subprocess.Popen(["taskset", "-c", "0", bin, "serve", "--listen", f"127.0.0.1:{port}", *db_args],
                         env=env, stderr=subprocess.DEVNULL)
    try:
        while not ready(port):
            if p.poll() is not None or time.monotonic() - began > 120:
                raise SystemExit(f"the server did not become ready (exit {p.poll()})")
            time.sleep(0.001)
        ready_ms = (time.monotonic() - began) * 1000
        time.sleep(2)
        return {"store": store, "accounts": accounts, "run": run, "ready_ms": round(ready_ms, 1),
                "rss_idle_mb": rss_mb(p.pid)}
    finally:
        p.terminate(); p.wait()


# The schema first (an empty database's migrations), then the accounts.
first = start("migrations")
if accounts:
    rows = os.path.join(data_dir, "accounts.jsonl")
    with open(rows, "w") as f:
        for i in range(accounts):
            f.write(json.dumps({"username": f"seed{i:08d}", "email": f"seed{i:08d}@example.com",
                                "email_verified": True}) + "\n")
    subprocess.run([bin, "import", *db_args, rows], env=env, check=True, stdout=subprocess.DEVNULL)
    os.remove(rows)
    if store == "postgres":
        # The import's writes settled (vacuumed, analysed, checkpointed), so the starts measured
        # are not racing PostgreSQL's own catching up after a million inserts.
        subprocess.run(["psql", url, "-qc", "VACUUM ANALYZE", "-c", "CHECKPOINT"], check=True)
print(json.dumps(first), flush=True)
for run in range(1, runs + 1):
    print(json.dumps(start(run)), flush=True)
subprocess.run(["rm", "-rf", data_dir])
