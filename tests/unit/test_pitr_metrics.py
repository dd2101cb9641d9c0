"""Pure logic of roles/postgres/files/rpa-pitr-metrics.py: pgBackRest's info, the WAL archiver, the textfile.

The fixtures are real output of pgBackRest 2.55.1 and PostgreSQL 17 (Debian trixie packages), captured
in a throwaway container without published ports:

    docker run --rm -d --name pitr-capture-$$ rpa-testbed/debian:trixie sleep 3600
    apt-get install -y postgresql-17 pgbackrest
    /etc/pgbackrest/pgbackrest.conf: [global] repo1-path=/var/lib/pgbackrest repo1-cipher-type=aes-256-cbc
        repo1-cipher-pass=<a throwaway> repo1-retention-full=2 start-fast=y log-level-console=warn
        [rpa] pg1-path=/var/lib/pgpitr/data pg1-socket-path=/var/run/postgresql
    su postgres: initdb -D /var/lib/pgpitr/data -A trust; postgresql.conf += archive_mode=on,
        archive_command='pgbackrest --stanza=rpa archive-push %p', archive_timeout=30s, wal_level=replica
    pg_ctl start; pgbackrest --stanza=rpa stanza-create; pgbackrest --stanza=rpa --type=full backup
    then, as labelled in psql_pitr_archiver_pg17.tsv, each line `psql -U postgres -At -F '|' -f q.sql`
    (q.sql = ARCHIVER_SQL) between these steps:
        idle_after_backup                    after the backup and a pg_switch_wal() that had nothing to switch
        writes_pending                       CREATE TABLE t; INSERT 1000 rows
        idle_after_switch                    SELECT pg_switch_wal(); sleep 2
        more_writes_pending                  sleep 25 (autovacuum wrote WAL: archive_timeout switched it later)
        small_write_pending                  INSERT one row
        idle_after_archive_timeout_switch    sleep 40
        idle_after_backup_spanning_segments  pg_backup_start('span', true); pg_sleep(40); pg_backup_stop(false)
        archive_failing                      ALTER SYSTEM SET archive_command = '... --repo1-path=/nonexistent ...';
                                             reload; INSERT 1000 rows; pg_switch_wal(); sleep 8
        archive_recovered_idle               ALTER SYSTEM RESET archive_command; reload; sleep 70
        idle_after_more_backups              INSERT; pgbackrest --type=incr backup; INSERT; --type=full backup
        never_archived                       a second cluster (initdb, same settings, port 5433), 1 s after start
    pgbackrest_2.55_info_three_backups.json: `pgbackrest --stanza=rpa info --output=json` after those backups
    pgbackrest_2.55_info_exit.json: command, exit code, stdout and stderr (undecodable bytes replaced, as the
        script reads them) of the info command with a wrong --repo1-path, an unreachable SFTP host, a wrong
        passphrase (PGBACKREST_REPO1_CIPHER_PASS) and a missing --config; and psql with the server stopped.
    docker rm -f pitr-capture-$$
The pgbackrest_2.55_info_{ok,nobackup,missing,wrongpass,unreachable}.json fixtures of test_pitr.py are
the same command against the test bed's SFTP host.
"""

from __future__ import annotations

import importlib.util
import json
import re
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("rpa_pitr_metrics", ROOT / "roles" / "postgres" / "files"
                                              / "rpa-pitr-metrics.py")
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)

FIXTURES = Path(__file__).parent / "fixtures"
MB16 = 16 << 20
ARCHIVER = dict(line.rstrip("\n").split("\t") for line in (FIXTURES / "psql_pitr_archiver_pg17.tsv").open())
EXIT = json.loads((FIXTURES / "pgbackrest_2.55_info_exit.json").read_text())
THREE = (FIXTURES / "pgbackrest_2.55_info_three_backups.json").read_text()


def info(name: str) -> str:
    return (FIXTURES / f"pgbackrest_2.55_info_{name}.json").read_bytes().decode("utf-8", "replace")


def archiver(label: str, **changes) -> dict:
    return {**m.parse_archiver(ARCHIVER[label]), **changes}


# ------------------------------------------------------------ pgbackrest info
def test_the_window_starts_at_the_oldest_backup_and_ends_at_the_newest():
    metrics, status = m.parse_info(THREE, "rpa")
    assert metrics == {"repo_up": 1, "base_backups": 3,  # full, incr, full
                       "base_backup_last_timestamp_seconds": 1796094686,
                       "recovery_window_start_timestamp_seconds": 1796094336}
    assert status == "status 0: ok"


def test_a_backup_with_errors_does_not_count():
    stanzas = json.loads(THREE)
    stanzas[0]["backup"][0]["error"] = True  # the oldest full: pgBackRest found bad page checksums
    metrics, _ = m.parse_info(json.dumps(stanzas), "rpa")
    assert metrics["base_backups"] == 2
    assert metrics["recovery_window_start_timestamp_seconds"] == 1796094683


def test_a_stanza_without_backup_is_up_with_a_count_of_zero():
    assert m.parse_info(info("nobackup"), "rpa") == ({"repo_up": 1, "base_backups": 0}, "status 2: no valid backups")
    assert m.parse_info(info("ok"), "rpa")[0]["base_backups"] == 1


@pytest.mark.parametrize(("text", "words"), [
    (info("missing"), "status 1: missing stanza path"),
    (info("wrongpass"), "status 99: [FormatError] unable to load info file"),
    (info("unreachable"), "status 99: [HostConnectError] unable to connect to '172.17.0.1:2298'"),
    (EXIT["missing_stanza"]["stdout"], "missing stanza path"),
    (EXIT["sftp_unreachable"]["stdout"], "Connection refused"),
    (EXIT["wrong_passphrase"]["stdout"], "unable to load info file"),
    (EXIT["no_config_file"]["stdout"], "no JSON from pgbackrest info: P00  ERROR: [055]"),
    ("[]", "stanza rpa not in pgbackrest info"),
])
def test_a_repository_that_cannot_be_read_is_down_and_says_nothing_of_backups(text, words):
    metrics, status = m.parse_info(text, "rpa")
    assert metrics == {"repo_up": 0}
    assert words in status
    # One printable line for the journal: no undecryptable bytes, no second line.
    assert status.isprintable() and len(status) < 250


def test_pgbackrest_reports_a_repository_failure_with_exit_code_0():
    # Only a broken invocation exits non-zero; the repository's state is in the JSON.
    assert {case: run["rc"] for case, run in EXIT.items()} == {
        "missing_stanza": 0, "sftp_unreachable": 0, "wrong_passphrase": 0, "no_config_file": 55,
        "psql_server_stopped": 2}


# ------------------------------------------------------------ WAL positions
@pytest.mark.parametrize(("text", "value"), [
    ("0/3000060", 0x3000060),
    ("16/B374D848", (0x16 << 32) + 0xB374D848),
    ("0/0", 0),
])
def test_lsn(text, value):
    assert m.lsn(text) == value


@pytest.mark.parametrize("text", ["", "3000060", "0/xyz"])
def test_lsn_refuses_what_is_not_one(text):
    with pytest.raises(ValueError):
        m.lsn(text)


@pytest.mark.parametrize(("text", "value"), [("16MB", MB16), ("8192", 8192), ("1GB", 1 << 30), ("64kB", 65536)])
def test_size_bytes(text, value):
    assert m.size_bytes(text) == value


@pytest.mark.parametrize(("name", "size", "end"), [
    ("000000010000000000000003", MB16, 0x4000000),
    ("0000000100000002000000FF", MB16, 3 << 32),         # the last segment of log 2 ends where log 3 starts
    ("000000020000000000000003", 1 << 30, 1 << 32),       # 1 GB segments: four per log
    ("000000010000000000000002.00000028.backup", MB16, 0x3000000),  # its start segment's end
    ("000000010000000000000005.partial", MB16, 0x5000000),          # how far it reaches is unknown: its start
    ("00000002.history", MB16, None),
])
def test_wal_segment_end(name, size, end):
    assert m.wal_segment_end(name, size) == end


@pytest.mark.parametrize("name", ["00000001000000000000000", "000000010000000000000003.ready", "x.history", ""])
def test_wal_segment_end_refuses_other_names(name):
    with pytest.raises(ValueError):
        m.wal_segment_end(name, MB16)


# ------------------------------------------------------------ the archiver
def test_parse_archiver_reads_the_real_line():
    assert m.parse_archiver(ARCHIVER["archive_failing"]) == {
        "last_archived_wal": "000000010000000000000006.00000028.backup", "last_archived_time": 1796094581.622966,
        "failed_count": 3, "last_failed_time": 1796094593.070218, "current_lsn": 0x9000000,
        "segment_size": MB16, "block_size": 8192, "postmaster_start": 1796094177.676312, "ready": 1,
        "now": 1796094599.051881}
    never = m.parse_archiver(ARCHIVER["never_archived"])
    assert never["last_archived_wal"] is None and never["last_archived_time"] is None
    assert never["last_failed_time"] is None


def test_parse_archiver_refuses_a_short_line():
    with pytest.raises(ValueError, match="expected 10 fields"):
        m.parse_archiver("000000010000000000000003|1796094467.539601|0")


@pytest.mark.parametrize(("label", "unarchived"), [
    # Idle: a 96-byte running-transactions record after the switch, never switched out by archive_timeout.
    ("idle_after_backup", 0),
    ("idle_after_switch", 0),
    ("idle_after_archive_timeout_switch", 0),
    ("archive_recovered_idle", 0),  # exactly at a segment's start
    ("idle_after_more_backups", 0),
    # A backup's .backup file archived after its stop segment: its name points two segments back.
    ("idle_after_backup_spanning_segments", 0),
    # Written and not archived yet: time since the last archiving.
    ("writes_pending", 1796094467.365832 - 1796094336.174487),
    ("more_writes_pending", 1796094494.531327 - 1796094467.539601),
    ("small_write_pending", 1796094494.640397 - 1796094467.539601),
    ("archive_failing", 1796094599.051881 - 1796094581.622966),
    # Nothing archived since the start: time since the start.
    ("never_archived", 1796094766.820276 - 1796094765.645602),
])
def test_unarchived_seconds_from_real_archiver_states(label, unarchived):
    metrics = m.wal_metrics(archiver(label), {})
    assert metrics["wal_unarchived_seconds"] == pytest.approx(unarchived)
    assert ("wal_archive_complete_timestamp_seconds" in metrics) == (unarchived == 0)


def test_the_archive_queue_proves_more_than_a_backup_files_name():
    a = archiver("idle_after_backup_spanning_segments")
    assert m.wal_segment_end(a["last_archived_wal"], MB16) == 0x7000000 < a["current_lsn"] - 8192
    assert m.archive_complete(a)
    assert not m.archive_complete({**a, "ready": 1})  # a queued file: only the name counts, and it is behind


def test_a_history_file_last_archived_proves_nothing_while_files_are_queued():
    a = archiver("archive_recovered_idle", last_archived_wal="00000002.history")
    assert m.archive_complete(a)
    assert not m.archive_complete({**a, "ready": 1})


def test_a_partial_segment_counts_from_its_start():
    # A promotion archived the old timeline's segment 4 as .partial; the new timeline wrote on in segment 4.
    a = archiver("more_writes_pending", last_archived_wal="000000010000000000000004.partial", ready=1)
    assert not m.archive_complete(a)


def test_more_than_one_wal_page_past_the_archive_is_pending():
    a = archiver("archive_recovered_idle")  # at 0/A000000
    assert m.archive_complete({**a, "current_lsn": 0xA000000 + 8192})
    assert not m.archive_complete({**a, "current_lsn": 0xA000000 + 8193})


def test_the_first_write_after_a_quiet_spell_counts_from_the_last_complete_check():
    # The real sequence: the check before the writes found the archive complete 84 ms earlier; the
    # last archiving was 131 s before.
    before = m.wal_metrics(archiver("idle_after_backup"), {})
    after = m.wal_metrics(archiver("writes_pending"), before)
    assert after["wal_unarchived_seconds"] == pytest.approx(1796094467.365832 - 1796094467.281525)
    # Still pending a minute later: the bound stays where it was.
    later = m.wal_metrics(archiver("writes_pending", now=1796094527.365832), after)
    assert later["wal_unarchived_seconds"] == pytest.approx(60.084307)
    assert later["wal_archive_complete_timestamp_seconds"] == before["wal_archive_complete_timestamp_seconds"]


def test_an_archiving_newer_than_the_last_complete_check_wins():
    metrics = m.wal_metrics(archiver("archive_failing"), {"wal_archive_complete_timestamp_seconds": 1796094000})
    assert metrics["wal_unarchived_seconds"] == pytest.approx(1796094599.051881 - 1796094581.622966)


def test_wal_metrics_carry_the_archivers_counters():
    metrics = m.wal_metrics(archiver("archive_failing"), {})
    assert metrics["wal_archive_failed_total"] == 3
    assert metrics["wal_archived_last_timestamp_seconds"] == 1796094581.622966
    assert "wal_archived_last_timestamp_seconds" not in m.wal_metrics(archiver("never_archived"), {})


# ------------------------------------------------------------ the textfile
HELP = re.compile(r"^# HELP (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$")
TYPE = re.compile(r"^# TYPE (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*) (?P<type>counter|gauge)$")
SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{stanza="rpa"\} (?P<value>-?[0-9]+(?:\.[0-9]+)?)$')


def full_metrics() -> dict:
    metrics = {**m.parse_info(THREE, "rpa")[0], **m.wal_metrics(archiver("writes_pending"), {})}
    return {**metrics, "metrics_success": 1, "metrics_last_run_timestamp_seconds": 1796094467.5}


def test_render_writes_valid_prometheus_text():
    text = m.render(full_metrics(), "rpa")
    assert text.endswith("\n")
    helped, typed, names = set(), {}, []
    for line in text.splitlines():
        if match := HELP.match(line):
            helped.add(match["name"])
        elif match := TYPE.match(line):
            typed[match["name"]] = match["type"]
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            assert match["name"] in helped and match["name"] in typed, "HELP and TYPE come before the sample"
            names.append(match["name"])
    assert len(names) == len(set(names)) == 9
    assert typed["rpa_pitr_wal_archive_failed_total"] == "counter"
    assert {n for n, t in typed.items() if t == "gauge"} == set(names) - {"rpa_pitr_wal_archive_failed_total"}
    # Prometheus' naming rules (promtool check metrics): _count/_sum/_bucket are a histogram's.
    assert not [n for n in names if re.search(r"_(count|sum|bucket)$", n)]


def test_render_round_trips_and_keeps_the_millisecond():
    text = m.render(full_metrics(), "rpa")
    assert 'rpa_pitr_wal_archived_last_timestamp_seconds{stanza="rpa"} 1796094336.174\n' in text
    assert 'rpa_pitr_base_backups{stanza="rpa"} 3\n' in text
    assert m.parse_metrics(text) == pytest.approx({k: round(v, 3) for k, v in full_metrics().items()}, abs=1e-3)


def test_a_repository_that_is_down_renders_no_backup_metrics():
    text = m.render({**m.parse_info(info("unreachable"), "rpa")[0], "metrics_success": 1}, "rpa")
    assert 'rpa_pitr_repo_up{stanza="rpa"} 0\n' in text
    assert "base_backup" not in text and "recovery_window" not in text


def test_render_refuses_a_metric_without_help():
    with pytest.raises(ValueError, match="without HELP"):
        m.render({"repo_up": 1, "surprise": 2}, "rpa")


# ------------------------------------------------------------ the whole run, commands faked with real output
def fake_run(pgbackrest: tuple[int, str], psql: tuple[int, str, str],
             prefix: tuple[str, ...] = ("docker", "exec", "rpa-test-postgres-1")):
    def run(argv, timeout):
        assert tuple(argv[:len(prefix)]) == prefix, argv
        argv = argv[len(prefix):]
        if argv[0] == "pgbackrest":
            assert argv[1:] == ["--stanza=rpa", "info", "--output=json"]
            return subprocess.CompletedProcess(argv, pgbackrest[0], pgbackrest[1].encode(), b"")
        assert argv[0] == "psql" and argv[-1] == m.ARCHIVER_SQL
        return subprocess.CompletedProcess(argv, psql[0], psql[1].encode(), psql[2].encode())
    return run


PSQL_OK = (0, ARCHIVER["writes_pending"] + "\n", "")
PSQL_DOWN = (EXIT["psql_server_stopped"]["rc"], "", EXIT["psql_server_stopped"]["stderr"])


def run_main(tmp_path, monkeypatch, pgbackrest, psql) -> tuple[int, dict]:
    monkeypatch.setattr(m, "run", fake_run(pgbackrest, psql))
    rc = m.main(["--container", "rpa-test-postgres-1", "--textfile-dir", str(tmp_path)])
    path = tmp_path / "rpa_pitr.prom"
    return rc, m.parse_metrics(path.read_text()) if path.exists() else {}


def test_main_writes_the_textfile_world_readable_and_nothing_else(tmp_path, monkeypatch):
    rc, metrics = run_main(tmp_path, monkeypatch, (0, THREE), PSQL_OK)
    assert rc == 0 and metrics["metrics_success"] == 1 and metrics["repo_up"] == 1
    assert metrics["wal_unarchived_seconds"] > 100  # no previous run: counted from the last archiving
    assert stat.S_IMODE((tmp_path / "rpa_pitr.prom").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["rpa_pitr.prom"]


def test_main_reads_its_previous_file_for_the_last_complete_check(tmp_path, monkeypatch):
    run_main(tmp_path, monkeypatch, (0, THREE), (0, ARCHIVER["idle_after_backup"] + "\n", ""))
    rc, metrics = run_main(tmp_path, monkeypatch, (0, THREE), PSQL_OK)
    assert metrics["wal_unarchived_seconds"] == pytest.approx(0.084, abs=0.002)


def test_an_unreachable_repository_still_gives_the_wal_metrics(tmp_path, monkeypatch, capsys):
    rc, metrics = run_main(tmp_path, monkeypatch, (0, EXIT["wrong_passphrase"]["stdout"]), PSQL_OK)
    assert rc == 0 and metrics["repo_up"] == 0 and "base_backups" not in metrics
    assert metrics["wal_unarchived_seconds"] > 0 and metrics["metrics_success"] == 1
    err = capsys.readouterr().err
    assert "unable to load info file" in err and "\ufffd" not in err and len(err.splitlines()) == 1


def test_a_stopped_postgres_still_gives_the_repository_metrics(tmp_path, monkeypatch, capsys):
    run_main(tmp_path, monkeypatch, (0, THREE), (0, ARCHIVER["idle_after_backup"] + "\n", ""))
    rc, metrics = run_main(tmp_path, monkeypatch, (0, THREE), PSQL_DOWN)
    assert rc == 0 and metrics["metrics_success"] == 0 and metrics["base_backups"] == 3
    assert "wal_unarchived_seconds" not in metrics
    assert metrics["wal_archive_complete_timestamp_seconds"] == 1796094467.282  # kept for the next run
    assert "psql exited 2: psql: error: connection to server" in capsys.readouterr().err


def test_a_broken_pgbackrest_call_is_a_failed_run(tmp_path, monkeypatch):
    rc, metrics = run_main(tmp_path, monkeypatch, (55, EXIT["no_config_file"]["stdout"]), PSQL_OK)
    assert rc == 0 and metrics["repo_up"] == 0 and metrics["metrics_success"] == 0


def test_only_an_unwritable_textfile_fails_the_run(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(m, "run", fake_run((0, THREE), PSQL_OK))
    assert m.main(["--container", "rpa-test-postgres-1", "--textfile-dir", str(blocker / "dir")]) == 1


def test_a_patroni_member_is_asked_on_the_host_as_the_postgres_user(tmp_path, monkeypatch):
    """--run-as (the patroni role's unit): pgbackrest and psql run here through runuser, not in a container."""
    monkeypatch.setattr(m, "run", fake_run((0, THREE), PSQL_OK, ("runuser", "-u", "postgres", "--")))
    assert m.main(["--run-as", "postgres", "--textfile-dir", str(tmp_path)]) == 0
    metrics = m.parse_metrics((tmp_path / "rpa_pitr.prom").read_text())
    assert metrics["metrics_success"] == 1 and metrics["repo_up"] == 1 and metrics["base_backups"] == 3


def test_a_source_is_required_and_only_one(tmp_path):
    for argv in ([], ["--container", "c", "--run-as", "postgres"]):
        with pytest.raises(SystemExit):
            m.main([*argv, "--textfile-dir", str(tmp_path)])


@pytest.fixture
def patroni_api():
    """A stand-in for Patroni's REST API on loopback: /primary answers 200 while the dict says leader, else
    503, as Patroni does on a replica."""
    import http.server
    import threading
    state = {"leader": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200 if state["leader"] and self.path == "/primary" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_port}/primary"
    server.shutdown()


def test_only_the_leader_writes_and_a_former_leader_removes_its_file(tmp_path, monkeypatch, patroni_api):
    state, url = patroni_api
    monkeypatch.setattr(m, "run", fake_run((0, THREE), PSQL_OK, ("runuser", "-u", "postgres", "--")))
    argv = ["--run-as", "postgres", "--only-if-primary", url, "--textfile-dir", str(tmp_path)]
    assert m.main(argv) == 0 and (tmp_path / "rpa_pitr.prom").exists()
    state["leader"] = False
    monkeypatch.setattr(m, "run", lambda argv, timeout: pytest.fail(f"a replica ran {argv}"))
    assert m.main(argv) == 0 and list(tmp_path.iterdir()) == []
    # Patroni down (nothing listens): not the leader either.
    assert m.main([*argv[:3], "http://127.0.0.1:9/primary", *argv[4:]]) == 0 and list(tmp_path.iterdir()) == []
