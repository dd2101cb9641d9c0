"""The Swarm gate's decisions (module_utils/rpa_swarm), from real output of Debian 13's docker.io 26.1.

fixtures/swarm_26.1_*.json were captured by tools/capture_swarm.py in a test-bed server container: a
one-node swarm, a replicated service (2 tasks, health check, start-first, failure_action rollback),
then an update that completes, one whose health check fails (rolled back) and one paused;
swarm_26.1_stack_deployed.json is the same service created by `docker stack deploy` (the Swarm gate's
test playbook, molecule/default/tests/files/swarm_gate.yml). Each holds
`docker service inspect`, `docker inspect` of the service's tasks and its last log lines, taken the
moment UpdateStatus.State reached the state in the file's name. swarm_26.1_crashloop.json holds the same
three for the scale-out stack's first deploy of a deployer whose task could not read its secret file (exit 1,
restarted for ever, no UpdateStatus), taken by hand while the gate waited, its "Secrets" mounts taken out (the
secret scan reads their names and ids as literal values).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.rpa.engine.plugins.module_utils import rpa_swarm as rs

FIX = Path(__file__).parent / "fixtures"


def load(label):
    return json.loads((FIX / f"swarm_26.1_{label}.json").read_text())


def started(data):
    return rs.parse_time(data["service"]["UpdateStatus"]["StartedAt"])


# ------------------------------------------------------------ timestamps
@pytest.mark.parametrize(("text", "expected"), [
    ("1970-01-01T00:00:00Z", 0.0),
    ("2026-12-01T11:53:39Z", 1796126019.0),
    ("2026-12-01T11:53:39.5+01:00", 1796126019.5 - 3600),
    ("2000-02-29T00:00:00.123456789Z", 951782400.123456789),
])
def test_engine_timestamps_are_read_with_nanoseconds_and_offsets(text, expected):
    assert rs.parse_time(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", ["", None, "0001-01-01T00:00:00Z"])
def test_the_zero_time_and_no_time_are_none(text):
    assert rs.parse_time(text) is None


def test_an_unreadable_timestamp_is_an_error_naming_it():
    with pytest.raises(rs.SwarmError, match="yesterday"):
        rs.parse_time("yesterday")


def test_every_captured_timestamp_reads():
    for label in ("created", "updating", "completed", "rollback_started", "rollback_completed", "paused"):
        data = load(label)
        for task in data["tasks"]:
            assert rs.parse_time(task["Status"]["Timestamp"]) > 1.7e9, label


# ------------------------------------------------------------ decisions
def test_a_created_service_with_its_tasks_running_has_converged():
    data = load("created")
    assert rs.update_status(data["service"])[0] is None
    assert rs.assess(data["service"], data["tasks"], deployed_at=0)[0] == "converged"


def test_a_stack_deploy_with_its_tasks_running_has_converged():
    """`docker stack deploy` gives the service an empty DNSConfig that its tasks' copies leave out."""
    data = load("stack_deployed")
    assert data["service"]["Spec"]["TaskTemplate"]["ContainerSpec"]["DNSConfig"] == {}
    assert all("DNSConfig" not in t["Spec"]["ContainerSpec"] for t in data["tasks"])
    assert rs.assess(data["service"], data["tasks"], deployed_at=0) == \
        ("converged", "gate_web: 2 task(s) run its current spec")


def test_an_update_under_way_is_pending():
    data = load("updating")
    verdict, reason = rs.assess(data["service"], data["tasks"], deployed_at=started(data) - 1)
    assert verdict == "pending" and "updating" in reason


def test_a_completed_update_has_converged():
    data = load("completed")
    assert rs.assess(data["service"], data["tasks"], deployed_at=started(data) - 1) == \
        ("converged", "web: 2 task(s) run its current spec")


@pytest.mark.parametrize("label", ["rollback_started", "rollback_completed", "paused"])
def test_a_rolled_back_or_paused_update_fails_naming_the_service(label):
    data = load(label)
    verdict, reason = rs.assess(data["service"], data["tasks"], deployed_at=started(data) - 1)
    assert verdict == "failed" and reason.startswith("web: ") and rs.FAILED_STATES[label] in reason


def test_a_rollback_completed_looks_converged_to_anyone_who_only_counts_tasks():
    """Why the gate reads UpdateStatus: after the rollback, 2 tasks run the (previous) spec again."""
    data = load("rollback_completed")
    assert len(rs.running_tasks(data["service"], data["tasks"])) == 2


def test_an_update_status_from_before_the_deploy_says_nothing_about_it():
    """A deploy that changed nothing leaves the last update's status, rolled back or not, in place."""
    data = load("rollback_completed")
    assert rs.assess(data["service"], data["tasks"], deployed_at=started(data) + 60)[0] == "converged"


@pytest.mark.parametrize(("label", "culprit", "check"), [
    # Swarm's message names the task while it rolls back or pauses...
    ("rollback_started", "5xxnmuj9h90541c0fcm16n0vb", "exit 1"),
    ("paused", "b1gug70x96h61x72rkhghrfei", "exit 2"),
    # ...but only says "rollback completed" afterwards: the newest stopped task of the failed spec.
    ("rollback_completed", "5xxnmuj9h90541c0fcm16n0vb", "exit 1"),
])
def test_the_failure_report_names_the_task_that_failed_the_update_and_its_own_logs(label, culprit, check):
    data = load(label)
    assert rs.culprit_task(data["service"], data["tasks"])["ID"] == culprit
    report = rs.failure_report(data["service"], data["tasks"], data["logs"])
    assert report.startswith("service web: " + rs.FAILED_STATES[label]), report
    assert "swarm says: " + data["service"]["UpdateStatus"]["Message"] in report
    # Stopped for its failing health check: SIGTERM, exit 0, state "complete" - its health check says why.
    assert f"task {culprit[:12]} failed it: state complete (finished), health check: CMD-SHELL {check}" in report
    logs = report.split("last log lines:\n", 1)[1].splitlines()
    if f".{culprit}@" in data["logs"]:
        # Its own lines when the capture has them; the service's last lines otherwise (the paused one's
        # task had none yet).
        assert logs and all(f".{culprit}@" in line for line in logs), logs
    else:
        assert logs == [line for line in data["logs"].splitlines() if line.strip()][-20:]


def test_running_tasks_compare_the_whole_container_spec_not_the_image():
    """Mid-update (an environment variable added), the two old tasks still run the same image: they are
    not the service's current spec, and the new task is still starting."""
    data = load("updating")
    image = data["service"]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    old = [t for t in data["tasks"] if t["Status"]["State"] == "running"]
    assert len(old) == 2 and all(t["Spec"]["ContainerSpec"]["Image"] == image for t in old)
    assert rs.running_tasks(data["service"], data["tasks"]) == []
    assert rs.assess(data["service"], data["tasks"], deployed_at=0) == ("pending", "web: update updating")


def test_one_failed_service_fails_the_stack_naming_it():
    verdicts = {"web": ("failed", "web: rolled back"), "api": ("pending", "api: update updating"),
                "beat": ("converged", "beat: 1 task(s)")}
    assert rs.stack_verdict(verdicts) == ("failed", ["web: rolled back"])
    del verdicts["web"]
    assert rs.stack_verdict(verdicts) == ("pending", ["api: update updating"])
    assert rs.stack_verdict({"beat": ("converged", "")}) == ("converged", [])


def test_a_changed_spec_names_the_service_and_an_unchanged_one_does_not():
    before = rs.spec_fingerprints([load("created")["service"]])
    after = rs.spec_fingerprints([load("completed")["service"]])
    assert rs.changed_services(before, after) == ["web"]
    assert rs.changed_services(after, after) == []
    assert rs.changed_services({}, after) == ["web"]
    # The index moves between two captures of one spec (a rollback writes the service too).
    started, done = load("rollback_started")["service"], load("rollback_completed")["service"]
    assert started["Version"]["Index"] != done["Version"]["Index"]
    assert rs.changed_services(rs.spec_fingerprints([started]), rs.spec_fingerprints([done])) == []


def test_an_empty_member_the_cli_adds_on_its_second_deploy_is_no_change():
    # docker.io 26.1: a service created by `docker stack deploy` has no DNSConfig; the next deploy of the same
    # file writes DNSConfig {} (seen on the app stack's second converge). A real change still counts.
    redeployed = load("created")["service"]
    assert redeployed["Spec"]["TaskTemplate"]["ContainerSpec"]["DNSConfig"] == {}
    created = json.loads(json.dumps(redeployed))
    del created["Spec"]["TaskTemplate"]["ContainerSpec"]["DNSConfig"]
    assert rs.changed_services(rs.spec_fingerprints([created]), rs.spec_fingerprints([redeployed])) == []
    redeployed["Spec"]["TaskTemplate"]["ContainerSpec"]["DNSConfig"] = {"Nameservers": ["192.0.2.53"]}
    assert rs.changed_services(rs.spec_fingerprints([created]), rs.spec_fingerprints([redeployed])) == ["web"]


# ------------------------------------------------------------ check mode: what a deploy would change
def gate_service():
    """The Compose service the Swarm gate's test playbook deploys (swarm_gate.yml), which the captured
    swarm_26.1_stack_deployed.json runs."""
    import yaml  # noqa: PLC0415  (only these tests need it)
    play = yaml.safe_load((Path(__file__).parents[2] / "molecule/default/tests/files/swarm_gate.yml").read_text())
    return play[0]["vars"]["swarm_gate_service"]


def deployed():
    return [load("stack_deployed")["service"]]


def test_the_deployed_definition_plans_no_change():
    assert rs.planned_changes("gate", {"web": gate_service()}, deployed()) == {}


def test_a_changed_health_check_and_replica_count_are_planned_with_both_values():
    svc = dict(gate_service(), healthcheck=dict(gate_service()["healthcheck"], test="exit 1"),
               deploy=dict(gate_service()["deploy"], replicas=3))
    plan = rs.planned_changes("gate", {"web": svc}, deployed())
    assert plan == {"gate_web": [("healthcheck.test", ["CMD-SHELL", "redis-cli ping"], ["CMD-SHELL", "exit 1"]),
                                 ("replicas", 2, 3)]}
    before, after, summary = rs.render_plan(plan)
    assert before == 'gate_web healthcheck.test: ["CMD-SHELL", "redis-cli ping"]\ngate_web replicas: 2\n'
    assert after == 'gate_web healthcheck.test: ["CMD-SHELL", "exit 1"]\ngate_web replicas: 3\n'
    assert summary == {"gate_web": ['healthcheck.test: ["CMD-SHELL", "redis-cli ping"] -> ["CMD-SHELL", "exit 1"]',
                                    "replicas: 2 -> 3"]}


def test_image_environment_and_command_changes_are_planned():
    svc = dict(gate_service(), image="rpa-testbed/redis:8.1", environment={"B": "2", "A": "1"},
               command="redis-server --save ''")
    plan = dict((f, (o, n)) for f, o, n in rs.planned_changes("gate", {"web": svc}, deployed())["gate_web"])
    assert plan["image"] == ("rpa-testbed/redis:latest", "rpa-testbed/redis:8.1")
    assert plan["environment"] == ([], ["A=1", "B=2"])
    assert plan["command"][1] == ["redis-server", "--save", ""]


def test_new_services_are_created_and_missing_ones_removed_only_with_prune():
    services = {"web": gate_service(), "api": gate_service()}
    assert rs.planned_changes("gate", services, deployed()) == {"gate_api": [("service", None, "created")]}
    assert rs.planned_changes("gate", {}, deployed()) == {}
    assert rs.planned_changes("gate", {}, deployed(), prune=True) == {"gate_web": [("service", "running", None)]}


@pytest.mark.parametrize(("text", "ns"), [("1s", 10**9), ("500ms", 5 * 10**8), ("1m30s", 90 * 10**9),
                                          ("2h", 7200 * 10**9), (None, None), (3, 3 * 10**9)])
def test_compose_durations_are_read_as_the_spec_keeps_them(text, ns):
    assert rs._duration_ns(text) == ns


# ------------------------------------------------------------------ check mode's reading of the file
# Captured: docker 26.1's CLI (the test-bed server's docker-cli) with a stack subcommand it does not know, as an
# old CLI without `stack config` sees it; docker 28.2's `docker stack config` on broken files.
@pytest.mark.parametrize(("rc", "err", "unsupported"), [
    (125, (FIX / "docker_stack_unknown_command_26.1.txt").read_text(), True),
    (1, "yaml: line 2: did not find expected ',' or ']'\n", False),
    (1, "services.web.deploy.replicas must be a integer\n", False),
    (1, "open /root/stack.yml: no such file or directory\n", False),
])
def test_only_a_cli_without_stack_config_falls_back_to_reading_the_file(rc, err, unsupported):
    assert rs.stack_config_unsupported(rc, err) is unsupported


# ------------------------------------------------------------------ a task pruned while the gate reads the stack
# Captured: docker 26.1.5's CLI on the test-bed server, `docker inspect <a task> <a task Swarm had pruned>`.
@pytest.mark.parametrize(("rc", "err", "vanished"), [
    (1, "Error: No such object: q14ub1ex64ap2sc68s6dkaao9\n", True),
    (1, "Error: No such object: q14ub1ex64ap2sc68s6dkaao9\nError: No such object: 450l811hemwmh11s6bvdj3rdv\n", True),
    (1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n", False),
    (1, "Error: No such object: q14ub1ex64ap2sc68s6dkaao9\npermission denied while trying to connect\n", False),
    (1, "", False),
    (0, "", False),
])
def test_only_tasks_that_vanished_meanwhile_are_read_around(rc, err, vanished):
    assert rs.only_vanished(rc, err) is vanished


def test_a_service_stuck_without_an_update_is_reported_with_its_newest_ended_task_and_its_logs():
    """A first deploy whose task exits at once: no UpdateStatus to blame, so the gate waits out its timeout
    (a task may fail once while its database starts); then it names the service, the ended tasks, the newest
    one's error and exit code, and that task's own log lines."""
    data = load("crashloop")
    verdict, reason = rs.assess(data["service"], data["tasks"], deployed_at=0)
    assert (verdict, reason) == ("pending", "rpa-engine_deployer: 0 of 1 tasks run its current spec")
    report = rs.stuck_report(data["service"], data["tasks"], data["logs"], reason)
    lines = report.splitlines()
    assert lines[0] == reason
    newest = max((t for t in data["tasks"] if t["Status"]["State"] == "failed"),
                 key=lambda t: rs.parse_time(t["Status"]["Timestamp"]))
    assert lines[1] == ("4 task(s) ended on their own; the newest, %s: state failed (starting), "
                        "error: task: non-zero exit (1), exit 1" % newest["ID"][:12]), lines[1]
    assert lines[2] == "last log lines:"
    assert lines[3:] and all(".%s@" % newest["ID"] in line for line in lines[3:]), lines[3:]
    assert "cat: /run/secrets/DEPLOY_TOKEN: Permission denied" in report


def test_a_stuck_report_without_ended_tasks_gives_the_reason_and_the_services_logs():
    data = load("crashloop")
    running = [t for t in data["tasks"] if t["Status"]["State"] not in ("failed", "rejected", "complete")]
    assert rs.stuck_report(data["service"], running, "", "why") == "why"
    assert rs.stuck_report(data["service"], running, "a | b\n", "why") == "why\nlast log lines:\na | b"
