"""Helpers of the scale-out scenario's tests: the three servers Molecule made, reached over SSH with the
test bed's key (one multiplexed connection per server), and Molecule's own vault."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
KEY = ROOT / ".testbed" / "ssh" / "id_ed25519"
os.makedirs(os.path.expanduser("~/.ansible/cp"), mode=0o700, exist_ok=True)

VAULT_PASS = ROOT / ".cache" / "molecule" / "vault-pass"
VAULT_FILE = ROOT / ".cache" / "molecule" / "group_vars" / "all" / "vault.yml"


def servers() -> dict[str, dict]:
    config = yaml.safe_load(Path(os.environ["MOLECULE_INSTANCE_CONFIG"]).read_text())
    return {entry["instance"]: entry for entry in config}


def address(name: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name],
                          check=True, capture_output=True, text=True).stdout.strip()


def ssh(name: str, command: str, stdin: str = "") -> str:
    entry = servers()[name]
    argv = ["ssh", "-i", str(KEY), "-p", str(entry["port"]), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={os.path.expanduser('~/.ansible/cp')}/so-%p",
            "-o", "ControlPersist=60", "root@127.0.0.1", command]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name}: {command}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def vault() -> dict:
    """Molecule's vault (tools/demo_vault.py --molecule), decrypted on the controller."""
    from ansible.parsing.vault import VaultLib, VaultSecret
    lib = VaultLib([("molecule", VaultSecret(VAULT_PASS.read_bytes().strip()))])
    return yaml.safe_load(lib.decrypt(VAULT_FILE.read_bytes()).decode()) or {}


def app_dsn(hosts: list[str]) -> str:
    """The application's login and database on the Patroni members, as a libpq client that follows a failover
    by itself: every member listed, target_session_attrs=read-write (it connects to the primary)."""
    secrets = vault()
    login = secrets.get("vault_postgres_app_login", "rpa_engine")
    return (f"host={','.join(hosts)} port=5432 dbname=rpa_engine user={login} "
            f"password={secrets['vault_postgres_app_password']} target_session_attrs=read-write connect_timeout=2")
