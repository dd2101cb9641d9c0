"""Rotation metadata in templates: a previous secret is passed on only during its grace window."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "module_utils"))
import rpa_vault  # noqa: E402


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


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_previous_secret": rpa_previous_secret, "rpa_rotation_due": rpa_rotation_due}
