"""Helpers of the scale-out scenario's tests: the three servers Molecule made, reached over SSH with the
test bed's key (one multiplexed connection per server), and Molecule's own vault."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
KEY = ROOT / ".testbed" / "ssh" / "id_ed25519"
os.makedirs(os.path.expanduser("~/.ansible/cp"), mode=0o700, exist_ok=True)

VAULT_PASS = ROOT / ".cache" / "molecule" / "vault-pass"
# The scenario's own copy of Molecule's vault (create.yml): the rotations tested here write it. The split
# scenario's tests use these helpers too (molecule/split/tests/conftest.py), with their scenario's copy.
VAULT_FILE = ROOT / ".cache" / os.environ.get("MOLECULE_SCENARIO_NAME", "scaleout") / "group_vars" / "all" / "vault.yml"


def servers() -> dict[str, dict]:
    config = yaml.safe_load(Path(os.environ["MOLECULE_INSTANCE_CONFIG"]).read_text())
    return {entry["instance"]: entry for entry in config}


def address(name: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name],
                          check=True, capture_output=True, text=True).stdout.strip()


def ssh_argv(name: str, command: str) -> list[str]:
    """ssh to a server as root with the test bed's key, multiplexed (one connection per server)."""
    return ["ssh", "-i", str(KEY), "-p", str(servers()[name]["port"]), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={os.path.expanduser('~/.ansible/cp')}/so-%p",
            "-o", "ControlPersist=60", "root@127.0.0.1", command]


def probe_here(target: str) -> str:
    """A TCP connect from this controller (not a tier host): open, refused, or silent (dropped)."""
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "silent"


def probe_here_all(*targets: str) -> dict[str, str]:
    """probe_here of each target, side by side (a dropped port waits out its timeout)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(len(targets)) as pool:
        return dict(zip(targets, pool.map(probe_here, targets)))


def wait_for(predicate, timeout: float, what: str):
    """predicate()'s first truthy value, polled every second; AssertionError naming what after timeout."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(1)
    return value


def ssh(name: str, command: str, stdin: str = "") -> str:
    proc = subprocess.run(ssh_argv(name, command), input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name}: {command}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def ssh_start(name: str, command: str) -> subprocess.Popen:
    """A command left running on a server (a writer under load), its stdin, stdout and stderr piped."""
    return subprocess.Popen(ssh_argv(name, command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def playbook(path: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """ansible-playbook (path relative to the project) on the scenario's inventory, as an operator runs it;
    stdout without colour codes (Molecule's environment may force them on)."""
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-playbook", path, "-i", str(inventory), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    proc.stdout = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    return proc


def vault() -> dict:
    """Molecule's vault (tools/demo_vault.py --molecule), decrypted on the controller."""
    from ansible.parsing.vault import VaultLib, VaultSecret
    lib = VaultLib([("molecule", VaultSecret(VAULT_PASS.read_bytes().strip()))])
    return yaml.safe_load(lib.decrypt(VAULT_FILE.read_bytes()).decode()) or {}


def app_dsn() -> str:
    """The application's login and database as an app host's client has them: one address, the host's own
    HAProxy (roles/pg_endpoint, 127.0.0.1:5000), which forwards to whichever member Patroni calls primary -
    nothing in it names a member, so a failover changes nothing here."""
    secrets = vault()
    login = secrets.get("vault_postgres_app_login", "rpa_engine")
    return (f"host=127.0.0.1 port=5000 dbname=rpa_engine user={login} "
            f"password={secrets['vault_postgres_app_password']} connect_timeout=2")


def logs_in(name: str, user: str, password: str) -> bool:
    """A password login of user to member name's PostgreSQL on its 127.0.0.1 (pg_hba: any login there, by SCRAM).
    The password travels on stdin."""
    out = ssh(name, f"read -r p; PGPASSWORD=\"$p\" PGCONNECT_TIMEOUT=5 psql 'host=127.0.0.1 dbname=postgres user={user}' "
                    "-XAtc 'SELECT session_user' 2>&1; true", password + "\n")
    if "password authentication failed" in out:
        return False
    assert out.strip() == user, out
    return True
