"""No secret in plain text: not in a file others can read. (Not in Ansible's output at -vvv either:
test_rotation runs the whole site.yml at -vvv after the rotation of every secret and looks for the old
and the new values, and the forced rotation at -vvv for its own.)

The file scan (files/find_secrets.py, run inside the server) reads every
file of the server's file systems, Docker's state and each container's
writable layer included, and reports which vault secret is in which file,
with its owner and whether anyone but root or that owner could read it
(file AND every directory above it). It proves itself first: copies of a
secret planted where others can read them - /var/lib and /run, which a
narrower scan would miss - and one behind a root-only directory must come
back, the first two exposed, the last not.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import PROJECT_DIR, put_file, secret, ssh_argv, ssh_run

SECRETS = ["postgres_app_password", "postgres_superuser_password", "postgres_monitor_password", "redis_password",
           "grafana_admin_password", "app_jwt_secret", "app_deploy_token", "app_flower_password",
           "caddy_grafana_password"]
# Files a service reads inside its container, owned by its uid (mounted read-only).
SERVICE_FILES = {f"{PROJECT_DIR}/config/redis/client.auth": 999,
                 f"{PROJECT_DIR}/config/monitoring/grafana/secrets/admin_password": 472,
                 f"{PROJECT_DIR}/config/postgres/superuser_password": 999}
# Where each secret must be found (the scan would prove nothing if it missed these).
EXPECTED = {"grafana_admin_password": f"{PROJECT_DIR}/config/monitoring/grafana/secrets/admin_password",
            "redis_password": f"{PROJECT_DIR}/.env",
            "postgres_superuser_password": f"{PROJECT_DIR}/config/postgres/superuser_password",
            "postgres_monitor_password": f"{PROJECT_DIR}/.env", "app_jwt_secret": f"{PROJECT_DIR}/.env",
            "app_deploy_token": f"{PROJECT_DIR}/.env", "app_flower_password": f"{PROJECT_DIR}/.env"}
PLANTED = {"/var/lib/rpa-scan-planted/copy": True, "/run/rpa-scan-planted": True,
           "/root/.rpa-scan-shielded/copy": False}
SCRIPT = "/root/.rpa-secret-scan/find_secrets.py"


@pytest.fixture(scope="module")
def scan(server):
    """One scan of the whole server for every secret, with planted copies as its positive control."""
    planted_value = secret("redis_password")
    for path in PLANTED:
        put_file(server, path, planted_value + "\n")
    ssh_run(server, "chmod 0755 /var/lib/rpa-scan-planted && chmod 0644 /var/lib/rpa-scan-planted/copy "
                    "/run/rpa-scan-planted /root/.rpa-scan-shielded/copy && chmod 0700 /root/.rpa-scan-shielded")
    put_file(server, SCRIPT, (Path(__file__).parent / "files" / "find_secrets.py").read_text())
    try:
        proc = subprocess.run(ssh_argv(server, f"python3 {SCRIPT}"), capture_output=True, text=True, timeout=300,
                              input=json.dumps({name: secret(name) for name in SECRETS}))
    finally:
        ssh_run(server, "rm -rf /var/lib/rpa-scan-planted /run/rpa-scan-planted /root/.rpa-scan-shielded "
                        "/root/.rpa-secret-scan")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["errors"] == [], result["errors"]
    return result["found"]


def test_the_scan_finds_planted_copies_and_tells_exposed_from_shielded(scan):
    planted = {f["path"]: f["exposed"] for f in scan if f["secret"] == "redis_password" and f["path"] in PLANTED}
    assert planted == PLANTED, planted


@pytest.mark.parametrize("name", SECRETS)
def test_secret_is_only_in_files_of_root_or_its_service(scan, name):
    found = [f for f in scan if f["secret"] == name and f["path"] not in PLANTED]
    for f in found:
        assert not f["exposed"] and f["uid"] in (0, SERVICE_FILES.get(f["path"], 0)),\
            f"{name} is in {f['path']} (uid {f['uid']}, mode {f['mode']:o}, exposed: {f['exposed']})"
    paths = {f["path"] for f in found}
    if name == "caddy_grafana_password":
        # Only its bcrypt hash reaches the server.
        assert paths == set(), paths
    elif name in EXPECTED:
        # Interpolated by Compose from .env; Grafana's and Postgres' first-start seeds are files (a rotation
        # restarts neither).
        assert EXPECTED[name] in paths, paths
