"""tools/leftovers.py: which Molecule states still count as servers to destroy before `make test` creates
its own (a state that says created makes `molecule create` skip the servers, which may be gone)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("leftovers", ROOT / "tools" / "leftovers.py")
leftovers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(leftovers)

# Molecule 25's state.yml, as it writes it after a destroy (created: false) and after a create.
DESTROYED = "# Molecule managed\n\n---\nconverged: false\ncreated: false\ndriver: null\nprepared: false\n"
CREATED = DESTROYED.replace("created: false", "created: true")


def state(home: Path, name: str, text: str | None, instances: bool = False) -> None:
    directory = home / ".ansible" / "tmp" / name
    directory.mkdir(parents=True)
    if text is not None:
        (directory / "state.yml").write_text(text)
    if instances:
        (directory / "instance_config.yml").write_text("- instance: rpa-molecule\n")


def test_a_fresh_machine_and_a_destroyed_scenario_leave_nothing(tmp_path):
    assert leftovers.molecule_states(tmp_path, "default") == []
    state(tmp_path, "molecule.0Jir.default", DESTROYED)
    state(tmp_path, "molecule.0Jir.scaleout", CREATED)  # another scenario's
    state(tmp_path, "molecule.27iQ.default", None)  # a directory without a state yet
    assert leftovers.molecule_states(tmp_path, "default") == []


def test_a_created_state_or_a_servers_record_is_a_leftover(tmp_path):
    state(tmp_path, "molecule.0Jir.default", CREATED)
    state(tmp_path, "molecule.DW5A.default", DESTROYED, instances=True)
    found = leftovers.molecule_states(tmp_path, "default")
    assert [f.split("/")[-1] for f in found] == ["molecule.0Jir.default (created)", "molecule.DW5A.default (created)"]


def test_the_platforms_are_the_scenarios_servers():
    assert leftovers.platforms("default") == ["rpa-molecule"]
    assert leftovers.platforms("scaleout") == ["rpa-so-1", "rpa-so-2", "rpa-so-3"]
