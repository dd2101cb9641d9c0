#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Documentation of the rpa_vault_secret action plugin (plugins/action/rpa_vault_secret.py); it runs on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpa_vault_secret
short_description: Read a vault file's secrets, draw new values, and write them back re-encrypted
description:
  - The controller side of a secret rotation (C(playbooks/rotate-secrets.yml)). It runs on the controller,
    where the vault secrets given to C(ansible-playbook) (C(--vault-id), C(ANSIBLE_VAULT_IDENTITY_LIST)) are;
    a module on the managed host would never see them.
  - With I(state=pending) it decrypts the vault file at I(path), reads the current value of each of I(secrets)
    and draws a pending value for each (by the secret's policy, or the supplied value after checking it). The
    result holds secret values and is always censored, whatever the task's C(no_log) says.
  - With I(state=finish) it writes I(values) (and each of I(previous) as C(<name>_previous)) into the vault file,
    re-encrypted with the vault id the file had, atomically (temporary file, fsync, rename; the file's mode is
    kept), checks that the written file decrypts to what was meant, and records the rotation dates in
    I(meta_path). If anything after the vault's rename fails, the previous vault file is put back.
  - The secret values themselves come from C(plugins/module_utils/rpa_vault.py), shared with
    C(tools/demo_vault.py).
version_added: "1.1.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
options:
  state:
    description:
      - C(pending) reads the current values and draws the pending ones; C(finish) writes the new values back.
    type: str
    choices: [pending, finish]
    required: true
  path:
    description:
      - The vault file on the controller, encrypted with C(ansible-vault) (a whole-file vault, one top-level key
        per secret). Every secret named in I(secrets) or I(values) must already be in it.
    type: path
    required: true
  secrets:
    description:
      - With I(state=pending), the secrets to rotate, each a mapping with C(name) (the vault key) and either
        C(length) and C(alphabet) (C(alnum), C(hex) or C(urlsafe); a value drawn from the CSPRNG) or C(value)
        (a supplied value, checked against C(min_length), default 16).
    type: list
    elements: dict
  values:
    description: With I(state=finish), the new value of each vault key to write.
    type: dict
  previous:
    description:
      - With I(state=finish), values to keep as C(<name>_previous) in the vault (the previous value of a secret
        whose old value stays valid for a grace window).
    type: dict
  meta_path:
    description:
      - With I(state=finish), a plain YAML file (not secret) where C(rpa_secret_rotation) records when each
        rotated key was rotated and, for those in I(grace), until when its previous value is still accepted.
    type: path
  grace:
    description: With I(state=finish), seconds during which the previous value of a vault key stays valid.
    type: dict
attributes:
  check_mode:
    support: none
    description:
      - Not honoured - in check mode the plugin reads and writes the vault file as in a normal run. Do not run
        C(playbooks/rotate-secrets.yml) with C(--check).
  diff_mode:
    support: none
    description: Shows no difference; the values are secret.
notes:
  - Runs on the controller only; the playbook says so with C(delegate_to) C(localhost), for clarity.
  - Returns the names rotated, never the values (except I(state=pending)'s censored result).
"""

EXAMPLES = r"""
- name: Draw a new JWT signing key (the current one is read too).
  rpa.engine.rpa_vault_secret:
    state: pending
    path: "{{ rpa_vault_file }}"
    secrets:
      - {name: vault_jwt_secret, length: 48, alphabet: alnum}
  register: __rotation
  delegate_to: localhost
  no_log: true

- name: Write it back, keeping the old key valid for 30 minutes.
  rpa.engine.rpa_vault_secret:
    state: finish
    path: "{{ rpa_vault_file }}"
    meta_path: "{{ rpa_rotation_file }}"
    values: "{{ __rotation.pending }}"
    previous: "{{ __rotation.current }}"
    grace: {vault_jwt_secret: 1800}
  delegate_to: localhost
  no_log: true
"""

RETURN = r"""
current:
  description: With I(state=pending), the current value of each requested vault key.
  type: dict
  returned: state is pending
pending:
  description: With I(state=pending), the new value drawn (or supplied and checked) for each requested vault key.
  type: dict
  returned: state is pending
vault_id:
  description: The vault id the file is encrypted with (and re-encrypted with), or null for a file without one.
  type: str
  returned: success
  sample: prod
rotated:
  description: With I(state=finish), the vault keys written.
  type: list
  elements: str
  returned: state is finish
  sample: [vault_jwt_secret]
"""
