"""Tag-targeted and check-mode runs against the converged server."""

from __future__ import annotations

import re

from conftest import executed_tasks, run_site

# Tagged always, like the roles' preflight: the inventory's shape, on the controller.
SHAPE_PLAY = "Check the inventory's shape before any host is contacted."


# One run selecting three roles' tags: only their plays run, and they change nothing. (Each tag alone is what
# the other modules run: --tags caddy in test_caddy, postgres in test_data_tier, redis in test_gate, backup in
# test_backup, app in test_app; `common` alone, with the stock strategy: test_stock_linear_strategy_still_works.)
TAGS = ("docker", "app", "caddy")


def test_tag_runs_select_their_roles_alone_and_change_nothing(server):
    proc, data = run_site("--tags", ",".join(TAGS))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Ansible itself tags fact gathering and every role's argument-spec
    # validation "always"; both only read.
    tasks = [t for t in executed_tasks(data, server["name"])
             if not t["skipped"] and t["task"] != "Gathering Facts"
             and "Validating arguments against arg spec" not in t["task"]]
    plays = {t["play"] for t in tasks}
    # The shape play's one task is skipped where the inventory's shape has no problem (one host: no tier groups).
    assert plays == {"Check the input of every role before anything changes.",
                     *(f"Apply the {tag} role." for tag in TAGS)}, plays
    assert data["stats"][server["name"]]["changed"] == 0


def test_check_diff_on_converged_server_reports_nothing(server):
    proc, data = run_site("--check", "--diff")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert data["stats"][server["name"]]["changed"] == 0
    assert data["stats"][server["name"]]["failures"] == 0


def test_stock_linear_strategy_still_works(server):
    """Mitogen is a speed-up, not a dependency: ANSIBLE_STRATEGY=linear (README, Production use)
    converges the same way over Ansible's own ssh connection. Also `--tags common` running alone."""
    proc, _ = run_site("--tags", "common", "-vvv", human=True,
                       env_extra={"ANSIBLE_STRATEGY": "ansible.builtin.linear"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    # Ansible's ssh plugin logs each command it runs at -vvv; Mitogen does not use it. Verbose lines go
    # to stdout or stderr (ANSIBLE_VERBOSE_TO_STDERR; CI's run had them on stderr): either counts.
    assert "SSH: EXEC" in proc.stdout + proc.stderr, "the run did not go through Ansible's own ssh connection"
    # Every play prints its banner; the ones that ran a task are those between banners with TASK lines.
    parts = re.split(r"^PLAY \[(.*)\] \*+$", proc.stdout, flags=re.MULTILINE)
    plays = {name for name, body in zip(parts[1::2], parts[2::2])
             if [t for t in re.findall(r"^TASK \[(.*)\] \*+$", body, re.MULTILINE)
                 if t != "Gathering Facts" and "Validating arguments against arg spec" not in t]}
    assert plays == {SHAPE_PLAY, "Check the input of every role before anything changes.",
                     "Apply the common role."}, plays
    recap = re.search(rf"^{re.escape(server['name'])}\s+:.*$", proc.stdout, re.MULTILINE)
    assert recap and " changed=0 " in recap.group(0) and " failed=0 " in recap.group(0), \
        recap.group(0) if recap else proc.stdout[-2000:]
