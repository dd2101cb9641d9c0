"""Patroni + PostgreSQL on the pg_cluster hosts (rpa-so-1, rpa-so-2; issue 21): one leader and a streaming
replica formed from the groups, and a failover when the leader's Patroni and PostgreSQL are killed (SIGKILL)
that loses no committed row, resumes writes within 30 s and brings the old leader back as a replica.

The writer is the application's own login and database through the app host's one database address
(roles/pg_endpoint: HAProxy on 127.0.0.1:5000, forwarding to the member whose REST API answers /primary),
so the failover needs no change in the client."""

from __future__ import annotations

import datetime
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import VAULT_FILE, address, app_dsn, logs_in, playbook, ssh, ssh_argv, ssh_start, vault, wait_for

MEMBERS = ("rpa-so-1", "rpa-so-2")
PATRONICTL = "patronictl -c /etc/patroni/config.yml"
# Seconds within which writes through the application's login succeed again after the leader is killed
# (the bound; the scenario's leader lock, ttl, is 20 s).
RESUME_WITHIN = 30

# Copied to the member that writes (files/failover_writer.py; bench/failover uses it too).
WRITER = (Path(__file__).parent / "files" / "failover_writer.py").read_text()


def members() -> dict[str, dict]:
    listed = json.loads(ssh("rpa-so-1", f"{PATRONICTL} list -f json"))
    return {m["Member"]: m for m in listed}


def psql_app(name: str, sql: str) -> str:
    """sql as the application, on app host name, through its endpoint. The DSN travels on stdin: no password in
    a process list."""
    return ssh(name, f"read -r dsn; psql \"$dsn\" -XAtc {json.dumps(sql)}", app_dsn() + "\n")


def test_patroni_has_one_leader_and_a_streaming_replica_on_the_private_addresses():
    # Synchronous replication (the scenario's patroni_synchronous_mode): the replica is the leader's
    # synchronous standby, so no commit returns before it has the commit's WAL. Polled: a replica that has
    # just (re)connected is off the list for a loop or two (see the failover fixture).
    def paired() -> dict | None:
        now = members()
        return now if sorted(m["Role"] for m in now.values()) == ["Leader", "Sync Standby"] else None

    found = wait_for(paired, 30, f"a leader and its synchronous standby ({members()})")
    assert sorted(found) == list(MEMBERS), found
    for name, member in found.items():
        assert member["Host"] == address(name), member
        assert member["State"] == ("running" if member["Role"] == "Leader" else "streaming"), member
    leader = next(n for n, m in found.items() if m["Role"] == "Leader")
    assert ssh(leader, "runuser -u postgres -- psql -XAtc 'SELECT sync_state FROM pg_stat_replication'").split() == [
        "sync"]
    # Patroni created and runs the only cluster: the package made none of its own on 5432.
    for name in MEMBERS:
        assert ssh(name, "pg_lsclusters --no-header").strip() == "", name
        # The file holds every Patroni password: the postgres user's alone.
        assert ssh(name, "stat -c '%U %a' /etc/patroni/config.yml").split() == ["postgres", "600"], name
    # The witness is not a member: it has neither Patroni nor PostgreSQL.
    assert ssh("rpa-so-3", "command -v patroni; ls /usr/lib/postgresql 2>/dev/null; true").strip() == ""


def leader_and_replica_with_the_probe_table() -> tuple[str, str]:
    """(leader, replica), once the table the writers insert into exists."""
    found = members()
    leader = next(n for n, m in found.items() if m["Role"] == "Leader")
    replica = next(n for n in found if n != leader)
    psql_app(replica, "CREATE TABLE IF NOT EXISTS failover_probe (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
    return leader, replica


def test_the_application_writes_on_the_leader_and_reads_the_row_on_the_replica():
    leader, replica = leader_and_replica_with_the_probe_table()
    # Both app hosts' endpoints reach the leader: its address, not in recovery.
    for name in MEMBERS:
        assert psql_app(name, "SELECT inet_server_addr(), pg_is_in_recovery()").split() == [f"{address(leader)}|f"], name
    written = psql_app(replica, "INSERT INTO failover_probe DEFAULT VALUES RETURNING id").split()[0]
    # The replica's own copy, read on its socket: streamed from the leader.
    wait_for(lambda: ssh(replica, "runuser -u postgres -- psql -d rpa_engine -XAtc "
                                  f"'SELECT count(*) FROM failover_probe WHERE id = {written}'").strip() == "1",
             10, "the row on the replica")


def assert_the_probes_pass() -> None:
    """The role's `verify` entry point (playbooks/rotate-secrets.yml's proof) on both members, one run: the REST
    API's, the replication login's and the superuser's passwords accepted, a wrong one refused - and the same
    probes with the expectations swapped fail."""
    proc = playbook("molecule/scaleout/tests/files/patroni_verify.yml")
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    # Six probes per member ran (none skipped), and the swapped ones failed on both.
    assert out.count("swapped probes: failed") == 2 and "swapped probes: passed" not in out, out[-3000:]
    for task in ("Try the REST API's password.", "Try the replication login's password.",
                 "Try the database logins' passwords."):
        assert task in out, out[-3000:]
    assert "skipping: [rpa-so-" not in out.split("Prove the vault's passwords")[1].split("Expect the wrong password")[0], out[-3000:]


ROTATE_BOTH = ["patroni_replication_password", "patroni_restapi_password"]
# The postgres role's logins, whose part the patroni role plays on several servers.
ROTATE_DB = ["postgres_superuser_password", "postgres_monitor_password"]


def exporters_logged_in() -> dict[str, str]:
    """Each member's Postgres exporter on the monitoring host (the witness): its pg_up now."""
    found = {}
    for name in MEMBERS:
        found[name] = ssh("rpa-so-3", "docker exec $(docker ps -q --filter "
                                      f"label=com.docker.compose.service=postgres-exporter-{name}) "
                                      "wget -qO- http://127.0.0.1:9187/metrics | grep '^pg_up '").strip()
    return found


def test_a_rotation_that_fails_on_one_host_rolls_every_host_back():
    """The rotation failing on purpose after its test step on rpa-so-2 alone: the other hosts stop where the
    rotation waits for every host, every host goes back to the vault's values, the vault is unchanged, and
    both members take the vault's passwords and refuse a wrong one (the rotation's own probes, which also must
    fail with their expectations swapped)."""
    before = VAULT_FILE.read_bytes()
    proc = playbook("playbooks/rotate-secrets.yml", "-e", json.dumps(
        {"rpa_rotate": ROTATE_BOTH + ["postgres_superuser_password"], "rpa_rotation_fail_at": "test",
         "rpa_rotation_fail_hosts": ["rpa-so-2"]}))
    out = proc.stdout
    assert proc.returncode != 0, out[-3000:]
    assert 'failed at "Fail on purpose after the test step (tests only)."' in out, out[-3000:]
    assert "The rotation did not pass on rpa-so-2" in out and 'failed at "Test: every host passed."' in out, out[-3000:]
    assert VAULT_FILE.read_bytes() == before
    secrets = vault()
    for name in MEMBERS:
        config = yaml.safe_load(ssh(name, "cat /etc/patroni/config.yml"))
        assert config["postgresql"]["authentication"]["replication"]["password"] == \
            secrets["vault_patroni_replication_password"], name
        assert config["restapi"]["authentication"]["password"] == secrets["vault_patroni_restapi_password"], name
        assert config["postgresql"]["authentication"]["superuser"]["password"] == \
            secrets["vault_postgres_superuser_password"], name
        assert logs_in(name, "postgres", secrets["vault_postgres_superuser_password"]), name
    assert_the_probes_pass()


def test_a_rotation_of_the_clusters_logins_reaches_every_member_and_keeps_them_streaming():
    """playbooks/rotate-secrets.yml on the three servers (the scenario's own copy of the vault) for both of
    Patroni's logins and the database's superuser's and exporters' passwords (the patroni role playing the
    postgres role's part), at -vvv: one draw for every host (both members' files hold the vault's new values),
    its own probes refuse the old ones, nothing is printed, every member takes the new superuser and monitoring
    passwords and refuses the old ones, each member's exporter on the monitoring host logs in again, and the
    replica streams again with the new replication password when its connection is cut."""
    before = vault()
    proc = playbook("playbooks/rotate-secrets.yml", "-vvv",
                    "-e", json.dumps({"rpa_rotate": ROTATE_BOTH + ROTATE_DB}))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = vault()
    keys = ("vault_patroni_replication_password", "vault_patroni_restapi_password",
            "vault_postgres_superuser_password", "vault_postgres_monitor_password")
    assert all(after[k] != before[k] for k in keys), "the vault was not rotated"
    assert [k for k in keys for v in (before, after) if v[k] in output] == [], "a password was printed at -vvv"
    # The postgres role's part went to the patroni role's verify on both members (its probes' outcome is no_log:
    # the logins below are the proof).
    assert output.count("TASK [patroni : Try the database logins' passwords.]") >= 2, proc.stdout[-3000:]
    for name in MEMBERS:
        config = yaml.safe_load(ssh(name, "cat /etc/patroni/config.yml"))
        assert config["postgresql"]["authentication"]["replication"]["password"] == after[keys[0]], name
        assert config["restapi"]["authentication"]["password"] == after[keys[1]], name
        assert config["postgresql"]["authentication"]["superuser"]["password"] == after[keys[2]], name
        for user, key in (("postgres", keys[2]), ("rpa_monitor", keys[3])):
            assert logs_in(name, user, after[key]) and not logs_in(name, user, before[key]), (name, user)
    assert exporters_logged_in() == dict.fromkeys(MEMBERS, "pg_up 1")
    # The streaming connection stays open through a password change: cut it, and the replica must log in anew.
    leader, replica = leader_and_replica_with_the_probe_table()
    ssh(leader, "runuser -u postgres -- psql -XAtc 'SELECT pg_terminate_backend(pid) FROM pg_stat_replication'")
    wait_for(lambda: ssh(leader, "runuser -u postgres -- psql -XAtc \"SELECT count(*) FROM pg_stat_replication "
                                 "WHERE state = 'streaming' AND backend_start > now() - interval '60 seconds'\"").strip()
             == "1", 30, f"{replica} streaming again on a new connection")
    # That the role then changes nothing is test_scaleout's check-mode run, after this module (a run of
    # patroni.yml of its own here cost 30 s).


@pytest.fixture(scope="module")
def failover():
    """The leader's Patroni and PostgreSQL killed (SIGKILL, every process of the unit) while the writer runs on
    the replica; the unit is then kept down, as on a host that died, until the writes resume."""
    old, survivor = leader_and_replica_with_the_probe_table()
    # Synchronous replication guarantees that nothing committed is lost, so Patroni promotes only the member
    # etcd names as the synchronous standby. Right after the replica reconnects (the rotations before this
    # one reload it) the leader has taken it off that list for a moment: a leader lost then is not replaced
    # at all (seen once: killed 2 s after such a reconnect, the replica stayed a replica). The kill waits.
    wait_for(lambda: members().get(survivor, {}).get("Role") == "Sync Standby", 30,
             f"{survivor} the synchronous standby")
    top = int(psql_app(survivor, "SELECT coalesce(max(id), 0) FROM failover_probe").split()[0])
    ssh(survivor, "cat > /root/failover_writer.py", WRITER)
    writer = ssh_start(survivor, "python3 /root/failover_writer.py 90")
    writer.stdin.write(app_dsn() + "\n")
    writer.stdin.flush()
    # The writer's first rows, on the old leader.
    wait_for(lambda: int(psql_app(survivor, f"SELECT count(*) FROM failover_probe WHERE id > {top}").split()[0])
             >= 10, 20, "the writer's first rows")
    # Every process of the unit at once, then no restart: a Patroni restarted within ttl would keep its lock.
    ssh(old, "systemctl kill --signal=SIGKILL patroni; systemctl stop patroni")
    try:
        out, err = writer.communicate(timeout=150)
    finally:
        writer.kill()
    assert writer.returncode == 0, err
    result = json.loads(out)
    return {"old": old, "new": survivor, **result}


def test_a_killed_leader_is_replaced_and_writes_resume_within_30_s(failover):
    committed, failures = failover["committed"], failover["failures"]
    assert failures, "the writer never saw the leader go: the kill did not happen"
    first_failure = failures[0][0]
    before = [t for t, _ in committed if t < first_failure]
    after = [t for t, _ in committed if t > first_failure]
    assert before and len(after) >= 20, (len(before), len(after), failures[-3:])
    # From the last write that succeeded before the outage to the first after it.
    resumed_in = after[0] - before[-1]
    assert resumed_in <= RESUME_WITHIN, (resumed_in, failures[:3])
    found = members()
    assert found[failover["new"]]["Role"] == "Leader" and found[failover["new"]]["State"] == "running", found


def test_no_committed_row_is_lost_and_the_old_leader_rejoins_as_a_replica(failover):
    ids = [i for _, i in failover["committed"]]
    new = failover["new"]
    query = f"SELECT count(*) FROM failover_probe WHERE id = ANY(ARRAY[{','.join(map(str, ids))}]::bigint[])"
    assert psql_app(new, query).strip() == str(len(ids))
    old = failover["old"]
    ssh(old, "systemctl start patroni")

    def streaming_while_the_application_writes() -> bool:
        # A rewound member is consistent, and Patroni calls it streaming, only once it has replayed WAL past
        # where the leader was at the rewind: on a leader nobody writes to, that waits for the next write
        # (seen: 85 s of an idle leader). The application writes; so does this check, once per poll.
        psql_app(new, "INSERT INTO failover_probe DEFAULT VALUES")
        return members().get(old, {}).get("State") == "streaming"

    # Before its pg_rewind, Patroni pushes each WAL segment the old leader had not archived to the repository,
    # one pgbackrest archive-push at a time (rejoin 6-10 s here, idle or loaded): 150 s is room for a slow
    # repository under the whole suite's load.
    try:
        wait_for(streaming_while_the_application_writes, 150, f"{old} streaming again")
    except AssertionError as error:
        # What Patroni did on the old leader (a CI run once timed out at 90 s here with no trace of why).
        # (HAProxy's checks, which close before Patroni's body is written, fill it with tracebacks: left out.)
        journal = ssh(old, "journalctl -u patroni --no-pager -o cat --since -3min | grep -v -e '^ ' -e Traceback "
                           "-e 'Exception happened' -e ConnectionResetError | tail -n 80")
        raise AssertionError(f"{error}\n{members()}\n{journal}") from None
    # The synchronous standby again: the next failover may promote it without losing a commit.
    wait_for(lambda: members()[old]["Role"] == "Sync Standby", 30, f"{old} the synchronous standby")
    # Its own copy has every committed row (rewound if it had diverged, then streamed).
    wait_for(lambda: ssh(old, f"runuser -u postgres -- psql -d rpa_engine -XAtc {json.dumps(query)}").strip()
             == str(len(ids)), 30, f"every committed row on {old}")


def pgbackrest(name: str, args: str) -> str:
    return ssh(name, f"runuser -u postgres -- pgbackrest --stanza=rpa-engine {args}")


def test_the_leader_archives_and_backs_up_wherever_it_is(failover):
    """The cluster's one repository (the test bed's off-site host): the converge's first full backup, taken
    on the first leader; after the failover, the new leader's WAL reaches it (pgbackrest check switches a
    segment and waits for it there), and of the two members' backup units only the leader's backs up."""
    new, old = failover["new"], failover["old"]
    before = json.loads(pgbackrest(new, "info --output=json"))[0]
    assert before["status"]["message"] == "ok" and len(before["backup"]) >= 1, before
    pgbackrest(new, "check")
    for name in (old, new):
        ssh(name, "systemctl start rpa-patroni-backup.service")
    after = json.loads(pgbackrest(new, "info --output=json"))[0]
    assert len(after["backup"]) == len(before["backup"]) + 1, after["backup"]
    assert after["backup"][-1]["type"] == "full", after["backup"][-1]
    # On the replica the unit's condition (the REST API's /primary) skipped the backup: not a failure.
    assert ssh(old, "systemctl show -p Result --value rpa-patroni-backup.service").strip() == "exec-condition"
    assert ssh(new, "systemctl show -p Result --value rpa-patroni-backup.service").strip() == "success"


OLD_HOST = "rpa-move-old-postgres"


def old_host(*argv: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["docker", "exec", "-i", OLD_HOST, *argv], input=stdin, capture_output=True, timeout=120)
    assert proc.returncode == 0, (argv, proc.stderr.decode(errors="replace")[-2000:])
    return proc.stdout


def test_a_single_hosts_dump_moves_onto_the_leader_and_the_replica_streams_it(tmp_path):
    """Moving from one host (playbooks/move-to-cluster.yml), after the failover, so the leader is wherever it
    went. The old server's Postgres is a stand-in: the single-host image on this controller's engine, with no
    network, holding the application's data as the cluster has it plus rows it took since; its pg_dump -Fc
    (what rpa-backup writes on one host) replaces the database on the leader with the application's login
    locked meanwhile. Without move_confirm nothing starts."""
    login = vault().get("vault_postgres_app_login", "rpa_engine")
    (leader,) = [n for n, m in members().items() if m["Role"] == "Leader"]
    (replica,) = [n for n in MEMBERS if n != leader]
    dump = tmp_path / "rpa_engine-20261203T031500Z.dump"
    mark = f"taken on one host, run {uuid.uuid4().hex}"
    refused = playbook("playbooks/move-to-cluster.yml", "-e", f"move_dump={dump}")
    assert refused.returncode != 0 and "Re-run with -e move_confirm=true" in refused.stdout, refused.stdout[-2000:]
    subprocess.run(["docker", "rm", "-f", OLD_HOST], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", OLD_HOST, "--network", "none", "-e", f"POSTGRES_USER={login}",
                    "-e", "POSTGRES_PASSWORD=stand-in-only-0123456789", "-e", "POSTGRES_DB=rpa_engine",
                    "rpa-testbed/postgres:latest"], check=True, capture_output=True)
    try:
        wait_for(lambda: subprocess.run(["docker", "exec", OLD_HOST, "pg_isready", "-U", login, "-d", "rpa_engine"],
                                        capture_output=True).returncode == 0, 60, "the old server's stand-in")
        cluster = subprocess.run(ssh_argv(leader, "runuser -u postgres -- pg_dump -Fc rpa_engine"),
                                 capture_output=True, timeout=120, check=True).stdout
        old_host("pg_restore", "-U", login, "-d", "rpa_engine", "--no-owner", "--no-privileges", stdin=cluster)
        # This run's own mark: rows an earlier run moved (the cluster has them then) do not count.
        old_host("psql", "-U", login, "-d", "rpa_engine", "-v", "ON_ERROR_STOP=1", "-Xqc",
                 "DROP TABLE IF EXISTS moved_rows; CREATE TABLE moved_rows (id int PRIMARY KEY, note text); "
                 f"INSERT INTO moved_rows SELECT g, '{mark}' FROM generate_series(1, 500) g")
        dump.write_bytes(old_host("pg_dump", "-Fc", "-U", login, "rpa_engine"))
    finally:
        subprocess.run(["docker", "rm", "-f", OLD_HOST], capture_output=True)
    proc = playbook("playbooks/move-to-cluster.yml", "-e", "move_confirm=true", "-e", f"move_dump={dump}")
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"{dump.name} restored into rpa_engine on {leader} in" in out, out[-2000:]
    # The application's login works again, through its endpoint, and reads every moved row; the replica streams them.
    query = f"SELECT count(*) FROM moved_rows WHERE note = '{mark}'"
    assert psql_app("rpa-so-1", query).strip() == "500"
    wait_for(lambda: ssh(replica, f"runuser -u postgres -- psql -d rpa_engine -XAtc {json.dumps(query)}").strip() == "500",
             15, "the moved rows on the replica")
    assert ssh(leader, "find /var/tmp -maxdepth 1 -name 'rpa-move-*' | wc -l").strip() == "0"


def test_the_cluster_goes_back_to_a_point_in_time_from_its_repository():
    """playbooks/restore.yml on the cluster (after the move, so the leader is wherever the failover put it): a
    row committed before the target time is there again, one committed after it is gone, every row of the
    earlier tests is kept, the cluster has a leader and its synchronous standby again, the application logs
    in through its endpoint, and each member's previous data directory is kept aside. Without restore_confirm,
    or with a time before the oldest backup, nothing stops."""
    refused = playbook("playbooks/restore.yml", "-e", "restore_target_time=latest")
    assert refused.returncode != 0 and "Re-run with -e restore_confirm=true" in refused.stdout, refused.stdout[-2000:]
    too_early = playbook("playbooks/restore.yml", "-e", "restore_confirm=true", "-e", "restore_target_time=2020-01-01T00:00:00Z")
    assert too_early.returncode != 0 and "is outside the recovery window" in too_early.stdout, too_early.stdout[-2000:]
    assert "patroni_pitr_window_days" in too_early.stdout and "TASK [patroni : Stop Patroni" not in too_early.stdout, \
        too_early.stdout[-2000:]
    psql_app("rpa-so-1", "CREATE TABLE IF NOT EXISTS restore_probe (note text); TRUNCATE restore_probe; "
                         "INSERT INTO restore_probe VALUES ('kept')")
    kept = psql_app("rpa-so-1", "SELECT count(*) FROM failover_probe").strip()
    # pgBackRest's target has whole seconds: one whole second after the kept row and before the lost one.
    target = int(time.time()) + 2
    time.sleep(target + 1.2 - time.time())
    psql_app("rpa-so-1", "INSERT INTO restore_probe VALUES ('lost'); INSERT INTO failover_probe DEFAULT VALUES")
    when = datetime.datetime.fromtimestamp(target, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    proc = playbook("playbooks/restore.yml", "-e", "restore_confirm=true", "-e", f"restore_target_time={when}",
                    timeout=600)
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert f"The cluster rpa-engine was restored to {when} on" in out, out[-2000:]
    assert psql_app("rpa-so-1", "SELECT string_agg(note, ',') FROM restore_probe").strip() == "kept"
    assert psql_app("rpa-so-2", "SELECT count(*) FROM failover_probe").strip() == kept
    wait_for(lambda: sorted(m["Role"] for m in members().values()) == ["Leader", "Sync Standby"], 60,
             f"a leader and its synchronous standby after the restore ({members()})")
    # The application serves again on both app hosts (its backend's health reads the database): its tasks,
    # which Swarm may have restarted while the database was away, reconnect by themselves.
    wait_for(lambda: all(ssh(name, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/api/health; true")
                         == "200" for name in MEMBERS), 180, "both backends healthy after the restore")
    for name in MEMBERS:
        kept_aside = ssh(name, "ls -d /var/lib/postgresql/17/rpa-engine.before-restore-*").split()
        assert len(kept_aside) == 1, (name, kept_aside)
        # ... where the run said it is.
        assert f"previous data directory is kept at {kept_aside[0]}:" in out, out[-2000:]
        # The test's own cleanup: the copy has served its purpose here.
        ssh(name, f"rm -rf {kept_aside[0]}")
