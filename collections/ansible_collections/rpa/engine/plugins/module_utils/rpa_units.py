# -*- coding: utf-8 -*-
"""Pure logic of the rpa_units module: which systemd units need enabling or starting.

``systemctl show -p Id,LoadState,ActiveState,UnitFileState UNIT...`` answers
for every unit at once; the module acts only on what that answer says is
not yet so. Unit-tested with systemd 257's real output (Debian 13).
"""

from __future__ import annotations

PROPERTIES = ("Id", "LoadState", "ActiveState", "UnitFileState")
# Unit file states in which `systemctl enable` has nothing to do: enabled, or
# not meant to be enabled (static, generated, an alias, enabled at runtime).
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "generated", "alias", "indirect")


class UnitError(Exception):
    """A unit that cannot be brought to the wanted state; the message says which and why."""


def parse_show(text, units):
    """``{unit: {property: value}}`` from `systemctl show` of units, in the order they were asked for.

    systemd separates the units' blocks with a blank line and answers in the
    order given; a unit it does not know still gets a block (LoadState=not-found).
    """
    blocks, current = [], {}
    for line in (text or "").splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        blocks.append(current)
    if len(blocks) != len(units):
        raise UnitError("systemctl show answered for %d units, asked for %d (%s)"
                        % (len(blocks), len(units), ", ".join(units)))
    return dict(zip(units, blocks))


def plan(states, started=True, enabled=True):
    """The systemctl actions (``[(verb, unit)]``) that bring every unit to the wanted state."""
    actions = []
    for unit, props in states.items():
        if props.get("LoadState") != "loaded":
            raise UnitError("unit %s is %s: install it before asking for it to run"
                            % (unit, props.get("LoadState") or "unknown"))
        if enabled and props.get("UnitFileState") not in ENABLED_STATES:
            actions.append(("enable", unit))
        if started and props.get("ActiveState") != "active":
            actions.append(("start", unit))
    return actions
