"""Disaster recovery (issue 17), last of all: rows written through the app, the server killed outright, a fresh
bare server, and the one command (playbooks/recover.yml). bench/dr is the drill. Its first half (write, kill,
restart) ran in test_a_killed_server.py, first; the recovery has run in a thread (conftest's `disaster`) since.
This asserts the RPO (<= 60 s) and that the stack serves its data; in Molecule's verify, that the recovered
server passed the modules it ran meanwhile (conftest.RECOVERED_LANE, a pytest process of its own).

The recovered server is thrown away at the end, so the Swarm gate's test (issue 21) reuses it rather
than paying for a server of its own: a one-node swarm there changes nothing anyone else tests. Its
playbook ran in the thread, last."""

from __future__ import annotations

import json

import pytest

from conftest import DR_NAME, LANE, RECOVERED_LANE, RECOVERED_LOG

# The recovery takes about 3 minutes; the recovered server's lane about as long as this one.
OUTCOME_TIMEOUT = 2400


def thread_outcome(disaster, event: str = "done") -> dict:
    """The background thread's outcome, once it is through (it started in test_a_killed_server.py)."""
    assert disaster[event].wait(OUTCOME_TIMEOUT), f"the drill's thread was not through within {OUTCOME_TIMEOUT} s"
    assert "error" not in disaster["outcome"], disaster["outcome"]["error"]
    return disaster["outcome"]


def test_a_killed_server_is_rebuilt_by_one_command_with_its_data(disaster):
    figures = thread_outcome(disaster, "recovered")["figures"]
    assert figures["ok"], figures["output"]
    assert figures["archived_before_kill"], "the first write's WAL segment was not archived within 90 s of writing"
    print(f"\nDR drill: {figures['acked']} writes acknowledged before the kill, {figures['present']} recovered, "
          f"RPO {figures['rpo']:.1f} s, RTO {figures['rto']:.1f} s (beside other tests)")
    assert figures["acked"] >= 20, figures
    assert not figures["gaps"], f"acknowledged writes missing before the newest recovered one: {figures['gaps']}"
    assert figures["rpo"] is not None and figures["rpo"] <= 60, figures


def test_the_recovered_server_passes_the_modules_of_its_lane(disaster):
    """Molecule's verify only (RPA_VERIFY_LANE=main): the second pytest process's exit code and, on failure, its
    output's end (all of it: .cache/reports/molecule-recovered.log; its tests count in the summary too)."""
    if LANE != "main":
        pytest.skip(f"no second lane: {', '.join(RECOVERED_LANE)} ran on this server, in line")
    result = thread_outcome(disaster)
    assert result["figures"]["ok"], "no recovered server to run on: " + result["figures"].get("output", "")[-500:]
    log = RECOVERED_LOG.read_text() if RECOVERED_LOG.exists() else "(no log)"
    assert result["lane"] == 0, f"the recovered server's lane exited {result['lane']}:\n{log[-6000:]}"
    print("\n" + "\n".join(log.splitlines()[-14:]))


def test_the_swarm_gate_fails_an_update_that_swarm_rolled_back(disaster):
    """rpa_stack on a real one-node swarm, one playbook run (after the docker role turned live-restore off by a
    reload, as a Swarm shape's inventory has it): a stack that converges, the same deploy again
    (no change), an update whose health check fails planned in check mode (nothing deployed) and then
    deployed - Swarm rolls it back, and the gate fails naming the service and the task, where `docker
    service update --detach=false` would have exited 0."""
    result = thread_outcome(disaster)
    assert result["figures"]["ok"], "no recovered server to run on: " + result["figures"].get("output", "")[-500:]
    proc, data = result["swarm_gate"]
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
