"""Frontend: the single-page app's static files, served as SPA hosts do.

A path that names a file is that file; an unknown path without a file
extension is a client-side route and gets index.html (200); an unknown
asset (`/missing.js`) is a 404. Every answer carries `X-Served-By: frontend`
and every body says "served-by: frontend", so a test through Caddy can tell
which service answered, also for a 404.
"""

import os
import posixpath
from http.server import SimpleHTTPRequestHandler

from serve import serve  # run as /app/refapp/NAME.py: this directory is on sys.path
from urllib.parse import urlsplit

ROOT = os.environ.get("FRONTEND_ROOT", "/srv/frontend")
PORT = int(os.environ.get("FRONTEND_PORT", "3000"))


class Handler(SimpleHTTPRequestHandler):
    server_version = "refapp-frontend"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def end_headers(self):
        self.send_header("X-Served-By", "frontend")
        super().end_headers()

    def send_head(self):
        path = urlsplit(self.path).path
        target = self.translate_path(path)
        if not os.path.exists(target) and not posixpath.splitext(path)[1]:
            self.path = "/index.html"  # a client-side route
        return super().send_head()

    def send_error(self, code, message=None, explain=None):
        body = f"served-by: frontend ({code})\n".encode()
        self.send_response(code, message)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


if __name__ == "__main__":
    serve(("0.0.0.0", PORT), Handler)
