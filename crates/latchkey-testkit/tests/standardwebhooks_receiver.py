"""A receiver of Latchkey's event webhooks that knows nothing of Latchkey's code.

It verifies every request with `standardwebhooks` (Standard Webhooks' own Python library) and
validates the body against docs/webhook-events.schema.json with `jsonschema`. It prints its port,
then one JSON line per request: {"verified", "error", "type", "schema_errors"}. A verified request
is answered 204, any other 400.

Usage: python3 standardwebhooks_receiver.py <whsec_…> <schema.json>
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
from standardwebhooks.webhooks import Webhook

secret, schema_path = sys.argv[1], sys.argv[2]
with open(schema_path, encoding="utf-8") as f:
    schema = json.load(f)
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
webhook = Webhook(secret)
# The server is threaded; print() writes the line and its newline separately, so two requests at
# once could run their lines together. One write per line, under a lock.
printing = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        out = {"verified": False, "error": None, "type": None, "schema_errors": []}
        try:
            webhook.verify(body, dict(self.headers.items()))
            out["verified"] = True
        except Exception as e:  # the library's verification errors
            out["error"] = f"{type(e).__name__}: {e}"
        try:
            doc = json.loads(body)
            out["type"] = doc.get("type")
            out["schema_errors"] = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
        except ValueError as e:
            out["schema_errors"] = [str(e)]
        with printing:
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
        self.send_response(204 if out["verified"] else 400)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
