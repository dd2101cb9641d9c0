"""Helpers for the verify step: the server under test, run from the controller.

Testinfra's ``host`` fixture runs commands inside the simulated server over
SSH.  The helpers here do what an operator or an attacker outside the server
would do: open TCP connections to the server container's address (a
container this test run created) and run ansible-playbook against it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
TESTBED = ROOT / "testbed" / "testbed.py"
sys.path.insert(0, str(ROOT / "tools"))
import project  # noqa: E402  (tools/project.py: the project's identity, read from the inventory)


# Outside Molecule the same tests run against the `make demo` server:
#   make verify-demo [PYTEST_ARGS=-k data_tier]
# (testinfra's ssh backend with .testbed/ssh/config: its ansible backend does
# not template the demo inventory's key path)
DEMO = {"instance": "rpa-demo", "port": 2222, "identity_file": str(ROOT / ".testbed/ssh/id_ed25519")}

# Testinfra multiplexes its SSH connections (ControlPath from ansible.cfg's control_path) only when
# control_path_dir already exists when it first connects; Mitogen never creates it, so on a fresh CI
# machine every host.run was a new SSH handshake (about 0.14 s each against 0.01 s multiplexed) and
# the burst of new connections could exhaust the server's per-source SSH rate limit.
os.makedirs(os.path.expanduser("~/.ansible/cp"), mode=0o700, exist_ok=True)


def instance_config() -> list[dict]:
    path = os.environ.get("MOLECULE_INSTANCE_CONFIG")
    if not path:
        return [DEMO]
    return yaml.safe_load(Path(path).read_text())


def inventory_path() -> Path:
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    return Path(ephemeral) / "inventory" if ephemeral else ROOT / "inventory" / "demo"


@pytest.fixture(scope="session")
def server() -> dict:
    """Name, SSH port and outside address of the (single) server under test."""
    inst = instance_config()[0]
    address = subprocess.run(
        ["docker", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", inst["instance"]],
        check=True, capture_output=True, text=True).stdout.strip()
    assert address, f"{inst['instance']} has no address on the controller's Docker bridge"
    return {"name": inst["instance"], "ssh_port": inst["port"], "address": address,
            "key": inst["identity_file"]}


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    """predicate()'s first truthy value, polled every interval seconds; AssertionError naming what after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(interval)


def probe_tcp(address: str, port: int, timeout: float = 2.0) -> str:
    """'open' (handshake done), 'refused' (RST: reachable, nothing listens) or 'filtered' (dropped)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except (TimeoutError, socket.timeout):
        return "filtered"


def probe_from_outside(address: str, ports) -> dict[int, str]:
    """probe_tcp of each port, bracketed by SSH answering before and after.

    A dropped packet and an unreachable server look the same ('filtered'):
    only a server that answers on 22 in the same breath makes 'filtered'
    mean "the firewall dropped it".
    """
    assert probe_tcp(address, 22) == "open", f"{address} does not answer on 22: the probe would prove nothing"
    states = {port: probe_tcp(address, port) for port in ports}
    assert probe_tcp(address, 22) == "open", f"{address} stopped answering on 22 during the probe"
    return states


def run_site(*args: str, check_json: bool = True, human: bool = False,
             env_extra: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """Run site.yml from the project root against Molecule's inventory, JSON output."""
    return run_playbook("site.yml", *args, check_json=check_json, human=human, env_extra=env_extra)


def run_playbook(playbook: str, *args: str, check_json: bool = True, human: bool = False,
                 inventory: Path | None = None, env_extra: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a playbook (path relative to the project root) with JSON output.

    human=True keeps ansible.cfg's own output (what an operator sees) instead.
    """
    inventory = inventory or inventory_path()
    vault_id, pass_file = vault_identity()
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_VAULT_IDENTITY_LIST=f"{vault_id}@{pass_file}")
    if not human:
        # The json callback replaces profile_tasks, whose report would corrupt the JSON on stdout.
        env.update(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
                   ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.json")
    env.update(env_extra or {})
    proc = subprocess.run([shutil.which("ansible-playbook") or "ansible-playbook", playbook,
                           "-i", str(inventory), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    data = json.loads(proc.stdout) if check_json and not human else {}
    return proc, data


def alias_inventory(directory: Path, aliases: dict[str, dict]) -> Path:
    """An inventory whose hosts are all the server under test, each alias with host vars of its own.

    One ansible-playbook run then tries many inputs at once: every alias is
    a host of its own to Ansible (its own facts, its own failure), while the
    group_vars are those of the inventory under test.
    """
    inst = instance_config()[0]
    connection = {"ansible_host": "127.0.0.1", "ansible_port": inst["port"], "ansible_user": "root",
                  "ansible_ssh_private_key_file": str(inst["identity_file"]),
                  "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                             "-o LogLevel=ERROR"}
    directory.mkdir(parents=True, exist_ok=True)
    hosts = {name: {**connection, **host_vars} for name, host_vars in aliases.items()}
    (directory / "hosts.yml").write_text(yaml.safe_dump({"rpa_engine": {"hosts": hosts}}, sort_keys=False))
    link = directory / "group_vars"
    if not link.exists():
        link.symlink_to((inventory_path() / "group_vars").resolve())
    return directory / "hosts.yml"


def message(res: dict) -> str:
    """A task's message; for a loop, also those of its failed items (what the operator reads)."""
    parts = [str(res.get("msg", ""))]
    parts += [str(item.get("msg", "")) for item in res.get("results", []) if isinstance(item, dict)
              and item.get("failed")]
    return "\n".join(p for p in parts if p)


def executed_tasks(data: dict, host: str) -> list[dict]:
    """Every task result for host in run order: play, task name, status, msg."""
    out = []
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            res = task.get("hosts", {}).get(host)
            if res is None:
                continue
            out.append({"play": play["play"]["name"], "task": task["task"]["name"],
                        "failed": bool(res.get("failed")), "changed": bool(res.get("changed")),
                        "skipped": bool(res.get("skipped")), "msg": message(res)})
    return out


# The vault of the inventory under test: Molecule's own (tools/demo_vault.py --molecule, made afresh by
# `make molecule`) or, for `make verify-demo`, the demo's. Tests rotate its secrets.
MOLECULE_VAULT_PASS = ROOT / ".cache" / "molecule" / "vault-pass"
DEMO_VAULT_PASS = ROOT / "inventory" / "demo" / ".vault-pass"
# Test names of the secrets -> their keys in the vault.
VAULT_KEYS = {"app_jwt_secret": "vault_jwt_secret", "app_deploy_token": "vault_deploy_token",
              "app_flower_password": "vault_flower_password"}


def vault_identity() -> tuple[str, Path]:
    """(vault id, password file) of the inventory under test."""
    if os.environ.get("MOLECULE_INSTANCE_CONFIG"):
        return "molecule", MOLECULE_VAULT_PASS
    return "demo", DEMO_VAULT_PASS


def vault_file() -> Path:
    """The vault of the inventory under test (through Molecule's group_vars link)."""
    return (inventory_path() / "group_vars" / "all" / "vault.yml").resolve()


def rotation_file() -> Path:
    """The rotation records next to the vault (playbooks/rotate-secrets.yml writes them)."""
    return vault_file().parent / "rotation.yml"


def vault() -> dict:
    """The vault's values, decrypted on the controller."""
    from ansible.parsing.vault import VaultLib, VaultSecret
    vault_id, pass_file = vault_identity()
    lib = VaultLib([(vault_id, VaultSecret(pass_file.read_bytes().strip()))])
    return yaml.safe_load(lib.decrypt(vault_file().read_bytes()).decode()) or {}


def secret(name: str) -> str:
    """A secret from the vault under test, by role variable name (redis_password, app_jwt_secret...)."""
    return str(vault()[VAULT_KEYS.get(name, f"vault_{name}")])


# The project's identity as the inventory under test sets it (not secret: read once, at import).
PROJECT, PROJECT_DIR = project.identity(inventory_path())
COMPOSE = project.compose_command(PROJECT, PROJECT_DIR)


# Replaced start-first (app_start_first_services): the module gives the new container the first
# container's name, but a stop-first recreate (the deployer's, an operator's `up --force-recreate`)
# names it after its container number.
START_FIRST = ("backend", "frontend")


def cname(service: str) -> str:
    """The container Compose runs for service in the project under test (in a shell command)."""
    if service in START_FIRST:
        return (f"$(docker ps -aq --filter label=com.docker.compose.project={PROJECT} "
                f"--filter label=com.docker.compose.service={service} "
                "--filter label=com.docker.compose.oneoff=False | head -n1)")
    return project.container(service, PROJECT)


def zero_downtime():
    """bench/zero_downtime as a module (a script without .py): its load generator, Load."""
    loader = importlib.machinery.SourceFileLoader("zero_downtime", str(ROOT / "bench" / "zero_downtime"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("zero_downtime", loader))
    loader.exec_module(module)
    return module


def bench(name: str):
    """A bench script (bench/NAME, a script without .py) as a module."""
    loader = importlib.machinery.SourceFileLoader(name, str(ROOT / "bench" / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module


def published(service: str) -> str:
    """A shell word: the loopback address (127.0.0.1:PORT) a backend or frontend container is published on now.

    Start-first services publish a pair of ports and their container may hold either one.
    """
    port = {"backend": 8000, "frontend": 3000}[service]
    return f"$(docker port {cname(service)} {port}/tcp | head -n1)"


def redis_cmd(*args: str) -> str:
    """A shell command: redis-cli in the Redis container, logged in as its health check is (client.auth)."""
    inner = ('REDISCLI_AUTH="$(cat /usr/local/etc/redis/client.auth)" redis-cli '
             + " ".join(shlex.quote(a) for a in args))
    return f"docker exec {cname('redis')} sh -c " + shlex.quote(inner)


def app_login() -> str:
    """The Postgres login the app uses now: the vault records it after a rotation."""
    return str(vault().get("vault_postgres_app_login", "rpa_engine"))


# How Postgres (and PgBouncer, which speaks for it) refuses a login: the authentication itself failed,
# not a connection, a timeout or a missing database.
AUTH_REFUSED = re.compile(r'password authentication failed for user "[a-z_]+"|SASL authentication failed')

CLIENT_ENV_DIR = "/root/.rpa-test"


def ssh_argv(server: dict, command: str) -> list[str]:
    """One SSH call of its own (no shared master: the server may have restarted in between)."""
    return ["ssh", "-i", server["key"], "-p", str(server["ssh_port"]), "-o", "ControlMaster=no",
            "-o", "ControlPath=none", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3", "root@127.0.0.1", command]


def ssh_run(server: dict, command: str, stdin: str = "") -> None:
    subprocess.run(ssh_argv(server, command), input=stdin, text=True, check=True, timeout=30)


def put_file(server: dict, path: str, content: str) -> None:
    """Write a root-only file in the server through SSH's stdin: no secret on a command line."""
    ssh_run(server, f"umask 077 && mkdir -p $(dirname {path}) && cat > {path}", content)


def every_service_state(server: dict) -> dict[str, str]:
    """Each Compose service's health (or state, for one without a check), read over an SSH call of its own."""
    res = subprocess.run(ssh_argv(server, f"{COMPOSE} config --services"), capture_output=True, text=True,
                         timeout=60)
    services = res.stdout.split()
    if res.returncode or not services:
        return {}
    res = subprocess.run(ssh_argv(server, "docker inspect --format '{{json .State}}' "
                                  + " ".join(cname(s) for s in services) + " 2>/dev/null"),
                         capture_output=True, text=True, timeout=60)
    states = {}
    for service, line in zip(services, res.stdout.splitlines()):
        state = json.loads(line)
        states[service] = state.get("Health", {}).get("Status", state["Status"])
    return states


def wait_every_service_healthy(server: dict, timeout: float, since: float) -> tuple[float, dict[str, str]]:
    """Polls until every service (at least ten) is healthy; (seconds since `since`, the last states)."""
    states: dict[str, str] = {}
    while time.monotonic() - since < timeout:
        try:
            states = every_service_state(server)
        except subprocess.TimeoutExpired:
            states = {}
        if len(states) >= 10 and set(states.values()) == {"healthy"}:
            break
        time.sleep(2)
    return time.monotonic() - since, states


# The disaster-recovery drill (issue 17, bench/dr) in two halves: test_a_killed_server.py, first, writes,
# kills the server under test (SIGKILL), copies its repository, starts it again and waits for every service;
# the one command then rebuilds a fresh bare server from the copy in a thread, and test_zz_disaster_recovery.py,
# last, reads the outcome. The recovered server is the same site on the same settings (a copy of the group_vars
# taken at the kill, its vault included), so in Molecule's verify (RPA_VERIFY_LANE=main, set by the Makefile)
# it then serves as a second server under test: a second pytest process (RPA_VERIFY_LANE=recovered) runs the
# modules of RECOVERED_LANE on it while this one runs the rest here - verify is about half idle on 2 CPUs, and
# in one line it took 27 minutes. Last, the Swarm gate's playbook runs on it (it reconfigures its engine).
# Without RPA_VERIFY_LANE (a module or two run by hand, make verify-demo) every module runs here, in line.
LANE = os.environ.get("RPA_VERIFY_LANE", "")
RECOVERED_LANE = ("test_app.py", "test_rotation.py")
# Tests of those modules that run in the main lane all the same, to even the lanes out (the recovered lane
# starts after the recovery, about 6 minutes in): self-contained ones, which leave the server as they found it.
# At 5a8fb4a the main lane waited 89 s for the recovered one: the bad-image gate test (about 60 s) came over.
MAIN_LANE_TESTS = {("test_app.py", "test_recovery_replaces_a_crash_looping_container_of_the_wrong_image"),
                   ("test_app.py", "test_a_bad_backend_image_fails_the_gate_naming_it_and_rolls_back")}
KILL_MODULE = "test_a_killed_server.py"
DR_NAME = "rpa-recovered"
DR_SSH_PORT = 2231
DR_HTTP_PORT = 8891
DR_HTTPS_PORT = 8451
DR_SSH_KEY = ROOT / ".testbed" / "ssh" / "id_ed25519"
REPORTS = ROOT / ".cache" / "reports"
RECOVERED_LOG = REPORTS / "molecule-recovered.log"


def pytest_collection_modifyitems(config, items):
    """Each lane keeps its own modules (and the main lane its MAIN_LANE_TESTS)."""
    if LANE not in ("main", "recovered"):
        return
    keep, drop = [], []
    for item in items:
        recovered = item.path.name in RECOVERED_LANE and (item.path.name, item.originalname) not in MAIN_LANE_TESTS
        (keep if recovered == (LANE == "recovered") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def dr_inventory(directory: Path) -> Path:
    """An inventory of the recovered server alone, beside the group_vars copy."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"rpa_engine": {"hosts": {DR_NAME: {
        "ansible_host": "127.0.0.1", "ansible_port": DR_SSH_PORT, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(DR_SSH_KEY),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        # Mitogen checks host keys by this variable, not by the ssh options (the test bed sets it in group_vars).
        "ansible_host_key_checking": False,
    }}}}))
    return directory / "hosts.yml"


def run_recovered_lane(lane_dir: Path) -> int:
    """The second pytest process, on the recovered server (its own instance config and inventory); its
    report joins the others in .cache/reports, its output in molecule-recovered.log."""
    (lane_dir / "instance_config.yml").write_text(yaml.safe_dump([{
        "instance": DR_NAME, "address": "127.0.0.1", "user": "root", "port": DR_SSH_PORT,
        "identity_file": str(DR_SSH_KEY)}]))
    env = dict(os.environ, RPA_VERIFY_LANE="recovered", MOLECULE_EPHEMERAL_DIRECTORY=str(lane_dir),
               MOLECULE_INSTANCE_CONFIG=str(lane_dir / "instance_config.yml"),
               MOLECULE_INVENTORY_FILE=str(lane_dir / "inventory" / "hosts.yml"))
    REPORTS.mkdir(parents=True, exist_ok=True)
    tests = Path(__file__).resolve().parent
    with RECOVERED_LOG.open("w") as log:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--durations=10",
             f"--hosts=ansible://{DR_NAME}", f"--ansible-inventory={lane_dir / 'inventory'}",
             f"--junitxml={REPORTS / 'molecule-recovered.xml'}", *[str(tests / m) for m in RECOVERED_LANE]],
            cwd=tests.parent, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=2400).returncode


@pytest.fixture(scope="session")
def disaster(server):
    """The kill (in line), then a thread: the recovery, the recovered server's lane (main lane only), the Swarm
    gate's playbook. Yields {"killed", "back", "recovered", "done", "outcome"}: the kill's figures, the source's
    return (seconds, states), Events set when the recovery and when the whole thread are through, and the
    thread's outcome: "figures" of the recovery, "lane" (the second process's exit code), "swarm_gate"
    (proc, data), or "error"."""
    dr = bench("dr")
    # Outside Molecule the copy (the vault among it) goes into a directory of its own, removed at the end.
    own_base = not os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    base = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY") or tempfile.mkdtemp(prefix="rpa-dr-")
    lane_dir = Path(base) / "recovered"
    shutil.rmtree(lane_dir, ignore_errors=True)
    # The settings and vault as they are at the kill: what the recovered server is built from, and what its
    # lane's tests (a rotation among them) read and write - never the vault of this lane's server.
    shutil.copytree(inventory_path() / "group_vars", lane_dir / "inventory" / "group_vars", symlinks=True)
    try:
        killed = dr.kill(source=server["name"], name=DR_NAME, ssh_port=DR_SSH_PORT, http_port=DR_HTTP_PORT,
                         port=DR_HTTPS_PORT, write_seconds=8)
    except BaseException:
        subprocess.run(["docker", "start", server["name"]], capture_output=True)
        raise
    restarted = time.monotonic()
    subprocess.run(["docker", "start", server["name"]], check=True, capture_output=True, timeout=120)
    back = wait_every_service_healthy(server, 180, restarted)
    outcome: dict = {}
    recovered, done = threading.Event(), threading.Event()

    def run_recover(inventory, *extra):
        proc, _ = run_playbook("playbooks/recover.yml", *extra, check_json=False, human=True, inventory=inventory)
        return proc.returncode, proc.stdout + proc.stderr

    def recover_then_more():
        try:
            try:
                outcome["figures"] = dr.recover(killed, inventory=lane_dir / "inventory", name=DR_NAME,
                                                ssh_port=DR_SSH_PORT, port=DR_HTTPS_PORT, run_recover=run_recover,
                                                ssh_key=DR_SSH_KEY)
            finally:
                recovered.set()
            if not outcome["figures"]["ok"]:
                return
            inventory = dr_inventory(lane_dir / "inventory")
            if LANE == "main":
                outcome["lane"] = run_recovered_lane(lane_dir)
            outcome["swarm_gate"] = run_playbook("molecule/default/tests/files/swarm_gate.yml", inventory=inventory)
        except Exception as exc:  # the tests that read the outcome fail with it; the others go on
            outcome["error"] = repr(exc)
        finally:
            recovered.set()
            done.set()

    thread = threading.Thread(target=recover_then_more, daemon=True)
    thread.start()
    try:
        yield {"killed": killed, "back": back, "recovered": recovered, "done": done, "outcome": outcome}
    finally:
        thread.join(2700)
        if killed["booting"].poll() is None:
            killed["booting"].kill()
        subprocess.run([sys.executable, str(TESTBED), "down", DR_NAME], capture_output=True)
        subprocess.run(["docker", "start", server["name"]], capture_output=True)
        if own_base:
            shutil.rmtree(base, ignore_errors=True)


LYNIS_DIR = "/var/tmp/rpa-lynis"


@pytest.fixture(scope="session", autouse=True)
def lynis_audit(server, request):
    """Lynis (the controller's Debian package, copied in for the audit and removed afterwards) audits the
    converged server from the first test on, in the background and niced: the audit needs about 40 s of the
    server's time, which it takes from what the first tests leave idle. Its report's lines are
    test_common.test_lynis_hardening_index's to read (the process's stdout)."""
    if LANE == "recovered":
        yield "Lynis audits the main lane's server only"
        return
    if any(item.path.name == KILL_MODULE for item in request.session.items):
        # The drill kills the server first: an audit started before would die with it.
        request.getfixturevalue("disaster")
    packed = subprocess.run(["tar", "-C", "/", "-cf", "-", "usr/share/lynis", "usr/sbin/lynis", "etc/lynis"],
                            capture_output=True)
    copied = subprocess.run(["docker", "exec", "-i", server["name"], "sh", "-c",
                             f"rm -rf {LYNIS_DIR} && mkdir -p {LYNIS_DIR} && tar -C {LYNIS_DIR} -xf -"],
                            input=packed.stdout, capture_output=True)
    if packed.returncode or copied.returncode:
        # Only the test that reads the report fails, saying why; every other test runs.
        yield f"Lynis could not be copied in: {packed.stderr[-500:]!r} {copied.stderr[-500:]!r}"
        return
    audit = subprocess.Popen(
        ["docker", "exec", server["name"], "sh", "-c",
         f"rm -f /run/lynis.pid; cd {LYNIS_DIR}/usr/share/lynis && cp ../../sbin/lynis . && "
         f"nice -n 10 ./lynis audit system --quick --no-colors --profile {LYNIS_DIR}/etc/lynis/default.prf "
         f"--plugindir {LYNIS_DIR}/etc/lynis/plugins --report-file {LYNIS_DIR}/report.dat "
         f"--logfile {LYNIS_DIR}/lynis.log >/dev/null 2>&1; cat {LYNIS_DIR}/report.dat; rm -rf {LYNIS_DIR}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    yield audit
    if audit.poll() is None:
        audit.kill()
        subprocess.run(["docker", "exec", server["name"], "rm", "-rf", LYNIS_DIR], capture_output=True)


@pytest.fixture
def client_env(server):
    """Env files (0600, in the server) with the vault's current credentials for client containers.

    Written anew for every test that uses them: a rotation earlier in the run changes the vault.

    Sent over SSH's stdin so that no secret is on a command line, in `ps`, or
    in the repr of a failed command that pytest prints.
    """
    files = {
        "postgres": f"PGPASSWORD={secret('postgres_app_password')}\nPGCONNECT_TIMEOUT=5\n",
        "redis": f"REDISCLI_AUTH={secret('redis_password')}\n",
    }
    for name, content in files.items():
        put_file(server, f"{CLIENT_ENV_DIR}/{name}.env", content)
    yield {name: f"{CLIENT_ENV_DIR}/{name}.env" for name in files}
    ssh_run(server, "rm -f " + " ".join(f"{CLIENT_ENV_DIR}/{name}.env" for name in files))


def container(host, service: str) -> dict:
    return json.loads(host.check_output(f"docker inspect {cname(service)}"))[0]


def kill_and_time_recovery(host, services: list[str], timeout: float) -> dict[str, float | str]:
    """`docker kill` every service at once; per service, the seconds until it was healthy again
    in a new container (or why not, as a string). One wait for all instead of one per service."""
    started = {s: container(host, s)["State"]["StartedAt"] for s in services}
    host.check_output("docker kill " + " ".join(cname(s) for s in services))
    killed_at = time.monotonic()
    took: dict[str, float | str] = {}
    while len(took) < len(services) and time.monotonic() - killed_at < timeout:
        for service in services:
            if service in took:
                continue
            state = container(host, service)["State"]
            if (state["StartedAt"] != started[service] and state["Status"] == "running"
                    and state.get("Health", {}).get("Status") == "healthy"):
                took[service] = time.monotonic() - killed_at
        time.sleep(1)
    for service in services:
        took.setdefault(service, f"not healthy within {timeout}s: {container(host, service)['State']}")
    return took


def wait_healthy(host, service: str, timeout: float, not_started_at: str | None = None) -> float:
    """Seconds until the service's container is healthy (and, if given, started anew)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        state = container(host, service)["State"]
        fresh = not_started_at is None or state["StartedAt"] != not_started_at
        if fresh and state["Status"] == "running" and state.get("Health", {}).get("Status") == "healthy":
            return time.monotonic() - start
        time.sleep(1)
    raise AssertionError(f"{service} not healthy within {timeout}s: {container(host, service)['State']}")
