"""tools/secret_scan.py finds what must never be committed, and passes the repository."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("secret_scan", ROOT / "tools" / "secret_scan.py")
secret_scan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(secret_scan)

BAD = [
    ("inventory/x/group_vars/all/vault.yml", "---\nvault_redis_password: 'Zq8x2V9m4T7p1L6k'\n", "vault file is not encrypted"),
    ("roles/x/defaults/main.yml", "x_db_password: 'Zq8x2V9m4T7p1L6k'\n", "literal value for x_db_password"),
    ("app.env", "JWT_SECRET=3f9a8b7c6d5e4f3a2b1c\n", "literal value for JWT_SECRET"),
    # Split literals, so that this file itself passes the scan.
    ("files/id", "-----BEGIN OPENSSH " "PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n", "private-key"),
    ("ci.yml", "aws: AKIA" "ABCDEFGHIJKLMNOP\n", "cloud-key"),
    ("userlist.txt", '"app" "SCRAM-SHA-256$' '4096:0CCMrnDar4AVMEv9hXb9bA==$A75WPfQ1vy4wS/oOzAJmLDPFKZueD3xDYSnAmGQqA40='
                     ':PYmpcfynqZfGy36KjsMl7ywyCLjkfMoyW2suT18KZCE="\n', "scram"),
]

GOOD = [
    ("inventory/prod/group_vars/all/vault.yml", "$ANSIBLE_VAULT;1.2;AES256;prod\n6162636465\n"),
    ("inventory/prod/group_vars/all/vault.yml.example", 'vault_redis_password: "CHANGE-ME-redis-password"\n'),
    ("inventory/prod/group_vars/all/vars.yml", 'redis_password: "{{ vault_redis_password }}"\n'),
    ("roles/x/defaults/main.yml", 'backup_restic_password: ""\nx_password_file: "/etc/x/password"\n'),
    ("roles/x/meta/argument_specs.yml", "      redis_password:\n        type: str\n"),
]


@pytest.mark.parametrize(("path", "text", "finding"), BAD, ids=[b[2] for b in BAD])
def test_finds(path, text, finding):
    problems = secret_scan.scan_text(path, text)
    assert any(finding in p for p in problems), problems


@pytest.mark.parametrize(("path", "text"), GOOD, ids=[g[0] for g in GOOD])
def test_leaves_alone(path, text):
    assert secret_scan.scan_text(path, text) == []


def test_allow_marker():
    line = 'V = "AKIA' + 'ABCDEFGHIJKLMNOP"  # secret-scan: allow (doc example)\n'
    assert secret_scan.scan_text("t.py", line) == []


def test_the_repository_is_clean():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "secret_scan.py")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
