"""No secret in plain text: not in Ansible's output at -vvv, not in a file others can read."""

from __future__ import annotations

import pytest

from conftest import put_file, run_site, secret

SECRETS = ["postgres_app_password", "postgres_superuser_password", "postgres_monitor_password", "redis_password",
           "grafana_admin_password"]
# The app's and Caddy's secrets too, for the -vvv check (the Grafana route's
# password never reaches the server: only its bcrypt hash does).
VERBOSE_SECRETS = SECRETS + ["app_jwt_secret", "app_deploy_token", "app_flower_password", "caddy_grafana_password"]
SEARCHED = "/opt /etc /var/log /root /home /tmp /srv /usr/local"
# Files a service reads inside its container, owned by its uid (mounted read-only).
SERVICE_FILES = {"/opt/rpa-engine/config/redis/client.auth": 999,
                 "/opt/rpa-engine/config/monitoring/grafana/secrets/admin_password": 472}


def test_no_secret_in_verbose_output():
    proc, _ = run_site("-vvv", "--tags", "postgres,redis,monitoring,app,caddy", human=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    output = proc.stdout + proc.stderr
    assert len(output) > 10000  # -vvv really was verbose
    leaked = [name for name in VERBOSE_SECRETS if secret(name) in output]
    assert not leaked, f"printed at -vvv: {leaked}"


@pytest.mark.parametrize("name", SECRETS)
def test_secret_is_only_in_root_only_files(host, server, name):
    # The value goes to grep through a 0600 file, never on a command line.
    pattern = "/root/.rpa-secret-scan/pattern"
    put_file(server, pattern, secret(name) + "\n")
    try:
        # Owner and mode in the same command: runc's transient /tmp/runc-process* files
        # (which carry a docker exec's environment) may vanish before a second look.
        listing = host.run(f"grep -rlF -f {pattern} {SEARCHED} --exclude-dir=.rpa-secret-scan "
                           "--exclude-dir=.rpa-test 2>/dev/null | while read -r f; do "
                           "stat -c '%u %a %n' \"$f\" 2>/dev/null; done").stdout.splitlines()
    finally:
        host.run("rm -rf /root/.rpa-secret-scan")
    found = []
    for line in listing:
        uid, mode, path = line.split(" ", 2)
        found.append(path)
        assert int(uid) in (0, SERVICE_FILES.get(path, 0)) and int(mode, 8) & 0o077 == 0, \
            f"{name} is in {path} (uid {uid}, {mode})"
    if name == "grafana_admin_password":
        # Grafana's first-start seed, a file rather than the environment (a rotation restarts nothing).
        assert "/opt/rpa-engine/config/monitoring/grafana/secrets/admin_password" in found, found
    elif name != "postgres_app_password":
        # Interpolated by Compose from .env (the app password only ever reaches the server as a verifier).
        assert "/opt/rpa-engine/.env" in found, found
