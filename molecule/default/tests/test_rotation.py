"""Secret rotation (playbooks/rotate-secrets.yml) on the running stack.

The vault is the inventory's own (Molecule's, or the demo's for make verify-demo),
decrypted on the controller by conftest.vault(). Traffic goes through Caddy's published
HTTPS port, as a browser's would.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import subprocess
import time

import pytest
import yaml

from conftest import ROOT, app_login, rotation_file, run_playbook, run_site, ssh_argv, vault, vault_file

# bench/zero_downtime's load generator (a script without .py, loaded by path).
_LOADER = importlib.machinery.SourceFileLoader("zero_downtime", str(ROOT / "bench" / "zero_downtime"))
ZERO_DOWNTIME = importlib.util.module_from_spec(importlib.util.spec_from_loader("zero_downtime", _LOADER))
_LOADER.exec_module(ZERO_DOWNTIME)


def published_https(server: dict) -> int:
    out = subprocess.run(["docker", "port", server["name"], "443/tcp"], check=True,
                         capture_output=True, text=True).stdout
    return int(out.splitlines()[0].rsplit(":", 1)[1])


def call(host, method: str, path: str, token: str | None = None, port: int = 8000) -> tuple[int, dict]:
    """A request from inside the server; the token travels in a 0600 file, not on a command line."""
    header = ""
    if token:
        host.run("install -d -m 0700 /root/.rpa-test")
        host.run(f"umask 077; cat > /root/.rpa-test/auth <<'EOF'\nAuthorization: Bearer {token}\nEOF")
        header = "-H @/root/.rpa-test/auth"
    res = host.run(f"curl -sS -X {method} {header} -w '\\n%{{http_code}}' http://127.0.0.1:{port}{path}")
    host.run("rm -f /root/.rpa-test/auth")
    body, _, code = res.stdout.rpartition("\n")
    try:
        return int(code), json.loads(body) if body.strip() else {}
    except json.JSONDecodeError:
        return int(code), {"raw": body}


def token(host) -> str:
    status, body = call(host, "POST", "/api/token")
    assert status == 200, body
    return body["token"]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def rotate(*extra: str, verbose: bool = False, names: tuple[str, ...] = ("jwt_secret",)):
    args = ["-e", json.dumps({"rpa_rotate": list(names)}), *extra]
    if verbose:
        return run_playbook("playbooks/rotate-secrets.yml", "-vvv", *args, human=True)
    return run_playbook("playbooks/rotate-secrets.yml", *args)


def rotate_under_load(server: dict, name: str, paths: tuple[str, ...]):
    """Rotate one secret while 4 HTTPS clients hit paths through Caddy; the load and the run."""
    with ZERO_DOWNTIME.Load(published_https(server), clients=4, paths=paths) as load:
        ZERO_DOWNTIME.wait_sent(load, 50)
        proc, data = run_playbook("playbooks/rotate-secrets.yml", "-e", json.dumps({"rpa_rotate": [name]}))
        sent_during = load.sent
        ZERO_DOWNTIME.wait_sent(load, load.sent + 50)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sent_during >= 200, f"too little traffic to judge: {sent_during}"
    assert (load.non_2xx, load.errors) == (0, 0), (load.sent, load.codes, load.errors)
    return data


def redis_auth(server: dict, password: str) -> str:
    """redis-cli's answer to AUTH + PING, the password on stdin (never on a command line)."""
    proc = subprocess.run(ssh_argv(server, "docker exec -i rpa-engine-redis-1 redis-cli"),
                          input=f"AUTH {password}\nPING\n", capture_output=True, text=True, timeout=30)
    return proc.stdout.strip()


def basic_auth_code(host, url: str, user: str, password: str) -> str:
    """The HTTP status of url with basic auth; the credentials in a 0600 file, not on a command line."""
    host.run("install -d -m 0700 /root/.rpa-test")
    host.run(f"umask 077; printf 'user = \"{user}:%s\"\\n' '{password}' > /root/.rpa-test/basic.curl")
    code = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -K /root/.rpa-test/basic.curl {url}")
    host.run("rm -f /root/.rpa-test/basic.curl")
    return code


def pg_login(server: dict, login: str, password: str, via: tuple[str, str] = ("pgbouncer", "6432")):
    """psql as login through via; the password on stdin, handed to docker exec by name only."""
    command = (f"read -r PGPASSWORD; export PGPASSWORD; docker exec -e PGPASSWORD -e PGCONNECT_TIMEOUT=5 "
               f"rpa-engine-postgres-1 psql -X -tA -h {via[0]} -p {via[1]} -U {login} -d rpa_engine "
               f"-c 'select current_user'")
    proc = subprocess.run(ssh_argv(server, command), input=password + "\n", capture_output=True, text=True,
                          timeout=30)
    return proc.returncode, proc.stdout.strip() or proc.stderr.strip()


def can_login(host, role: str) -> str:
    return host.check_output("docker exec rpa-engine-postgres-1 psql -X -tA -U postgres -c "
                             f"\"select rolcanlogin, rolpassword is not null from pg_authid where rolname = '{role}'\"")


def other_login(login: str) -> str:
    return "rpa_engine" if login == "rpa_engine_alt" else "rpa_engine_alt"


def end_grace(name: str) -> None:
    """What the clock would do one token lifetime later: the window in rotation.yml is over."""
    data = yaml.safe_load(rotation_file().read_text())
    data["rpa_secret_rotation"][name]["previous_until"] = int(time.time()) - 1
    rotation_file().write_text("---\n" + yaml.safe_dump(data))


@pytest.mark.parametrize("step", ["set", "test"])
def test_a_failure_rolls_back_and_leaves_the_vault_unchanged(host, server, step):
    before = {"vault": digest(vault_file()), "rotation": digest(rotation_file())}
    vault_before = vault()
    key_before = vault_before["vault_jwt_secret"]
    login = app_login()
    issued = token(host)
    proc, data = rotate("-e", f"rpa_rotation_fail_at={step}",
                        names=("jwt_secret", "redis_password", "postgres_app_password", "grafana_admin_password"))
    assert proc.returncode != 0, "an injected failure was not reported"
    failed = [r for p in data["plays"] for t in p["tasks"] for h, r in t["hosts"].items() if r.get("failed")]
    # Failed where the switch said, not earlier: the set step (or the test step) really ran.
    injected = f'failed at "Fail on purpose after the {step} step (tests only)."'
    assert any(injected in r.get("msg", "") and "vault is unchanged" in r.get("msg", "") for r in failed), failed
    assert {"vault": digest(vault_file()), "rotation": digest(rotation_file())} == before
    assert vault()["vault_jwt_secret"] == key_before
    # The stack is back on the vault's key: a token from before is valid, and not as "previous".
    status, body = call(host, "GET", "/api/me", issued)
    assert (status, body.get("previous_key")) == (200, False), (status, body)
    # The data tier takes the vault's passwords only: nobody locked out, nothing new let in.
    assert redis_auth(server, vault_before["vault_redis_password"]) == "OK\nPONG"
    for via in (("pgbouncer", "6432"), ("postgres", "5432")):
        assert pg_login(server, login, vault_before["vault_postgres_app_password"], via) == (0, "rpa_engine"), via
    assert can_login(host, other_login(login)) == "f|f"
    grafana_user = "http://127.0.0.1:3001/api/user"
    assert basic_auth_code(host, grafana_user, "admin", vault_before["vault_grafana_admin_password"]) == "200"
    for service in ("backend", "celery-worker", "deployer", "redis-exporter"):
        assert host.check_output(f"docker inspect -f '{{{{.State.Health.Status}}}}' rpa-engine-{service}-1") == "healthy"
    assert call(host, "GET", "/api/health")[1].get("database") == "ok"


def test_jwt_rotation_serves_every_request_and_honours_old_tokens(host, server):
    old_key = vault()["vault_jwt_secret"]
    issued = token(host)
    with ZERO_DOWNTIME.Load(published_https(server), clients=4) as load:
        ZERO_DOWNTIME.wait_sent(load, 50)
        proc, data = rotate()
        sent_during = load.sent
        ZERO_DOWNTIME.wait_sent(load, load.sent + 50)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sent_during >= 200, f"too little traffic to judge: {sent_during}"
    assert (load.non_2xx, load.errors) == (0, 0), (load.sent, load.codes, load.errors)
    # The vault on the controller holds the new key, and the old one as previous.
    v = vault()
    assert v["vault_jwt_secret"] != old_key and len(v["vault_jwt_secret"]) == 48
    assert v["vault_jwt_secret_previous"] == old_key
    # Only the name is reported, never the value.
    report = json.dumps(data)
    assert "Rotated vault_jwt_secret" in report
    assert v["vault_jwt_secret"] not in report and old_key not in report
    # Within the grace window: the old token still works (as previous), a new one works.
    status, body = call(host, "GET", "/api/me", issued)
    assert (status, body.get("sub"), body.get("previous_key")) == (200, "tester", True), (status, body)
    assert call(host, "GET", "/api/me", token(host))[1]["previous_key"] is False
    # A following site.yml run agrees with the rotation: nothing to change.
    proc, data = run_site()
    assert proc.returncode == 0 and data["stats"][server["name"]]["changed"] == 0, data["stats"]
    # After the window: site.yml drops the previous key, and the old token is refused.
    end_grace("vault_jwt_secret")
    proc, data = run_site("--tags", "app")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert call(host, "GET", "/api/me", issued)[0] == 401
    assert call(host, "GET", "/api/me", token(host))[0] == 200
    proc, data = run_site("--tags", "app")
    assert data["stats"][server["name"]]["changed"] == 0, data["stats"]


def test_deploy_token_rotation_keeps_an_overlap(host, server):
    old = vault()["vault_deploy_token"]
    proc, _ = run_playbook("playbooks/rotate-secrets.yml", "-e", json.dumps({"rpa_rotate": ["deploy_token"]}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    new = vault()["vault_deploy_token"]
    assert new != old
    # 403: the token was accepted and the unknown service refused; 401: the token was refused.
    assert call(host, "POST", "/deploy/rpa-test-probe", new, port=9000)[0] == 403
    assert call(host, "POST", "/deploy/rpa-test-probe", old, port=9000)[0] == 403
    end_grace("vault_deploy_token")
    proc, _ = run_site("--tags", "app")
    assert proc.returncode == 0
    assert call(host, "POST", "/deploy/rpa-test-probe", old, port=9000)[0] == 401
    assert call(host, "POST", "/deploy/rpa-test-probe", new, port=9000)[0] == 403


def test_flower_password_rotation_refuses_the_old_one_at_once(host):
    old = vault()["vault_flower_password"]
    proc, _ = run_playbook("playbooks/rotate-secrets.yml", "-e", json.dumps({"rpa_rotate": ["flower_password"]}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    v = vault()
    assert v["vault_flower_password"] != old and "vault_flower_password_previous" not in v

    assert basic_auth_code(host, "http://127.0.0.1:5555/api/workers", "admin", v["vault_flower_password"]) == "200"
    assert basic_auth_code(host, "http://127.0.0.1:5555/api/workers", "admin", old) == "401"


def test_grafana_admin_password_rotation_refuses_the_old_one_without_a_restart(host, server):
    old = vault()["vault_grafana_admin_password"]
    started = host.check_output("docker inspect -f '{{.State.StartedAt}}' rpa-engine-grafana-1")
    proc, _ = run_playbook("playbooks/rotate-secrets.yml", "-e", json.dumps({"rpa_rotate": ["grafana_admin_password"]}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    v = vault()
    new = v["vault_grafana_admin_password"]
    assert new != old and "vault_grafana_admin_password_previous" not in v
    assert basic_auth_code(host, "http://127.0.0.1:3001/api/user", "admin", new) == "200"
    assert basic_auth_code(host, "http://127.0.0.1:3001/api/user", "admin", old) == "401"
    # Set in Grafana's own database: Grafana kept running.
    assert host.check_output("docker inspect -f '{{.State.StartedAt}}' rpa-engine-grafana-1") == started
    proc, data = run_site("--tags", "monitoring")
    assert proc.returncode == 0 and data["stats"][server["name"]]["changed"] == 0, data["stats"]


def test_redis_password_rotation_serves_every_request_then_refuses_the_old_one(host, server):
    old = vault()["vault_redis_password"]
    started = host.check_output("docker inspect -f '{{.State.StartedAt}}' rpa-engine-redis-1")
    # /api/beat reads Redis, /api/items Postgres: the backend's Redis clients move mid-load.
    data = rotate_under_load(server, "redis_password", ("/api/beat", "/api/items"))
    new = vault()["vault_redis_password"]
    assert new != old and len(new) == 32 and "vault_redis_password_previous" not in vault()
    assert "Rotated vault_redis_password" in json.dumps(data)
    assert new not in json.dumps(data) and old not in json.dumps(data)
    assert redis_auth(server, new) == "OK\nPONG"
    assert "WRONGPASS" in redis_auth(server, old)
    # The new ACL was loaded in place: Redis itself was not restarted.
    assert host.check_output("docker inspect -f '{{.State.StartedAt}}' rpa-engine-redis-1") == started
    for service in ("backend", "celery-worker", "celery-beat", "redis-exporter"):
        assert host.check_output(f"docker inspect -f '{{{{.State.Health.Status}}}}' rpa-engine-{service}-1") == "healthy"
    # The exporter logs in with the new password too.
    metrics = host.check_output("docker exec rpa-engine-redis-exporter-1 wget -qO- http://127.0.0.1:9121/metrics")
    assert "\nredis_up 1\n" in metrics
    proc, data = run_site()
    assert proc.returncode == 0 and data["stats"][server["name"]]["changed"] == 0, data["stats"]


def test_postgres_password_rotation_serves_every_request_and_alternates_logins(host, server):
    old, login = vault()["vault_postgres_app_password"], app_login()
    data = rotate_under_load(server, "postgres_app_password", ("/api/items",))
    v = vault()
    new, new_login = v["vault_postgres_app_password"], v["vault_postgres_app_login"]
    assert new != old and len(new) == 32 and new_login == other_login(login)
    assert "vault_postgres_app_password_previous" not in v
    assert new not in json.dumps(data) and old not in json.dumps(data)
    # New accepted, through PgBouncer and straight to Postgres; both act as the owner role.
    for via in (("pgbouncer", "6432"), ("postgres", "5432")):
        assert pg_login(server, new_login, new, via) == (0, "rpa_engine"), via
        rc, out = pg_login(server, login, old, via)
        assert rc != 0, (via, out)
    assert can_login(host, login) == "f|f" and can_login(host, new_login) == "t|t"
    assert call(host, "GET", "/api/health")[1].get("database") == "ok"
    proc, data = run_site()
    assert proc.returncode == 0 and data["stats"][server["name"]]["changed"] == 0, data["stats"]
    # The next rotation moves back to the first login.
    proc, _ = run_playbook("playbooks/rotate-secrets.yml", "-e", json.dumps({"rpa_rotate": ["postgres_app_password"]}))
    assert proc.returncode == 0, proc.stdout[-3000:]
    v = vault()
    assert v["vault_postgres_app_login"] == login and v["vault_postgres_app_password"] not in (old, new)
    assert pg_login(server, login, v["vault_postgres_app_password"]) == (0, "rpa_engine")
    assert pg_login(server, new_login, new, ("postgres", "5432"))[0] != 0


def test_a_supplied_value_is_used_and_never_printed_at_vvv(host):
    supplied = "Fake-Supplied-Jwt-Key-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:26]
    names = ("jwt_secret", "redis_password", "postgres_app_password")
    before = vault()
    proc, _ = rotate("-e", json.dumps({"rpa_rotation_values": {"jwt_secret": supplied}}), verbose=True, names=names)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert len(output) > 10000  # -vvv really was verbose
    after = vault()
    assert after["vault_jwt_secret"] == supplied
    keys = ("vault_jwt_secret", "vault_redis_password", "vault_postgres_app_password")
    assert all(after[k] != before[k] for k in keys)
    leaked = [f"{k} ({when})" for k in keys for when, v in (("old", before), ("new", after)) if v[k] in output]
    assert not leaked, leaked


def test_unknown_secret_is_refused_before_anything_changes():
    before = digest(vault_file())
    proc, data = run_playbook("playbooks/rotate-secrets.yml", "-e", json.dumps({"rpa_rotate": ["root_password"]}))
    assert proc.returncode != 0
    assert "rpa_rotate" in proc.stdout and '"jwt_secret"' in proc.stdout.replace("\\", "")
    assert data["stats"] and all(s["changed"] == 0 for s in data["stats"].values())
    assert digest(vault_file()) == before
