"""Disaster recovery (issue 17), last of all because it kills the server under test: rows written through
the app, the server killed outright, a fresh bare server, and the one command (playbooks/recover.yml).
bench/dr is the drill; this runs it and asserts the RPO (<= 60 s) and that the stack serves its data.

The recovered server is thrown away at the end, so the Swarm gate's test (issue 21) reuses it rather
than paying for a server of its own: a one-node swarm there changes nothing anyone else tests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, TESTBED, bench, inventory_path, run_playbook

DR_NAME = "rpa-recovered"
DR_SSH_PORT = 2231
SSH_KEY = ROOT / ".testbed" / "ssh" / "id_ed25519"


@pytest.fixture(scope="module")
def recovered(server):
    def run_recover(inventory, *extra):
        proc, _ = run_playbook("playbooks/recover.yml", *extra, check_json=False, human=True, inventory=inventory)
        return proc.returncode, proc.stdout + proc.stderr

    try:
        yield bench("dr").drill(source=server["name"], inventory=inventory_path(), name=DR_NAME,
                                ssh_port=DR_SSH_PORT, http_port=8891, port=8451, run_recover=run_recover,
                                ssh_key=SSH_KEY, write_seconds=8, keep=True)
    finally:
        subprocess.run([sys.executable, str(TESTBED), "down", DR_NAME], capture_output=True)


def test_a_killed_server_is_rebuilt_by_one_command_with_its_data(recovered):
    figures = recovered
    assert figures["ok"], figures["output"]
    assert figures["archived_before_kill"], "the first write's WAL segment was not archived within 90 s of writing"
    print(f"\nDR drill: {figures['acked']} writes acknowledged before the kill, {figures['present']} recovered, "
          f"RPO {figures['rpo']:.1f} s, RTO {figures['rto']:.1f} s")
    assert figures["acked"] >= 20, figures
    assert not figures["gaps"], f"acknowledged writes missing before the newest recovered one: {figures['gaps']}"
    assert figures["rpo"] is not None and figures["rpo"] <= 60, figures


def test_the_swarm_gate_fails_an_update_that_swarm_rolled_back(recovered, tmp_path):
    """rpa_stack on a real one-node swarm, one playbook run (after the docker role turned live-restore off by a
    reload, as a Swarm shape's inventory has it): a stack that converges, the same deploy again
    (no change), an update whose health check fails planned in check mode (nothing deployed) and then
    deployed - Swarm rolls it back, and the gate fails naming the service and the task, where `docker
    service update --detach=false` would have exited 0."""
    assert recovered["ok"], "no recovered server to run on: " + recovered.get("output", "")[-500:]
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {DR_NAME: {
        "ansible_host": "127.0.0.1", "ansible_port": DR_SSH_PORT, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(SSH_KEY),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        # Mitogen checks host keys by this variable, not by the ssh options (the test bed sets it in group_vars).
        "ansible_host_key_checking": False,
    }}}}))
    proc, data = run_playbook("molecule/default/tests/files/swarm_gate.yml", inventory=tmp_path / "hosts.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    tasks = {t["task"]["name"]: t["hosts"][DR_NAME] for play in data["plays"] for t in play["tasks"]}
    outcome = tasks["Report the outcomes."]["msg"]
    # The docker role turned live-restore off by a reload: the same engine process, no container restarted.
    assert outcome["engine"]["live_restore"] == "false" and outcome["engine"]["before"] == outcome["engine"]["after"], \
        outcome["engine"]
    assert outcome["first"] == {"changed": True, "changed_services": ["gate_web"]}, outcome
    assert outcome["again"] == {"changed": False, "changed_services": []}, outcome
    # Check mode names the one field that differs, before and after, and deploys nothing.
    assert outcome["plan"] == {"changed": True, "planned": {"gate_web": [
        'healthcheck.test: ["CMD-SHELL", "redis-cli ping"] -> ["CMD-SHELL", "exit 1"]']}}, outcome
    assert outcome["health_after_plan"] == ["CMD-SHELL", "redis-cli ping"], outcome
    bad = outcome["bad"]
    assert bad["failed"], outcome
    assert "service gate_web: the update failed and Swarm" in bad["msg"], bad["msg"]
    assert "failed it: state " in bad["msg"] and "health check: CMD-SHELL exit 1" in bad["msg"], bad["msg"]
    assert "last log lines:" in bad["msg"], bad["msg"]
    # What the gate saw is what Swarm says: an update rolled back (or rolling back), not completed.
    assert outcome["update_status"]["State"] in ("rollback_started", "rollback_completed"), outcome
    print("\nSwarm gate's failure message:\n" + json.dumps(bad["msg"])[:1500])
