"""Shared paths for the unit tests (no Docker, no server needed)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for sub in ("test_plugins", "filter_plugins", "module_utils", "action_plugins", "lookup_plugins", "tools", "testbed",
            "roles/docker/files"):
    path = str(ROOT / sub)
    if path not in sys.path:
        sys.path.insert(0, path)
