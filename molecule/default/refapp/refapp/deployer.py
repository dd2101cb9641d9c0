"""Deployer: redeploys one service on an authenticated request.

    POST /deploy/<service>   Authorization: Bearer <DEPLOY_TOKEN>
      on one host (DEPLOY_PROJECT_DIR) runs exactly SYSTEM.md's command:
      docker compose --project-directory $DEPLOY_PROJECT_DIR -f /repo/docker-compose.yml
                     --env-file /repo/.env up -d <service>
      on a Swarm (DEPLOY_SWARM_STACK, on a manager) forces a rolling update of <stack>_<service> through the
      engine's API and answers once Swarm's UpdateStatus says how it ended: 200 when it completed, 500 when
      Swarm paused it or rolled it back (never the exit code of `docker service update`, which is 0 after a
      rollback)
    GET  /health, /deploy/health   no auth; 200 when the Docker API answers

DEPLOY_TOKEN_PREVIOUS (optional) is accepted too, for a rotation's overlap
window. Only services in DEPLOY_ALLOWED_SERVICES can be redeployed.
"""

import hmac
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler

from serve import serve  # run as /app/refapp/NAME.py: this directory is on sys.path


def required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"refapp: {name} is not set; the app role must provide it")
    return value


TOKENS = [t for t in (required("DEPLOY_TOKEN"), os.environ.get("DEPLOY_TOKEN_PREVIOUS", "")) if t]
ALLOWED = set(required("DEPLOY_ALLOWED_SERVICES").split(","))
STACK = os.environ.get("DEPLOY_SWARM_STACK", "")
PROJECT_DIR = "" if STACK else required("DEPLOY_PROJECT_DIR")
# How long a rolling update may take before the request gives up on it (Swarm carries on).
SWARM_TIMEOUT = float(os.environ.get("DEPLOY_SWARM_TIMEOUT", "600"))
REPO = os.environ.get("DEPLOY_REPO", "/repo")
PORT = int(os.environ.get("DEPLOY_PORT", "9000"))
DOCKER_SOCKET = "/var/run/docker.sock"


def compose_cmd(service: str) -> list[str]:
    return ["docker", "compose", "--project-directory", PROJECT_DIR, "-f", f"{REPO}/docker-compose.yml",
            "--env-file", f"{REPO}/.env", "up", "-d", service]


class EngineConnection(http.client.HTTPConnection):
    """HTTP over the engine's socket. Caddy probes /health about once a second; the docker CLI it replaces
    cost a Go process start (about 50 ms of CPU) per probe."""

    def __init__(self):
        super().__init__("localhost", timeout=10)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(DOCKER_SOCKET)


def engine_version() -> str:
    """The Docker engine's version, from its API (GET /version): what `docker version` asks."""
    conn = EngineConnection()
    try:
        conn.request("GET", "/version")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"the Docker API answered {resp.status}: {body[-200:]!r}")
        return json.loads(body)["Version"]
    finally:
        conn.close()


def engine(method: str, path: str, body: dict | None = None):
    """One request to the engine's API; its JSON answer (None when empty). OSError on an error status."""
    conn = EngineConnection()
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        answer = resp.read()
        if resp.status >= 300:
            raise OSError(f"{method} {path}: the Docker API answered {resp.status}: {answer[-300:]!r}")
        return json.loads(answer) if answer.strip() else None
    finally:
        conn.close()


# Swarm's UpdateStatus.State values that end an update; only "completed" is a success.
ENDED = {"completed", "paused", "rollback_started", "rollback_paused", "rollback_completed"}


def swarm_redeploy(service: str) -> tuple[int, dict]:
    """A rolling update of the stack's service with nothing changed but ForceUpdate (every task replaced, as its
    update_config says: health-gated, rolled back on failure), then Swarm's own word on how it ended. Updating
    a service clears its UpdateStatus, so a state read afterwards is this update's."""
    name = f"{STACK}_{service}"
    current = engine("GET", f"/services/{name}")
    spec = current["Spec"]
    spec["TaskTemplate"]["ForceUpdate"] = int(spec["TaskTemplate"].get("ForceUpdate", 0)) + 1
    engine("POST", f"/services/{current['ID']}/update?version={current['Version']['Index']}", spec)
    deadline = time.monotonic() + SWARM_TIMEOUT
    while True:
        status = (engine("GET", f"/services/{current['ID']}") or {}).get("UpdateStatus") or {}
        state = status.get("State", "")
        if state in ENDED:
            break
        if time.monotonic() > deadline:
            state = f"still {state or 'not started'} after {SWARM_TIMEOUT:.0f} s"
            break
        time.sleep(1)
    return (200 if state == "completed" else 500), {"deployed": service, "service": name, "state": state,
                                                   "message": status.get("Message", "")}


class Handler(BaseHTTPRequestHandler):
    def send(self, status: int, body: dict) -> None:
        data = json.dumps({"service": "deployer", **body}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        if self.path in ("/health", "/deploy/health"):
            try:
                self.send(200, {"docker": engine_version()})
            # http.client.HTTPException: a malformed answer from the engine is as unhealthy as none.
            except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
                self.send(503, {"docker": str(exc)[-300:]})
        else:
            self.send(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        match = re.fullmatch(r"/deploy/([a-z0-9][a-z0-9_-]*)", self.path)
        if not match:
            self.send(404, {"error": "not found"})
            return
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not given or not any(hmac.compare_digest(given.encode(), t.encode()) for t in TOKENS):
            self.send(401, {"error": "invalid deploy token"})
            return
        service = match.group(1)
        if service not in ALLOWED:
            self.send(403, {"error": f"{service} may not be redeployed from here"})
            return
        if STACK:
            try:
                self.send(*swarm_redeploy(service))
            except (OSError, ValueError, KeyError, http.client.HTTPException) as exc:
                self.send(500, {"deployed": service, "service": f"{STACK}_{service}", "error": str(exc)[-500:]})
            return
        proc = subprocess.run(compose_cmd(service), capture_output=True, text=True, timeout=600, check=False)
        status = 200 if proc.returncode == 0 else 500
        self.send(status, {"deployed": service, "rc": proc.returncode, "output": (proc.stdout + proc.stderr)[-2000:]})

    def log_message(self, fmt, *args) -> None:
        pass


if __name__ == "__main__":
    serve(("0.0.0.0", PORT), Handler)
