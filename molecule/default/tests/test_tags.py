"""Tag-targeted and check-mode runs against the converged server."""

from __future__ import annotations

import pytest

from conftest import executed_tasks, run_site


@pytest.mark.parametrize("tag", ["common", "docker", "app", "caddy"])
def test_tag_runs_alone_and_changes_nothing(server, tag):
    proc, data = run_site("--tags", tag)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Ansible itself tags fact gathering and every role's argument-spec
    # validation "always"; both only read.
    tasks = [t for t in executed_tasks(data, server["name"])
             if not t["skipped"] and t["task"] != "Gathering Facts"
             and "Validating arguments against arg spec" not in t["task"]]
    plays = {t["play"] for t in tasks}
    assert plays == {"Check the input of every role before anything changes.",
                     f"Apply the {tag} role."}
    assert data["stats"][server["name"]]["changed"] == 0


def test_check_diff_on_converged_server_reports_nothing(server):
    proc, data = run_site("--check", "--diff")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert data["stats"][server["name"]]["changed"] == 0
    assert data["stats"][server["name"]]["failures"] == 0
