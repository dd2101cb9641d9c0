#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module rpa_preflight_facts: the host-side facts the roles' preflights check, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpa_preflight_facts
short_description: Read what the roles' input checks need to know about the host, in one call
description:
  - A role's preflight checks its input before anything changes. Some checks need the host's answer - does
    a user exist and have an C(authorized_keys) file, does systemd accept a calendar expression, can a
    directory be created and written. This module answers all of them in one call and changes nothing;
    the role's C(rpa_checks) task then judges the answers and names the variable at fault.
version_added: "1.1.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
options:
  users:
    description: User names to look up in the password database, with the size of their C(~/.ssh/authorized_keys).
    type: list
    elements: str
    default: []
  calendars:
    description: systemd C(OnCalendar) expressions to check with C(systemd-analyze calendar).
    type: list
    elements: str
    default: []
  writable_dirs:
    description:
      - Directories that must exist or be creatable, on a writable file system. Judged by the nearest
        existing ancestor of each. Results are keyed by the path exactly as given.
    type: list
    elements: str
    default: []
  ssh_algorithms:
    description:
      - Also list the key exchanges, ciphers and MACs this host's OpenSSH knows (C(ssh -Q kex|cipher|mac);
        the client and the server of one OpenSSH build know the same names).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
"""

EXAMPLES = r"""
- name: Read what the backup role's checks need to know about the host.
  rpa.engine.rpa_preflight_facts:
    calendars: ["*-*-* 03:15:00", "Sun *-*-* 04:30:00"]
    writable_dirs: [/var/backups/rpa-engine]
  register: __backup_host
"""

RETURN = r"""
users:
  description: Per user name - exists, home, uid, authorized_keys (path) and authorized_keys_size (-1 when missing).
  type: dict
  returned: always
  sample: {"root": {"exists": true, "home": "/root", "uid": 0, "authorized_keys": "/root/.ssh/authorized_keys",
           "authorized_keys_size": 96}}
calendars:
  description: Per expression - valid, normalized (systemd's form) and error (systemd's message when invalid).
  type: dict
  returned: always
dirs:
  description: Per directory - ancestor (nearest existing path), is_dir, read_only, writable and problem (empty when fine).
  type: dict
  returned: always
ssh:
  description: With O(ssh_algorithms), per kind (kex, cipher, mac) the names this OpenSSH knows; empty lists otherwise.
  type: dict
  returned: always
  sample: {"kex": ["curve25519-sha256", "sntrup761x25519-sha512@openssh.com"], "cipher": ["aes128-gcm@openssh.com"],
           "mac": ["hmac-sha2-256-etm@openssh.com"]}
"""

import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rpa.engine.plugins.module_utils.rpa_preflight import (
    SSH_QUERIES, calendar_verdict, dir_verdict, ssh_algorithms, user_verdict)


def lookup_user(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return user_verdict(None, None)
    try:
        keys_stat = os.stat(os.path.join(entry.pw_dir, ".ssh", "authorized_keys"))
    except OSError:
        keys_stat = None
    return user_verdict(entry, keys_stat)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            users=dict(type="list", elements="str", default=[]),
            calendars=dict(type="list", elements="str", default=[]),
            writable_dirs=dict(type="list", elements="str", default=[]),
            ssh_algorithms=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    calendars = {}
    if p["calendars"]:
        analyze = module.get_bin_path("systemd-analyze", required=True)
        for expression in p["calendars"]:
            rc, out, err = module.run_command([analyze, "calendar", expression])
            calendars[expression] = calendar_verdict(rc, out, err)
    ssh = dict((kind, []) for kind in SSH_QUERIES)
    if p["ssh_algorithms"]:
        ssh_bin = module.get_bin_path("ssh", required=True)
        for kind in SSH_QUERIES:
            rc, out, dummy = module.run_command([ssh_bin, "-Q", kind])
            ssh[kind] = ssh_algorithms(rc, out)
    module.exit_json(
        changed=False,
        ssh=ssh,
        users=dict((name, lookup_user(name)) for name in p["users"]),
        calendars=calendars,
        dirs=dict((path, dir_verdict(path)) for path in p["writable_dirs"]),
    )


if __name__ == "__main__":
    main()
