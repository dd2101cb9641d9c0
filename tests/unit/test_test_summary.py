"""tools/test_summary.py: the budget table and the slowest tests, from the files `make test` writes."""

from __future__ import annotations

import test_summary as ts

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="0" tests="3" time="12.5">
<testcase classname="tests.test_a" name="test_fast" time="0.5"/>
<testcase classname="tests.test_a" name="test_slow" time="10.0"><failure message="x"/></testcase>
<testcase classname="tests.test_b" name="test_mid" time="2.0"/>
</testsuite></testsuites>
"""


def test_counts_and_durations_from_a_junit_report(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(JUNIT)
    assert ts.count(str(report)) == (2, 1, 0)
    assert sorted(ts.durations([str(report)]), reverse=True)[0] == (10.0, "tests.test_a::test_slow")
    lines = ts.slowest_table(ts.durations([str(report)]), n=2)
    assert lines[1] == "The 2 slowest tests:" and "test_slow" in lines[2] and "test_mid" in lines[3]


def test_budget_table_totals_phases_and_says_when_it_is_over(tmp_path):
    phases = tmp_path / "phases.tsv"
    phases.write_text("lint: yamllint\t30.0\t0\nmolecule: verify\t1500.0\t0\n")
    lines = ts.budget_table(ts.read_phases(phases), 30)
    assert any("molecule: verify" in line and "25.0 min" in line for line in lines)
    assert "(within the 30-minute budget)" in lines[-1] and "25.5 min" in lines[-1]
    assert "(OVER the 20-minute budget)" in ts.budget_table(ts.read_phases(phases), 20)[-1]
    assert ts.budget_table([], 30) == []


def test_the_total_is_the_wall_time_when_phases_ran_side_by_side(tmp_path):
    """Lint and unit tests run beside the converge: their minutes must not count twice."""
    phases = tmp_path / "phases.tsv"
    phases.write_text("lint: ansible-lint\t60.0\t0\nmolecule: converge\t180.0\t0\nmolecule: verify\t1500.0\t0\n")
    started = tmp_path / "started"
    started.write_text("1000\n")
    wall = ts.wall_time(started, 1000 + 1680.0)
    assert wall == 1680.0
    lines = ts.budget_table(ts.read_phases(phases), 28.5, wall)
    assert "phases added up" in lines[-2] and "29.0 min" in lines[-2]
    assert "total (wall time)" in lines[-1] and "28.0 min" in lines[-1] and "(within the 28.5-minute budget)" in lines[-1]
    assert "OVER" in ts.budget_table(ts.read_phases(phases), 27.5, wall)[-1]
    assert ts.wall_time(tmp_path / "missing", 5.0) is None and ts.wall_time(None, 5.0) is None


def test_a_failed_test_fails_the_summary(tmp_path, capsys):
    report = tmp_path / "r.xml"
    report.write_text(JUNIT)
    assert ts.main([str(report)]) == 1
    assert "summary: 2 passed, 1 failed, 0 skipped" in capsys.readouterr().out


def test_no_report_at_all_fails_the_summary_and_says_so(tmp_path, capsys):
    # make test passes its glob as it is when a phase before the tests failed: no report was written.
    assert ts.main([str(tmp_path / "*.xml")]) == 1
    assert "summary: 0 passed, 0 failed, 0 skipped" in capsys.readouterr().out
