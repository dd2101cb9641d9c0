#!/usr/bin/env python3
"""Bring back containers of the Compose project that were killed, not stopped.

Docker's restart policies skip any container stopped "manually", and Docker
counts `docker kill` (and a SIGKILL from anywhere through the API) as
manual: the container stays down. This watchdog follows `docker events` for
the project and restarts such a container - one that died with no `stop`
event around it. An operator's `docker stop`, `docker compose stop` or
`down` always emits `stop`, so those are left alone; crashes are Docker's
own restart policy's business (the container is already restarting or
running when we look).

Runs as the systemd service rpa-compose-watchdog; logs to the journal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

PROJECT = os.environ.get("RPA_COMPOSE_PROJECT", "")  # the unit sets it: rpa_project_name
GRACE = float(os.environ.get("RPA_WATCHDOG_GRACE", "3"))
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}


class Decider:
    """Pure event logic: which containers should be started, and when."""

    def __init__(self, grace: float = GRACE):
        self.grace = grace
        self.stopped = {}   # container id -> time of its last `stop` event
        self.pending = {}   # container id -> time its `die` becomes actionable

    def on_event(self, event: dict, now: float) -> None:
        action = event.get("Action") or event.get("status", "")
        cid = event.get("id") or event.get("Actor", {}).get("ID", "")
        if action == "stop":
            # Docker may send `stop` just before or just after `die`.
            self.stopped[cid] = now
            self.pending.pop(cid, None)
        elif action == "die":
            if now - self.stopped.get(cid, float("-inf")) > self.grace:
                self.pending[cid] = now + self.grace
        elif action in ("start", "destroy"):
            self.pending.pop(cid, None)
            self.stopped.pop(cid, None)

    def due(self, now: float) -> list[str]:
        """Containers that died with no `stop` event within the grace period."""
        ready = [cid for cid, at in self.pending.items() if at <= now]
        for cid in ready:
            del self.pending[cid]
        return ready


def should_start(inspect: dict) -> bool:
    """Only a container that is down and whose policy asks to keep it up."""
    state = inspect.get("State", {})
    policy = (inspect.get("HostConfig", {}).get("RestartPolicy") or {}).get("Name", "no")
    return state.get("Status") == "exited" and not state.get("Restarting") and policy in RESTART_POLICIES


def log(msg: str) -> None:
    print(msg, flush=True)


def start_if_needed(cid: str) -> None:
    proc = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return  # removed in the meantime
    inspect = json.loads(proc.stdout)[0]
    name = inspect.get("Name", cid).lstrip("/")
    if should_start(inspect):
        log(f"{name} was killed without being stopped; starting it again")
        started = subprocess.run(["docker", "start", cid], capture_output=True, text=True, check=False)
        if started.returncode != 0:
            log(f"starting {name} failed: {started.stderr.strip()}")


def main() -> int:
    if not PROJECT:
        log("RPA_COMPOSE_PROJECT is not set: no Compose project to watch")
        return 2
    decider = Decider()
    lock = threading.Lock()

    def ticker():
        while True:
            time.sleep(0.5)
            with lock:
                due = decider.due(time.monotonic())
            for cid in due:
                start_if_needed(cid)

    threading.Thread(target=ticker, daemon=True).start()
    cmd = ["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
           "--filter", f"label=com.docker.compose.project={PROJECT}"]
    log(f"watching containers of Compose project {PROJECT}")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as events:
        for line in events.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with lock:
                decider.on_event(event, time.monotonic())
    # docker events ended (dockerd restarted): systemd restarts us.
    return 1


if __name__ == "__main__":
    sys.exit(main())
