#!/usr/bin/env python3
"""Run one phase of `make test` and record how long it took, for the budget table at the end.

    python3 tools/timed.py PHASE -- COMMAND [ARG...]

Appends "PHASE<TAB>seconds<TAB>exit code" to $RPA_PHASES (default
.cache/reports/phases.tsv) and exits with the command's own exit code.
tools/test_summary.py prints the table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    phase, command = argv[0], argv[2:]
    out = Path(os.environ.get("RPA_PHASES") or ROOT / ".cache" / "reports" / "phases.tsv")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        rc = subprocess.run(command, check=False).returncode
    except FileNotFoundError as exc:
        print(f"timed: {exc}", file=sys.stderr)
        rc = 127
    with out.open("a") as handle:
        handle.write(f"{phase}\t{time.monotonic() - start:.1f}\t{rc}\n")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
