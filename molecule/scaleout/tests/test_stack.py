"""The application on several servers: its services as a Swarm stack across the two app hosts (README, "When
one server is not enough"), deployed by playbooks/app_stack.yml from the same Compose template as one host.
Runs after test_patroni's failover and test_scaleout's check mode (which found the stack converged)."""

from __future__ import annotations

import json

import pytest

from conftest import ssh, vault

STACK = "rpa-engine"
HEALTH = r"""
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/health", timeout=10) as answer:
    print(json.dumps({"status": answer.status, **json.loads(answer.read())}))
"""


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    ids = ssh("rpa-so-1", f"docker stack services --quiet {STACK}").split()
    return {s["Spec"]["Name"].removeprefix(STACK + "_"): s for s in json.loads(ssh("rpa-so-1", "docker service inspect "
                                                                                    + " ".join(ids)))}


def running(service: str) -> list[str]:
    """The nodes on which the service's tasks run now."""
    out = ssh("rpa-so-1", f"docker service ps --filter desired-state=running --format '{{{{.Node}}}} {{{{.CurrentState}}}}' "
                          f"{STACK}_{service}")
    return sorted(line.split()[0] for line in out.splitlines() if " Running " in f" {line} ")


def test_one_task_of_each_service_per_app_host_and_one_beat_stopped_before_its_replacement(services):
    assert sorted(services) == ["backend", "celery-beat", "celery-worker", "frontend"]
    for name in ("backend", "celery-worker", "frontend"):
        assert "Global" in services[name]["Spec"]["Mode"], name
        assert running(name) == ["rpa-so-1", "rpa-so-2"], name  # the witness is drained and not an app host
    beat = services["celery-beat"]["Spec"]
    assert beat["Mode"] == {"Replicated": {"Replicas": 1}}
    assert beat["UpdateConfig"]["Order"] == beat["RollbackConfig"]["Order"] == "stop-first"
    assert len(running("celery-beat")) == 1
    for name, port in (("backend", 8000), ("frontend", 3000)):
        spec = services[name]["Spec"]
        assert spec["EndpointSpec"]["Mode"] == "dnsrr"
        assert [(p["TargetPort"], p["PublishedPort"], p["PublishMode"]) for p in spec["EndpointSpec"]["Ports"]] == [
            (port, port, "host")]
        assert spec["UpdateConfig"]["FailureAction"] == "rollback"
    # Pulled by digest from the registry, the same image everywhere.
    assert all("@sha256:" in s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] for s in services.values())


def test_each_app_hosts_backend_reaches_the_leader_and_redis():
    """Through its own host's HAProxy (host-gateway) to Patroni's leader, and to Redis on the witness."""
    login = vault().get("vault_postgres_app_login", "rpa_engine")
    for host in ("rpa-so-1", "rpa-so-2"):
        health = json.loads(ssh(host, "python3 - 8000", stdin=HEALTH))
        assert health["status"] == 200 and health["database"] == "ok" and health["redis"] == "ok", (host, health)
        assert health["database_user"] == login, (host, health)


def test_no_secret_value_is_in_a_service_or_a_container_definition(services):
    """The values reach the tasks as Swarm secrets (files under /run/secrets), never as environment."""
    secrets = {k: v for k, v in vault().items() if isinstance(v, str) and len(v) >= 12}
    assert {"vault_postgres_app_password", "vault_redis_password", "vault_jwt_secret"} <= set(secrets)
    containers = ssh("rpa-so-1", f"docker ps --quiet --filter label=com.docker.stack.namespace={STACK}").split()
    assert len(containers) >= 3, containers
    texts = {"docker service inspect": json.dumps(list(services.values())),
             "docker inspect": ssh("rpa-so-1", "docker inspect " + " ".join(containers))}
    for what, text in texts.items():
        found = sorted(k for k, v in secrets.items() if v in text)
        assert found == [], f"{what} holds the value of {found}"
    mounted = services["backend"]["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert {"DATABASE_URL", "REDIS_URL", "JWT_SECRET"} <= {s["File"]["Name"] for s in mounted}
    assert all(s["File"]["Mode"] == 0o400 for s in mounted)
