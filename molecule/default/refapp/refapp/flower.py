"""NOT Flower: a stand-in with Flower's interface, because Flower is not packaged
in Debian and no registry is reachable from the test bed.

Honours what the app role gives the real mher/flower image: CELERY_BROKER_URL,
FLOWER_PORT, FLOWER_BASIC_AUTH ("user:password"). Serves /healthcheck without
auth (as Flower does) and /api/workers (a real `inspect ping` through the
broker) only with valid basic auth.
"""

import base64
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler

from serve import serve  # run as /app/refapp/NAME.py: this directory is on sys.path

from celery import Celery


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"refapp: {name} is not set; the app role must provide it")
    return value


BROKER = required("CELERY_BROKER_URL")
USER, _, PASSWORD = required("FLOWER_BASIC_AUTH").partition(":")
PORT = int(os.environ.get("FLOWER_PORT", "5555"))
celery = Celery("flower-standin", broker=BROKER, backend=BROKER)


class Handler(BaseHTTPRequestHandler):
    def send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps({"service": "flower", **body}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user, USER) and hmac.compare_digest(password, PASSWORD)

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        if self.path == "/healthcheck":
            self.send(200, {"status": "OK"})
        elif not self.authorized():
            self.send(401, {"error": "authentication required"}, {"WWW-Authenticate": 'Basic realm="flower"'})
        elif self.path == "/api/workers":
            replies = celery.control.inspect(timeout=3).ping() or {}
            self.send(200, {"workers": sorted(replies)})
        else:
            self.send(200, {"status": "Flower stand-in"})

    def log_message(self, fmt, *args) -> None:
        pass


if __name__ == "__main__":
    serve(("0.0.0.0", PORT), Handler)
