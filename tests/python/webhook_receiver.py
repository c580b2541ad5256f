"""A status-webhook receiver for the end-to-end tests: HTTPS, and every request verified with
the `standardwebhooks` package (an implementation independent of verifyd's).

It behaves as the file given with --mode says at each request:
  ok    verify the signature; record the event (one JSON line in --out); answer 204
  fail  answer 500
  slow  wait 3 s, then answer 204 (verifyd gives up before)
A request whose signature does not verify is answered 400 and recorded as {"bad": ...}.
It prints `listening on PORT` once it accepts connections.
"""

import argparse
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--mode", required=True, help="file holding ok, fail or slow")
    parser.add_argument("--out", required=True, help="JSON lines of what arrived")
    args = parser.parse_args()
    webhook = Webhook(args.secret)
    lock = threading.Lock()

    def record(line: dict) -> None:
        with lock, open(args.out, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with open(args.mode, encoding="utf-8") as f:
                mode = f.read().strip()
            if mode == "fail":
                self.send_response(500)
                self.end_headers()
                return
            if mode == "slow":
                time.sleep(3)
            try:
                payload = webhook.verify(body, dict(self.headers.items()))
            except WebhookVerificationError as error:
                record({"bad": str(error), "id": self.headers.get("webhook-id")})
                self.send_response(400)
                self.end_headers()
                return
            record(
                {
                    "id": self.headers["webhook-id"],
                    "type": payload["type"],
                    "data": payload["data"],
                }
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
