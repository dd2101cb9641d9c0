#!/usr/bin/python3
"""cAdvisor stand-in for the test bed (see the Dockerfile for why).

/metrics: for every running container, from the Docker API's one-shot stats,
the cAdvisor metric names our dashboards and alert rules use:
container_memory_usage_bytes, container_memory_working_set_bytes,
container_spec_memory_limit_bytes, container_cpu_usage_seconds_total,
container_start_time_seconds, container_last_seen - labelled with name,
image and the Compose service label as cAdvisor does
(container_label_com_docker_compose_service). /healthz answers "ok".
Command-line flags (upstream's) are accepted and ignored, except --docker: the
Docker API endpoint as upstream takes it (unix:///var/run/docker.sock, the
default, or tcp://host:port - the monitoring role's filtering proxy), and
--housekeeping_interval: as upstream, the stats are collected at most that
often (a scrape in between gets the last collection). Collecting per scrape
cost two API calls per container, every 5 s in the test bed: about a twentieth
of a CPU per server, in the engine more than here.
"""

import datetime as dt
import http.client
import json
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENDPOINT = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--docker=")),
                "unix:///var/run/docker.sock")


def seconds(value):
    """A Go duration as upstream's flags take it ("30s", "1m", "1m30s", "500ms") in seconds."""
    if not re.fullmatch(r"((\d+(\.\d+)?)(h|ms|m|s))+", value or ""):
        raise ValueError(f"not a duration: {value!r}")
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * scale[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|ms|m|s)", value))


# Upstream's default housekeeping interval is 1 s.
HOUSEKEEPING = seconds(next((a.split("=", 1)[1] for a in sys.argv[1:]
                             if a.startswith("--housekeeping_interval=")), "1s"))


class UnixConnection(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=10)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(ENDPOINT.removeprefix("unix://"))


def connection():
    if ENDPOINT.startswith("tcp://"):
        host, _, port = ENDPOINT.removeprefix("tcp://").rpartition(":")
        return http.client.HTTPConnection(host, int(port), timeout=10)
    return UnixConnection()


def api(path):
    conn = connection()
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"docker API {path}: {resp.status}")
        return json.loads(body)
    finally:
        conn.close()


def parse_time(value):
    value = value.rstrip("Z")
    base, _, frac = value.partition(".")
    stamp = dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    return stamp + (float("0." + frac[:9]) if frac else 0.0)


def esc(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def collect():
    containers = api("/containers/json")

    def one(c):
        stats = api(f"/containers/{c['Id']}/stats?stream=false&one-shot=true")
        inspect = api(f"/containers/{c['Id']}/json")
        return c, stats, inspect

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(one, containers))
    now = time.time()
    out = {
        "container_memory_usage_bytes": ("gauge", "Current memory usage in bytes."),
        "container_memory_working_set_bytes": ("gauge", "Current working set in bytes."),
        "container_spec_memory_limit_bytes": ("gauge", "Memory limit of the container."),
        "container_cpu_usage_seconds_total": ("counter", "Cumulative CPU time consumed in seconds."),
        "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch."),
        "container_last_seen": ("gauge", "Last time the container was seen by the exporter."),
    }
    lines = []
    samples = {name: [] for name in out}
    for c, stats, inspect in rows:
        labels = {
            "id": "/docker/" + c["Id"],
            "name": c["Names"][0].lstrip("/"),
            "image": c["Image"],
            "container_label_com_docker_compose_service": c.get("Labels", {}).get("com.docker.compose.service", ""),
            "container_label_com_docker_compose_project": c.get("Labels", {}).get("com.docker.compose.project", ""),
        }
        label = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
        mem = stats.get("memory_stats", {})
        usage = mem.get("usage", 0)
        inactive = mem.get("stats", {}).get("inactive_file", mem.get("stats", {}).get("total_inactive_file", 0))
        samples["container_memory_usage_bytes"].append((label, usage))
        samples["container_memory_working_set_bytes"].append((label, max(usage - inactive, 0)))
        samples["container_spec_memory_limit_bytes"].append((label, inspect["HostConfig"].get("Memory", 0)))
        cpu = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage", 0) / 1e9
        samples["container_cpu_usage_seconds_total"].append((label, cpu))
        samples["container_start_time_seconds"].append((label, parse_time(inspect["State"]["StartedAt"])))
        samples["container_last_seen"].append((label, now))
    for name, (kind, text) in out.items():
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{{{label}}} {value}" for label, value in samples[name])
    return "\n".join(lines) + "\n"


_last = {"at": None, "text": ""}
_lock = threading.Lock()


def housekept():
    """collect()'s text, collected again only when the last is HOUSEKEEPING seconds old."""
    with _lock:
        if _last["at"] is None or time.monotonic() - _last["at"] >= HOUSEKEEPING:
            _last["text"], _last["at"] = collect(), time.monotonic()
        return _last["text"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            body, code = b"ok", 200
        elif self.path == "/metrics":
            try:
                body, code = housekept().encode(), 200
            except Exception as exc:  # the scrape shows it; the server stays up
                body, code = f"error: {exc}\n".encode(), 500
        else:
            body, code = b"not found\n", 404
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
