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
from scaleout_helpers import ROOT, address, logs_in, playbook, probe_here_all, ssh, vault, wait_for

PLATFORMS = yaml.safe_load((ROOT / "molecule/split/molecule.yml").read_text())["platforms"]
EDGE_HTTPS = PLATFORMS[0]["https_port"]
APP_SERVICES = {"backend", "celery-worker", "celery-beat", "flower", "frontend", "deployer"}


def containers(name: str) -> dict[str, str]:
    """Compose service -> status of the containers on server name."""
    out = ssh(name, "docker ps --all --format '{{.Label \"com.docker.compose.service\"}}\t{{.Status}}'")
    return dict(line.split("\t", 1) for line in out.splitlines() if line.split("\t", 1)[0])


def load_client():
    loader = importlib.machinery.SourceFileLoader("zero_downtime", str(ROOT / "bench" / "zero_downtime"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("zero_downtime", loader))
    loader.exec_module(module)
    return module


def edge(method: str, path: str) -> tuple[int, dict]:
    """One request through Caddy on the edge (this controller's loopback, the edge's published 443)."""
    conn = load_client().Load(EDGE_HTTPS, 1).connect()
    try:
        conn.request(method, path, headers={"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def leader_sql(query: str) -> str:
    return ssh("rpa-sp-2", f"cd / && runuser -u postgres -- psql -d rpa_engine -XAtc \"{query}\"").strip()


def write_and_run_a_task() -> None:
    """A row written through Caddy (POST /api/items) is in the leader's database; a Celery task sent through
    Caddy (POST /api/tasks) runs on the worker and its result comes back through Redis."""
    name = f"split-{uuid.uuid4().hex[:8]}"
    status, answer = edge("POST", f"/api/items?name={name}")
    assert status == 201, answer
    assert leader_sql(f"SELECT count(*) FROM refapp_items WHERE name = '{name}'") == "1"
    status, answer = edge("POST", "/api/tasks?x=20&y=22")
    assert status == 200 and answer.get("task_id"), answer

    def result():
        code, state = edge("GET", f"/api/tasks/{answer['task_id']}")
        return state if code == 200 and state.get("state") == "SUCCESS" else None
    assert wait_for(result, 60, "the task's result through Redis on rpa-sp-2").get("result") == 42


def redis_takes(password: str) -> bool:
    """redis-cli PING in rpa-sp-2's Redis container with password (on stdin, then in the container's environment)."""
    out = ssh("rpa-sp-2", "read -r p; REDISCLI_AUTH=\"$p\" docker exec -e REDISCLI_AUTH rpa-engine-redis-1 redis-cli PING 2>&1; true",
              password + "\n")
    assert out.strip() in ("PONG", "") or "WRONGPASS" in out, out
    return out.strip() == "PONG"


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
    write_and_run_a_task()
    # The backend's database address (its host and port alone: the URL holds the password) is the name Docker
    # maps to the bridge's gateway, where the host's HAProxy listens.
    backend = ssh("rpa-sp-1", "docker ps --quiet --filter label=com.docker.compose.service=backend").split()[0]
    dsn = ssh("rpa-sp-1", f"docker exec {backend} python3 -c \"import os, socket, urllib.parse; "
                          "u = urllib.parse.urlsplit(os.environ['DATABASE_URL']); "
                          "print(u.hostname, u.port, socket.gethostbyname(u.hostname))\"").split()
    gateway = ssh("rpa-sp-1", "docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}'").strip()
    assert dsn == ["rpa-pg-endpoint", "5000", gateway], dsn
    assert f"{gateway}:5000 " in ssh("rpa-sp-1", "ss -Hltn"), "HAProxy does not listen on the bridge's address"


    db = address("rpa-sp-2")
    probes = probe_here_all(f"{db}:5432", f"{db}:6379", f"{db}:8008")
    assert set(probes.values()) == {"silent"}, probes


ROTATED = {"jwt_secret": "vault_jwt_secret", "deploy_token": "vault_deploy_token",
           "flower_password": "vault_flower_password", "redis_password": "vault_redis_password",
           "postgres_app_password": "vault_postgres_app_password"}


def test_the_apps_secrets_redis_and_the_database_password_rotate_and_no_request_fails():
    """playbooks/rotate-secrets.yml for the application's JWT key, deploy token and Flower password, Redis'
    password and the application's database password, at -vvv, while a client reads the database and the
    frontend through Caddy: Redis and the Patroni leader take the new passwords beside the old, the app host's
    Compose project moves over as on one host, then the old ones are refused. No request fails, no value is
    printed, the vault records the other database login, the cluster and Redis take only the new passwords,
    and a write and a task through Caddy still work."""
    old = vault()
    zero_downtime = load_client()
    with zero_downtime.Load(EDGE_HTTPS, 1, ("/api/items", "/")) as load:
        zero_downtime.wait_sent(load, 20, timeout=30)
        proc = playbook("playbooks/rotate-secrets.yml", "-vvv", "-e", json.dumps({"rpa_rotate": sorted(ROTATED)}),
                        timeout=600)
        sent_during = load.sent
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:]
    new = vault()
    assert [k for k in ROTATED.values() if new[k] == old[k]] == [], "the vault was not rotated"
    assert [k for k in ROTATED.values() for v in (old, new) if v[k] in output] == [], "a value was printed at -vvv"
    assert load.errors == 0 and load.non_2xx == 0 and sent_during >= 100, (vars(load) | {"samples": None})
    logins = (old.get("vault_postgres_app_login", "rpa_engine"), new["vault_postgres_app_login"])
    assert sorted(logins) == ["rpa_engine", "rpa_engine_alt"], logins
    assert (logs_in("rpa-sp-2", logins[1], new["vault_postgres_app_password"]),
            logs_in("rpa-sp-2", logins[0], old["vault_postgres_app_password"]),
            logs_in("rpa-sp-2", logins[1], old["vault_postgres_app_password"])) == (True, False, False)
    assert (redis_takes(new["vault_redis_password"]), redis_takes(old["vault_redis_password"])) == (True, False)
    write_and_run_a_task()
