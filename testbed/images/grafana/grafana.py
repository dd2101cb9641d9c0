"""Grafana stand-in for the test bed (see the Dockerfile for why).

Loads /etc/grafana/provisioning/datasources/*.yaml and dashboards/*.yaml
like Grafana does (apiVersion 1), loads every dashboard JSON from the
provider paths, and exits 1 on a malformed file. Serves:
  GET /api/health               no auth, {"database": "ok", "version": ...}
  GET /api/user                 admin basic auth, the signed-in user
  GET /api/datasources          admin basic auth, the provisioned datasources
  GET /api/search               admin basic auth, the provisioned dashboards
Everything else, and anything without valid admin credentials, is 401.

The admin password behaves as Grafana's does: the configured one
(GF_SECURITY_ADMIN_PASSWORD[__FILE]) only seeds the database on the first
start (here /var/lib/grafana/admin.json, a salted hash); later the database
wins, and `grafana cli admin reset-admin-password --password-from-stdin`
changes it, effective at the next request without a restart.
"""

import base64
import glob
import hashlib
import hmac
import json
import os
import secrets
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


DATABASE = os.path.join(os.environ.get("GF_PATHS_DATA", "/var/lib/grafana"), "admin.json")


def store_password(password):
    salt = secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 10000).hex()
    tmp = DATABASE + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump({"salt": salt, "hash": digest}, handle)
    os.replace(tmp, DATABASE)


def password_matches(password):
    with open(DATABASE) as handle:
        stored = json.load(handle)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), stored["salt"].encode(), 10000).hex()
    return hmac.compare_digest(digest, stored["hash"])


def cli(argv):
    """grafana cli admin reset-admin-password --password-from-stdin (the one command used here)."""
    if argv[:3] != ["admin", "reset-admin-password", "--password-from-stdin"]:
        sys.exit("grafana stand-in: only `cli admin reset-admin-password --password-from-stdin` is implemented")
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        sys.exit("grafana stand-in: no password on stdin")
    store_password(password)
    print("Admin password changed successfully ✔")


def credentials_ok(header, user):
    if not header.startswith("Basic "):
        return False
    try:
        name, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return hmac.compare_digest(name, user) and password_matches(password)


def main():
    if sys.argv[1:2] == ["cli"]:
        return cli(sys.argv[2:])
    datasources, dashboards = load()
    user = os.environ.get("GF_SECURITY_ADMIN_USER", "admin")
    if not os.path.exists(DATABASE):
        store_password(admin_password())
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
            authorized = anonymous or credentials_ok(self.headers.get("Authorization", ""), user)
            if not authorized:
                return self.send(401, {"message": "Unauthorized"})
            if self.path == "/api/user":
                return self.send(200, {"login": user, "isGrafanaAdmin": True})
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
