"""A restart of the whole server brings every service back, healthy, with its data."""

from __future__ import annotations

import subprocess
import time

from conftest import COMPOSE, cname, redis_cmd, ssh_argv, wait_every_service_healthy




def remote(server: dict, command: str) -> subprocess.CompletedProcess:
    """The server goes away in between: no connection shared with testinfra."""
    return subprocess.run(ssh_argv(server, command), capture_output=True, text=True, timeout=60)


def test_every_service_is_healthy_within_120_s_of_a_restart(host, server):
    services = host.check_output(f"{COMPOSE} config --services").split()
    assert len(services) >= 10, services
    host.check_output(redis_cmd("set", "rpa-test:reboot", "survived"))
    # A reload before the restart: it must not keep the service down afterwards
    # (`docker kill --signal` would have marked it as stopped by hand).
    host.check_output(f"docker exec {cname('prometheus')} sh -c 'kill -HUP 1'")
    host.check_output(f"docker exec {cname('pgbouncer')} sh -c 'kill -HUP 1'")

    start = time.monotonic()
    subprocess.run(["docker", "restart", server["name"]], check=True, capture_output=True, timeout=120)
    took, states = wait_every_service_healthy(server, 120, start)
    assert set(states.values()) == {"healthy"} and len(states) == len(services),\
        f"after {took:.0f}s: {states}"

    res = remote(server, redis_cmd("get", "rpa-test:reboot"))
    assert res.stdout.strip() == "survived", res.stdout + res.stderr
    remote(server, redis_cmd("del", "rpa-test:reboot"))
    for unit in ("docker", "rpa-firewall", "rpa-compose-watchdog", "rpa-backup.timer", "caddy"):
        assert remote(server, f"systemctl is-active {unit}").stdout.strip() == "active", unit
