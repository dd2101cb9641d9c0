"""The secret catalogue (catalogue/secrets.yml), checked, as a lookup: lookup('rpa.engine.rpa_catalogue').

The roles' preflights read their secrets' strength from it, and
playbooks/rotate-secrets.yml everything a rotation needs. The file sits at a
fixed place in the repository, found from this plugin's own location, so
every playbook, inventory and Molecule scenario reads the same one.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: rpa_catalogue
short_description: The secret catalogue of this repository, checked
description:
  - Returns the mapping C(secrets) of C(catalogue/secrets.yml) (one entry per secret the vault holds),
    after checking every entry, so that a malformed entry - one without an owner, an unknown overlap,
    a generated length below its own minimum - fails the task that reads it, naming the entry.
  - Takes no terms. The environment variable C(RPA_SECRET_CATALOGUE) names another catalogue file instead
    (the tests' broken ones).
version_added: "1.1.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
"""

EXAMPLES = r"""
- name: Show which secrets the redis role owns.
  ansible.builtin.debug:
    msg: "{{ lookup('rpa.engine.rpa_catalogue') | dict2items | selectattr('value.owner', 'eq', 'redis') | map(attribute='key') }}"
"""

RETURN = r"""
_raw:
  description: The catalogue, one mapping per secret (vault_key, length, min_length, overlap, grace, owner,
    variable, consumers, demo, cluster).
  type: list
  elements: dict
"""

import os
from pathlib import Path

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

# This file is <repository>/collections/ansible_collections/rpa/engine/plugins/lookup/rpa_catalogue.py:
# the catalogue is the repository's, six directories up.
CATALOGUE = Path(__file__).resolve().parents[6] / "catalogue" / "secrets.yml"
ROLES = {"common", "docker", "postgres", "redis", "monitoring", "app", "caddy", "backup", "patroni"}
OVERLAPS = {"none", "run", "window"}
REQUIRED = ("vault_key", "length", "min_length", "overlap", "owner", "variable")


def problems(catalogue) -> list[str]:
    """What is wrong with the catalogue's entries; empty when every one is complete and consistent."""
    if not isinstance(catalogue, dict) or not isinstance(catalogue.get("secrets"), dict) or not catalogue["secrets"]:
        return ["the catalogue must be a mapping with a non-empty mapping `secrets`"]
    found, seen_keys = [], {}
    for name, entry in catalogue["secrets"].items():
        if not isinstance(entry, dict):
            found.append(f"{name}: must be a mapping")
            continue
        missing = [key for key in REQUIRED if entry.get(key) in (None, "")]
        if missing:
            found.append(f"{name}: has no {', '.join(missing)}")
            continue
        if entry["owner"] not in ROLES:
            found.append(f"{name}: owner {entry['owner']!r} is not a role of this repository")
        if not str(entry["vault_key"]).startswith("vault_"):
            found.append(f"{name}: vault_key {entry['vault_key']!r} must start with vault_")
        elif entry["vault_key"] in seen_keys:
            found.append(f"{name}: vault_key {entry['vault_key']} is also {seen_keys[entry['vault_key']]}'s")
        seen_keys[entry["vault_key"]] = name
        if entry["overlap"] not in OVERLAPS:
            found.append(f"{name}: overlap {entry['overlap']!r} is not one of {', '.join(sorted(OVERLAPS))}")
        if entry["overlap"] == "window" and not (isinstance(entry.get("grace"), int) and entry["grace"] > 0):
            found.append(f"{name}: overlap window needs grace, a number of seconds above 0")
        if entry["overlap"] != "window" and "grace" in entry:
            found.append(f"{name}: grace is for overlap window only")
        if not (isinstance(entry["length"], int) and isinstance(entry["min_length"], int)
                and 16 <= entry["length"] <= 256 and 1 <= entry["min_length"] <= entry["length"]):
            found.append(f"{name}: length must be 16..256 and min_length at most length")
        if "optional" in entry and not (isinstance(entry["optional"], str) and entry["optional"]):
            found.append(f"{name}: optional must say why the secret may be empty")
        if not all(isinstance(entry.get(flag, False), bool) for flag in ("printable", "demo")):
            found.append(f"{name}: printable and demo are true or false")
        if not isinstance(entry.get("cluster", False), bool):
            found.append(f"{name}: cluster is true or false")
        spec = entry.get("login")
        if spec is not None and not (isinstance(spec, dict) and all(spec.get(k) for k in
                                                                    ("variable", "user", "twin_suffix", "vault_key"))
                                     and entry["overlap"] == "run"):
            found.append(f"{name}: login needs variable, user, twin_suffix and vault_key, and overlap run")
        consumers = entry.get("consumers") or {}
        if not isinstance(consumers, dict) or any(role not in ROLES or role == entry["owner"] for role in consumers):
            found.append(f"{name}: consumers must map roles other than the owner to their variable")
    return found


def load(path: Path = CATALOGUE) -> dict:
    """The catalogue's `secrets`, or ValueError naming every problem."""
    try:
        catalogue = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    found = problems(catalogue)
    if found:
        raise ValueError(f"{path}: " + "; ".join(found))
    return catalogue["secrets"]


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError("rpa_catalogue takes no terms")
        try:
            return [load(Path(os.environ.get("RPA_SECRET_CATALOGUE") or CATALOGUE))]
        except ValueError as exc:
            raise AnsibleLookupError(str(exc)) from None
