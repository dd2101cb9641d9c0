"""The rpa_vault_secret action plugin, run by ansible-playbook itself on the controller.

The plugin only ever runs on the controller (delegate_to: localhost in
playbooks/rotate-secrets.yml), so running it against localhost here is its
real environment, not a shortcut; the vault is a real ansible-vault file.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = b"fake-unit-test-vault-password"
PLAIN = "# fake values\nvault_jwt_secret: \"Fake-Current-Jwt-Key-0123456789\"\nvault_other: \"kept-as-is\"\n"

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - rpa.engine.rpa_vault_secret:
        state: pending
        path: "{{ vault }}"
        secrets: [{name: vault_jwt_secret, length: 48}]
      register: created
    - rpa.engine.rpa_vault_secret:
        state: finish
        path: "{{ vault }}"
        meta_path: "{{ meta }}"
        values: "{{ created.pending }}"
        previous: "{{ created.current }}"
        grace: {vault_jwt_secret: 1800}
      register: finished
    - ansible.builtin.copy:
        content: "{{ {'created': created, 'finished': finished} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def lib() -> VaultLib:
    return VaultLib([("prod", VaultSecret(PASSWORD))])


@pytest.fixture()
def workdir(tmp_path):
    (tmp_path / "vault.yml").write_bytes(lib().encrypt(PLAIN.encode(), vault_id="prod"))
    os.chmod(tmp_path / "vault.yml", 0o600)
    (tmp_path / "pass").write_bytes(PASSWORD)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    return tmp_path


def run(workdir: Path, meta: Path) -> subprocess.CompletedProcess:
    # ansible.cfg's collections_path finds rpa.engine (the repository's collections/).
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    env.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)  # only this test's vault id
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or "ansible-playbook"
    return subprocess.run([playbook, str(workdir / "play.yml"), "-i", "localhost,", "-c", "local",
                           "--vault-id", f"prod@{workdir / 'pass'}", "-e",
                           json.dumps({"vault": str(workdir / "vault.yml"), "meta": str(meta),
                                       "out": str(workdir / "out.json"),
                                       "ansible_python_interpreter": sys.executable})],
                          capture_output=True, text=True, timeout=120, env=env)


def test_rotation_writes_the_vault_back_with_its_own_id(workdir):
    proc = run(workdir, workdir / "rotation.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    raw = (workdir / "vault.yml").read_bytes()
    assert raw.startswith(b"$ANSIBLE_VAULT;1.2;AES256;prod\n")
    assert stat.S_IMODE(os.stat(workdir / "vault.yml").st_mode) == 0o600
    values = yaml.safe_load(lib().decrypt(raw))
    assert values["vault_jwt_secret_previous"] == "Fake-Current-Jwt-Key-0123456789"
    assert len(values["vault_jwt_secret"]) == 48 and values["vault_other"] == "kept-as-is"
    # Values never reach the output, whatever the task's no_log says.
    assert values["vault_jwt_secret"] not in proc.stdout and "Fake-Current" not in proc.stdout
    result = json.loads((workdir / "out.json").read_text())
    assert result["finished"]["rotated"] == ["vault_jwt_secret"]
    meta = yaml.safe_load((workdir / "rotation.yml").read_text())["rpa_secret_rotation"]["vault_jwt_secret"]
    assert meta["previous_until"] - meta["rotated_at"] == 1800


def test_a_failed_metadata_write_restores_the_vault(workdir):
    before = (workdir / "vault.yml").read_bytes()
    proc = run(workdir, workdir / "no-such-dir" / "rotation.yml")
    assert proc.returncode != 0
    assert (workdir / "vault.yml").read_bytes() == before
    assert not list(workdir.glob(".vault.yml.*")), "a temporary file was left behind"
