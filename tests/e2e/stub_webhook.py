"""A stand-in validating admission webhook for the harness's own smoke test.

Usage: python3 stub_webhook.py PORT TLS_CRT TLS_KEY

Serves AdmissionReview v1 over TLS on 127.0.0.1:PORT (any path). Denies
objects whose name starts with "deny-", with the message
"stub denied NAME dryRun=BOOL"; allows the others with the warning
"stub: looked at NAME". Standard library only.
"""

import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        length = int(self.headers.get("Content-Length", "0"))
        review = json.loads(self.rfile.read(length))
        req = review["request"]
        name = (req.get("object") or {}).get("metadata", {}).get("name", "")
        resp = {"uid": req["uid"], "allowed": not name.startswith("deny-")}
        if resp["allowed"]:
            resp["warnings"] = ["stub: looked at " + name]
        else:
            resp["status"] = {
                "code": 403,
                "message": "stub denied %s dryRun=%s" % (name, req.get("dryRun")),
            }
        body = json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    port, crt, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = HTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("stub webhook on https://127.0.0.1:%d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
