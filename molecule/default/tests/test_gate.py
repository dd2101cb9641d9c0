"""The rpa_compose health gate against a deliberately broken Redis definition.

The broken definitions live in files/broken_redis.yml (test only); each test
leaves Redis converged back to the role's definition.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from conftest import COMPOSE, PROJECT_DIR, cname, redis_cmd, executed_tasks, run_playbook, run_site

BROKEN = "molecule/default/tests/files/broken_redis.yml"
TASK = "Apply the broken definition through the gate."


def find_task(data: dict, name: str) -> dict:
    for play in data["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == name:
                return task
    raise AssertionError(f"task {name!r} did not run")


def gate_task(data: dict, host: str) -> tuple[dict, float]:
    """The gate task's result on host and its wall time in seconds."""
    task = find_task(data, TASK)
    span = task["task"]["duration"]
    took = (datetime.fromisoformat(span["end"]) - datetime.fromisoformat(span["start"])).total_seconds()
    return task["hosts"][host], took


def maintenance_silences(host) -> list[dict]:
    """The silences rpa_compose made in Alertmanager (active and expired)."""
    return [s for s in json.loads(host.check_output("curl -fsS http://127.0.0.1:9093/api/v2/silences"))
            if s["createdBy"] == "rpa_compose"]


def redis(host) -> dict:
    return json.loads(host.check_output(f"docker inspect {cname('redis')}"))[0]


def redis_cli(host, *args: str) -> str:
    return host.check_output(redis_cmd(*args)).strip()


@pytest.fixture
def converged_redis(host):
    """Redis as the role defines it, before and after the test."""
    healthy = redis(host)
    assert healthy["State"]["Health"]["Status"] == "healthy"
    fragment = host.file(f"{PROJECT_DIR}/compose.d/redis.yml").content_string
    yield healthy
    # A test that left Redis on its converged definition (check mode, a rollback) needs no site run.
    if host.file(f"{PROJECT_DIR}/compose.d/redis.yml").content_string != fragment:
        proc, _ = run_site("--tags", "redis")
        assert proc.returncode == 0, proc.stdout[-3000:]
    after = redis(host)
    assert after["State"]["Health"]["Status"] == "healthy"
    assert after["Config"]["Cmd"] == healthy["Config"]["Cmd"]


def test_unhealthy_service_fails_the_gate_fast_naming_it(host, server, converged_redis):
    # The broken health check: start_period 4 s, interval 2 s.
    bound = 4 + 2 * 2 + 10
    proc, data = run_playbook(BROKEN, "-e", "broken_kind=unhealthy broken_rollback=false")
    assert proc.returncode != 0
    result, took = gate_task(data, server["name"])
    assert result.get("failed"), result
    msg = result["msg"]
    assert "fragment redis failed its health gate" in msg, msg
    assert "redis" in msg and "unhealthy" in msg, msg
    assert "deliberately failing health check" in msg, msg  # the last health-check output
    assert "Not rolled back (rollback is off)" in msg, msg
    assert took <= bound, f"the gate took {took:.1f}s to fail, more than {bound}s"


def test_crash_loop_rolls_back_to_the_previous_healthy_definition(host, server, converged_redis):
    redis_cli(host, "set", "rpa-test:gate", "before-the-broken-definition")
    fragment = host.file(f"{PROJECT_DIR}/compose.d/redis.yml").content_string
    compose = host.file(f"{PROJECT_DIR}/docker-compose.yml").content_string
    # Real health check: start_period 10 s, interval redis_healthcheck_interval; rollback adds its own gate. Meanwhile, watch
    # Alertmanager: planned work silences its alerts, and the silence goes when the run does, failed or not.
    seen: dict[str, dict] = {}
    began = datetime.now(timezone.utc).isoformat()[:19]
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(run_playbook, BROKEN, "-e", "broken_kind=crash broken_rollback=true")
        while not run.done():
            seen.update({s["id"]: s for s in maintenance_silences(host)
                         if s["status"]["state"] == "active" and s["startsAt"][:19] >= began})
            time.sleep(0.5)
        proc, data = run.result()
    assert proc.returncode != 0
    assert [s["comment"] for s in seen.values()] == ["planned work: fragment redis recreating redis"], seen
    [silence] = seen.values()
    matchers = {m["name"]: m["value"] for m in silence["matchers"]}
    assert matchers["server"] == server["name"] and "TargetDown" in matchers["alertname"].split("|"), matchers
    assert {s["id"]: s["status"]["state"] for s in maintenance_silences(host)}[silence["id"]] == "expired"
    result, took = gate_task(data, server["name"])
    msg = result["msg"]
    assert "fragment redis failed its health gate" in msg, msg
    assert result["silenced"] is True
    # The verdict: the first look finds it exited, or restarting (exit code 1), or caught running
    # again between two crashes (Docker has reset the exit code then, so none is claimed) ...
    assert re.search(r"redis (exited with code 1|is crash-looping \(restarted \d+ times"
                     r"(, last exit code 1|; running again for the moment)\))", msg), msg
    # ... and the tail of its log, where Redis names the option it refused.
    assert "--- redis (" in msg and "last log lines:" in msg and "no-such-option" in msg, msg
    assert "Rolled back to the previous definition; it is healthy again." in msg, msg
    assert result["rolled_back"] is True
    assert took <= 10 + 2 * 5 + 10 + 60, f"fail + rollback took {took:.1f}s"
    # The previous definition is what serves now, with its data.
    live = redis(host)
    assert live["State"]["Health"]["Status"] == "healthy"
    assert live["Config"]["Cmd"] == converged_redis["Config"]["Cmd"]
    assert host.file(f"{PROJECT_DIR}/compose.d/redis.yml").content_string == fragment
    assert host.file(f"{PROJECT_DIR}/docker-compose.yml").content_string == compose
    try:
        assert redis_cli(host, "get", "rpa-test:gate") == "before-the-broken-definition"
    finally:
        redis_cli(host, "del", "rpa-test:gate")



def gate_result(data: dict, host: str, task: str) -> dict:
    return find_task(data, task)["hosts"][host]


REDIS_GATE = "redis : Ensure Redis runs the rendered definition and is healthy."


def test_check_mode_reports_what_would_be_recreated_and_touches_nothing(host, server, converged_redis):
    before_id = converged_redis["Id"]
    compose = host.file(f"{PROJECT_DIR}/docker-compose.yml").content_string
    proc, data = run_site("--tags", "redis", "--check", "--diff", "-e", "redis_maxmemory=200mb")
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = gate_result(data, server["name"], REDIS_GATE)
    assert result["changed"] is True
    assert result["would_recreate"] == ["redis"], result
    # The diff shows the fragment's change (a new config file name), never a secret.
    diff = json.dumps(result.get("diff", {}))
    assert "redis-" in diff and ".conf" in diff
    assert redis(host)["Id"] == before_id
    assert host.file(f"{PROJECT_DIR}/docker-compose.yml").content_string == compose


def test_a_change_recreates_only_the_changed_service(host, server, converged_redis):
    others = {s: json.loads(host.check_output(f"docker inspect {cname(s)}"))[0]["Id"]
              for s in ("postgres", "pgbouncer")}
    proc, data = run_site("--tags", "redis,postgres", "-e", "redis_maxmemory=200mb")
    assert proc.returncode == 0, proc.stdout[-3000:]
    gate = gate_result(data, server["name"], REDIS_GATE)
    assert gate["recreated"] == ["redis"]
    # Silenced while it recreated, and not a moment longer.
    assert gate["silenced"] is True
    assert not [s for s in maintenance_silences(host) if s["status"]["state"] == "active"]
    pg = gate_result(data, server["name"], "postgres : Ensure Postgres and PgBouncer run the rendered definition and are healthy.")
    assert pg["changed"] is False and pg["recreated"] == []
    # Nor any other task of the postgres role (test_data_tier's password fix ran just before: a converged
    # role stays converged).
    changed_pg = [t["task"] for t in executed_tasks(data, server["name"])
                  if t["changed"] and t["task"].startswith("postgres : ")]
    assert not changed_pg, changed_pg
    assert redis(host)["Id"] != converged_redis["Id"]
    assert redis_cli(host, "config", "get", "maxmemory").split()[-1] == str(200 * 1024 * 1024)  # Redis: mb = MiB
    for s, cid in others.items():
        assert json.loads(host.check_output(f"docker inspect {cname(s)}"))[0]["Id"] == cid, s


def test_a_stored_fragment_brings_stopped_services_back(host, server):
    """restore.yml's way to restart the writers: the stored fragment, no definition given."""
    compose = host.file(f"{PROJECT_DIR}/docker-compose.yml").content_string
    host.check_output(f"{COMPOSE} stop redis-exporter")
    proc, data = run_playbook("molecule/default/tests/files/reapply_fragment.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = gate_result(data, server["name"], "Bring the stopped services of the stored fragment back.")
    assert result["started"] == ["redis-exporter"] and result["recreated"] == [], result
    assert result["files_changed"] == []
    state = json.loads(host.check_output(f"docker inspect {cname('redis-exporter')}"))[0]["State"]
    assert state["Health"]["Status"] == "healthy"
    assert host.file(f"{PROJECT_DIR}/docker-compose.yml").content_string == compose
