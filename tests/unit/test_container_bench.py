"""tools/container_bench.py: docker-bench-security's section 5 over `docker inspect`.

The fixture is the converged demo's own `docker inspect` of its 18 containers (environment
stripped), so the checks are judged against what Docker really reports.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import container_bench as cb  # noqa: E402

FIXTURE = json.loads((ROOT / "tests/unit/fixtures/docker_inspect_rpa_engine.json").read_text())
NO_APPARMOR = cb.host_info(["name=seccomp,profile=builtin"])


def one(service: str) -> dict:
    return copy.deepcopy(next(c for c in FIXTURE if cb.service_name(c) == service))


def test_the_converged_project_has_no_warn_and_only_the_documented_exceptions():
    results = cb.bench(FIXTURE, NO_APPARMOR)
    assert cb.counts(results)["warn"] == 0, cb.report(results, len(FIXTURE))
    excepted = {(check, name) for check, r in results.items() for name in r["exception"]}
    assert excepted == set(cb.EXCEPTIONS) | {("5.15", cb.service_name(c)) for c in FIXTURE}
    assert len(FIXTURE) == 18


def test_apparmor_is_judged_only_where_the_engine_has_it():
    assert set(cb.bench(FIXTURE, NO_APPARMOR)["5.2"]["na"]) == {cb.service_name(c) for c in FIXTURE}
    with_apparmor = cb.bench(FIXTURE, cb.host_info(["name=apparmor", "name=seccomp,profile=builtin"]))
    assert len(with_apparmor["5.2"]["warn"]) == 18  # unconfined on an AppArmor host is a WARN
    confined = one("backend")
    confined["AppArmorProfile"] = "docker-default"
    assert cb.bench([confined], {"apparmor": True})["5.2"]["pass"] == ["backend"]


@pytest.mark.parametrize(("check", "service", "spoil"), [
    ("4.1", "backend", lambda c: c["Config"].update(User="")),
    ("4.1", "backend", lambda c: c["Config"].update(User="0:10001")),
    ("5.4", "backend", lambda c: c["HostConfig"].update(CapAdd=["NET_ADMIN"])),
    ("5.4", "redis", lambda c: c["HostConfig"].update(CapDrop=None)),
    ("5.5", "frontend", lambda c: c["HostConfig"].update(Privileged=True)),
    ("5.6", "backend", lambda c: c["Mounts"].append({"Type": "bind", "Source": "/etc", "Destination": "/x"})),
    ("5.6", "prometheus", lambda c: c["Mounts"].append({"Type": "bind", "Source": "/", "Destination": "/host"})),
    ("5.8", "frontend", lambda c: c["HostConfig"].update(PortBindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "80"}]})),
    ("5.8", "frontend", lambda c: c["HostConfig"].update(PortBindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "79-80"}]})),
    ("5.10", "backend", lambda c: c["HostConfig"].update(NetworkMode="host")),
    ("5.11", "backend", lambda c: c["HostConfig"].update(Memory=0)),
    ("5.12", "backend", lambda c: c["HostConfig"].update(NanoCpus=0)),
    ("5.12", "backend", lambda c: c["HostConfig"].update(CpuShares=0)),
    ("5.13", "postgres", lambda c: c["HostConfig"].update(ReadonlyRootfs=False)),
    ("5.14", "backend", lambda c: c["HostConfig"].update(PortBindings={"8000/tcp": [{"HostIp": "", "HostPort": "8000"}]})),
    ("5.16", "backend", lambda c: c["HostConfig"].update(PidMode="host")),
    ("5.17", "backend", lambda c: c["HostConfig"].update(IpcMode="host")),
    ("5.18", "backend", lambda c: c["HostConfig"].update(Devices=[{"PathOnHost": "/dev/sda"}])),
    ("5.20", "node-exporter", lambda c: c["Mounts"][0].update(Propagation="rshared")),
    ("5.21", "backend", lambda c: c["HostConfig"].update(UTSMode="host")),
    ("5.22", "backend", lambda c: c["HostConfig"]["SecurityOpt"].append("seccomp=unconfined")),
    ("5.25", "backend", lambda c: c["HostConfig"].update(CgroupParent="/custom")),
    ("5.26", "grafana", lambda c: c["HostConfig"].update(SecurityOpt=[])),
    ("5.27", "backend", lambda c: c["Config"].update(Healthcheck=None)),
    ("5.29", "redis", lambda c: c["HostConfig"].update(PidsLimit=None)),
    ("5.29", "redis", lambda c: c["HostConfig"].update(PidsLimit=0)),
    ("5.30", "backend", lambda c: c["HostConfig"].update(NetworkMode="bridge")),
    ("5.31", "backend", lambda c: c["HostConfig"].update(UsernsMode="host")),
    ("5.32", "cadvisor", lambda c: c["Mounts"].append({"Type": "bind", "Source": "/var/run/docker.sock",
                                                        "Destination": "/var/run/docker.sock"})),
])
def test_each_check_warns_on_the_setting_it_names(check, service, spoil):
    container = one(service)
    assert cb.bench([container], NO_APPARMOR)[check]["pass"] == [service]
    spoil(container)
    results = cb.bench([container], NO_APPARMOR)
    assert results[check]["warn"] == [service], results[check]
    assert "WARN" in cb.report(results, 1)


def test_main_exits_1_on_a_warn(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(FIXTURE))
    assert cb.main(["container_bench", str(good)]) == 0
    assert "0 WARN" in capsys.readouterr().out
    spoiled = copy.deepcopy(FIXTURE)
    spoiled[0]["HostConfig"]["Privileged"] = True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spoiled))
    assert cb.main(["container_bench", str(bad)]) == 1


def test_a_start_first_port_range_on_loopback_passes_5_8_and_5_14():
    container = one("frontend")
    container["HostConfig"]["PortBindings"] = {"3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "2999-3000"}]}
    results = cb.bench([container], NO_APPARMOR)
    assert results["5.8"]["pass"] == ["frontend"] and results["5.14"]["pass"] == ["frontend"]
