"""Pure logic of roles/backup/files/rpa-backup.py: retention, row-count comparison, metrics.

fixtures/backup_counts_pg17.txt is the real output of the tool's COUNTS_SQL
on PostgreSQL 17 for a schema-qualified table and a mixed-case name.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("rpa_backup", ROOT / "roles" / "backup" / "files" / "rpa-backup.py")
rpa_backup = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rpa_backup)

NOW = dt.datetime(2026, 11, 25, 3, 15, tzinfo=dt.timezone.utc)


def dumps_days_ago(*days: float) -> list[tuple[str, float]]:
    return [(f"d{d}", (NOW - dt.timedelta(days=d)).timestamp()) for d in days]


def test_counts_from_real_psql_output():
    text = (Path(__file__).parent / "fixtures" / "backup_counts_pg17.txt").read_text()
    assert rpa_backup.parse_counts(text) == {"app.jobs": 5, "public.Mixed Case": 2}


@pytest.mark.parametrize(("expected", "restored", "problems"), [
    ({"public.a": 3}, {"public.a": 3}, []),
    ({"public.a": 3}, {"public.a": 2}, ["public.a: 2 rows restored, 3 dumped"]),
    ({"public.a": 3, "public.b": 0}, {"public.a": 3}, ["public.b: missing from the restored database"]),
    ({}, {"public.x": 1}, ["public.x: in the restore but not in the dump's snapshot"]),
])
def test_compare_counts(expected, restored, problems):
    assert rpa_backup.compare_counts(expected, restored) == problems


def test_retention_keeps_the_seven_newest_days():
    dumps = dumps_days_ago(0, *range(1, 11))
    assert rpa_backup.select_keep(dumps, daily=7, weekly=0, monthly=0) == {f"d{d}" for d in range(7)}


def test_retention_keeps_the_newest_dump_of_a_day():
    dumps = dumps_days_ago(0.01, 0.02, 1.01, 1.02)  # two a day
    assert rpa_backup.select_keep(dumps, daily=2, weekly=0, monthly=0) == {"d0.01", "d1.01"}


def test_missed_days_do_not_shorten_the_history():
    dumps = dumps_days_ago(0, 5, 9, 20, 30)
    assert rpa_backup.select_keep(dumps, daily=3, weekly=0, monthly=0) == {"d0", "d5", "d9"}


def test_weekly_and_monthly_add_older_dumps():
    dumps = dumps_days_ago(*range(0, 70))
    keep = rpa_backup.select_keep(dumps, daily=7, weekly=4, monthly=3)
    assert {f"d{d}" for d in range(7)} <= keep
    weeks = {dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%G-W%V") for n, t in dumps if n in keep}
    months = {dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m") for n, t in dumps if n in keep}
    assert len(weeks) >= 4 and len(months) == 3
    assert len(keep) < 7 + 4 + 3 + 1


def test_the_newest_dump_is_always_kept():
    assert rpa_backup.select_keep(dumps_days_ago(400), daily=1, weekly=0, monthly=0) == {"d400"}
    assert rpa_backup.select_keep([], daily=7, weekly=0, monthly=0) == set()


def test_metrics_round_trip_and_format():
    values = {"rpa_backup_last_run_success": 1, "rpa_backup_last_duration_seconds": 1.23456,
              "rpa_backup_last_success_timestamp_seconds": 1795640123.5}
    text = rpa_backup.render_metrics(values)
    assert "# TYPE rpa_backup_last_run_success gauge" in text
    assert "rpa_backup_last_run_success 1\n" in text
    assert "rpa_backup_last_success_timestamp_seconds 1795640123.500\n" in text  # no precision lost
    assert rpa_backup.parse_metrics(text) == pytest.approx(
        {"rpa_backup_last_run_success": 1, "rpa_backup_last_duration_seconds": 1.235,
         "rpa_backup_last_success_timestamp_seconds": 1795640123.5})


def test_dump_names_sort_by_time_and_match_the_pattern():
    name = rpa_backup.dump_name("rpa_engine", NOW)
    assert name == "rpa_engine-20261125T031500Z.dump"
    assert rpa_backup.DUMP_RE.match(name)
    assert not rpa_backup.DUMP_RE.match("." + name + ".partial")


def test_a_second_backup_within_the_same_second_gets_a_name_of_its_own():
    first = rpa_backup.dump_name("rpa_engine", NOW)
    assert rpa_backup.free_dump_name("rpa_engine", NOW, set()) == first
    second = rpa_backup.free_dump_name("rpa_engine", NOW, {first, first + ".sha256"})
    assert second == "rpa_engine-20261125T031501Z.dump" and second > first
    third = rpa_backup.free_dump_name("rpa_engine", NOW, {first, second})
    assert third == "rpa_engine-20261125T031502Z.dump"
