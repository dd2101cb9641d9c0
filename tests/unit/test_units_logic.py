"""rpa_units' decisions, from systemd 257's own `systemctl show` (Debian 13, captured in the test bed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.rpa.engine.plugins.module_utils import rpa_units as ru

SHOW = (Path(__file__).parent / "fixtures" / "systemctl_show_257.txt").read_text()
UNITS = ["ssh", "rpa-backup.timer", "rpa-backup.service", "no-such-unit", "systemd-journald", "getty@tty1"]


def states(*names):
    parsed = ru.parse_show(SHOW, UNITS)
    return {name: parsed[name] for name in names}


def test_blocks_follow_the_units_asked_for():
    parsed = ru.parse_show(SHOW, UNITS)
    assert parsed["rpa-backup.service"] == {"Id": "rpa-backup.service", "LoadState": "loaded",
                                            "ActiveState": "inactive", "UnitFileState": "static"}
    with pytest.raises(ru.UnitError, match="answered for 6 units, asked for 2"):
        ru.parse_show(SHOW, ["ssh", "rpa-backup.timer"])


def test_nothing_to_do_for_running_enabled_units():
    assert ru.plan(states("ssh", "rpa-backup.timer", "systemd-journald")) == []


def test_a_stopped_static_unit_is_started_not_enabled():
    assert ru.plan(states("rpa-backup.service")) == [("start", "rpa-backup.service")]
    assert ru.plan(states("rpa-backup.service"), started=False) == []


def test_a_disabled_stopped_unit_is_enabled_then_started():
    disabled = {"x": {"Id": "x.service", "LoadState": "loaded", "ActiveState": "failed", "UnitFileState": "disabled"}}
    assert ru.plan(disabled) == [("enable", "x"), ("start", "x")]


@pytest.mark.parametrize(("unit", "state"), [("no-such-unit", "not-found"), ("getty@tty1", "masked")])
def test_an_unknown_or_masked_unit_fails_naming_it(unit, state):
    with pytest.raises(ru.UnitError, match=f"unit {unit} is {state}"):
        ru.plan(states(unit))
