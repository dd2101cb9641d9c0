#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module rpa_stack: deploy a Swarm stack and gate on every service's update status."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpa_stack
short_description: Deploy a Docker Swarm stack and fail when an update is rolled back, paused or never converges
description:
  - Runs C(docker stack deploy --detach) with the Compose file on a Swarm manager, then polls every service of
    the stack (C(docker service inspect), C(docker inspect) of its tasks) until each has converged - its update,
    if this deploy started one, is C(completed) and as many tasks run its current spec as it wants.
  - C(docker service update --detach=false) exits 0 after Swarm rolled an update back, so this module never
    trusts an exit code - it reads C(UpdateStatus.State). An update since the deploy that is C(paused),
    C(rollback_started), C(rollback_paused) or C(rollback_completed) fails the module at once, naming the
    service, Swarm's message, the newest failed task's error and the service's last log lines.
  - Swarm itself rolls back (the Compose file's C(deploy.update_config.failure_action=rollback)); this module does
    not undo anything on its own.
  - C(changed) is true when a service was created or its spec changed (not its C(Version.Index), which every
    C(docker stack deploy) moves).
  - The pure logic lives in C(plugins/module_utils/rpa_swarm.py).
version_added: "1.1.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
options:
  name:
    description: The stack's name.
    type: str
    required: true
  compose_file:
    description: The Compose file on the manager (the same template that Compose uses on one host).
    type: path
    required: true
  with_registry_auth:
    description: Send the manager's registry credentials to the nodes, so they pull private images by digest.
    type: bool
    default: true
  prune:
    description: Remove the stack's services that the Compose file no longer names.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for every service to converge before failing.
    type: int
    default: 300
  poll_interval:
    description: Seconds between two observations of the stack.
    type: float
    default: 1.0
notes:
  - Check mode deploys nothing and reports, per service, what the deploy would change - created, removed (with
    I(prune)), or the fields that differ among image (as written in the Compose file), command, entrypoint,
    environment, the health check and the replica count. A change in any other field shows only when deployed.
  - Check mode reads the file through C(docker stack config) (interpolated), or with PyYAML where the CLI lacks
    that command; a file C(docker stack config) refuses fails the module with its reason.
"""

EXAMPLES = r"""
- name: Ensure the app tier runs the rendered stack and every update completed.
  rpa.engine.rpa_stack:
    name: rpa-engine
    compose_file: /opt/rpa-engine/docker-compose.yml
    timeout: 300
"""

RETURN = r"""
changed_services:
  description: Services created or whose spec changed.
  returned: success
  type: list
  elements: str
states:
  description: The verdict of each service at the end (converged, pending or failed, with its reason).
  returned: always
  type: dict
planned:
  description: In check mode, what the deploy would change, per service (see the notes).
  returned: check mode
  type: dict
"""

import json
import time

try:
    import yaml
    HAS_YAML = True
except ImportError:
    HAS_YAML = False

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rpa.engine.plugins.module_utils import rpa_swarm as rs


def docker(module, args, check_rc=True):
    rc, out, err = module.run_command(["docker"] + args)
    if check_rc and rc != 0:
        module.fail_json(msg="docker %s failed (exit %d): %s" % (" ".join(args[:3]), rc, (err or out).strip()))
    return rc, out, err


def observe(module, name):
    """(service inspects, {service id: its tasks}) of the stack."""
    _, out, _ = docker(module, ["stack", "services", "--quiet", name])
    ids = out.split()
    if not ids:
        return [], {}
    _, out, _ = docker(module, ["service", "inspect"] + ids)
    inspects = json.loads(out)
    _, out, _ = docker(module, ["stack", "ps", "--quiet", "--no-trunc", name])
    task_ids = out.split()
    tasks = []
    if task_ids:
        rc, out, err = docker(module, ["inspect"] + task_ids, check_rc=False)
        if rc != 0 and not rs.only_vanished(rc, err):
            module.fail_json(msg="docker inspect of the stack's tasks failed (exit %d): %s" % (rc, (err or out).strip()))
        # The tasks that still exist (a pruned one is no longer the service's concern).
        tasks = json.loads(out or "[]")
    by_service = {}
    for task in tasks:
        by_service.setdefault(task.get("ServiceID"), []).append(task)
    return inspects, by_service


def compose_services(module, compose_file):
    """The Compose file's services as `docker stack deploy` reads them: `docker stack config` interpolates
    and merges; the file itself (PyYAML, from the docker role's packages) only where the CLI lacks that command.
    A file the CLI refuses fails the module with the CLI's reason."""
    rc, out, err = module.run_command(["docker", "stack", "config", "--compose-file", compose_file])
    if rc != 0 and not rs.stack_config_unsupported(rc, err):
        module.fail_json(msg="docker stack config refused %s (exit %d): %s" % (compose_file, rc, (err or out).strip()))
    if rc != 0:
        with open(compose_file) as handle:
            out = handle.read()
    if not HAS_YAML:
        module.fail_json(msg="rpa_stack's check mode needs PyYAML on the manager (python3-yaml)")
    return (yaml.safe_load(out) or {}).get("services") or {}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            compose_file=dict(type="path", required=True),
            with_registry_auth=dict(type="bool", default=True),
            prune=dict(type="bool", default=False),
            timeout=dict(type="int", default=300),
            poll_interval=dict(type="float", default=1.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    before, _ = observe(module, p["name"])
    if module.check_mode:
        plan = rs.planned_changes(p["name"], compose_services(module, p["compose_file"]), before, p["prune"])
        before_text, after_text, summary = rs.render_plan(plan)
        module.exit_json(changed=bool(plan), changed_services=sorted(plan), planned=summary, states={},
                         diff={"before": before_text, "after": after_text})
    specs_before = rs.spec_fingerprints(before)
    # The engine's clock, not the controller's: UpdateStatus.StartedAt comes from the manager.
    deployed_at = time.time() - 1
    args = ["stack", "deploy", "--detach=true", "--compose-file", p["compose_file"]]
    if p["with_registry_auth"]:
        args.append("--with-registry-auth")
    if p["prune"]:
        args.append("--prune")
    docker(module, args + [p["name"]])

    deadline = time.monotonic() + p["timeout"]
    while True:
        inspects, tasks = observe(module, p["name"])
        verdicts = {i["Spec"]["Name"]: rs.assess(i, tasks.get(i["ID"], []), deployed_at) for i in inspects}
        verdict, reasons = rs.stack_verdict(verdicts)
        states = {service: {"verdict": v, "reason": r} for service, (v, r) in verdicts.items()}
        if verdict == "converged":
            changed = rs.changed_services(specs_before, rs.spec_fingerprints(inspects))
            module.exit_json(changed=bool(changed), changed_services=changed, states=states)
        if verdict == "failed":
            reports = []
            for i in inspects:
                if verdicts[i["Spec"]["Name"]][0] == "failed":
                    _, logs, _ = docker(module, ["service", "logs", "--no-trunc", "--tail", "20", i["ID"]],
                                        check_rc=False)
                    reports.append(rs.failure_report(i, tasks.get(i["ID"], []), logs))
            module.fail_json(msg="the stack %s did not converge:\n%s" % (p["name"], "\n\n".join(reports)),
                             states=states)
        if time.monotonic() > deadline:
            reports = []
            for i in inspects:
                verdict_of, reason = verdicts[i["Spec"]["Name"]]
                if verdict_of == "pending":
                    _, logs, _ = docker(module, ["service", "logs", "--no-trunc", "--tail", "20", i["ID"]],
                                        check_rc=False)
                    reports.append(rs.stuck_report(i, tasks.get(i["ID"], []), logs, reason))
            module.fail_json(msg="the stack %s did not converge within %ds:\n%s"
                             % (p["name"], p["timeout"], "\n\n".join(reports)), states=states)
        time.sleep(p["poll_interval"])


if __name__ == "__main__":
    main()
