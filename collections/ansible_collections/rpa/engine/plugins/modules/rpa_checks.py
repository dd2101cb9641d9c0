#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of the rpa_checks action plugin (plugins/action/rpa_checks.py); it runs on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpa_checks
short_description: Judge many input checks in one task and report every failed one
description:
  - A role's preflight as one task. Each check is a verdict (C(that), the result of a Jinja test that
    Ansible has already templated) and the message that names the variable and the fix (C(msg)).
  - The task fails when any verdict is false, with the messages of all failed checks, so an operator
    with several bad values learns of every one in one run. Passed checks print nothing.
  - Runs on the controller only (an action plugin); it touches no host. The result carries only the
    messages of failed checks, never the arguments, so a check on a secret's length or characters
    prints nothing of the secret.
version_added: "1.1.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
options:
  checks:
    description:
      - The checks, each a mapping with exactly C(that) (a boolean) and C(msg) (a string). At least one of
        I(checks) and I(catalogue_owner) is needed.
      - A C(that) that is not a boolean is a mistake in the role, and fails the task saying which check.
    type: list
    elements: dict
  catalogue_owner:
    description:
      - A role name. Adds one check per secret the secret catalogue (C(catalogue/secrets.yml)) says this role
        owns - its variable must hold at least the entry's C(min_length) characters, no single quote or newline
        (a Compose C(.env) holds it literally), printable ASCII without spaces where the entry says C(printable),
        and not the examples' C(CHANGE-ME) placeholder; empty only where the entry says C(optional).
      - The messages name the variable and the vault key to set, never the value.
    type: str
  warnings:
    description:
      - Checks of the same shape as I(checks) whose failure is reported as an Ansible warning (a
        C([WARNING]) line) instead of failing the task; for safe defaults the operator should still hear of.
    type: list
    elements: dict
attributes:
  check_mode:
    support: full
    description: Only judges values; the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
"""

EXAMPLES = r"""
- name: Ensure the redis role's input is valid.
  rpa.engine.rpa_checks:
    checks:
      - that: "{{ redis_maxmemory is match('^[0-9]+([kKmMgG][bB]?)$') }}"
        msg: "redis_maxmemory={{ redis_maxmemory | to_json }} must look like \"256mb\" or \"1gb\"."
      - that: "{{ redis_gate_timeout | int in range(10, 901) }}"
        msg: "redis_gate_timeout={{ redis_gate_timeout }} must be from 10 to 900 seconds."
"""

RETURN = r"""
checked:
  description: How many checks were judged.
  type: int
  returned: always
failed_checks:
  description: The messages of the checks that failed, in order.
  type: list
  elements: str
  returned: failure
"""
