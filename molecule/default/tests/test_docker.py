"""The docker role: engine, Compose v2, effective daemon settings."""

from __future__ import annotations

import json


def test_docker_is_running_and_enabled(host):
    svc = host.service("docker")
    assert svc.is_running
    assert svc.is_enabled


def test_compose_v2_is_recent_enough(host):
    raw = host.check_output("docker compose version --short")
    major, minor = (int(x) for x in raw.lstrip("v").split("-")[0].split(".")[:2])
    assert (major, minor) >= (2, 20), raw


def test_daemon_json_content(host):
    cfg = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert cfg == {"live-restore": True, "log-driver": "json-file",
                   "log-opts": {"max-file": "3", "max-size": "10m"}}


def test_engine_runs_with_those_settings(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is True
    # The nested engine must not fall back to the slow vfs driver.
    assert info["Driver"] == "overlay2"
