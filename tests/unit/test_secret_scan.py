"""tools/secret_scan.py finds what must never be committed, and passes the repository.

Each rule has a case it must catch and a look-alike it must leave alone. The
secrets below are made up; the lines that hold them carry the allow marker so
that this file itself passes the scan of the repository.
"""

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
    # vault
    ("inventory/x/group_vars/all/vault.yml", "---\nvault_redis_password: 'Zq8x2V9m4T7p1L6k'\n",  # secret-scan: allow (expected finding)
     "vault file is not encrypted"),
    # password: YAML, env, INI, templates
    ("roles/x/defaults/main.yml", "x_db_password: 'Zq8x2V9m4T7p1L6k'\n", "literal value for x_db_password"),  # secret-scan: allow (expected finding)
    ("app.env", "JWT_SECRET=3f9a8b7c6d5e4f3a2b1c\n", "literal value for JWT_SECRET"),
    # letters only is still a literal in YAML: a bare word is a string, not a variable
    ("group_vars/all/vars.yml", "db_password: correcthorsebatterystaple\n", "literal value for db_password"),
    # a real-looking secret that happens to contain "example" is not a placeholder
    ("group_vars/all/vars.yml", 'api_token: "example-7f3kQ9zLmP2xR8"\n', "literal value for api_token"),  # secret-scan: allow (expected finding)
    # Markdown: a README snippet with a real value
    ("README.md", "```yaml\nvault_redis_password: Zq8x2V9m4T7p1L6k\n```\n", "literal value for vault_redis_password"),
    # Python: quoted literals assigned, passed or keyed
    ("tools/x.py", 'DB_PASSWORD = "Zq8x2V9m4T7p1L6k"\n', "literal value for DB_PASSWORD"),  # secret-scan: allow (expected finding)
    ("tools/x.py", 'connect(password="correcthorsebatterystaple")\n', "literal value for password"),  # secret-scan: allow (expected finding)
    ("tools/x.py", 'cfg = {"api_token": "Zq8x2V9m4T7p1L6k"}\n', "literal value for api_token"),  # secret-scan: allow (expected finding)
    # private-key, cloud-key, scram (split literals, so that this file itself passes the scan)
    ("files/id", "-----BEGIN OPENSSH " "PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n", "private-key"),
    ("ci.yml", "aws: AKIA" "ABCDEFGHIJKLMNOP\n", "cloud-key"),
    ("userlist.txt", '"app" "SCRAM-SHA-256$' '4096:0CCMrnDar4AVMEv9hXb9bA==$A75WPfQ1vy4wS/oOzAJmLDPFKZueD3xDYSnAmGQqA40='
                     ':PYmpcfynqZfGy36KjsMl7ywyCLjkfMoyW2suT18KZCE="\n', "scram"),
]

GOOD = [
    # vault: encrypted, or the example
    ("inventory/prod/group_vars/all/vault.yml", "$ANSIBLE_VAULT;1.2;AES256;prod\n6162636465\n"),
    ("inventory/prod/group_vars/all/vault.yml.example", 'vault_redis_password: "CHANGE-ME-redis-password"\n'),
    # password: references, empty values, settings about a secret
    ("inventory/prod/group_vars/all/vars.yml", 'redis_password: "{{ vault_redis_password }}"\n'),
    ("roles/x/defaults/main.yml", 'backup_restic_password: ""\nx_password_file: "/etc/x/password"\n'),
    ("roles/x/meta/argument_specs.yml", "      redis_password:\n        type: str\n"),
    ("playbooks/x.yml", "rpa_rotation_deploy_token_overlap: 3600\n"),
    ("README.md", "vault_jwt_secret: CHANGE-ME-jwt-signing-key\nAPI_TOKEN=<your token>\n"),
    # an explicitly allowed fake value
    ("tests/x.py", 'psql(host, "select 1", password="not-the-password-0123456789")\n'),
    # Python: a name is code, not a value
    ("tools/x.py", "password = read_password(path)\nconnect(password=password)\n"),
    ("tools/x.py", 'token = "..."  # documentation\n'),
    # private-key / cloud-key / scram look-alikes
    ("docs.md", "Generate a key with `ssh-keygen -t ed25519`; never commit the PRIVATE KEY file.\n"),
    ("ci.yml", "aws: AKIA-not-a-key\n"),
    ("notes.md", "Verifiers look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.\n"),
]


@pytest.mark.parametrize(("path", "text", "finding"), BAD, ids=[f"{b[0]}: {b[2]}" for b in BAD])
def test_finds(path, text, finding):
    problems = secret_scan.scan_text(path, text)
    assert any(finding in p for p in problems), problems


@pytest.mark.parametrize(("path", "text"), GOOD, ids=[g[0] + ": " + g[1][:30] for g in GOOD])
def test_leaves_alone(path, text):
    assert secret_scan.scan_text(path, text) == []


def test_allow_marker():
    line = 'V = "AKIA' + 'ABCDEFGHIJKLMNOP"  # secret-scan: allow (doc example)\n'
    assert secret_scan.scan_text("t.py", line) == []
    assert secret_scan.scan_text("t.py", line.replace("secret-scan: allow", "allow")) != []


def test_the_repository_is_clean():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "secret_scan.py")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
