"""Shared paths for the unit tests (no Docker, no server needed)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# collections/: the plugins are imported as the local collection's package
# (ansible_collections.rpa.engine.plugins...), the way Ansible itself loads them.
for sub in ("collections", "tools", "testbed", "roles/docker/files"):
    path = str(ROOT / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
