"""Grafana stand-in for the test bed (see the Dockerfile for why).

Loads /etc/grafana/provisioning/datasources/*.yaml and dashboards/*.yaml
like Grafana does (apiVersion 1), loads every dashboard JSON from the
provider paths, and exits 1 on a malformed file. Serves:
  GET /api/health               no auth, {"database": "ok", "version": ...}
  GET /api/datasources          admin basic auth, the provisioned datasources
  GET /api/search               admin basic auth, the provisioned dashboards
Everything else, and anything without valid admin credentials, is 401.
"""

import base64
import glob
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

PROVISIONING = os.environ.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")


def load_yaml_dir(sub):
    docs = []
    for path in sorted(glob.glob(os.path.join(PROVISIONING, sub, "*.yaml")) +
                       glob.glob(os.path.join(PROVISIONING, sub, "*.yml"))):
        with open(path) as handle:
            doc = yaml.safe_load(handle)
        if not isinstance(doc, dict) or doc.get("apiVersion") != 1:
            sys.exit(f"provisioning: {path}: apiVersion 1 expected")
        docs.append((path, doc))
    return docs


def load():
    datasources, dashboards = [], []
    for sub in ("", "datasources", "dashboards"):
        folder = os.path.join(PROVISIONING, sub)
        if os.path.isdir(folder) and not os.access(folder, os.R_OK | os.X_OK):
            sys.exit(f"provisioning: {folder}: permission denied")
    for path, doc in load_yaml_dir("datasources"):
        for ds in doc.get("datasources", []):
            if not ds.get("name") or not ds.get("type") or not ds.get("url"):
                sys.exit(f"provisioning: {path}: datasource needs name, type and url")
            datasources.append(ds)
    for path, doc in load_yaml_dir("dashboards"):
        for provider in doc.get("providers", []):
            folder = (provider.get("options") or {}).get("path")
            if not folder or not os.path.isdir(folder):
                sys.exit(f"provisioning: {path}: provider {provider.get('name')} has no readable options.path")
            for dash in sorted(glob.glob(os.path.join(folder, "*.json"))):
                with open(dash) as handle:
                    board = json.load(handle)
                if not board.get("title") or not board.get("uid"):
                    sys.exit(f"provisioning: {dash}: a dashboard needs title and uid")
                dashboards.append({"uid": board["uid"], "title": board["title"], "type": "dash-db"})
    return datasources, dashboards


def admin_password():
    path = os.environ.get("GF_SECURITY_ADMIN_PASSWORD__FILE")
    if path:
        with open(path) as handle:
            return handle.read().strip()
    return os.environ.get("GF_SECURITY_ADMIN_PASSWORD", "admin")


def main():
    datasources, dashboards = load()
    user = os.environ.get("GF_SECURITY_ADMIN_USER", "admin")
    expected = "Basic " + base64.b64encode(f"{user}:{admin_password()}".encode()).decode()
    anonymous = os.environ.get("GF_AUTH_ANONYMOUS_ENABLED", "false").lower() == "true"

    class Handler(BaseHTTPRequestHandler):
        def send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/api/health":
                return self.send(200, {"database": "ok", "version": "stand-in"})
            authorized = anonymous or hmac.compare_digest(self.headers.get("Authorization", ""), expected)
            if not authorized:
                return self.send(401, {"message": "Unauthorized"})
            if self.path == "/api/datasources":
                return self.send(200, datasources)
            if self.path.startswith("/api/search"):
                return self.send(200, dashboards)
            return self.send(404, {"message": "Not found"})

        def log_message(self, *args):
            pass

    print(f"grafana stand-in: {len(datasources)} datasources, {len(dashboards)} dashboards", flush=True)
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))), Handler).serve_forever()


if __name__ == "__main__":
    main()
