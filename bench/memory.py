#!/usr/bin/env python3
"""Resident memory while new passwords are hashed (issue 17, item 4): a fresh SQLite server with
the default allocator and Argon2 parameters, then N sign-ups (each hashes a new password), eight
at a time; VmRSS from /proc after start, after the first 10 and after all N. Three runs.
Usage: bench/memory.py target/release/latchkey [signups, default 1000]
Prints one JSON line per run (MB)."""
import json, os, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
from resident import rss_mb

bin = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000


def run():
    d = tempfile.mkdtemp()
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    env = dict(os.environ, LATCHKEY_LOG_LEVEL="warn", LATCHKEY_POLICY__LIMITS__SENDS_PER_IP="1000000",
               LATCHKEY_POLICY__LIMITS__SENDS_PER_DESTINATION="1000000")
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    p = subprocess.Popen([bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", d], env=env,
                         stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready"); break
        except Exception:
            time.sleep(0.05)
    time.sleep(0.5)
    idle = rss_mb(p.pid)
    refused = 0

    def sign_up(i):
        nonlocal refused
        body = {"username": f"mem{i:07d}", "password": f"a passphrase for user {i}", "email": f"mem{i}@example.com"}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/sign-up", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        try:
            urllib.request.urlopen(req).read()
        except urllib.error.HTTPError:
            refused += 1

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(sign_up, range(10)))
        after_10 = rss_mb(p.pid)
        list(pool.map(sign_up, range(10, n)))
    after_n = rss_mb(p.pid)
    p.terminate(); p.wait()
    return {"signups": n, "refused": refused, "rss_idle_mb": idle, "rss_after_10_mb": after_10,
            f"rss_after_{n}_mb": after_n}


for _ in range(3):
    print(json.dumps(run()), flush=True)
