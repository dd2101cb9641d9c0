"""The app role's stack file (the Swarm branch of roles/app/templates/compose.yml.j2) for the ha example's
first app host, rendered on the controller (tests/unit/files/app_stack.yml; no host is contacted)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "registry.example.com/rpa-engine/backend@sha256:" + "1" * 64
# The vault's values and the optional ones, made up (and made here, so that no file holds one).
SECRETS = {name: f"Fake-{name.split('_', 1)[1]}-0000000000000000" for name in (
    "vault_jwt_secret", "vault_deploy_token", "vault_flower_password", "vault_postgres_app_password",
    "vault_redis_password", "app_jwt_secret_previous", "app_deploy_token_previous", "app_ai_api_key")}
EXTRA = {**SECRETS, "ansible_processor_vcpus": 2,
         "__app_image_refs": {"backend": DIGEST, "celery-worker": DIGEST, "celery-beat": DIGEST, "flower": DIGEST,
                              "frontend": DIGEST, "deployer": DIGEST},
         "__app_stack_image_commands": {name: ["python3", "-m", "server"] for name in
                                        ("backend", "celery-worker", "celery-beat", "flower", "frontend", "deployer")}}


@pytest.fixture(scope="module")
def rendered() -> dict:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CACHE_PLUGIN="ansible.builtin.memory", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    env.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)
    proc = subprocess.run(["ansible-playbook", "tests/unit/files/app_stack.yml", "-i", str(ROOT / "inventory/ha"),
                           "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=9", "-e", json.dumps(EXTRA)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    data, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    [result] = [task["hosts"]["rpa-app-1"]["msg"] for task in data["plays"][0]["tasks"]
                if task["task"]["name"] == "Print the file and the secrets' names."]
    [result["accept_both"]] = [task["hosts"]["rpa-app-1"]["msg"] for task in data["plays"][0]["tasks"]
                               if task["task"]["name"] == "Print the intermediate deploy's secrets' names."]
    return result


def test_no_value_of_a_secret_is_in_the_stack_file(rendered):
    text = json.dumps(rendered["file"])
    assert [k for k, v in SECRETS.items() if v in text] == []


def test_every_value_a_service_reads_is_a_secret_file_of_its_variable(rendered):
    services, names = rendered["file"]["services"], rendered["secrets"]
    assert set(names) == {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "JWT_SECRET", "JWT_SECRET_PREVIOUS",
                          "AI_API_KEY", "FLOWER_BASIC_AUTH", "DEPLOY_TOKEN", "DEPLOY_TOKEN_PREVIOUS"}
    assert all(name.startswith("rpa-engine_" + variable.lower() + "_") for variable, name in names.items())
    targets = {service: {s["target"]: s["source"] for s in spec["secrets"]} for service, spec in services.items()}
    # One secret per variable (never one mounted twice: the CLI orders such mounts differently on create and
    # on update, which updated beat on every second deploy), in the order the CLI writes them.
    assert targets["backend"] == {k: v for k, v in names.items() if k != "FLOWER_BASIC_AUTH" and not k.startswith("DEPLOY_")}
    # Flower's login reaches Flower alone.
    assert targets["flower"] == {"CELERY_BROKER_URL": names["CELERY_BROKER_URL"],
                                 "FLOWER_BASIC_AUTH": names["FLOWER_BASIC_AUTH"]}
    assert [service for service, mounted in targets.items() if "FLOWER_BASIC_AUTH" in mounted] == ["flower"]
    # The deploy tokens reach the deployer alone.
    assert targets["deployer"] == {k: names[k] for k in ("DEPLOY_TOKEN", "DEPLOY_TOKEN_PREVIOUS")}
    assert all([s["source"] for s in spec["secrets"]] == sorted(s["source"] for s in spec["secrets"])
               for spec in services.values())
    assert targets["frontend"] == {}
    assert set(rendered["file"]["secrets"]) == set(names.values())
    # Nothing is left for Compose's interpolation from .env: the stack has none.
    assert "${APP_" not in json.dumps(services)
    # Each file belongs to its service's user (the deployer's is root, which without capabilities reads no other's).
    assert all(s["mode"] == 0o400 and s["uid"] == s["gid"] == ("0" if name == "deployer" else "10001")
               for name, spec in services.items() for s in spec["secrets"])


def secret_name(variable: str, value: str) -> str:
    return f"rpa-engine_{variable.lower()}_" + hashlib.sha256(f"{variable}:{value}".encode()).hexdigest()[:12]


def test_a_new_jwt_key_is_accepted_everywhere_before_any_task_signs_with_it(rendered):
    """stack_deploy.yml's intermediate deploy signs with the previous key - the very Swarm secret the tasks
    read before the rotation, which is how the role tells that they sign with it - and accepts the new one
    beside it; then the stack's own deploy swaps the two. Nothing else moves in between."""
    new, previous = SECRETS["vault_jwt_secret"], SECRETS["app_jwt_secret_previous"]
    final, between = rendered["secrets"], rendered["accept_both"]
    assert between["JWT_SECRET"] == secret_name("JWT_SECRET", previous)
    assert between["JWT_SECRET_PREVIOUS"] == secret_name("JWT_SECRET_PREVIOUS", new)
    assert final["JWT_SECRET"] == secret_name("JWT_SECRET", new)
    assert final["JWT_SECRET_PREVIOUS"] == secret_name("JWT_SECRET_PREVIOUS", previous)
    assert {k: v for k, v in between.items() if not k.startswith("JWT_")} == \
        {k: v for k, v in final.items() if not k.startswith("JWT_")}


def test_one_task_per_app_host_and_a_single_beat_and_flower_stopped_before_their_replacement(rendered):
    services = rendered["file"]["services"]
    assert sorted(services) == ["backend", "celery-beat", "celery-worker", "deployer", "flower", "frontend"]
    for name, spec in services.items():
        deploy = spec["deploy"]
        assert deploy["placement"]["constraints"][0] == "node.labels.rpa.app == true", name
        assert deploy["endpoint_mode"] == "dnsrr" and deploy["update_config"]["failure_action"] == "rollback", name
        assert deploy["mode"] == ("replicated" if name in ("celery-beat", "flower", "deployer") else "global"), name
        assert spec["entrypoint"][:2] == ["/bin/sh", "-c"] and spec["image"] == DIGEST, name
        assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"], name
        assert spec["user"] == ("0:0" if name == "deployer" else "10001:10001"), name
    for single in (services["celery-beat"], services["flower"], services["deployer"]):
        assert single["deploy"]["replicas"] == 1
        assert single["deploy"]["update_config"]["order"] == single["deploy"]["rollback_config"]["order"] == "stop-first"
    assert services["flower"]["ports"] == [{"target": 5555, "published": 5555, "protocol": "tcp", "mode": "host"}]
    # The image's own command when the inventory gives none; the inventory's otherwise.
    assert services["backend"]["command"] == ["python3", "-m", "server"]
    assert services["celery-beat"]["command"][:4] == ["python3", "-m", "celery", "-A"]
    assert [p for p in services["backend"]["ports"]] == [{"target": 8000, "published": 8000, "protocol": "tcp",
                                                          "mode": "host"}]
    assert services["celery-worker"]["stop_grace_period"] == "330s"
    # The health checks read the values by the same shim (a check runs beside the entrypoint, not under it).
    worker_check = services["celery-worker"]["healthcheck"]["test"]
    assert worker_check[:5] == ["CMD", "/bin/sh", "-c", services["celery-worker"]["entrypoint"][2], "rpa-secrets"]
    assert worker_check[5:7] == ["/bin/sh", "-c"] and "inspect ping" in worker_check[7]
    assert services["backend"]["healthcheck"]["test"][5:7] == ["python3", "-c"]


def test_the_tasks_reach_the_database_at_their_own_hosts_endpoint(rendered):
    assert all(spec["extra_hosts"] == ["rpa-pg-endpoint:host-gateway"] for spec in rendered["file"]["services"].values())
    assert rendered["file"]["networks"] == {"rpa-engine-overlay": {"external": True, "name": "rpa-engine-overlay"}}


def test_the_deployer_runs_on_a_manager_and_updates_the_stack_through_its_engine(rendered):
    """On a Swarm the deployer redeploys by a rolling service update (DEPLOY_SWARM_STACK): it needs a manager's
    engine socket and no Compose project; its port is published on its host for Caddy on the edge."""
    deployer = rendered["file"]["services"]["deployer"]
    assert deployer["deploy"]["placement"]["constraints"] == ["node.labels.rpa.app == true", "node.role == manager"]
    assert deployer["volumes"] == [{"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"},
                                   {"type": "tmpfs", "target": "/tmp"}]
    assert deployer["environment"]["DEPLOY_SWARM_STACK"] == "rpa-engine"
    assert "DEPLOY_PROJECT_DIR" not in deployer["environment"]
    assert deployer["ports"] == [{"target": 9000, "published": 9000, "protocol": "tcp", "mode": "host"}]
    # Only the deployer holds the engine's socket.
    assert [n for n, spec in rendered["file"]["services"].items() if any(
        v.get("source") == "/var/run/docker.sock" for v in spec["volumes"])] == ["deployer"]
