#!/usr/bin/env python3
"""Capture real Swarm output for the Swarm gate's unit tests (tests/unit/fixtures/swarm_*.json).

Runs in a throw-away test-bed server container (its own nested Docker, Debian 13's docker.io): a
one-node swarm, a replicated service with a health check, then updates that complete, roll back and
pause. Each capture is {"service": docker service inspect, "tasks": docker inspect of its tasks,
"logs": docker service logs --tail 20}, taken the moment UpdateStatus.State reaches the state named.

    python3 tools/capture_swarm.py [--name rpa-swarm-capture] [--ssh-port 2241]

Needs `make testbed` (the engine and the test images); removes its server container at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "unit" / "fixtures"
IMAGE = "rpa-testbed/redis:latest"


def sh(name: str, command: str, check: bool = True) -> str:
    proc = subprocess.run(["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True)
    if check and proc.returncode:
        raise SystemExit(f"{command}: {proc.stderr}")
    return proc.stdout


def capture(name: str, service: str) -> dict:
    inspect = json.loads(sh(name, f"docker service inspect {service}"))[0]
    ids = sh(name, f"docker service ps -q --no-trunc {service}").split()
    tasks = json.loads(sh(name, "docker inspect " + " ".join(ids))) if ids else []
    logs = sh(name, f"docker service logs --no-trunc --tail 20 {service} 2>&1", check=False)
    return {"service": inspect, "tasks": tasks, "logs": logs}


def wait_state(name: str, service: str, states: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = capture(name, service)
        state = (data["service"].get("UpdateStatus") or {}).get("State")
        if state in states:
            return data
        if time.monotonic() > deadline:
            raise SystemExit(f"{service} never reached {states} (last: {state})")
        time.sleep(0.3)


def save(label: str, data: dict) -> None:
    path = FIXTURES / f"swarm_26.1_{label}.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="rpa-swarm-capture")
    parser.add_argument("--ssh-port", type=int, default=2241)
    args = parser.parse_args()
    name = args.name
    testbed = [sys.executable, str(ROOT / "testbed" / "testbed.py")]
    subprocess.run(testbed + ["up", name, "--ssh-port", str(args.ssh_port), "--http-port", "8897",
                              "--https-port", "8457"], check=True)
    try:
        # A bare server, as the docker role finds it: Debian 13's docker.io from the distribution.
        sh(name, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null && "
                 "systemctl start docker && docker version --format '{{.Server.Version}}'")
        save_img = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["docker", "exec", "-i", name, "docker", "load", "-q"], stdin=save_img.stdout, check=True)
        save_img.wait()
        sh(name, "docker swarm init --advertise-addr 127.0.0.1 >/dev/null")
        sh(name, f"docker service create -q --detach --name web --replicas 2 "
                 f"--health-cmd 'redis-cli ping' --health-interval 1s --health-retries 2 --health-timeout 2s "
                 f"--update-order start-first --update-parallelism 1 --update-monitor 4s "
                 f"--update-failure-action rollback --rollback-order start-first {IMAGE} "
                 f"redis-server --save '' --appendonly no")
        deadline = time.monotonic() + 120
        while True:
            data = capture(name, "web")
            running = [t for t in data["tasks"] if t["Status"]["State"] == "running"]
            if len(running) == 2:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the service never ran 2 tasks")
            time.sleep(0.3)
        save("created", data)
        # A good update (an environment variable): updating, then completed.
        sh(name, "docker service update -q --detach --env-add RPA_CAPTURE=1 web")
        save("updating", wait_state(name, "web", {"updating"}))
        save("completed", wait_state(name, "web", {"completed"}))
        # A health check that fails: Swarm rolls it back, and the CLI would have exited 0.
        sh(name, "docker service update -q --detach --health-cmd 'exit 1' web")
        save("rollback_started", wait_state(name, "web", {"rollback_started"}))
        save("rollback_completed", wait_state(name, "web", {"rollback_completed"}))
        # The same failure with failure_action=pause.
        sh(name, "docker service update -q --detach --update-failure-action pause --health-cmd 'exit 2' web")
        save("paused", wait_state(name, "web", {"paused"}))
    finally:
        subprocess.run(testbed + ["down", name], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
