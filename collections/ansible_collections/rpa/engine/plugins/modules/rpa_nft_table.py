#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module rpa_nft_table: the live nftables table is the one its file makes, or the file is loaded again."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpa_nft_table
short_description: Ensure a live nftables table still says what its file says, and load the file where it does not
description:
  - A file that did not change says nothing about the live table. A rule added by hand, a rule deleted, or a
    table flushed by another tool leaves the file as it was, so a task that only writes the file reports no
    change while the host runs another firewall. This module compares the table itself.
  - It loads the file into a throwaway network namespace and lists the table there and live, both with
    C(nft -s list table) (stateless), so nft writes both sides in its own form. The members a dynamic set
    learned from traffic (a rate limiter's sources) are state and are not compared.
  - Where they differ it loads the file (C(nft -f), which must replace the table in one transaction), reads
    the live table again and fails if it still differs. The diff shows the drift it undid.
  - The pure logic lives in C(plugins/module_utils/rpa_nft.py).
version_added: "1.1.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
options:
  path:
    description: The nft file that declares, deletes and rebuilds the table in one transaction.
    type: path
    required: true
  family:
    description: The table's family.
    type: str
    default: inet
  table:
    description: The table's name.
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Compares (the namespace is created and removed) and reports the drift without loading the file.
  diff_mode:
    support: full
    description: The drift as a unified diff of the listings.
notes:
  - Needs C(nft) and C(ip) (iproute2) on the host, and the right to create a network namespace (root).
"""

EXAMPLES = r"""
- name: Ensure the live firewall is the one its file makes.
  rpa.engine.rpa_nft_table:
    path: /etc/rpa-firewall.nft
    table: rpa_firewall
"""

RETURN = r"""
drift:
  description: The differing lines, from the file's table to the live one (unified diff); empty when none.
  type: list
  elements: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rpa.engine.plugins.module_utils import rpa_nft


def listing(module, prefix, family, table):
    rc, out, _ = module.run_command(prefix + ["nft", "-s", "list", "table", family, table])
    return out if rc == 0 else ""  # no such table: everything the file says is missing


def from_file(module, path, family, table):
    """The table as nft lists it after loading the file into a network namespace of its own."""
    namespace = "rpa-nft-check-%d" % os.getpid()
    rc, out, err = module.run_command(["ip", "netns", "add", namespace])
    if rc != 0:
        module.fail_json(msg="could not create a network namespace to read %s in: %s" % (path, (err or out).strip()))
    try:
        prefix = ["ip", "netns", "exec", namespace]
        rc, out, err = module.run_command(prefix + ["nft", "-f", path])
        if rc != 0:
            module.fail_json(msg="nft refused %s: %s" % (path, (err or out).strip()))
        return listing(module, prefix, family, table)
    finally:
        module.run_command(["ip", "netns", "delete", namespace])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            family=dict(type="str", default="inet"),
            table=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode and not os.path.exists(p["path"]):
        # The task before it would write the file; without it there is nothing to compare yet.
        module.exit_json(changed=True, drift=[], msg="%s does not exist yet" % p["path"])
    expected = from_file(module, p["path"], p["family"], p["table"])
    if not rpa_nft.normalize(expected):
        module.fail_json(msg="%s makes no table %s %s" % (p["path"], p["family"], p["table"]))
    live = listing(module, [], p["family"], p["table"])
    lines = rpa_nft.drift(live, expected)
    if not lines:
        module.exit_json(changed=False, drift=[])
    diff = {"before": "\n".join(rpa_nft.normalize(live)) + "\n", "after": "\n".join(rpa_nft.normalize(expected)) + "\n",
            "before_header": "live table", "after_header": p["path"]}
    if module.check_mode:
        module.exit_json(changed=True, drift=lines, diff=diff)
    rc, out, err = module.run_command(["nft", "-f", p["path"]])
    if rc != 0:
        module.fail_json(msg="nft could not load %s: %s" % (p["path"], (err or out).strip()), drift=lines)
    still = rpa_nft.drift(listing(module, [], p["family"], p["table"]), expected)
    if still:
        module.fail_json(msg="%s was loaded, but the live table still differs from it: something else rewrites it"
                         % p["path"], drift=still)
    module.exit_json(changed=True, drift=lines, diff=diff)


if __name__ == "__main__":
    main()
