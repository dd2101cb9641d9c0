#!/usr/bin/env python3
"""Whether an earlier run left anything of a Molecule scenario behind, for `make test` to destroy first.

    tools/leftovers.py SCENARIO [--offsite NAME ...]

Exit 0, naming each leftover, when there is one: a server container of the scenario's platforms, a Molecule
state that still calls the scenario created (it would skip `create` and converge servers that are gone),
or a pgBackRest repository of one of its servers (or of --offsite NAME) on the test bed's off-site host
(the next cluster would be refused by it). Exit 1 when there is none: a fresh machine, or a run that ended
with its own destroy. `molecule destroy` costs about half a minute of a contended machine at the start of
`make test`, for nothing on a fresh CI machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OFFSITE = "rpa-offsite"


def molecule_states(home: Path, scenario: str) -> list[str]:
    """Molecule's ephemeral directories of the scenario (one per project path) that still hold servers."""
    found = []
    for directory in sorted(home.glob(f".ansible/tmp/molecule.*.{scenario}")):
        state = yaml.safe_load((directory / "state.yml").read_text()) if (directory / "state.yml").exists() else {}
        if (state or {}).get("created") or (directory / "instance_config.yml").exists():
            found.append(f"Molecule state {directory} (created)")
    return found


def platforms(scenario: str) -> list[str]:
    config = yaml.safe_load((ROOT / "molecule" / scenario / "molecule.yml").read_text())
    return [p["name"] for p in config["platforms"]]


def docker_ok(*args: str) -> bool:
    return subprocess.run(["docker", *args], capture_output=True, check=False).returncode == 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario")
    parser.add_argument("--offsite", action="append", default=[], help="another repository name on the off-site host")
    args = parser.parse_args(argv)
    names = platforms(args.scenario)
    found = molecule_states(Path.home(), args.scenario)
    found += [f"container {n}" for n in names if docker_ok("container", "inspect", n)]
    if docker_ok("container", "inspect", OFFSITE):
        found += [f"off-site repository /repo/{n}" for n in names + args.offsite
                  if docker_ok("exec", OFFSITE, "test", "-e", f"/repo/{n}")]
    for item in found:
        print(f"leftover of molecule/{args.scenario}: {item}")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
