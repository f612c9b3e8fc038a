#!/usr/bin/env python3
"""Hostile clients against a server binary (issue 11, item 4): with `ulimit -n 256` and
`http.max_connections` 200, hold 300 idle or slowloris connections, then see whether the server
sheds, when it answers again, and what a 100 MB body that never comes gets.
Usage: bench/hostile-clients.py target/release/latchkey"""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request
bin = sys.argv[1]
d = tempfile.mkdtemp()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
p = subprocess.Popen(["bash", "-c", f"ulimit -n 256; exec {bin} serve --listen 127.0.0.1:{port} --data-dir {d}"], env=dict(os.environ, LATCHKEY_LOG_LEVEL="warn", LATCHKEY_HTTP__MAX_CONNECTIONS="200"), stderr=subprocess.DEVNULL)
for _ in range(100):
    try: urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready"); break
    except Exception: time.sleep(0.1)
idle = []
for i in range(300):
    c = socket.create_connection(("127.0.0.1", port)); 
    if i % 2: c.send(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # slowloris: headers never finish
    idle.append(c)
def health():
    try: return urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=5).status
    except Exception as e: return repr(e)[:40]
time.sleep(0.5)
ok = health()
time.sleep(11)
reach = health()
# a body that never comes
b = socket.create_connection(("127.0.0.1", port))
b.send(b"POST /v1/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n" + b"{" * 20)
b.settimeout(30); t = time.time()
try: first = b.recv(200).split(b"\r\n")[0].decode()
except Exception as e: first = repr(e)
body_answer = (first, round(time.time() - t, 1))
closed = 0
for c in idle:
    c.settimeout(0.01)
    try:
        if c.recv(1) == b"": closed += 1
    except socket.timeout: pass
    except Exception: closed += 1
p.terminate(); p.wait()
print(json.dumps({"ulimit_n": 256, "max_connections": 200, "idle_or_slowloris_sockets": 300, "health_at_0.5s": ok, "health_at_11.5s": reach, "stalled_body_answer": body_answer, "idle_closed_after_about_11s": closed}))
