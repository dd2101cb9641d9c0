"""The split scenario's tests use the scale-out scenario's helpers: the same test bed, servers reached over SSH
with its key, and this scenario's copy of Molecule's vault (by MOLECULE_SCENARIO_NAME)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "scaleout_helpers", Path(__file__).resolve().parents[2] / "scaleout" / "tests" / "conftest.py")
scaleout_helpers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(scaleout_helpers)
sys.modules["scaleout_helpers"] = scaleout_helpers
