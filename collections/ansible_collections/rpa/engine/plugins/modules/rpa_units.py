#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module rpa_units: systemd units started and enabled at boot, judged from one `systemctl show`."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpa_units
short_description: Ensure systemd units are started and enabled, asking systemd once
description:
  - Reads the state of every unit with one C(systemctl show) and runs C(systemctl enable) or C(systemctl start)
    only for the units that need it. On a converged host that is the whole cost, where one
    C(ansible.builtin.systemd_service) task per unit costs several systemctl calls and a module run each.
  - Restarts and reloads stay with handlers (C(ansible.builtin.systemd_service)); this module never restarts.
  - A unit systemd does not know fails the task, naming it.
version_added: "1.1.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
options:
  units:
    description: Unit names (C(ssh), C(rpa-backup.timer)); without a suffix systemd reads C(.service).
    type: list
    elements: str
    required: true
  started:
    description: Ensure each unit is active (started now if it is not).
    type: bool
    default: true
  enabled:
    description: Ensure each unit is enabled at boot.
    type: bool
    default: true
  daemon_reload:
    description: Run C(systemctl daemon-reload) first (after a unit file changed).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports the units it would enable or start, and does nothing.
  diff_mode:
    support: none
    description: Nothing to show beyond the actions it returns.
"""

EXAMPLES = r"""
- name: Ensure the backup and drill timers are active and enabled at boot.
  rpa.engine.rpa_units:
    units: [rpa-backup.timer, rpa-backup-drill.timer]
"""

RETURN = r"""
actions:
  description: The systemctl actions taken (or, in check mode, that would be), as "verb unit".
  type: list
  elements: str
  returned: always
  sample: ["enable rpa-backup.timer", "start rpa-backup.timer"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rpa.engine.plugins.module_utils.rpa_units import PROPERTIES, UnitError, parse_show, plan


def main():
    module = AnsibleModule(
        argument_spec=dict(
            units=dict(type="list", elements="str", required=True),
            started=dict(type="bool", default=True),
            enabled=dict(type="bool", default=True),
            daemon_reload=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    systemctl = module.get_bin_path("systemctl", required=True)
    if p["daemon_reload"] and not module.check_mode:
        module.run_command([systemctl, "daemon-reload"], check_rc=True)
    cmd = [systemctl, "show", "-p", ",".join(PROPERTIES), "--"] + p["units"]
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg="systemctl show failed: %s" % err.strip(), cmd=" ".join(cmd), rc=rc, stdout=out, stderr=err)
    try:
        actions = plan(parse_show(out, p["units"]), started=p["started"], enabled=p["enabled"])
    except UnitError as exc:
        module.fail_json(msg=str(exc), stdout=out)
    done = ["%s %s" % action for action in actions]
    if not module.check_mode:
        for verb, unit in actions:
            rc, out, err = module.run_command([systemctl, verb, unit])
            if rc != 0:
                module.fail_json(msg="systemctl %s %s failed: %s" % (verb, unit, err.strip()), rc=rc,
                                 stdout=out, stderr=err, actions=done)
    module.exit_json(changed=bool(actions), actions=done)


if __name__ == "__main__":
    main()
