"""Point-in-time recovery (issue 17): WAL and base backups in the encrypted off-site repository, and a
restore to a second between two known writes."""

from __future__ import annotations

import json
import subprocess
import time

from conftest import PROJECT_DIR, alias_inventory, cname, executed_tasks, run_playbook, wait_for

OFFSITE = "rpa-offsite"  # testbed.py offsite: the SFTP host on the controller's engine


def sql(host, statement: str, db: str = "rpa_engine") -> str:
    return host.check_output(
        f"docker exec {cname('postgres')} psql -X -tAq -v ON_ERROR_STOP=1 -U postgres -d {db} -c "
        + json.dumps(statement))


def offsite(*argv: str) -> str:
    return subprocess.run(["docker", "exec", OFFSITE, *argv], check=True, capture_output=True, text=True).stdout


def archived_through(host) -> str:
    """Switch to a new WAL segment and wait until the one holding everything so far is archived.

    The segment is the one holding the last byte written so far, read before the switch: archive_timeout
    may switch it out first, and pg_switch_wal() then has nothing to switch and names the new, empty
    segment, which an idle server never archives - what a CI run waited 150 s for. (The write position
    itself then sits on the new segment's first byte, hence the - 1.)"""
    segment = sql(host, "select pg_walfile_name(pg_current_wal_lsn() - 1)", db="postgres")
    sql(host, "select pg_switch_wal()", db="postgres")
    try:
        # Why 90 s: one archive-push is an SFTP session to the off-site host, and pgBackRest's io-timeout is
        # 60 s; the restore's own wait (roles/postgres/tasks/pitr_restore.yml) is as long. A failure prints
        # what the archiver and its status directory held.
        wait_for(lambda: sql(host, "select last_archived_wal from pg_stat_archiver", db="postgres") >= segment, 90,
                 f"WAL segment {segment} archived")
    except AssertionError as late:
        # Why: the archiver's own record of its failures (a failing archive-push backs off for up to 60 s),
        # whether a push is still running (a stalled transfer rather than a failing one), and whether the
        # segment was ever marked ready (pg_wal/archive_status) - an archiver never told of it.
        raise AssertionError(f"{late}; pg_stat_archiver: " + sql(
            host, "select format('archived %s, failed %s times, last %s at %s; now writing %s', last_archived_wal, "
                  "failed_count, last_failed_wal, last_failed_time, pg_walfile_name(pg_current_wal_lsn())) "
                  "from pg_stat_archiver", db="postgres")
            + "; archive_status: " + host.run(f"docker exec {cname('postgres')} ls -l "
                                              "/var/lib/postgresql/data/pg_wal/archive_status").stdout[-800:]
            + "; running: " + host.run(f"docker exec {cname('postgres')} ps -eo etimes,args").stdout[-1500:]) from None
    return segment


def test_wal_and_base_backups_reach_the_offsite_repository_encrypted(host, server):
    sql(host, "create table if not exists pitr_probe (label text primary key, at timestamptz not null default now())")
    sql(host, "insert into pitr_probe (label) values ('plaintext-marker-7f3a') on conflict do nothing")
    segment = archived_through(host)
    repo = f"/repo/{server['name']}"
    names = offsite("find", repo, "-type", "f").split()
    assert any(f"/{segment}-" in name for name in names), f"{segment} not in {repo}"
    assert any(name.endswith("/backup.info") for name in names)
    # pgBackRest encrypts before anything leaves the server: its info files are OpenSSL-salted
    # ciphertext, and no file holds the row written above.
    assert offsite("head", "-c", "8", f"{repo}/backup/rpa/backup.info") == "Salted__"
    assert subprocess.run(["docker", "exec", OFFSITE, "grep", "-rl", "plaintext-marker-7f3a", repo],
                          capture_output=True).returncode == 1



def test_the_metrics_say_the_repository_is_up_and_the_wal_archived(host):
    """rpa-pitr-metrics (its timer runs it every minute; here once, now) on the live server and repository."""
    assert host.run("systemctl start rpa-pitr-metrics.service").rc == 0
    metrics = {}
    for line in host.file("/var/lib/node_exporter/textfile_collector/rpa_pitr.prom").content_string.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            metrics[name.split("{")[0]] = float(value)
    assert metrics["rpa_pitr_repo_up"] == 1 and metrics["rpa_pitr_metrics_success"] == 1, metrics
    assert metrics["rpa_pitr_base_backups"] >= 1
    assert metrics["rpa_pitr_wal_unarchived_seconds"] < 300, metrics
    assert host.check_output("systemctl is-enabled rpa-pitr-metrics.timer rpa-pitr-backup.timer").split() == \
        ["enabled", "enabled"]


def test_a_restore_to_a_point_in_time_keeps_earlier_writes_and_drops_later_ones(host, server):
    sql(host, "create table if not exists pitr_probe (label text primary key, at timestamptz not null default now())")
    sql(host, "delete from pitr_probe where label in ('before', 'after', 'after-restore')")
    sql(host, "insert into pitr_probe (label) values ('before')")
    time.sleep(1.2)
    # Whole seconds: strictly after 'before' committed, and at least a second before 'after'.
    target = host.check_output("date -u +%Y-%m-%dT%H:%M:%SZ")
    time.sleep(1.2)
    sql(host, "insert into pitr_probe (label) values ('after')")
    archived_through(host)
    backend = host.check_output(f"docker inspect --format '{{{{.Id}}}}' {cname('backend')}")

    # Refused before anything stops: a time in the future.
    proc, _ = run_playbook("playbooks/restore.yml", "-e", "restore_confirm=true",
                           "-e", "restore_target_time=2099-01-01T00:00:00Z")
    assert proc.returncode != 0 and "in the future" in proc.stdout, proc.stdout[-2000:]
    assert host.check_output(f"docker inspect --format '{{{{.Id}}}} {{{{.State.Running}}}}' {cname('backend')}") \
        == f"{backend} true"

    proc, _ = run_playbook("playbooks/restore.yml", "-e", "restore_confirm=true", "-e", f"restore_target_time={target}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sql(host, "select string_agg(label, ',' order by label) from pitr_probe where label in ('before', 'after')") \
        == "before"
    assert sql(host, "select pg_is_in_recovery()", db="postgres") == "f"
    # The writers are back through the gate, and the new timeline is archived like the old one.
    assert host.check_output(f"docker inspect --format '{{{{.State.Health.Status}}}}' {cname('backend')}") == "healthy"
    sql(host, "insert into pitr_probe (label) values ('after-restore')")
    archived_through(host)


def test_recover_refuses_a_server_with_a_database_of_its_own(host, server):
    """recover.yml builds a new server; pointed at a live one it stops in its first play, having changed nothing."""
    proc, data = run_playbook("playbooks/recover.yml")
    assert proc.returncode != 0
    failed = [t for play in data["plays"] for t in play["tasks"] if t["hosts"][server["name"]].get("failed")]
    assert [t["task"]["name"] for t in failed] == ["Refuse a host with a database of its own unless told to keep it."]
    assert "never overwrites one" in failed[0]["hosts"][server["name"]]["msg"]
    assert data["stats"][server["name"]]["changed"] == 0 and len(data["plays"]) == 1


def test_a_repository_the_inventory_cannot_read_stops_the_run_before_pgbackrests_files_change(host, server, tmp_path):
    """A wrong passphrase and an unreachable host, one alias of the server each, in one run: the probe
    (pgbackrest info with the inventory's settings) stops each before any of pgBackRest's files changes."""
    conf = f"{PROJECT_DIR}/config/pgbackrest/pgbackrest.conf"
    before = host.check_output(f"stat -c %Y {conf}")
    # The server's own repository path: the inventories derive it from the host's name, an alias's own.
    repo = {"postgres_pitr_repo_path": f"/repo/{server['name']}"}
    cases = {"pitr-wrong-passphrase": ({"postgres_pitr_cipher_pass": "not-the-repository-passphrase-0123456789", **repo},
                                       "unable to load info file"),
             "pitr-unreachable": ({"postgres_pitr_repo_port": 2298, **repo}, "unable to connect")}
    inventory = alias_inventory(tmp_path, {name: host_vars for name, (host_vars, _) in cases.items()})
    proc, data = run_playbook("site.yml", "--tags", "postgres", inventory=inventory,
                              env_extra={"ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory"})
    assert proc.returncode != 0
    for name, (_, words) in cases.items():
        tasks = executed_tasks(data, name)
        failed = [t for t in tasks if t["failed"]]
        assert [t["task"].split(" : ")[-1] for t in failed] == \
            ["Refuse a repository the inventory's settings cannot read."], tasks[-3:]
        assert words in failed[0]["msg"] and "postgres_pitr_cipher_pass" in failed[0]["msg"], failed[0]["msg"]
        assert not any(t["changed"] for t in tasks)
    assert host.check_output(f"stat -c %Y {conf}") == before
