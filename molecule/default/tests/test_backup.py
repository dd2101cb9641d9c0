"""The backup role: dumps that are verified, pruned, drilled, restorable, and loud when they fail."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import cname, executed_tasks, put_file, run_playbook, run_site

BACKUP_DIR = "/var/backups/rpa-engine"
METRICS = "/var/lib/node_exporter/textfile_collector/rpa_backup.prom"
ROWS = 50000


def sql(host, statement: str) -> str:
    return host.check_output(
        f"docker exec {cname('postgres')} psql -X -tAq -v ON_ERROR_STOP=1 -U postgres -d rpa_engine -c "
        + json.dumps(statement))


def probe_rows(host) -> int:
    return int(sql(host, "select count(*) from backup_probe"))


def dumps(host) -> list[str]:
    """Dump names, newest first."""
    return [line.split("\t")[0] for line in host.check_output("rpa-backup list").splitlines()]


def metrics(host) -> dict[str, float]:
    out = {}
    for line in host.file(METRICS).content_string.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split()
            out[name] = float(value)
    return out


def now(host) -> float:
    return float(host.check_output("date +%s"))


def start_unit(host, unit: str):
    return host.run(f"systemctl start {unit}")


def journal(host, unit: str, since: str) -> str:
    return host.check_output(f"journalctl -u {unit} --since '{since}' --no-pager -o cat")


@pytest.fixture(scope="module")
def probe_table(host):
    """A table of the application's database with known rows (owned by the app role)."""
    sql(host, "drop table if exists backup_probe")
    sql(host, "create table backup_probe (id int primary key, payload text not null)")
    sql(host, f"insert into backup_probe select i, md5(random()::text) || md5(i::text) "
              f"from generate_series(1, {ROWS}) i")
    sql(host, "alter table backup_probe owner to rpa_engine")
    yield "public.backup_probe"
    sql(host, "drop table if exists backup_probe")


def test_tags_backup_takes_the_first_dump_on_a_server_without_one(host, server, probe_table):
    host.check_output(f"find {BACKUP_DIR} -mindepth 1 -delete")
    proc, data = run_site("--tags", "backup")
    assert proc.returncode == 0, proc.stdout[-3000:]
    changed = [t["task"] for t in executed_tasks(data, server["name"]) if t["changed"]]
    assert changed == ["backup : Ensure there is at least one verified dump."], changed
    names = dumps(host)
    assert len(names) == 1, names
    assert host.run(f"rpa-backup verify {names[0]}").rc == 0
    counts = json.loads(host.file(f"{BACKUP_DIR}/{names[0]}.counts.json").content_string)
    assert counts[probe_table] == ROWS
    for suffix in ("", ".sha256", ".counts.json"):
        f = host.file(f"{BACKUP_DIR}/{names[0]}{suffix}")
        assert f.user == "root" and f.mode == 0o600, (suffix, oct(f.mode))
    assert host.file(BACKUP_DIR).mode == 0o700


def test_timer_is_scheduled_and_persistent(host):
    show = host.check_output("systemctl show rpa-backup.timer -p TimersCalendar -p Persistent -p RandomizedDelayUSec")
    assert "OnCalendar=*-*-* 03:15:00" in show and "Persistent=yes" in show and "RandomizedDelayUSec=15min" in show
    assert host.service("rpa-backup.timer").is_enabled
    drill = host.check_output("systemctl show rpa-backup-drill.timer -p TimersCalendar -p Persistent")
    assert "OnCalendar=Sun *-*-* 04:30:00" in drill and "Persistent=yes" in drill, drill
    assert host.service("rpa-backup-drill.timer").is_running and host.service("rpa-backup-drill.timer").is_enabled


def test_backup_unit_makes_a_verified_dump_and_the_drill_matches(host, probe_table):
    before = now(host)
    res = start_unit(host, "rpa-backup.service")
    assert res.rc == 0, res.stderr
    newest = dumps(host)[0]
    assert newest.startswith("rpa_engine-") and newest.endswith(".dump")
    sha_line = host.file(f"{BACKUP_DIR}/{newest}.sha256").content_string
    assert sha_line.split()[1] == newest
    assert host.run(f"cd {BACKUP_DIR} && sha256sum -c {newest}.sha256").rc == 0
    assert host.check_output("head -c 5 " + f"{BACKUP_DIR}/{newest}") == "PGDMP"  # custom format
    res = start_unit(host, "rpa-backup-drill.service")
    assert res.rc == 0, res.stderr
    log = journal(host, "rpa-backup-drill", "-2min")
    assert f"restore drill of {newest}" in log and "every row count matches" in log, log
    # The scratch database is gone again.
    assert sql(host, "select count(*) from pg_database where datname = 'rpa_backup_drill'") == "0"
    m = metrics(host)
    assert m["rpa_backup_last_run_success"] == 1 and m["rpa_backup_last_verify_success"] == 1
    assert m["rpa_backup_drill_success"] == 1
    assert m["rpa_backup_last_success_timestamp_seconds"] >= before - 1
    assert m["rpa_backup_last_size_bytes"] == host.file(f"{BACKUP_DIR}/{newest}").size


def test_drill_fails_when_the_restored_rows_differ(host, server, probe_table):
    newest = dumps(host)[0]
    counts_path = f"{BACKUP_DIR}/{newest}.counts.json"
    original = host.file(counts_path).content_string
    wrong = json.loads(original)
    wrong[probe_table] += 1
    put_file(server, counts_path, json.dumps(wrong))
    try:
        res = start_unit(host, "rpa-backup-drill.service")
        assert res.rc != 0
        log = journal(host, "rpa-backup-drill", "-1min")
        assert f"{probe_table}: {ROWS} rows restored, {ROWS + 1} dumped" in log, log
        assert metrics(host)["rpa_backup_drill_success"] == 0
    finally:
        put_file(server, counts_path, original)
    assert start_unit(host, "rpa-backup-drill.service").rc == 0
    assert metrics(host)["rpa_backup_drill_success"] == 1


def test_corrupted_or_truncated_copies_fail_verification(host, probe_table):
    newest = dumps(host)[0]
    work = "/var/tmp/rpa-corrupt"
    host.check_output(f"rm -rf {work} && mkdir -m 700 {work} && cp -p {BACKUP_DIR}/{newest}* {work}/")
    copy = f"{work}/{newest}"
    size = host.file(copy).size
    try:
        host.check_output(f"printf '\\x00\\xff\\x13\\x37\\x00\\xff\\x13\\x37' | "
                          f"dd of={copy} bs=1 seek={size // 2} conv=notrunc status=none")
        res = host.run(f"rpa-backup verify {copy}")
        assert res.rc != 0 and "checksum mismatch" in res.stderr, res.stderr
        # (Without the checksum a flip inside zstd's raw literals can decode "fine": the
        # sha256 written at dump time is what catches bit rot; the full read catches a
        # dump that was bad from the start, e.g. cut short.)
        # A truncated dump: `pg_restore --list` would not notice, the full read does.
        host.check_output(f"cp -p {BACKUP_DIR}/{newest} {copy} && truncate -s {size * 2 // 3} {copy} "
                          f"&& cd {work} && sha256sum {newest} > {newest}.sha256")
        assert host.run(f"docker exec -i {cname('postgres')} pg_restore --list < {copy}").rc == 0
        res = host.run(f"rpa-backup verify {copy}")
        assert res.rc != 0 and "pg_restore could not read the whole dump" in res.stderr, res.stderr
    finally:
        host.run(f"rm -rf {work}")
    assert host.run(f"rpa-backup verify {newest}").rc == 0  # the original is untouched


def test_retention_keeps_the_seven_newest_daily_dumps(host, probe_table):
    newest = dumps(host)[0]
    old = []
    for days in range(1, 11):
        stamp = host.check_output(f"date -u -d '{days} days ago' +%Y%m%dT%H%M%SZ")
        name = f"rpa_engine-{stamp}.dump"
        for suffix in ("", ".sha256", ".counts.json"):
            host.check_output(f"cp {BACKUP_DIR}/{newest}{suffix} {BACKUP_DIR}/{name}{suffix} && "
                              f"touch -d '{days} days ago' {BACKUP_DIR}/{name}{suffix}")
        old.append(name)
    assert start_unit(host, "rpa-backup.service").rc == 0
    kept = dumps(host)
    assert len(kept) == 7, kept
    assert kept[1:] == old[:6], kept  # today's new dump, then 1..6 days old
    listing = host.check_output(f"ls -A {BACKUP_DIR}").split()
    for name in old[6:]:
        assert not any(entry.startswith(name) for entry in listing), f"{name} or its side files survived"
    assert metrics(host)["rpa_backup_dumps"] == 7


def test_disk_full_fails_loudly_and_leaves_older_dumps_intact(host, probe_table):
    newest = dumps(host)[0]
    size = host.file(f"{BACKUP_DIR}/{newest}").size
    tiny = "/mnt/rpa-tiny-backups"
    older = "rpa_engine-20260101T000000Z.dump"
    host.check_output(f"mkdir -p {tiny} && mount -t tmpfs -o size={size + 64 * 1024},mode=700 rpa-tiny {tiny}")
    try:
        host.check_output(f"cp {BACKUP_DIR}/{newest} {tiny}/{older} && "
                          f"sed 's/{newest}/{older}/' {BACKUP_DIR}/{newest}.sha256 > {tiny}/{older}.sha256")
        # Nine more (tiny) dumps, 2 to 10 days old: past the 7 daily ones a successful run keeps. A run
        # whose own dump failed must prune none of them.
        stale = []
        for days in range(2, 11):
            name = "rpa_engine-" + host.check_output(f"date -u -d '{days} days ago' +%Y%m%dT%H%M%SZ") + ".dump"
            host.check_output(f"echo stale > {tiny}/{name} && touch -d '{days} days ago' {tiny}/{name}")
            stale.append(name)
        res = host.run(f"systemd-run --unit rpa-backup-diskfull --wait --collect --quiet "
                       f"/usr/local/sbin/rpa-backup --backup-dir {tiny} backup")
        assert res.rc != 0, "the backup into a full disk reported success"
        log = journal(host, "rpa-backup-diskfull", "-2min")
        assert "rpa-backup backup FAILED" in log and "no space left on device" in log.lower(), log
        assert sorted(host.check_output(f"ls -A {tiny}").split()) == sorted([older, f"{older}.sha256", *stale])
        assert host.run(f"cd {tiny} && sha256sum -c {older}.sha256").rc == 0
        m = metrics(host)
        assert m["rpa_backup_last_run_success"] == 0 and m["rpa_backup_last_verify_success"] == 0
    finally:
        host.run(f"umount {tiny} && rmdir {tiny}")
    assert start_unit(host, "rpa-backup.service").rc == 0
    assert metrics(host)["rpa_backup_last_run_success"] == 1


def test_restore_playbook_refuses_without_confirmation(host, server, probe_table):
    sql(host, "delete from backup_probe where id <= 1000")
    try:
        proc, data = run_playbook("playbooks/restore.yml")
        assert proc.returncode != 0
        failed = [t for t in executed_tasks(data, server["name"]) if t["failed"]]
        assert "restore_confirm=true" in failed[0]["msg"], failed
        assert probe_rows(host) == ROWS - 1000
    finally:
        # Put the rows back for the next test without a restore.
        sql(host, "insert into backup_probe select i, md5(i::text) from generate_series(1, 1000) i")


def checksum(host) -> str:
    return sql(host, "select md5(string_agg(payload, ',' order by id)) from backup_probe")


def test_restore_playbook_brings_deleted_rows_back(host, server, probe_table):
    assert start_unit(host, "rpa-backup.service").rc == 0
    checksum_before = checksum(host)
    sql(host, "delete from backup_probe where id % 3 = 0")
    assert probe_rows(host) < ROWS
    proc, data = run_playbook("playbooks/restore.yml", "-e", "restore_confirm=true")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert probe_rows(host) == ROWS
    assert checksum(host) == checksum_before
    # Still owned by the application role after --clean.
    assert sql(host, "select tableowner from pg_tables where tablename = 'backup_probe'") == "rpa_engine"


def test_a_failed_restore_of_the_dump_given_still_brings_the_writers_back(host, server, probe_table):
    """restore_dump names an older dump that verifies but cannot replace the live database (a view
    made since depends on its table, so --clean cannot drop it), while the newest would restore
    fine: the run fails at the restore - so it used the dump it was given - changes nothing, and
    the writers come back healthy through the gate."""
    older = None
    try:
        assert start_unit(host, "rpa-backup.service").rc == 0
        older = dumps(host)[0]
        # Dated yesterday (retention goes by mtime): the next dump, today's, does not prune it.
        host.check_output(f"touch -d '23:59 yesterday' {BACKUP_DIR}/{older}")
        sql(host, "create view rpa_test_dependent as select id from backup_probe")
        assert start_unit(host, "rpa-backup.service").rc == 0  # the newest holds the view: a good one
        assert dumps(host)[0] != older
        before = checksum(host)
        proc, data = run_playbook("playbooks/restore.yml", "-e", "restore_confirm=true", "-e", f"restore_dump={older}")
        assert proc.returncode != 0
        tasks = executed_tasks(data, server["name"])
        failed = [t for t in tasks if t["failed"]]
        assert [t["task"] for t in failed] == ["Restore the dump into the live database."], failed
        assert "rpa_test_dependent" in failed[0]["msg"] or "rpa_test_dependent" in proc.stdout, failed[0]["msg"]
        back = [t for t in tasks if t["task"] == "Bring the writers back through the health gate."]
        assert back and not back[0]["failed"], back
        for service in ("backend", "celery-worker", "celery-beat"):
            state = json.loads(host.check_output(f"docker inspect {cname(service)}"))[0]["State"]
            assert (state["Status"], state["Health"]["Status"]) == ("running", "healthy"), (service, state)
        # --single-transaction: the failed restore changed nothing.
        assert checksum(host) == before and probe_rows(host) == ROWS
    finally:
        if older:
            host.run(f"rm -f {BACKUP_DIR}/{older} {BACKUP_DIR}/{older}.sha256 {BACKUP_DIR}/{older}.counts.json")
        sql(host, "drop view if exists rpa_test_dependent")


def test_backup_playbook_fetches_a_verified_dump(host, tmp_path, probe_table):
    proc, _ = run_playbook("playbooks/backup.yml", "-e", f"backup_fetch_dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    fetched = sorted((tmp_path).rglob("*.dump"))
    assert len(fetched) == 1, list(tmp_path.rglob("*"))
    expected = (fetched[0].parent / (fetched[0].name + ".sha256")).read_text().split()[0]
    assert hashlib.sha256(fetched[0].read_bytes()).hexdigest() == expected
    assert fetched[0].name == dumps(host)[0]


def test_offsite_copy_with_restic(host, server, probe_table):
    """restic to a repository path inside the server: the off-site code path, minus the network."""
    repo = "/srv/rpa-offsite-test"
    password = "offsite-test-" + hashlib.sha256(server["name"].encode()).hexdigest()[:24]  # secret-scan: allow (made up per run)
    # keep-daily 1: restic >= 0.17 also keeps the oldest snapshot while it has fewer days than
    # keep-daily asks for, so with the default 7 a second backup today would leave two.
    extra = json.dumps({"backup_restic_repository": repo, "backup_restic_password": password,
                        "backup_keep_daily": 1})
    host.run(f"rm -rf {repo}")
    try:
        proc, _ = run_site("--tags", "backup", "-e", extra)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert host.file("/etc/rpa-engine/restic-password").mode == 0o600
        assert start_unit(host, "rpa-backup.service").rc == 0
        assert metrics(host)["rpa_backup_offsite_success"] == 1
        restic = f"RESTIC_PASSWORD_FILE=/etc/rpa-engine/restic-password restic -r {repo}"
        # The same retention there: a second backup today replaces today's snapshot (keep-daily 1).
        assert start_unit(host, "rpa-backup.service").rc == 0
        snapshots = json.loads(host.check_output(f"{restic} snapshots --json"))
        assert len(snapshots) == 1, [s["time"] for s in snapshots]
        files = host.check_output(f"{restic} ls latest --json | grep -o '\"name\":\"[^\"]*\"'")
        assert f'"name":"{dumps(host)[0]}"' in files, files
        # Encrypted: the dump's bytes are nowhere in the repository.
        assert host.run(f"grep -rl PGDMP {repo}").rc == 1
    finally:
        proc, _ = run_site("--tags", "backup")
        assert proc.returncode == 0, proc.stdout[-3000:]
        host.run(f"rm -rf {repo}")
    assert not host.file("/etc/rpa-engine/restic-password").exists
    assert start_unit(host, "rpa-backup.service").rc == 0
    assert "rpa_backup_offsite_success" not in metrics(host)
