"""playbooks/tasks/rotation-step.yml on several servers: each role's turn comes in the step's order for every
host, whichever host the role acts on. A real ansible-playbook run on two local hosts, with two stand-in roles
that write when they run: the owner on one host must finish before its client on the other starts (the
stack must not take Redis' new password before the redis_host's Redis accepts it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
- hosts: all
  gather_facts: false
  vars:
    __several: true
    __role_hosts: {owner: [h2], client: [h1]}
    __step: {roles: [owner, client], vars: {}}
  tasks:
    - ansible.builtin.include_tasks: %s/playbooks/tasks/rotation-step.yml
"""

ROLE_TASK = """
- ansible.builtin.shell: echo "start {role} {{{{ inventory_hostname }}}}" >> {log}; sleep 1; echo "end {role} {{{{ inventory_hostname }}}}" >> {log}
"""


def test_each_role_runs_on_its_hosts_in_the_steps_order(tmp_path):
    log = tmp_path / "log"
    for role in ("owner", "client"):
        tasks = tmp_path / "roles" / role / "tasks"
        tasks.mkdir(parents=True)
        (tasks / "credentials.yml").write_text(ROLE_TASK.format(role=role, log=log))
    (tmp_path / "play.yml").write_text(PLAYBOOK % ROOT)
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n" + "".join(f"    {h}: {{ansible_connection: local, ansible_python_interpreter: /usr/bin/python3}}\n"
                                    for h in ("h1", "h2")))
    # The project's strategy (ansible.cfg: Mitogen's linear), whose ordering is what the rotation gets.
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(tmp_path / "roles"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STRATEGY_PLUGINS=str(ROOT / "strategy_plugins"), ANSIBLE_STRATEGY="mitogen_linear")
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert log.read_text().split("\n")[:-1] == ["start owner h2", "end owner h2", "start client h1", "end client h1"]
