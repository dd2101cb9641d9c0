"""The firewall, proven from outside the server.

Inside the server the test starts listeners that a careless setup would
expose: a host process on 0.0.0.0:9999 and nested containers published on
0.0.0.0 (9998, not allowed; 80, allowed).  From the controller, through the
server container's own address, only 22, 80 and 443 may answer.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import TESTBED, probe_from_outside

ALLOWED = {22, 80, 443}
PROBE_IMAGE = "rpa-testbed/http-probe:latest"


def wait_listening(host, port: int) -> None:
    for _ in range(30):
        if host.run(f"ss -Hltn 'sport = :{port}'").stdout.strip():
            return
        time.sleep(0.5)
    pytest.fail(f"nothing listens on :{port} inside the server")


@pytest.fixture(scope="module")
def exposed_listeners(host, server):
    subprocess.run([sys.executable, str(TESTBED), "load-images", server["name"], PROBE_IMAGE],
                   check=True, timeout=300)
    host.run("docker rm -f fw-probe-open fw-probe-closed; systemctl stop fw-probe-host")
    # Port 80 is Caddy's; the probe needs it for a while to be a Docker-published allowed port.
    host.check_output("systemctl stop caddy")
    host.check_output(f"docker run -d --name fw-probe-open -p 0.0.0.0:80:8000 {PROBE_IMAGE}")
    host.check_output(f"docker run -d --name fw-probe-closed -p 0.0.0.0:9998:8000 {PROBE_IMAGE}")
    host.check_output("systemd-run --unit fw-probe-host python3 -m http.server --bind 0.0.0.0 9999")
    for port in (80, 9998, 9999):
        wait_listening(host, port)
    yield
    host.run("docker rm -f fw-probe-open fw-probe-closed")
    host.run("systemctl stop fw-probe-host")
    host.check_output("systemctl start caddy")


def test_firewall_unit_is_active_and_enabled(host):
    svc = host.service("rpa-firewall")
    assert svc.is_enabled
    assert host.check_output("systemctl is-active rpa-firewall") == "active"


def test_firewall_input_policy_is_drop(host):
    table = host.check_output("nft list table inet rpa_firewall")
    assert "hook input priority filter; policy drop;" in table


def test_caddy_metrics_port_is_closed_from_outside_while_caddy_listens_on_it(host, server):
    """Port 2020 (Caddy's metrics) listens on every address; only the firewall keeps the outside away."""
    listeners = [line.split()[3] for line in host.check_output("ss -Hltn 'sport = :2020'").splitlines()]
    assert any(not addr.startswith(("127.", "[::1]")) for addr in listeners), listeners
    assert host.run("curl -fsS -o /dev/null http://127.0.0.1:2020/metrics").rc == 0  # Caddy serves it
    assert probe_from_outside(server["address"], [443, 2020]) == {443: "open", 2020: "filtered"}


def test_exposed_host_port_is_dropped_from_outside(host, server, exposed_listeners):
    assert probe_from_outside(server["address"], [9999]) == {9999: "filtered"}
    # ...while the same listener still works from inside the server.
    assert host.run("python3 -c \"import urllib.request;"
                    "urllib.request.urlopen('http://127.0.0.1:9999/', timeout=5)\"").rc == 0


def test_docker_published_port_is_dropped_unless_allowed(server, exposed_listeners):
    assert probe_from_outside(server["address"], [9998]) == {9998: "filtered"}
    with urllib.request.urlopen(f"http://{server['address']}:80/", timeout=5) as resp:
        assert resp.status == 200


def test_only_ssh_http_https_answer_from_outside(host, server, exposed_listeners):
    listening = set()
    for line in host.check_output("ss -Hltn").splitlines():
        local = line.split()[3]
        addr, _, port = local.rpartition(":")
        if not addr.startswith(("127.", "[::1]")):
            listening.add(int(port))
    assert {9998, 9999} <= listening  # the probes are really there
    answered = {port for port, state in probe_from_outside(server["address"], sorted(listening | ALLOWED)).items()
                if state == "open"}
    assert answered <= ALLOWED
    assert 22 in answered
