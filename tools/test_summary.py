#!/usr/bin/env python3
"""The closing lines of `make test`: the time budget, the slowest tests, and one pass/fail count.

    python3 tools/test_summary.py [--started FILE] [--phases FILE] [--budget MINUTES] REPORT.xml...

`make test` runs pytest twice (unit tests, then Molecule's testinfra
verify); this adds the JUnit reports up into one "N passed, N failed" line.
Before it, the budget table: every phase's wall time as tools/timed.py
recorded it (lint, unit, each Molecule step), the total against the budget
(README, "Test budget"), and the 20 slowest tests. The total is the wall
time since the moment in --started (epoch seconds, written when `make test`
began) when given: lint and the unit tests run beside Molecule's converge,
so the phases add up to more than the run took.

Exits 1 when any test failed or errored, or when no test ran at all. Going
over the budget is printed loudly but does not fail the run: the README
says what to do about it.
"""

from __future__ import annotations

import argparse
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path


def suites(path: str) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    return [root] if root.tag == "testsuite" else root.findall("testsuite")


def count(path: str) -> tuple[int, int, int]:
    total = failed = skipped = 0
    for suite in suites(path):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def durations(paths: list[str]) -> list[tuple[float, str]]:
    """(seconds, test id) of every test case in the reports."""
    out = []
    for path in paths:
        for suite in suites(path):
            for case in suite.iter("testcase"):
                name = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
                out.append((float(case.get("time", 0) or 0), name))
    return out


def read_phases(path: Path) -> list[tuple[str, float, int]]:
    if not path.is_file():
        return []
    phases = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            phases.append((parts[0], float(parts[1]), int(parts[2])))
    return phases


def budget_table(phases: list[tuple[str, float, int]], budget_minutes: float,
                 wall: float | None = None) -> list[str]:
    """The phases, and the total against the budget: the wall time when known, else the phases' sum."""
    if not phases:
        return []
    lines = ["", "Time budget (tools/timed.py):", f"  {'phase':<28} {'wall':>9}  exit"]
    lines += [f"  {name:<28} {seconds / 60:>6.1f} min  {rc}" for name, seconds, rc in phases]
    summed = sum(seconds for _, seconds, _ in phases)
    total = summed if wall is None else wall
    verdict = "within" if total <= budget_minutes * 60 else "OVER"
    if wall is not None:
        lines.append(f"  {'phases added up':<28} {summed / 60:>6.1f} min  (some ran side by side)")
    label = "total" if wall is None else "total (wall time)"
    lines.append(f"  {label:<28} {total / 60:>6.1f} min  ({verdict} the {budget_minutes:g}-minute budget)")
    return lines


def wall_time(started: Path | None, now: float) -> float | None:
    """Seconds since the epoch second written in the file, or None without a readable one."""
    try:
        return now - float(started.read_text().strip()) if started else None
    except (OSError, ValueError):
        return None


def slowest_table(cases: list[tuple[float, str]], n: int = 20) -> list[str]:
    if not cases:
        return []
    top = sorted(cases, reverse=True)[:n]
    lines = ["", f"The {len(top)} slowest tests:"]
    lines += [f"  {seconds:>7.1f} s  {name}" for seconds, name in top]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phases", type=Path, default=None)
    parser.add_argument("--started", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("reports", nargs="*")
    args = parser.parse_args(argv)
    # A shell glob that matched nothing arrives as itself: no report was written (a phase before the tests
    # failed), which the summary says instead of failing on the pattern.
    args.reports = [path for path in args.reports if Path(path).is_file()]
    wall = wall_time(args.started, time.time())
    for line in budget_table(read_phases(args.phases) if args.phases else [], args.budget, wall):
        print(line)
    for line in slowest_table(durations(args.reports)):
        print(line)
    print()
    passed = failed = skipped = 0
    for path in args.reports:
        p, f, s = count(path)
        print(f"{path}: {p} passed, {f} failed, {s} skipped")
        passed, failed, skipped = passed + p, failed + f, skipped + s
    print(f"summary: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
