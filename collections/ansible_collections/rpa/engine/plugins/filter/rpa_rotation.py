"""Secret rotation in templates: the plan of a rotation, grace windows, what is due.

rpa_rotation_plan turns the catalogue (catalogue/secrets.yml) and the values
of one rotation into the steps playbooks/rotate-secrets.yml runs: which
role variables each step sets, which roles' `credentials` entry points then
apply them, and which probes each role's `verify` entry point runs. The
playbook stays generic; adding a secret is a catalogue entry plus its
owner's entry points.
"""

from __future__ import annotations

import time

from ansible_collections.rpa.engine.plugins.module_utils import rpa_vault

# Owners before the clients that use their secrets, the application last. A role missing here is left out
# of every step: patroni was, and a rotation of its logins renewed the vault's values alone.
ROLE_ORDER = ["postgres", "patroni", "redis", "monitoring", "caddy", "app"]


def rpa_previous_secret(previous, meta, name: str) -> str:
    """previous while rpa_secret_rotation[name].previous_until is in the future, else ''.

    After a rotation the app accepts the old JWT key (or deploy token) for one
    token lifetime; the first site.yml run after the window drops it.
    """
    if not previous or not rpa_vault.in_grace(meta, name, time.time()):
        return ""
    return previous


def rpa_rotation_due(names, meta, max_age_days) -> list:
    """The names never rotated or rotated more than max_age_days ago."""
    now = time.time()
    return [n for n in names if rpa_vault.due(meta, n, float(max_age_days), now)]


def rpa_rotation_in_window(names, catalogue, meta) -> list:
    """The names whose previous value is still within its window: a new rotation now would cut it short."""
    now = time.time()
    return [n for n in names if catalogue[n]["overlap"] == "window"
            and rpa_vault.in_grace(meta, catalogue[n]["vault_key"], now)]


def _ordered(roles) -> list:
    return [role for role in ROLE_ORDER if role in roles]


def rpa_rotation_plan(names, catalogue, current, pending, now_vars) -> dict:
    """The steps of rotating names.

    current / pending: {vault_key: value} before and after. now_vars: the
    role variables as they are now, for what a step must put back (a
    window's previous value, the application's Postgres login and its twin).

    Returns {set, rollback, finish: [{roles, vars}], verify, verify_finish:
    {role: [probe]}, vault, previous, grace, login}. A probe is {variable,
    value, expect: accepted|refused} (plus login and via for Postgres), for
    the verify entry point of the role that knows that variable.
    """
    set_vars, both, back, finish = {}, {}, {}, {}
    roles, both_roles, finish_roles = set(), set(), set()
    verify, verify_finish = {}, {}
    vault, previous, grace = {}, {}, {}
    login = {}

    def probe(role, target, **item):
        target.setdefault(role, []).append(item)

    for name in names:
        entry = catalogue[name]
        key, var, owner = entry["vault_key"], entry["variable"], entry["owner"]
        new, old = pending[key], current[key]
        consumers = entry.get("consumers") or {}
        overlap = entry["overlap"]
        roles |= {owner, *consumers}
        vault[key] = new
        owner_probe = {}
        if entry.get("login"):
            # Alternating logins: the new password goes to the other login.
            spec = entry["login"]
            old_login = now_vars[spec["variable"]]
            user = now_vars[spec["user"]]
            new_login = user + spec["twin_suffix"] if old_login == user else user
            login = {"vault_key": spec["vault_key"], "new": new_login, "old": old_login}
            vault[spec["vault_key"]] = new_login
            prev_login = spec["variable"] + "_previous"
            set_vars.update({spec["variable"]: new_login, prev_login: old_login})
            both.update({spec["variable"]: old_login, prev_login: new_login})
            back.update({spec["variable"]: old_login, prev_login: ""})
            finish.update({spec["variable"]: new_login, prev_login: ""})
            for role, cvar in (spec.get("consumers") or {}).items():
                set_vars[cvar], back[cvar] = new_login, old_login
            owner_probe = {"login": new_login}
        set_vars[var] = new
        back[var] = old
        for cvar in consumers.values():
            set_vars[cvar], back[cvar] = new, old
            for role, cv in consumers.items():
                if cv == cvar:
                    probe(role, verify, variable=cvar, value=new, expect="accepted")
        probe(owner, verify, variable=var, value=new, expect="accepted", **owner_probe)
        if overlap == "none":
            old_probe = {"login": login["old"]} if entry.get("login") else {}
            probe(owner, verify, variable=var, value=old, expect="refused", **old_probe)
        elif overlap == "window":
            set_vars[var + "_previous"] = old
            back[var + "_previous"] = now_vars.get(var + "_previous", "")
            probe(owner, verify, variable=var, value=old, expect="accepted")
            previous[key] = old
            grace[key] = int(entry["grace"])
        else:  # run: both values while the clients move, the old one refused from finish on
            set_vars[var + "_previous"] = old
            both.update({var: old, var + "_previous": new})
            back[var + "_previous"] = ""
            finish.update({var: new, var + "_previous": ""})
            both_roles.add(owner)
            finish_roles.add(owner)
            old_probe = {"login": login["old"]} if entry.get("login") else {}
            probe(owner, verify, variable=var, value=old, expect="accepted", **old_probe)
            probe(owner, verify_finish, variable=var, value=old, expect="refused", **old_probe)
    rollback = []
    if both_roles:
        # Both values again while every client moves back: nobody is locked out.
        rollback.append({"roles": _ordered(both_roles), "vars": dict(back, **both)})
    rollback.append({"roles": _ordered(roles - both_roles), "vars": back})
    if both_roles:
        rollback.append({"roles": _ordered(both_roles), "vars": back})
    return {
        "set": [{"roles": _ordered(roles), "vars": set_vars}],
        "rollback": rollback,
        "finish": [{"roles": _ordered(finish_roles), "vars": dict(set_vars, **finish)}] if finish_roles else [],
        "verify": {role: verify[role] for role in _ordered(verify)},
        "verify_finish": {role: verify_finish[role] for role in _ordered(verify_finish)},
        "vault": vault,
        "previous": previous,
        "grace": grace,
        "login": login,
    }


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_previous_secret": rpa_previous_secret, "rpa_rotation_due": rpa_rotation_due,
                "rpa_rotation_in_window": rpa_rotation_in_window, "rpa_rotation_plan": rpa_rotation_plan}
