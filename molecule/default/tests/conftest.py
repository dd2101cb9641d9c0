"""Helpers for the verify step: the server under test, run from the controller.

Testinfra's ``host`` fixture runs commands inside the simulated server over
SSH.  The helpers here do what an operator or an attacker outside the server
would do: open TCP connections to the server container's address (a
container this test run created) and run ansible-playbook against it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
TESTBED = ROOT / "testbed" / "testbed.py"


# Outside Molecule the same tests run against the `make demo` server:
#   pytest molecule/default/tests --hosts=all --ansible-inventory=inventory/demo --connection=ansible
DEMO = {"instance": "rpa-demo", "port": 2222, "identity_file": str(ROOT / ".testbed/ssh/id_ed25519")}


def instance_config() -> list[dict]:
    path = os.environ.get("MOLECULE_INSTANCE_CONFIG")
    if not path:
        return [DEMO]
    return yaml.safe_load(Path(path).read_text())


def inventory_path() -> Path:
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    return Path(ephemeral) / "inventory" if ephemeral else ROOT / "inventory" / "demo"


@pytest.fixture(scope="session")
def server() -> dict:
    """Name, SSH port and outside address of the (single) server under test."""
    inst = instance_config()[0]
    address = subprocess.run(
        ["docker", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", inst["instance"]],
        check=True, capture_output=True, text=True).stdout.strip()
    assert address, f"{inst['instance']} has no address on the controller's Docker bridge"
    return {"name": inst["instance"], "ssh_port": inst["port"], "address": address,
            "key": inst["identity_file"]}


def probe_tcp(address: str, port: int, timeout: float = 2.0) -> str:
    """'open' (handshake done), 'refused' (RST: reachable, nothing listens) or 'filtered' (dropped)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except (TimeoutError, socket.timeout):
        return "filtered"


def run_site(*args: str, check_json: bool = True) -> tuple[subprocess.CompletedProcess, dict]:
    """Run site.yml from the project root against Molecule's inventory, JSON output."""
    inventory = inventory_path()
    env = dict(os.environ,
               ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               # Replaces profile_tasks, whose report would corrupt the JSON on stdout.
               ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([shutil.which("ansible-playbook") or "ansible-playbook", "site.yml",
                           "-i", str(inventory), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    data = json.loads(proc.stdout) if check_json else {}
    return proc, data


def executed_tasks(data: dict, host: str) -> list[dict]:
    """Every task result for host in run order: play, task name, status, msg."""
    out = []
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            res = task.get("hosts", {}).get(host)
            if res is None:
                continue
            out.append({"play": play["play"]["name"], "task": task["task"]["name"],
                        "failed": bool(res.get("failed")), "changed": bool(res.get("changed")),
                        "skipped": bool(res.get("skipped")), "msg": str(res.get("msg", ""))})
    return out
