"""The one Compose project (rpa_project_name): its files, its invariants, the deployer's command."""

from __future__ import annotations

import json

import pytest

from conftest import COMPOSE, PROJECT, PROJECT_DIR, cname

# A CX22 has 4 GB; the host, Caddy and the page cache need the rest.
MEMORY_BUDGET = 3 * 1024**3


@pytest.fixture(scope="module")
def config(host) -> dict:
    return json.loads(host.check_output(f"{COMPOSE} config --format json"))


def test_project_files_are_root_owned_and_env_is_0600(host):
    env = host.file(f"{PROJECT_DIR}/.env")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    compose = host.file(f"{PROJECT_DIR}/docker-compose.yml")
    assert compose.user == "root" and compose.mode & 0o007 == 0
    assert host.file(PROJECT_DIR).mode == 0o750


def test_project_is_valid_and_named(host, config):
    assert config["name"] == PROJECT
    assert host.run(f"{COMPOSE} config --quiet").rc == 0


def test_every_service_is_hardened_and_bounded(config):
    total = 0
    intervals = []
    for name, svc in config["services"].items():
        assert svc.get("restart") in ("unless-stopped", "always"), name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        # A starting container is probed every few seconds, not after a whole interval.
        assert svc["healthcheck"].get("start_interval") in ("2s", "3s"), (name, svc["healthcheck"])
        # A running one: the test inventory's *_healthcheck_interval (20 s), or a service's own longer one.
        assert svc["healthcheck"].get("interval") in ("15s", "20s", "30s"), (name, svc["healthcheck"])
        intervals.append(svc["healthcheck"]["interval"])
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert svc.get("mem_limit"), f"{name} has no memory limit"
        total += int(svc["mem_limit"])
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    assert total <= MEMORY_BUDGET, f"memory limits add up to {total / 1024**3:.2f} GiB"
    # The four roles' variables reached their 13 services (app 4, postgres 2, redis 1, monitoring 6).
    assert intervals.count("20s") == 13, intervals


def test_deployer_command_works_for_every_service_without_recreating(host, config):
    """The invariant the deployer depends on: `up -d SERVICE` with the project's own files."""
    for service in sorted(config["services"]):
        before = host.check_output(f"docker inspect --format '{{{{.Id}}}}' {cname(service)}")
        res = host.run(f"{COMPOSE} up -d {service}")
        assert res.rc == 0, f"{service}: {res.stderr}"
        after = host.check_output(f"docker inspect --format '{{{{.Id}}}}' {cname(service)}")
        assert before == after, f"{service} was recreated by a no-op up"
