#!/usr/bin/env python3
"""Storage growth from unauthenticated requests (issue 11, item 5): 200 sign-ins and 200
forgot-passwords with 60 KB usernames against a fresh SQLite server; prints the database growth.
Usage: bench/growth.py target/release/latchkey"""
import json, os, subprocess, sys, time, urllib.request, socket, tempfile
bin = sys.argv[1]
d = tempfile.mkdtemp()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = dict(os.environ, LATCHKEY_LOG_LEVEL="warn", LATCHKEY_POLICY__LIMITS__SENDS_PER_IP="100000")
p = subprocess.Popen([bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", d], env=env, stderr=subprocess.DEVNULL)
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready"); break
    except Exception: time.sleep(0.1)
def size():
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.startswith("latchkey.db"))
before = size()
codes = {}
for i in range(200):
    for path in ["/v1/sign-in", "/v1/forgot-password"]:
        body = {"username": f"{i:04d}" + "a" * 60000}
        if path == "/v1/sign-in": body["password"] = "wrong password here"
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), headers={"content-type": "application/json"})
        try:
            r = urllib.request.urlopen(req); c = r.status
        except urllib.error.HTTPError as e: c = e.code
        codes[(path, c)] = codes.get((path, c), 0) + 1
time.sleep(1)
after = size()
p.terminate(); p.wait()
print(json.dumps({"bin": bin, "requests": 400, "answers": {f"{k[0]} {k[1]}": v for k, v in codes.items()}, "db_bytes_before": before, "db_bytes_after": after, "growth_mb": round((after - before) / 1e6, 2)}))
