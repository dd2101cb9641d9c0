"""The firewall, proven from outside the server.

Inside the server the test starts listeners that a careless setup would
expose: a host process on 0.0.0.0:9999 and nested containers published on
0.0.0.0 (9998, not allowed; 80, allowed).  From the controller, through the
server container's own address, only 22, 80 and 443 may answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import TESTBED, probe_from_outside, probe_tcp

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


def test_caddy_metrics_listen_on_the_docker_bridge_only_and_the_outside_is_kept_away(host, server):
    """Port 2020 (Caddy's metrics) is bound to docker0's address alone, and the firewall drops the outside."""
    bridge = json.loads(host.check_output("ip -json -4 address show dev docker0"))[0]["addr_info"][0]["local"]
    listeners = [line.split()[3] for line in host.check_output("ss -Hltn 'sport = :2020'").splitlines()]
    assert listeners == [f"{bridge}:2020"], listeners
    assert host.run(f"curl -fsS -o /dev/null http://{bridge}:2020/metrics").rc == 0  # Caddy serves it there
    assert host.run("curl -sS -o /dev/null http://127.0.0.1:2020/metrics").rc == 7  # and nowhere else
    assert probe_from_outside(server["address"], [443, 2020]) == {443: "open", 2020: "filtered"}


def test_caddy_admin_api_is_a_unix_socket_and_reloads_still_work(host):
    assert host.check_output("ss -Hltn 'sport = :2019'") == ""
    sock = host.file("/run/caddy/admin.sock")
    assert sock.is_socket and (sock.user, sock.group) == ("caddy", "caddy")
    assert host.file("/run/caddy").mode == 0o750
    # Caddy's admin API takes an empty Host on its unix socket, as `caddy reload` sends it.
    assert host.run("curl -fsS --unix-socket /run/caddy/admin.sock -H 'Host;' http://localhost/config/ -o /dev/null").rc == 0
    pid = host.check_output("systemctl show -p MainPID --value caddy")
    assert host.run("systemctl reload caddy").rc == 0  # caddy reload, through the socket
    assert host.check_output("systemctl show -p MainPID --value caddy") == pid  # graceful: the same process


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


SSH_FLOOD = r"""
import socket, sys, time
address, attempts = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(attempts):  # one SYN each, back to back; closed before any retransmission
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((address, 22))
    socks.append(s)
time.sleep(0.8)
for s in socks:
    s.close()
"""


def ssh_limit_drops(host) -> tuple[int, int]:
    """The rate-limit rule's burst and the packets its counter has dropped."""
    rule = next(line for line in host.check_output("nft list chain inet rpa_firewall input").splitlines()
                if "@ssh_rate_v4" in line)
    burst = int(rule.split(" burst ")[1].split()[0])
    return burst, int(rule.split(" counter packets ")[1].split()[0])


def test_new_ssh_connections_are_rate_limited_per_source(host, server):
    """A client of its own (a container the test starts beside the server) sends new SSH connections
    back to back: the rule drops those after the burst, while the controller still gets in."""
    host.check_output("nft flush set inet rpa_firewall ssh_rate_v4")  # every source starts with a full bucket
    burst, before = ssh_limit_drops(host)
    extra = 40
    subprocess.run(["docker", "run", "--rm", PROBE_IMAGE, "python3", "-c", SSH_FLOOD, server["address"],
                    str(burst + extra)], capture_output=True, text=True, timeout=120, check=True)
    dropped = ssh_limit_drops(host)[1] - before
    print(f"SSH rate limit: burst {burst}; {burst + extra} new connections from one source, {dropped} dropped")
    # The bucket refills at the rate (30/minute) while the SYNs go out, so one or two fewer may drop.
    assert extra - 3 <= dropped <= extra, dropped
    assert probe_tcp(server["address"], 22) == "open"  # another source: its own bucket
