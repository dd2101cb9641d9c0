"""Least privilege of the running containers, as the public benchmarks judge it.

- docker-bench-security's section 5 (tools/container_bench.py: the same checks over `docker inspect`,
  since the script itself is GitHub-only) and compose-lint on the project's Compose file: no finding
  but the documented exceptions, and the counts printed;
- from inside every container but the deployer, no secret file can be read (each service reads its
  own only) and no Docker API call changes anything: cAdvisor's proxy lets GET of the read-only
  container endpoints through and refuses the rest, and no other container reaches it.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import PROJECT, PROJECT_DIR, ROOT, cname

sys.path.insert(0, str(ROOT / "tools"))
import container_bench  # noqa: E402

# The vault-derived files, and the one service (if any) that must read each.
SECRET_FILES = {
    f"{PROJECT_DIR}/.env": None,
    f"{PROJECT_DIR}/env.d/app.json": None,
    f"{PROJECT_DIR}/env.d/monitoring.json": None,
    f"{PROJECT_DIR}/config/redis/users.acl": "redis",
    f"{PROJECT_DIR}/config/redis/client.auth": "redis",
    f"{PROJECT_DIR}/config/pgbouncer/userlist.txt": "pgbouncer",
    f"{PROJECT_DIR}/config/postgres/superuser_password": "postgres",  # secret-scan: allow (a path and its reader)
    f"{PROJECT_DIR}/config/monitoring/grafana/secrets/admin_password": "grafana",  # secret-scan: allow (a path)
    "/var/lib/docker/containers": None,  # every container's environment (config.v2.json)
    "/var/run/docker.sock": "docker-api-proxy",
    "/run/docker.sock": "docker-api-proxy",
}
READERS = {"redis", "pgbouncer", "postgres", "grafana", "docker-api-proxy"}


def _reach(path: str, mark: str) -> str:
    """Shell: print mark if path can be read (a file), listed (a directory) or seen (a socket)."""
    quoted = shlex.quote(path)
    return f"(cat {quoted} || ls -A {quoted}/ || test -S {quoted}) >/dev/null 2>&1 && echo {shlex.quote(mark)}"


@pytest.fixture(scope="module")
def inspected(host) -> list[dict]:
    ids = host.check_output(f"docker ps -q --filter label=com.docker.compose.project={PROJECT}").split()
    return json.loads(host.check_output(f"docker inspect {' '.join(ids)}"))


def test_docker_bench_section_5_finds_no_warn(host, inspected):
    info = container_bench.host_info(json.loads(host.check_output("docker info --format '{{json .SecurityOptions}}'")))
    results = container_bench.bench(inspected, info)
    print(container_bench.report(results, len(inspected)))
    assert len(inspected) == 19
    assert container_bench.counts(results)["warn"] == 0, container_bench.report(results, len(inspected))
    excepted = {(check, name) for check, r in results.items() for name in r["exception"]}
    assert excepted == set(container_bench.EXCEPTIONS) | {("5.15", container_bench.service_name(c)) for c in inspected}
    # AppArmor is the only check this engine cannot have (README, "What the test bed cannot check").
    assert not info["apparmor"] and {c for c, r in results.items() if r["na"]} == {"5.2"}


def test_compose_lint_finds_nothing_but_the_documented_exceptions(host):
    with tempfile.TemporaryDirectory() as tmp:
        compose = Path(tmp) / "docker-compose.yml"
        compose.write_text(host.file(f"{PROJECT_DIR}/docker-compose.yml").content_string)
        proc = subprocess.run([str(Path(sys.executable).parent / "compose-lint"), "check", "--format", "json",
                               "--config", str(ROOT / ".compose-lint.yml"), "--strict-config", "--fail-on", "low",
                               str(compose)], capture_output=True, text=True, check=False)
    report = json.loads(proc.stdout)
    findings = report["findings"]
    open_findings = [(f["rule_id"], f["service"], f["message"]) for f in findings if not f["suppressed"]]
    print(f"compose-lint: {len(findings)} findings, {len(findings) - len(open_findings)} documented in "
          f".compose-lint.yml, {len(open_findings)} open")
    assert proc.returncode == 0 and not open_findings and not report["errors"], (open_findings, report["errors"])
    # The exceptions are the ones the README names, no more.
    assert {(f["rule_id"], f["service"]) for f in findings if f["rule_id"] != "CL-0004"} == {
        ("CL-0001", "deployer"), ("CL-0001", "docker-api-proxy"), ("CL-0001", "node-exporter"),
        ("CL-0013", "cadvisor"), ("CL-0018", "deployer"), ("CL-0018", "docker-api-proxy"),
        ("CL-0020", "postgres")}


def _paths_inside(container: dict, host_path: str) -> list[str]:
    """Where host_path appears inside the container through its bind mounts."""
    inside = []
    for mount in container.get("Mounts") or []:
        source = mount["Source"].rstrip("/")
        if mount["Type"] == "bind" and (host_path == source or host_path.startswith(source + "/")):
            inside.append(mount["Destination"].rstrip("/") + host_path[len(source):])
    return inside


def test_no_container_but_the_deployer_reads_a_secret_file(host, inspected):
    tried, read = {}, {}
    for container in inspected:
        service = container_bench.service_name(container)
        if service == "deployer":
            continue
        probes = {path: inside for secret, owner in SECRET_FILES.items() if owner != service
                  for inside in _paths_inside(container, secret) for path in [secret]}
        own = [inside for secret, owner in SECRET_FILES.items() if owner == service
               for inside in _paths_inside(container, secret)]
        # The same probe on the service's own secret proves that it can see a read at all.
        script = "; ".join([_reach(p, s) for s, p in probes.items()] + [_reach(p, "OWN") for p in own] + ["true"])
        out = host.check_output(f"docker exec {container['Id']} sh -c {shlex.quote(script)}").split()
        tried[service] = sorted(probes)
        read[service] = [line for line in out if line != "OWN"]
        if service in READERS:
            assert "OWN" in out, f"{service} cannot read its own secret: the probe proves nothing"
    assert {s: paths for s, paths in read.items() if paths} == {}
    # node-exporter sees the host's / (hidden parts under tmpfs): every secret was tried there.
    assert tried["node-exporter"] == sorted(SECRET_FILES), tried["node-exporter"]


PROXY_PROBE = r"""
import json, sys, urllib.request, urllib.error
base = "http://docker-api-proxy:2375"
def call(method, path):
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, method=method), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
target = sys.argv[1]
print(json.dumps({f"{m} {p}": call(m, p.replace("ID", target)) for m, p in [
    ("GET", "/_ping"), ("GET", "/v1.45/containers/json"), ("GET", "/containers/ID/json"),
    ("GET", "/containers/ID/stats?stream=false"),
    ("POST", "/containers/ID/stop"), ("POST", "/v1.45/containers/ID/kill"), ("DELETE", "/containers/ID"),
    ("POST", "/containers/create"), ("POST", "/containers/ID/exec"), ("GET", "/containers/ID/logs?stdout=1"),
    ("GET", "/containers/ID/archive?path=/"), ("GET", "/images/json"), ("GET", "/volumes"),
    ("GET", "/secrets"), ("POST", "/build"), ("GET", "/containers/json/../../images/json")]}))
"""


def test_the_docker_api_proxy_lets_cadvisor_read_and_changes_nothing(host):
    target = host.check_output(f"docker inspect --format '{{{{.Id}}}}' {cname('backend')}")
    started = host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {cname('backend')}")
    answers = json.loads(host.check_output(
        f"docker exec {cname('cadvisor')} python3 -c {shlex.quote(PROXY_PROBE)} {target}"))
    allowed = {"GET /_ping", "GET /v1.45/containers/json", "GET /containers/ID/json",
               "GET /containers/ID/stats?stream=false"}
    assert {k: v for k, v in answers.items() if k in allowed} == dict.fromkeys(allowed, 200), answers
    assert {k: v for k, v in answers.items() if k not in allowed} == dict.fromkeys(set(answers) - allowed, 403), answers
    assert host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {cname('backend')}") == started
    # No other container reaches the proxy: its network is cAdvisor's and its own.
    for service in ("prometheus", "backend", "node-exporter"):
        res = host.run(f"docker exec {cname(service)} wget -q -T 3 -O /dev/null http://docker-api-proxy:2375/_ping")
        assert res.rc != 0, f"{service} reached the Docker API proxy"
