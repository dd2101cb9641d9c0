"""The data tier: Postgres behind PgBouncer, Redis - real services in the server.

Clients are throw-away containers that the tests start on the project's
Compose network, the way the application reaches these services.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from conftest import (kill_and_time_recovery, AUTH_REFUSED, PROJECT, PROJECT_DIR, app_login, cname, container, executed_tasks, run_site)

NETWORK = f"{PROJECT}_default"
PGB_IMAGE = "rpa-testbed/pgbouncer:latest"
PG_IMAGE = "rpa-testbed/postgres:latest"
REDIS_IMAGE = "rpa-testbed/redis:latest"
APP_OWNER = APP_DB = "rpa_engine"


def client(host, image: str, argv: list[str], env_file: str | None = None, env: dict | None = None,
           check: bool = False, entrypoint: str | None = None):
    """Run a command in a new container on the project network (removed afterwards).

    Real credentials come in env_file (see conftest.client_env), never on the command line.
    """
    env_args = f"--env-file {env_file} " if env_file else ""
    env_args += " ".join(f"-e {k}={shlex.quote(v)}" for k, v in (env or {}).items())
    if entrypoint:
        env_args += f" --entrypoint {entrypoint}"
    cmd = (f"docker run --rm --network {NETWORK} {env_args} {image} "
           + " ".join(shlex.quote(a) for a in argv))
    return host.check_output(cmd) if check else host.run(cmd)


def psql(host, sql: str, env_file: str | None = None, password: str | None = None,
         server: tuple[str, str] = ("pgbouncer", "6432")):
    """psql as the login the app uses now (rpa_engine or rpa_engine_alt: rotations alternate them)."""
    return client(host, PGB_IMAGE, ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-tA", "-h", server[0],
                                    "-p", server[1], "-U", app_login(), "-d", APP_DB, "-c", sql],
                  env_file=env_file, env={"PGPASSWORD": password} if password else None)


def redis_cli(host, *args: str, env_file: str | None = None, password: str | None = None):
    return client(host, REDIS_IMAGE, ["redis-cli", "-h", "redis", *args], env_file=env_file,
                  env={"REDISCLI_AUTH": password} if password else None)


# ------------------------------------------------------------------ Postgres


def test_login_through_pgbouncer_with_the_app_credentials(host, client_env):
    res = psql(host, "select current_user || '@' || current_database()", client_env["postgres"])
    assert res.rc == 0, res.stderr
    # Either login acts as the owner role.
    assert res.stdout.strip() == f"{APP_OWNER}@{APP_DB}"


def test_wrong_password_is_refused(host):
    res = psql(host, "select 1", password="not-the-password-0123456789")
    assert res.rc != 0
    # PgBouncer's wording for a SCRAM exchange that failed on the password.
    assert AUTH_REFUSED.search(res.stderr), res.stderr


def test_postgres_is_not_published_on_the_host(host):
    for service in ("postgres", "pgbouncer"):
        assert container(host, service)["HostConfig"]["PortBindings"] in (None, {}), service
    listening = host.check_output("ss -Htln")
    assert ":5432 " not in listening and ":6432 " not in listening, listening


def test_pgbench_through_pgbouncer_transaction_pool_has_zero_errors(host, client_env):
    """Several clients, prepared statements, transaction pooling: nothing fails."""
    assert "pool_mode = transaction" in host.file(f"{PROJECT_DIR}/config/pgbouncer/pgbouncer.ini").content_string
    env = client_env["postgres"]
    conn = ["-h", "pgbouncer", "-p", "6432", "-U", app_login(), APP_DB]
    init = client(host, PG_IMAGE, entrypoint="pgbench", argv=["-i", "-s", "2", "-q", *conn], env_file=env)
    assert init.rc == 0, init.stderr
    try:
        run = client(host, PG_IMAGE, entrypoint="pgbench", argv=["-M", "prepared", "-c", "8", "-j", "2", "-t", "150",
                                      "--max-tries", "1", *conn], env_file=env)
        assert run.rc == 0, run.stdout + run.stderr
        assert "number of transactions actually processed: 1200/1200" in run.stdout, run.stdout
        assert "number of failed transactions: 0 " in run.stdout, run.stdout
    finally:
        client(host, PG_IMAGE, entrypoint="pgbench", argv=["-i", "-I", "d", *conn], env_file=env)


# The tasks the pool-size change changed: test_the_app_password_converges_back_to_the_vault_value's run puts the
# pool back (the same tasks, changed once more) together with the password, one run instead of two.
POOL_CHANGED: list[str] = []
PGB_INI = f"{PROJECT_DIR}/config/pgbouncer/pgbouncer.ini"


@pytest.fixture(scope="module", autouse=True)
def pool_put_back(host):
    """Should the password test not have put the pool back (it failed first, or ran deselected), a run here
    does: no later module finds the role drifted. Nothing to do after a normal run."""
    yield
    if "default_pool_size = 21" in host.file(PGB_INI).content_string:
        proc, _ = run_site("--tags", "postgres")
        assert proc.returncode == 0, proc.stdout[-3000:]


def test_client_survives_a_pgbouncer_reload_caused_by_a_config_change(host, server, client_env):
    """One psql session ticks every 0.5 s while site.yml changes the pool size (put back by the password
    test's run, below)."""
    name = "rpa-test-reload-client"
    host.run(f"docker rm -f {name}")
    ini = PGB_INI
    assert "default_pool_size = 20" in host.file(ini).content_string
    pgb_started = container(host, "pgbouncer")["State"]["StartedAt"]
    script = "select 'tick', pg_backend_pid() \\watch i=0.5 c=2000"
    host.check_output(
        f"docker run -d --name {name} --network {NETWORK} --env-file {client_env['postgres']} "
        f"{PGB_IMAGE} sh -c {shlex.quote(f'echo {shlex.quote(script)} | psql -X -v ON_ERROR_STOP=1 -tA -h pgbouncer -p 6432 -U {app_login()} -d {APP_DB}')}")
    try:
        time.sleep(2)
        before = host.check_output(f"docker logs {name} 2>&1").count("tick")
        assert before >= 2, host.check_output(f"docker logs {name} 2>&1")
        proc, data = run_site("--tags", "postgres", "-e", "postgres_pgbouncer_default_pool_size=21")
        changed = [t["task"] for t in executed_tasks(data, server["name"]) if t["changed"]]
        POOL_CHANGED.extend(changed)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert any("pgbouncer" in t.lower() and "reload" in t.lower() for t in changed), changed
        assert "default_pool_size = 21" in host.file(ini).content_string
        time.sleep(2)
        state = json.loads(host.check_output(f"docker inspect {name}"))[0]["State"]
        logs = host.check_output(f"docker logs {name} 2>&1")
        assert state["Running"], f"the client was disconnected by the reload: {logs[-800:]}"
        assert logs.count("tick") > before + 4, logs[-800:]
        assert "error" not in logs.lower() and "closed" not in logs.lower(), logs[-800:]
        # Reloaded in place, not restarted.
        assert container(host, "pgbouncer")["State"]["StartedAt"] == pgb_started
        assert "SIGHUP" in host.check_output(f"docker logs --since 5m {cname('pgbouncer')} 2>&1")
    finally:
        host.run(f"docker rm -f {name}")


# --------------------------------------------------------------------- Redis


def test_redis_refuses_unauthenticated_commands(host):
    res = redis_cli(host, "set", "rpa-test:anon", "1")
    assert "NOAUTH" in res.stdout + res.stderr, res.stdout + res.stderr


def test_redis_wrong_password_is_refused(host):
    res = redis_cli(host, "ping", password="not-the-password-0123456789")
    assert "WRONGPASS" in res.stdout + res.stderr or "invalid" in (res.stdout + res.stderr).lower()


def test_redis_never_evicts_and_persists_with_aof(host, client_env):
    pw = client_env["redis"]
    assert redis_cli(host, "config", "get", "maxmemory-policy", env_file=pw).stdout.split() ==\
        ["maxmemory-policy", "noeviction"]
    assert redis_cli(host, "config", "get", "appendonly", env_file=pw).stdout.split() == ["appendonly", "yes"]
    maxmemory = int(redis_cli(host, "config", "get", "maxmemory", env_file=pw).stdout.split()[1])
    assert maxmemory == 256 * 1024 * 1024


def test_secret_files_are_root_only(host):
    for path in (f"{PROJECT_DIR}/.env", f"{PROJECT_DIR}/env.d/postgres.json", f"{PROJECT_DIR}/env.d/redis.json"):
        f = host.file(path)
        assert f.user == "root" and f.mode == 0o600, (path, f.user, oct(f.mode))
    # Read by the service users inside the containers (PgBouncer 70, Redis 999), never by others.
    for path, uid in ((f"{PROJECT_DIR}/config/pgbouncer/userlist.txt", 70),
                      (f"{PROJECT_DIR}/config/redis/users.acl", 999),
                      (f"{PROJECT_DIR}/config/redis/client.auth", 999)):
        f = host.file(path)
        assert f.exists, path
        assert f.uid in (0, uid) and f.mode & 0o077 == 0, (path, f.uid, oct(f.mode))


# ------------------------------------------------------------- self-healing


@pytest.fixture(scope="module")
def killed(host):
    """The whole data tier killed at once (one wait instead of three)."""
    return kill_and_time_recovery(host, ["postgres", "pgbouncer", "redis"], 60)


@pytest.mark.parametrize("service", ["postgres", "pgbouncer", "redis"])
def test_docker_kill_heals_within_60_seconds(killed, service):
    assert isinstance(killed[service], float) and killed[service] < 60, killed[service]


def test_clients_get_through_pgbouncer_again_after_the_kill(host, killed, client_env):
    """PgBouncer's server connections were cut; new clients must get through again."""
    deadline = time.monotonic() + 30
    while True:
        res = psql(host, "select 1", client_env["postgres"])
        if res.rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert res.rc == 0, res.stderr


def test_the_app_password_converges_back_to_the_vault_value(host, server, client_env):
    """A password changed behind Ansible's back is set back by the next run, and only then."""
    host.check_output(f"docker exec {cname('postgres')} psql -X -q -U postgres -d postgres -c "
                      f"\"ALTER ROLE {app_login()} PASSWORD 'changed-behind-our-back-0123456789'\"")
    # Straight to Postgres: through PgBouncer, a pooled server connection (the app keeps
    # some open) would still serve the vault's password, which is checked by PgBouncer.
    direct = ("postgres", "5432")
    refused = psql(host, "select 1", client_env["postgres"], server=direct)
    assert refused.rc != 0 and AUTH_REFUSED.search(refused.stderr), ("the changed password still let us in", refused.stderr)
    # The same run puts PgBouncer's pool size back (the reload test's change, if it made one): those tasks
    # change again, and nothing else but the login.
    pool_changed = list(POOL_CHANGED) if "default_pool_size = 21" in host.file(PGB_INI).content_string else []
    proc, data = run_site("--tags", "postgres")
    assert proc.returncode == 0, proc.stdout[-3000:]
    changed = [t["task"] for t in executed_tasks(data, server["name"]) if t["changed"]]
    login = "postgres : Ensure the application's logins exist, with the vault password or locked."
    assert sorted(changed) == sorted([login, *pool_changed]), (changed, pool_changed)
    assert "default_pool_size = 20" in host.file(PGB_INI).content_string
    for via in (direct, ("pgbouncer", "6432")):
        res = psql(host, "select 1", client_env["postgres"], server=via)
        assert res.rc == 0, (via, res.stderr)
    # "Only then": the postgres role's next run (test_gate's --tags redis,postgres) changes none of its tasks.
