"""The split example (issue 21, README "When one server is not enough"), converged by site.yml: rpa-sp-1 is the
edge, the one app host and the monitoring host, and runs the application with Compose; rpa-sp-2 is a one-member
Patroni cluster with its etcd, and carries Redis. What these tests check is what differs from the single host
and from the ha shape: the application's data tier is on the other host, reached through the app host's
HAProxy (the database) and the db host's private address (Redis), and nothing else reaches it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import uuid

import yaml
from scaleout_helpers import ROOT, address, probe_here_all, ssh, wait_for

PLATFORMS = yaml.safe_load((ROOT / "molecule/split/molecule.yml").read_text())["platforms"]
EDGE_HTTPS = PLATFORMS[0]["https_port"]
APP_SERVICES = {"backend", "celery-worker", "celery-beat", "flower", "frontend", "deployer"}


def containers(name: str) -> dict[str, str]:
    """Compose service -> status of the containers on server name."""
    out = ssh(name, "docker ps --all --format '{{.Label \"com.docker.compose.service\"}}\t{{.Status}}'")
    return dict(line.split("\t", 1) for line in out.splitlines() if line.split("\t", 1)[0])


def edge(method: str, path: str) -> tuple[int, dict]:
    """One request through Caddy on the edge (this controller's loopback, the edge's published 443)."""
    loader = importlib.machinery.SourceFileLoader("zero_downtime", str(ROOT / "bench" / "zero_downtime"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("zero_downtime", loader))
    loader.exec_module(module)
    conn = module.Load(EDGE_HTTPS, 1).connect()
    try:
        conn.request(method, path, headers={"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def leader_sql(query: str) -> str:
    return ssh("rpa-sp-2", f"cd / && runuser -u postgres -- psql -d rpa_engine -XAtc \"{query}\"").strip()


def test_the_app_host_runs_compose_and_the_db_host_the_cluster_and_redis():
    """The six services run healthy on rpa-sp-1, in Compose (no Swarm), with no database, PgBouncer or Redis of
    their own; rpa-sp-2 runs Patroni's one member as the leader and Redis, and no application service."""
    app = containers("rpa-sp-1")
    assert APP_SERVICES <= set(app) and all("(healthy)" in app[s] for s in APP_SERVICES), app
    assert not {"postgres", "pgbouncer", "redis"} & set(app), app
    assert ssh("rpa-sp-1", "docker info --format '{{.Swarm.LocalNodeState}}'").strip() == "inactive"
    members = json.loads(ssh("rpa-sp-2", "patronictl -c /etc/patroni/config.yml list --format json"))
    assert [(m["Role"], m["State"]) for m in members] == [("Leader", "running")], members
    db = containers("rpa-sp-2")
    assert "redis" in db and not APP_SERVICES & set(db), db


def test_a_write_and_a_task_through_caddy_reach_the_cluster_and_redis_on_the_db_host():
    """POST /api/items through Caddy: the row is in the leader's database, written through the app host's
    HAProxy (the backend's database address is the name Docker gives the bridge's gateway, where HAProxy
    listens). POST /api/tasks: the worker on rpa-sp-1 runs it through
    Redis on rpa-sp-2 (there is no other Redis) and the backend reads its result. Neither the database nor
    Redis answers anyone but the app host (this controller: dropped)."""
    name = f"split-{uuid.uuid4().hex[:8]}"
    status, answer = edge("POST", f"/api/items?name={name}")
    assert status == 201, answer
    assert leader_sql(f"SELECT count(*) FROM refapp_items WHERE name = '{name}'") == "1"
    # The backend's database address (its host and port alone: the URL holds the password) is the name Docker
    # maps to the bridge's gateway, where the host's HAProxy listens.
    backend = ssh("rpa-sp-1", "docker ps --quiet --filter label=com.docker.compose.service=backend").split()[0]
    dsn = ssh("rpa-sp-1", f"docker exec {backend} python3 -c \"import os, socket, urllib.parse; "
                          "u = urllib.parse.urlsplit(os.environ['DATABASE_URL']); "
                          "print(u.hostname, u.port, socket.gethostbyname(u.hostname))\"").split()
    gateway = ssh("rpa-sp-1", "docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}'").strip()
    assert dsn == ["rpa-pg-endpoint", "5000", gateway], dsn
    assert f"{gateway}:5000 " in ssh("rpa-sp-1", "ss -Hltn"), "HAProxy does not listen on the bridge's address"

    status, answer = edge("POST", "/api/tasks?x=20&y=22")
    assert status == 200 and answer.get("task_id"), answer

    def result():
        code, state = edge("GET", f"/api/tasks/{answer['task_id']}")
        return state if code == 200 and state.get("state") == "SUCCESS" else None
    assert wait_for(result, 60, "the task's result through Redis on rpa-sp-2").get("result") == 42

    db = address("rpa-sp-2")
    probes = probe_here_all(f"{db}:5432", f"{db}:6379", f"{db}:8008")
    assert set(probes.values()) == {"silent"}, probes
