"""filter rpa_pitr: the repository's state against the running cluster, and restore targets (issue 17).

The fixtures are real `pgbackrest --stanza=rpa info --output=json` of pgBackRest 2.55.1 (Debian 13)
against the test bed's off-site SFTP host: a missing stanza, a stanza without backup, one full backup
(system identifier 7714166565272035343), a wrong passphrase, an unreachable host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rpa.engine.plugins.filter import rpa_pitr as p

FIXTURES = Path(__file__).parent / "fixtures"
SYSTEM_ID = "7714166565272035343"


def info(name: str) -> str:
    """As Ansible's stdout has it: text (undecodable bytes replaced)."""
    return (FIXTURES / f"pgbackrest_2.55_info_{name}.json").read_text(errors="replace")


def test_a_missing_stanza_is_created_not_a_problem():
    state = p.rpa_pitr_state(info("missing"), SYSTEM_ID, "/repo/x")
    assert state == {"stanza": False, "backups": 0, "oldest": None, "newest": None, "problem": ""}


def test_a_stanza_without_backup_asks_for_the_first_one():
    state = p.rpa_pitr_state(info("nobackup"), SYSTEM_ID, "/repo/x")
    assert state["stanza"] and state["backups"] == 0 and not state["problem"]


def test_a_full_backup_gives_the_window():
    state = p.rpa_pitr_state(info("ok"), SYSTEM_ID, "/repo/x")
    assert state == {"stanza": True, "backups": 1, "oldest": 1796094372, "newest": 1796094372, "problem": ""}


@pytest.mark.parametrize("name, words", [
    ("wrongpass", "unable to load info file"),
    ("unreachable", "Connection refused"),
])
def test_an_unreadable_repository_is_a_problem_naming_the_variables(name, words):
    problem = p.rpa_pitr_state(info(name), SYSTEM_ID, "/repo/x")["problem"]
    assert words in problem and "postgres_pitr_cipher_pass" in problem and "\n" not in problem


def test_a_patroni_clusters_problems_name_its_own_variables():
    problem = p.rpa_pitr_state(info("wrongpass"), SYSTEM_ID, "/repo/x", "patroni_pitr")["problem"]
    assert "patroni_pitr_cipher_pass" in problem and "postgres_pitr" not in problem
    problem = p.rpa_pitr_state(info("ok"), "7000000000000000001", "/repo/x", "patroni_pitr")["problem"]
    assert "patroni_pitr_repo_path" in problem and "postgres_pitr" not in problem


def test_another_clusters_archive_is_never_written_into():
    problem = p.rpa_pitr_state(info("ok"), "7000000000000000001", "/repo/x")["problem"]
    assert "another cluster" in problem and SYSTEM_ID in problem and "recover.yml" in problem
    # The same check on a repository without a stanza has nothing to compare.
    assert p.rpa_pitr_state(info("missing"), "7000000000000000001", "/repo/x")["problem"] == ""


STATE = p.rpa_pitr_state(info("ok"), SYSTEM_ID, "/repo/x")
NOW = 1796094372 + 3600


def test_latest_replays_the_whole_archive():
    assert p.rpa_pitr_target("latest", STATE, NOW)["options"] == ["--type=default"]


def test_a_time_in_the_window_restores_there_and_promotes():
    target = p.rpa_pitr_target("2026-12-01T03:30:00Z", STATE, NOW)
    assert target["options"] == ["--type=time", "--target=2026-12-01 03:30:00+00", "--target-action=promote"]
    assert target["epoch"] == 1796095800 and target["label"] == "2026-12-01T03:30:00Z"
    assert p.rpa_pitr_target("2026-12-01T03:30:00.250+00:00", STATE, NOW)["epoch"] == 1796095800


@pytest.mark.parametrize("target, words", [
    ("2026-12-01 03:30", "ISO-8601 in UTC"),
    ("2026-12-01T03:30:00+01:00", "ISO-8601 in UTC"),
    ("2026-12-01T03:30:00", "ISO-8601 in UTC"),
    ("2026-13-01T03:30:00Z", "not a valid date"),
    ("2026-12-01T05:30:00Z", "in the future"),
    ("2026-11-20T03:30:00Z", "outside the recovery window"),
])
def test_a_bad_target_time_is_refused_saying_why(target, words):
    with pytest.raises(AnsibleFilterError, match=words):
        p.rpa_pitr_target(target, STATE, NOW)


def test_a_clusters_refusal_names_the_clusters_variable():
    with pytest.raises(AnsibleFilterError, match="patroni_pitr_window_days"):
        p.rpa_pitr_target("2026-11-20T03:30:00Z", STATE, NOW, "patroni_pitr")


def test_parsed_json_works_too_and_no_json_is_a_problem():
    assert p.rpa_pitr_state(json.loads(info("ok")), SYSTEM_ID, "/r")["backups"] == 1
    assert "gave no JSON" in p.rpa_pitr_state("ERROR: [037]", SYSTEM_ID, "/r")["problem"]


def test_no_base_backup_means_nothing_to_restore():
    with pytest.raises(AnsibleFilterError, match="no base backup"):
        p.rpa_pitr_target("latest", p.rpa_pitr_state(info("nobackup"), SYSTEM_ID, "/r"), NOW)
