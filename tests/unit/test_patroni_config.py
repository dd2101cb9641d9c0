"""The patroni role's configuration file, rendered on the controller for the example inventories' members
(tests/unit/files/patroni_config.yml; no host is contacted): who pg_hba lets in."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# The vault's values (made up), and no off-site repository: pg_hba does not depend on it.
EXTRA = {**{key: f"Fake-{key.split('_')[-2]}-0000000000000000000000" for key in (
    "vault_postgres_superuser_password", "vault_patroni_replication_password", "vault_patroni_restapi_password",
    "vault_postgres_app_password")}, "patroni_pitr_repo_host": ""}


def rendered(inventory: str, *extra: str) -> dict[str, dict]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CACHE_PLUGIN="ansible.builtin.memory", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    env.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)
    proc = subprocess.run(["ansible-playbook", "tests/unit/files/patroni_config.yml", "-i", str(ROOT / inventory),
                           "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=9", "-e", json.dumps(EXTRA), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # The JSON result, then profile_tasks' table.
    data, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    # One entry per host under the Mitogen strategy, one for all under linear: either way, every host's.
    return {host: result["msg"] for task in data["plays"][0]["tasks"] if task["task"]["name"] == "Print the file."
            for host, result in task["hosts"].items()}


def hba(config: dict) -> list[str]:
    return config["postgresql"]["pg_hba"]


def test_the_ha_members_admit_the_app_login_from_the_app_hosts_haproxy():
    configs = rendered("inventory/ha")
    assert sorted(configs) == ["rpa-db-1", "rpa-db-2"]
    for host, config in configs.items():
        lines = hba(config)
        # The app hosts' HAProxy (roles/pg_endpoint) connects from their private addresses, with either of the
        # application's twin logins (a rotation moves it from one to the other).
        for app in ("10.0.0.11/32", "10.0.0.12/32"):
            assert f"host rpa_engine rpa_engine,rpa_engine_alt {app} scram-sha-256" in lines, (host, lines)
            # ... for the application's database and login only: no replication, no superuser from there.
            assert [line for line in lines if app in line] == [f"host rpa_engine rpa_engine,rpa_engine_alt {app} scram-sha-256"]
        # The witness holds an etcd member, not a client of Postgres.
        assert not [line for line in lines if "10.0.0.31" in line], lines
        # Replication from the members alone, and from the member itself (Patroni reads its own timeline so).
        assert [line for line in lines if line.startswith("host replication")] == [
            "host replication replicator 127.0.0.1/32 scram-sha-256",
            "host replication replicator 10.0.0.21/32 scram-sha-256", "host replication replicator 10.0.0.22/32 scram-sha-256"]



def test_the_split_examples_one_member_uses_its_own_etcd_and_admits_the_app_host():
    """The split shape's db host: a cluster of one (no failover), its etcd on itself, the app host's HAProxy let in."""
    configs = rendered("inventory/split")
    assert sorted(configs) == ["rpa-db-1"]
    config = configs["rpa-db-1"]
    assert config["etcd3"]["hosts"] == ["10.0.0.21:2379"], config["etcd3"]
    lines = hba(config)
    assert [line for line in lines if "10.0.0.11" in line] == ["host rpa_engine rpa_engine,rpa_engine_alt 10.0.0.11/32 scram-sha-256"]
    assert [line for line in lines if line.startswith("host replication")] == [
        "host replication replicator 127.0.0.1/32 scram-sha-256", "host replication replicator 10.0.0.21/32 scram-sha-256"]


def test_only_a_restore_bootstraps_from_the_repository_with_the_targets_options():
    """playbooks/restore.yml's restore member (tasks/restore.yml) bootstraps with pgBackRest's restore to the
    target, keeping the recovery settings it writes; Patroni splits the command as a shell would, so the
    target's space stays inside one argument. Every other file has no bootstrap method of its own (initdb)."""
    import shlex
    assert "method" not in rendered("inventory/split")["rpa-db-1"]["bootstrap"]
    target = {"options": ["--type=time", "--target=2026-12-01 03:30:00+00", "--target-action=promote"]}
    # rpa_pg_major as an inventory sets it: here the role's fallback (the postgres role's image) is not in reach.
    config = rendered("inventory/split", "-e", json.dumps({"__patroni_restoring": True, "rpa_pg_major": "17",
                                                           "__patroni_restore_target": target}))["rpa-db-1"]
    bootstrap = config["bootstrap"]
    assert bootstrap["method"] == "pgbackrest"
    assert {k: v for k, v in bootstrap["pgbackrest"].items() if k != "command"} == {
        "keep_existing_recovery_conf": True, "no_params": True}
    # The restored cluster archives at once: its new timeline's history file must reach the repository.
    assert bootstrap["dcs"]["postgresql"]["parameters"]["archive_command"] == \
        "pgbackrest --stanza=rpa-engine archive-push %p"
    assert shlex.split(bootstrap["pgbackrest"]["command"]) == [
        "pgbackrest", "--stanza=rpa-engine", "--pg1-path=/var/lib/postgresql/17/rpa-engine", "--type=time",
        "--target=2026-12-01 03:30:00+00", "--target-action=promote", "restore"]
