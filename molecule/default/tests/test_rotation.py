"""Secret rotation (playbooks/rotate-secrets.yml) of every catalogue secret, on the running stack.

The vault is the inventory's own (Molecule's, or the demo's for make
verify-demo), decrypted on the controller by conftest.vault(). Traffic goes
through Caddy's published HTTPS port, as a browser's would.

The tests run in the order of this file, on one server and one vault, and
say so: bad input first (nothing changes), then injected failures (the vault
stays byte-identical), then ONE rotation of every secret under load (the
module fixture `rotated`) whose outcome the tests after it read secret by
secret, then what follows a rotation - a second rotation inside a window is
refused unless forced, the windows end, and then site.yml changes nothing and
prints no value at -vvv - and the schedule.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import (AUTH_REFUSED, PROJECT, ROOT, app_login, cname, published, zero_downtime, rotation_file, run_playbook, run_site, ssh_argv,
                      vault, vault_file)

# A shell word: where the backend is published now (start-first alternates between two ports).
BACKEND = published("backend")
CATALOGUE = yaml.safe_load((ROOT / "catalogue" / "secrets.yml").read_text())["secrets"]
ALL = sorted(CATALOGUE)
ROTATE = "playbooks/rotate-secrets.yml"
ZERO_DOWNTIME = zero_downtime()
JWT = importlib.util.spec_from_file_location(
    "rpa_jwt", ROOT / "collections/ansible_collections/rpa/engine/plugins/filter/rpa_jwt.py")
rpa_jwt = importlib.util.module_from_spec(JWT)
JWT.loader.exec_module(rpa_jwt)


def published_https(server: dict) -> int:
    out = subprocess.run(["docker", "port", server["name"], "443/tcp"], check=True,
                         capture_output=True, text=True).stdout
    return int(out.splitlines()[0].rsplit(":", 1)[1])


def remote(server: dict, command: str, stdin: str = "") -> subprocess.CompletedProcess:
    """A command in the server; secrets travel on stdin only."""
    return subprocess.run(ssh_argv(server, command), input=stdin, capture_output=True, text=True, timeout=60)


def http_status(server: dict, url: str, header: str = "", method: str = "GET") -> int:
    """The status of a request from inside the server; a header with a secret goes through a 0600 file.

    https://localhost/... goes to the server's own Caddy (SNI and Host localhost, its local CA).
    """
    command = "umask 077; f=$(mktemp); cat > $f; "
    command += (f"curl -sk --resolve localhost:443:127.0.0.1 -o /dev/null -w '%{{http_code}}' -X {method} "
                f"-H @$f {shlex.quote(url)}; rm -f $f")
    return int(remote(server, command, header + "\n").stdout or 0)


def bearer(server: dict, token: str, url: str, method: str = "GET") -> int:
    return http_status(server, url, f"Authorization: Bearer {token}", method)


def basic(server: dict, url: str, user: str, password: str) -> int:
    import base64
    return http_status(server, url, "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def jwt_status(server: dict, key: str) -> tuple[int, bool | None]:
    """(status, previous_key) of /api/me for a token signed with key."""
    token = rpa_jwt.rpa_jwt_token(key, sub="tester", minutes=5)
    command = ("umask 077; f=$(mktemp); cat > $f; curl -s -H @$f -w '\\n%{http_code}' "
               f"http://{BACKEND}/api/me; rm -f $f")
    out = remote(server, command, f"Authorization: Bearer {token}\n").stdout
    body, _, code = out.rpartition("\n")
    try:
        return int(code), json.loads(body).get("previous_key")
    except ValueError:
        return int(code or 0), None


def redis_auth(server: dict, password: str) -> str:
    """redis-cli's answer to AUTH + PING, the password on stdin (never on a command line)."""
    return remote(server, f"docker exec -i {cname('redis')} redis-cli", f"AUTH {password}\nPING\n").stdout.strip()


def pg_login(server: dict, login: str, password: str, via: str = "pgbouncer") -> tuple[int, str]:
    """psql as login through PgBouncer or straight at Postgres; the password on stdin, given to docker by name."""
    host, port = ("pgbouncer", "6432") if via == "pgbouncer" else ("postgres", "5432")
    command = (f"read -r PGPASSWORD; export PGPASSWORD; docker exec -e PGPASSWORD -e PGCONNECT_TIMEOUT=5 "
               f"{cname('postgres')} psql -X -tA -h {host} -p {port} -U {login} -d rpa_engine -c 'select current_user'")
    proc = remote(server, command, password + "\n")
    return proc.returncode, proc.stdout.strip() or proc.stderr.strip()


def refused(result: tuple[int, str]) -> bool:
    """Refused by authentication itself - not a connection error, a timeout or a missing database."""
    return result[0] != 0 and bool(AUTH_REFUSED.search(result[1]))


def can_login(host, role: str) -> str:
    return host.check_output(f"docker exec {cname('postgres')} psql -X -tA -U postgres -c "
                             f"\"select rolcanlogin, rolpassword is not null from pg_authid where rolname = '{role}'\"")


def other_login(login: str) -> str:
    return "rpa_engine" if login == "rpa_engine_alt" else "rpa_engine_alt"


def started_at(host, service: str) -> str:
    return host.check_output(f"docker inspect -f '{{{{.State.StartedAt}}}}' {cname(service)}")


def healthy(host, service: str) -> bool:
    return host.check_output(f"docker inspect -f '{{{{.State.Health.Status}}}}' {cname(service)}") == "healthy"


def exporter_metric(host, exporter: str, port: int, metric: str) -> str:
    text = host.check_output(f"docker exec {cname(exporter)} wget -qO- http://127.0.0.1:{port}/metrics")
    return next((line.split()[1] for line in text.splitlines() if line.startswith(metric + " ")), "absent")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def rotate(names, *extra: str, **kw):
    return run_playbook(ROTATE, "-e", json.dumps({"rpa_rotate": list(names)}), *extra, **kw)


def failed_tasks(data: dict) -> list[tuple[str, str]]:
    return [(t["task"]["name"], r.get("msg", "")) for p in data["plays"] for t in p["tasks"]
            for r in t["hosts"].values() if r.get("failed")]


def end_windows(*keys: str) -> None:
    """What the clock would do one window later: the previous values' windows in rotation.yml are over."""
    data = yaml.safe_load(rotation_file().read_text())
    for key in keys:
        data["rpa_secret_rotation"][key]["previous_until"] = int(time.time()) - 1
    rotation_file().write_text("---\n" + yaml.safe_dump(data))


def stats_changed(data: dict) -> int:
    return sum(s["changed"] for s in data["stats"].values())


@pytest.fixture(scope="module", autouse=True)
def no_window_open(server):
    """The state these tests start from: no previous value within its window. A fresh Molecule
    server has none; a demo rotated less than a window ago (make verify-demo) has, and every
    rotation would then be refused. End such windows the way time would, then let the app drop
    the previous values."""
    if not rotation_file().exists():  # never rotated: a fresh Molecule server
        return
    data = yaml.safe_load(rotation_file().read_text()) or {}
    now = time.time()
    open_keys = [key for key, meta in (data.get("rpa_secret_rotation") or {}).items()
                 if float((meta or {}).get("previous_until") or 0) > now]
    if open_keys:
        end_windows(*open_keys)
        proc, _ = run_site("--tags", "app")
        assert proc.returncode == 0, proc.stdout[-3000:]


# ------------------------------------------------------------ bad input: nothing changes

def test_an_unknown_secret_is_refused_before_anything_changes():
    """With a test switch naming a host the run does not have: both named in the one refusal."""
    before = digest(vault_file())
    proc, data = rotate(["root_password"], "-e", json.dumps({"rpa_rotation_fail_hosts": ["no-such-host"]}))
    assert proc.returncode != 0
    [(task, msg)] = failed_tasks(data)
    assert task.startswith("Ensure the rotation request names secrets of the catalogue"), task
    assert "rpa_rotate" in msg and '"jwt_secret"' in msg, msg
    assert 'rpa_rotation_fail_hosts=["no-such-host"]' in msg, msg
    assert stats_changed(data) == 0 and digest(vault_file()) == before


def test_a_supplied_value_that_fails_its_policy_is_refused_before_anything_changes():
    before = digest(vault_file())
    proc, data = rotate(["redis_password"], "-e", json.dumps({"rpa_rotation_values": {"redis_password": "short"}}))
    assert proc.returncode != 0
    [(task, msg)] = failed_tasks(data)
    assert task.startswith("Create:"), task
    assert stats_changed(data) == 0 and digest(vault_file()) == before


def test_a_catalogue_entry_without_an_owner_is_refused_before_anything_changes(tmp_path):
    broken = yaml.safe_load((ROOT / "catalogue" / "secrets.yml").read_text())
    del broken["secrets"]["flower_password"]["owner"]
    (tmp_path / "secrets.yml").write_text(yaml.safe_dump(broken))
    before = digest(vault_file())
    proc, data = rotate(["flower_password"], env_extra={"RPA_SECRET_CATALOGUE": str(tmp_path / "secrets.yml")})
    assert proc.returncode != 0
    assert "flower_password: has no owner" in proc.stdout, proc.stdout[-2000:]
    assert stats_changed(data) == 0 and digest(vault_file()) == before


# ------------------------------------------------------------ injected failures: nothing lost

@pytest.mark.parametrize(("step", "names"), [
    # After test, every secret: the rollback undoes both the set and the test step. (A second run failing
    # right after set was cut to pay for the alerting tests; the rollback path is the same.)
    ("test", ALL),
])
def test_a_failure_rolls_back_and_leaves_the_vault_unchanged(host, server, step, names):
    before = {"vault": digest(vault_file()), "rotation": digest(rotation_file())}
    old, login = vault(), app_login()
    proc, data = rotate(names, "-e", f"rpa_rotation_fail_at={step}")
    assert proc.returncode != 0, "an injected failure was not reported"
    # Failed exactly where the switch said - the step itself ran - and reported it; nothing else failed.
    injected = f"Fail on purpose after the {step} step (tests only)."
    assert [t for t, _ in failed_tasks(data)] == [injected, "Report the failed rotation."], failed_tasks(data)
    assert f'failed at "{injected}"' in failed_tasks(data)[1][1] and "vault is unchanged" in failed_tasks(data)[1][1]
    assert {"vault": digest(vault_file()), "rotation": digest(rotation_file())} == before
    # The stack is on the vault's values again: the old ones work, nothing new gets in.
    assert jwt_status(server, old["vault_jwt_secret"]) == (200, False)
    assert redis_auth(server, old["vault_redis_password"]) == "OK\nPONG"
    for via in ("pgbouncer", "postgres"):
        assert pg_login(server, login, old["vault_postgres_app_password"], via) == (0, "rpa_engine"), via
    assert can_login(host, other_login(login)) == "f|f"
    if step == "test":
        assert basic(server, "http://127.0.0.1:3001/api/user", "admin", old["vault_grafana_admin_password"]) == 200
        assert basic(server, "http://127.0.0.1:5555/api/workers", "admin", old["vault_flower_password"]) == 200
        assert bearer(server, old["vault_deploy_token"], "http://127.0.0.1:9000/deploy/rpa-test-probe", "POST") == 403
        assert pg_login(server, "postgres", old["vault_postgres_superuser_password"], "postgres") == (0, "postgres")
        assert pg_login(server, "rpa_monitor", old["vault_postgres_monitor_password"]) == (0, "rpa_monitor")
    for service in ("backend", "celery-worker", "deployer", "redis-exporter", "postgres-exporter"):
        assert healthy(host, service), service


# ------------------------------------------------------------ every secret at once, under load

@pytest.fixture(scope="module")
def rotated(host, server):
    """One rotation of every catalogue secret while 4 HTTPS clients use the database and Redis through Caddy.

    A redis-cli client logged in with the old password stays connected throughout: Redis takes the new
    ACL in place. Returns what the tests after it compare with.
    """
    old, login = vault(), app_login()
    before = {"grafana": started_at(host, "grafana"), "redis": started_at(host, "redis"),
              "postgres": started_at(host, "postgres")}
    watcher = "rpa-test-redis-watcher"
    host.run(f"docker rm -f {watcher}")
    remote(server, f"read -r REDISCLI_AUTH; export REDISCLI_AUTH; docker run -d --name {watcher} "
                   f"--network {PROJECT}_default -e REDISCLI_AUTH rpa-testbed/redis:latest "
                   f"redis-cli -h redis -r -1 -i 0.5 ping", old["vault_redis_password"] + "\n")
    try:
        with ZERO_DOWNTIME.Load(published_https(server), clients=4, paths=("/api/items", "/api/beat")) as load:
            ZERO_DOWNTIME.wait_sent(load, 50)
            pings_before = host.check_output(f"docker logs {watcher} 2>&1").count("PONG")
            proc, data = rotate(ALL)
            sent_during = load.sent
            ZERO_DOWNTIME.wait_sent(load, load.sent + 50)
        watcher_state = json.loads(host.check_output(f"docker inspect {watcher}"))[0]["State"]
        watcher_log = host.check_output(f"docker logs {watcher} 2>&1")
    finally:
        host.run(f"docker rm -f {watcher}")
    assert proc.returncode == 0, proc.stdout[-4000:]
    return {"old": old, "new": vault(), "login": login, "before": before, "data": data, "load": load,
            "sent_during": sent_during, "watcher": (watcher_state, watcher_log, pings_before)}


def test_every_request_is_served_while_every_secret_rotates(rotated):
    load = rotated["load"]
    assert rotated["sent_during"] >= 200, f"too little traffic to judge: {rotated['sent_during']}"
    assert (load.non_2xx, load.errors) == (0, 0), (load.sent, load.codes, load.errors)
    # Caddy's reload for the Grafana route's new hash closes the keep-alive connections idle at that moment;
    # the clients send such a GET again, as browsers do (bench/zero_downtime, Load). One reload closes each
    # client's connection at most once.
    assert load.retried <= load.clients, (load.retried, load.sent)


def test_the_vault_holds_every_new_value_and_the_report_names_no_value(rotated):
    old, new = rotated["old"], rotated["new"]
    report = json.dumps(rotated["data"])
    for name, entry in CATALOGUE.items():
        key = entry["vault_key"]
        assert new[key] != old[key] and len(new[key]) == entry["length"], name
        assert new[key] not in report and old[key] not in report, f"{name}'s value is in the output"
        assert key in report, f"{key} is not named in the report"
        # Only secrets with a window keep their previous value.
        assert (f"{key}_previous" in new) == (entry["overlap"] == "window"), name
    assert new["vault_jwt_secret_previous"] == old["vault_jwt_secret"]
    assert new["vault_postgres_app_login"] == other_login(rotated["login"])


def test_jwt_tokens_of_both_keys_are_taken_within_the_window(server, rotated):
    assert jwt_status(server, rotated["new"]["vault_jwt_secret"]) == (200, False)
    assert jwt_status(server, rotated["old"]["vault_jwt_secret"]) == (200, True)


def test_the_deployer_takes_both_tokens_within_the_window(server, rotated):
    probe = "http://127.0.0.1:9000/deploy/rpa-test-probe"
    # 403: the token was accepted and the unknown service refused; 401: the token was refused.
    assert bearer(server, rotated["new"]["vault_deploy_token"], probe, "POST") == 403
    assert bearer(server, rotated["old"]["vault_deploy_token"], probe, "POST") == 403


def test_operator_logins_refuse_the_old_password_at_once(host, server, rotated):
    old, new = rotated["old"], rotated["new"]
    for url, user, key in (("http://127.0.0.1:5555/api/workers", "admin", "vault_flower_password"),
                           ("http://127.0.0.1:3001/api/user", "admin", "vault_grafana_admin_password"),
                           ("https://localhost/grafana/api/health", "ops", "vault_caddy_grafana_password")):
        assert basic(server, url, user, new[key]) == 200, key
        assert basic(server, url, user, old[key]) == 401, key
    # Set in Grafana's own database: Grafana kept running.
    assert started_at(host, "grafana") == rotated["before"]["grafana"]


def test_redis_takes_the_new_password_in_place_and_keeps_its_clients(host, server, rotated):
    old, new = rotated["old"], rotated["new"]
    assert redis_auth(server, new["vault_redis_password"]) == "OK\nPONG"
    assert "WRONGPASS" in redis_auth(server, old["vault_redis_password"])
    # The new ACL was loaded in place: Redis was not restarted, and the client that logged in with the
    # old password before the rotation stayed connected and kept getting answers.
    assert started_at(host, "redis") == rotated["before"]["redis"]
    state, log, pings_before = rotated["watcher"]
    assert state["Running"], log[-500:]
    assert log.count("PONG") > pings_before + 4 and "Error" not in log and "NOAUTH" not in log, log[-500:]
    assert exporter_metric(host, "redis-exporter", 9121, "redis_up") == "1"


def test_the_app_login_moves_to_the_other_login_and_the_old_one_is_locked(host, server, rotated):
    old, new, login = rotated["old"], rotated["new"], rotated["login"]
    new_login = new["vault_postgres_app_login"]
    for via in ("pgbouncer", "postgres"):
        assert pg_login(server, new_login, new["vault_postgres_app_password"], via) == (0, "rpa_engine"), via
        assert refused(pg_login(server, login, old["vault_postgres_app_password"], via)), via
    assert can_login(host, login) == "f|f" and can_login(host, new_login) == "t|t"


def test_the_superuser_and_monitoring_passwords_are_the_new_ones(host, server, rotated):
    old, new = rotated["old"], rotated["new"]
    assert pg_login(server, "postgres", new["vault_postgres_superuser_password"], "postgres") == (0, "postgres")
    assert refused(pg_login(server, "postgres", old["vault_postgres_superuser_password"], "postgres"))
    assert pg_login(server, "rpa_monitor", new["vault_postgres_monitor_password"]) == (0, "rpa_monitor")
    assert refused(pg_login(server, "rpa_monitor", old["vault_postgres_monitor_password"]))
    # Postgres itself was not restarted (its first-start seed is a file, not its environment), and the
    # exporters log in with the new password.
    assert started_at(host, "postgres") == rotated["before"]["postgres"]
    assert exporter_metric(host, "postgres-exporter", 9187, "pg_up") == "1"
    assert exporter_metric(host, "pgbouncer-exporter", 9127, "pgbouncer_up") == "1"


def printed(output: str, *vaults: dict) -> list[str]:
    """The vault keys (of any of the vaults given) whose value is in the output. Logins are names, not secrets."""
    return sorted({key for v in vaults for key, value in v.items()
                   if isinstance(value, str) and not key.startswith("vault_postgres_app_login") and value in output})


def test_a_rotation_inside_a_window_is_refused_unless_forced_and_then_prints_nothing_at_vvv(server, rotated):
    """The JWT key and deploy token are inside their windows: refused; forced, at -vvv, with a supplied key,
    with Redis and the app password (whose login moves back) - and none of the values in the output."""
    before = digest(vault_file())
    proc, data = rotate(["jwt_secret"])
    assert proc.returncode != 0
    [(task, msg)] = failed_tasks(data)
    assert task.startswith("Ensure no secret is rotated again while its previous value is still within its window")
    assert '["jwt_secret"]' in msg and "rpa_rotation_force=true" in msg, msg
    assert digest(vault_file()) == before

    supplied = "Fake-Supplied-Jwt-Key-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:26]
    names = ("jwt_secret", "redis_password", "postgres_app_password")
    prior = vault()
    proc, _ = rotate(names, "-vvv", "-e", "rpa_rotation_force=true",
                     "-e", json.dumps({"rpa_rotation_values": {"jwt_secret": supplied}}), human=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert len(output) > 10000  # -vvv really was verbose
    after = vault()
    assert after["vault_jwt_secret"] == supplied
    keys = ("vault_jwt_secret", "vault_redis_password", "vault_postgres_app_password")
    assert all(after[k] != prior[k] for k in keys)
    leaked = printed(output, prior, after)
    assert not leaked, leaked
    # The next rotation of the app password moved it back to the first login. (That site.yml then finds
    # Postgres and Redis converged is the next test's last run.)
    assert after["vault_postgres_app_login"] == rotated["login"]
    assert pg_login(server, rotated["login"], after["vault_postgres_app_password"]) == (0, "rpa_engine")


def test_the_windows_end_and_site_yml_drops_the_previous_values_then_changes_nothing_at_vvv(server, rotated):
    new = vault()
    end_windows("vault_jwt_secret", "vault_deploy_token")
    proc, data = run_site("--tags", "app")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert jwt_status(server, new["vault_jwt_secret_previous"])[0] == 401
    assert jwt_status(server, new["vault_jwt_secret"]) == (200, False)
    probe = "http://127.0.0.1:9000/deploy/rpa-test-probe"
    assert bearer(server, rotated["old"]["vault_deploy_token"], probe, "POST") == 401
    assert bearer(server, new["vault_deploy_token"], probe, "POST") == 403
    # Converged: the whole site.yml at -vvv finds every role on the rotated values already (the app without
    # the previous values, Postgres and Redis on the forced rotation's, the rest on the first rotation's), and
    # no value - old, new, previous, or the test bed's registry password the app role logs in with - is in
    # its output. (One run for both: a run of its own right after the first rotation cost 30 s.)
    proc, _ = run_site("-vvv", human=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert len(output) > 10000  # -vvv really was verbose
    recap = re.search(rf"^{re.escape(server['name'])}\s+:.*$", proc.stdout, re.MULTILINE)
    assert recap and " changed=0 " in recap.group(0) and " failed=0 " in recap.group(0), \
        recap.group(0) if recap else proc.stdout[-2000:]
    leaked = printed(output, rotated["old"], rotated["new"], new, vault())
    registry_password = ROOT / ".testbed" / "registry" / "password"
    if registry_password.exists() and registry_password.read_text().strip() in output:
        leaked.append("the registry password")
    assert not leaked, f"printed at -vvv: {leaked}"


# ------------------------------------------------------------ the schedule

def test_a_scheduled_rotation_rotates_what_is_due_and_only_that(rotated):
    """Every secret was rotated just now except one that the records make 100 days old: with a 90-day
    limit that one rotates, the others do not; a second run finds nothing due and changes nothing."""
    data = yaml.safe_load(rotation_file().read_text())
    now = int(time.time())
    for name, entry in CATALOGUE.items():
        data["rpa_secret_rotation"].setdefault(entry["vault_key"], {})["rotated_at"] = now
    data["rpa_secret_rotation"]["vault_flower_password"]["rotated_at"] = now - 100 * 86400
    rotation_file().write_text("---\n" + yaml.safe_dump(data))
    before = vault()
    proc, result = run_playbook(ROTATE, "-e", "rpa_rotation_max_age_days=90")
    assert proc.returncode == 0, proc.stdout[-3000:]
    after = vault()
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert changed == ["vault_flower_password"], changed
    assert "Rotated vault_flower_password" in json.dumps(result)
    digest_before = digest(vault_file())
    proc, result = run_playbook(ROTATE, "-e", "rpa_rotation_max_age_days=90")
    assert proc.returncode == 0 and stats_changed(result) == 0
    assert "nothing to rotate" in json.dumps(result)
    assert digest(vault_file()) == digest_before
    assert os.path.exists(rotation_file())
