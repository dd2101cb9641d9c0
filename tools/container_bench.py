#!/usr/bin/env python3
"""docker-bench-security's section 5 (CIS Docker Benchmark 1.6, container runtime), from `docker inspect`.

docker-bench-security is a shell script published on GitHub only, so it cannot be installed on these
machines. This is the same set of container checks, read from the same fields it reads, plus its
check 4.1 (a non-root user). Run it on the server:

    docker inspect $(docker ps -q --filter label=com.docker.compose.project=rpa-engine) > inspect.json
    docker info --format '{{json .SecurityOptions}}' > info.json
    python3 tools/container_bench.py inspect.json info.json

It prints one line per check (PASS, WARN, EXCEPTION - a deviation this project documents - or N/A when
the host cannot have it) and the counts, and exits 1 on any WARN. Molecule's verify runs it on the
converged server (test_least_privilege.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

# Where docker-bench looks for sensitive host directories (check 5.6).
SENSITIVE_DIRS = frozenset({"/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"})

# (check, service) -> why this project deviates on purpose; README "Container hardening" says the same.
EXCEPTIONS = {
    ("4.1", "deployer"): "root to read the 0600 .env that `docker compose` needs; no capabilities",
    ("4.1", "docker-api-proxy"): "root to connect to the root-owned Docker socket; no capabilities",
    ("5.6", "node-exporter"): "host / read-only for file system statistics, sockets and secrets hidden under tmpfs",
    ("5.6", "cadvisor"): "host /sys read-only: the cgroup statistics it exports",
    ("5.32", "deployer"): "the deploy webhook runs `docker compose up` (README, \"The deployer's Docker access\")",
    ("5.32", "docker-api-proxy"): "the filter itself: lets only GET of read-only container endpoints through",
}
# Deviations for every container.
EXCEPTIONS_ALL = {
    "5.15": "restart: unless-stopped, so a service also returns after a reboot; the health gate and the "
            "watchdog catch restart loops (docker-bench wants on-failure:5)",
}


def _user_is_root(c: dict) -> bool:
    user = (c.get("Config") or {}).get("User") or ""
    name = user.split(":", 1)[0]
    return name in ("", "0", "root")


def _ports(c: dict) -> list[dict]:
    bindings = (c.get("HostConfig") or {}).get("PortBindings") or {}
    return [b for spec in bindings.values() for b in (spec or [])]


def _security_opt(c: dict) -> list[str]:
    return (c.get("HostConfig") or {}).get("SecurityOpt") or []


def _mounts(c: dict) -> list[dict]:
    return c.get("Mounts") or []


def _hc(c: dict) -> dict:
    return c.get("HostConfig") or {}


# check id -> (title, test). A test returns True (pass), False (warn) or None (cannot apply here).
Check = Callable[[dict, dict], "bool | None"]
CHECKS: dict[str, tuple[str, Check]] = {
    "4.1": ("a user for the container (not root)", lambda c, i: not _user_is_root(c)),
    "5.2": ("AppArmor profile", lambda c, i: (c.get("AppArmorProfile") or "unconfined") != "unconfined"
            if i.get("apparmor") else None),
    "5.4": ("capabilities restricted (cap_drop ALL, none added)",
            lambda c, i: "ALL" in [x.upper() for x in _hc(c).get("CapDrop") or []] and not _hc(c).get("CapAdd")),
    "5.5": ("not privileged", lambda c, i: not _hc(c).get("Privileged")),
    "5.6": ("no sensitive host directory mounted",
            lambda c, i: not any((m.get("Source", "").rstrip("/") or "/") in SENSITIVE_DIRS
                                 for m in _mounts(c) if m.get("Type") == "bind")),
    "5.7": ("no sshd in the container", lambda c, i: "sshd" not in json.dumps((c.get("Config") or {}).get("Cmd"))
            and "sshd" not in json.dumps((c.get("Config") or {}).get("Entrypoint"))),
    # A start-first service publishes a range ("8000-8001"): its lowest port decides.
    "5.8": ("no privileged host port",
            lambda c, i: all(int(str(b.get("HostPort") or 1024).split("-")[0]) >= 1024 for b in _ports(c))),
    "5.10": ("host network namespace not shared", lambda c, i: _hc(c).get("NetworkMode") != "host"),
    "5.11": ("memory limited", lambda c, i: (_hc(c).get("Memory") or 0) > 0),
    "5.12": ("CPU priority and limit set", lambda c, i: (_hc(c).get("CpuShares") or 0) not in (0, 1024)
             and ((_hc(c).get("NanoCpus") or 0) > 0 or (_hc(c).get("CpuQuota") or 0) > 0)),
    "5.13": ("read-only root file system", lambda c, i: bool(_hc(c).get("ReadonlyRootfs"))),
    "5.14": ("incoming traffic bound to one host interface",
             lambda c, i: all(b.get("HostIp") not in ("", "0.0.0.0", "::") for b in _ports(c))),
    "5.15": ("restart policy on-failure:5", lambda c, i: (_hc(c).get("RestartPolicy") or {}).get("Name") == "on-failure"
             and (_hc(c).get("RestartPolicy") or {}).get("MaximumRetryCount") == 5),
    "5.16": ("host PID namespace not shared", lambda c, i: _hc(c).get("PidMode") != "host"),
    "5.17": ("host IPC namespace not shared", lambda c, i: _hc(c).get("IpcMode") != "host"),
    "5.18": ("no host device exposed", lambda c, i: not _hc(c).get("Devices")),
    "5.20": ("no shared mount propagation", lambda c, i: all(m.get("Propagation") not in ("shared", "rshared")
                                                            for m in _mounts(c))),
    "5.21": ("host UTS namespace not shared", lambda c, i: _hc(c).get("UTSMode") != "host"),
    "5.22": ("default seccomp profile kept", lambda c, i: not any(o.replace(":", "=") == "seccomp=unconfined"
                                                                 for o in _security_opt(c))),
    "5.25": ("default cgroup", lambda c, i: not _hc(c).get("CgroupParent")),
    "5.26": ("no new privileges", lambda c, i: any(o.replace("=", ":") in ("no-new-privileges:true", "no-new-privileges")
                                                  for o in _security_opt(c))),
    "5.27": ("health checked at run time", lambda c, i: bool(((c.get("Config") or {}).get("Healthcheck") or {})
                                                            .get("Test", ["NONE"])[0] != "NONE")),
    "5.29": ("PIDs limited", lambda c, i: (_hc(c).get("PidsLimit") or 0) > 0),
    "5.30": ("not on the default bridge docker0", lambda c, i: _hc(c).get("NetworkMode") not in ("default", "bridge")),
    "5.31": ("host user namespace not shared", lambda c, i: _hc(c).get("UsernsMode") != "host"),
    "5.32": ("Docker socket not mounted", lambda c, i: not any("docker.sock" in (m.get("Source") or "")
                                                               for m in _mounts(c))),
}


def service_name(c: dict) -> str:
    labels = (c.get("Config") or {}).get("Labels") or {}
    return labels.get("com.docker.compose.service") or (c.get("Name") or "?").lstrip("/")


def host_info(security_options: list[str] | None) -> dict:
    """What the engine offers, from `docker info`'s SecurityOptions (["name=apparmor", "name=seccomp,..."])."""
    names = {opt.split(",", 1)[0].removeprefix("name=") for opt in security_options or []}
    return {"apparmor": "apparmor" in names, "seccomp": "seccomp" in names}


def bench(containers: list[dict], info: dict) -> dict[str, dict[str, list[str]]]:
    """{check: {"pass": [...], "warn": [...], "exception": [...], "na": [...]}} by service name."""
    results = {check: {"pass": [], "warn": [], "exception": [], "na": []} for check in CHECKS}
    for c in containers:
        name = service_name(c)
        for check, (_title, test) in CHECKS.items():
            verdict = test(c, info)
            if verdict is None:
                results[check]["na"].append(name)
            elif verdict:
                results[check]["pass"].append(name)
            elif (check, name) in EXCEPTIONS or check in EXCEPTIONS_ALL:
                results[check]["exception"].append(name)
            else:
                results[check]["warn"].append(name)
    return results


def counts(results: dict) -> dict[str, int]:
    return {kind: sum(len(r[kind]) for r in results.values()) for kind in ("pass", "warn", "exception", "na")}


def report(results: dict, containers: int) -> str:
    lines = []
    for check, r in results.items():
        title = CHECKS[check][0]
        status = "WARN" if r["warn"] else "EXCEPTION" if r["exception"] else "N/A" if r["na"] and not r["pass"] else "PASS"
        detail = ""
        if r["warn"]:
            detail = " - warn: " + ", ".join(sorted(r["warn"]))
        if r["exception"]:
            detail += " - documented: " + ", ".join(sorted(r["exception"]))
        if r["na"]:
            detail += " - not on this host: " + ", ".join(sorted(r["na"]))
        lines.append(f"[{status:9}] {check:5} {title}{detail}")
    n = counts(results)
    lines.append(f"docker-bench section 5 over {containers} containers, {len(CHECKS)} checks: {n['pass']} PASS, "
                 f"{n['warn']} WARN, {n['exception']} documented EXCEPTION, {n['na']} N/A")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        containers = json.load(handle)
    info = {"apparmor": False, "seccomp": False}
    if len(argv) == 3:
        with open(argv[2], encoding="utf-8") as handle:
            info = host_info(json.load(handle))
    results = bench(containers, info)
    print(report(results, len(containers)))
    return 1 if counts(results)["warn"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
