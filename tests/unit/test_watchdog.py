"""The compose watchdog: restart what `docker kill` left down, nothing an operator stopped.

fixtures/docker_events_kill_then_stop.ndjson is real `docker events` output
(Docker 26.1) for: docker kill redis; docker start; docker stop; compose up.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from conftest import ROOT

spec = importlib.util.spec_from_file_location(
    "watchdog", ROOT / "roles" / "docker" / "files" / "rpa-compose-watchdog.py")
watchdog = importlib.util.module_from_spec(spec)
spec.loader.exec_module(watchdog)

EVENTS = [json.loads(line) for line in
          (Path(__file__).parent / "fixtures" / "docker_events_kill_then_stop.ndjson").read_text().splitlines()]


def replay(events, grace=3.0):
    """Feed events at their real times; collect what the watchdog would start, and when."""
    d = watchdog.Decider(grace=grace)
    t0 = events[0]["timeNano"] / 1e9
    started = []
    for event in events:
        now = event["timeNano"] / 1e9 - t0
        started += [(cid, now) for cid in d.due(now)]
        d.on_event(event, now)
    started += [(cid, 1e6) for cid in d.due(1e6)]
    return started


def test_kill_is_acted_on_and_stop_is_left_alone():
    # The kill's die is followed by an operator's `docker start` 2.3 s later in
    # the capture (inside the grace), so nothing is due; drop that start and the
    # watchdog must act on the kill - and still never on the later stop.
    assert replay(EVENTS) == []
    without_manual_start = [e for e in EVENTS if not (e["Action"] == "start" and e is EVENTS[2])]
    acted = replay(without_manual_start)
    assert [cid for cid, _ in acted] == [EVENTS[0]["id"]]


def test_stop_event_before_die_is_recognised():
    actions = [e["Action"] for e in EVENTS]
    assert actions[3:6] == ["kill", "stop", "die"]  # Docker sends stop before die
    assert replay(EVENTS[3:6]) == []


def test_should_start_only_exited_containers_with_a_policy():
    base = {"State": {"Status": "exited", "Restarting": False},
            "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}}}
    assert watchdog.should_start(base)
    assert not watchdog.should_start({**base, "HostConfig": {"RestartPolicy": {"Name": "no"}}})
    assert not watchdog.should_start({**base, "State": {"Status": "running", "Restarting": False}})
    assert not watchdog.should_start({**base, "State": {"Status": "exited", "Restarting": True}})
