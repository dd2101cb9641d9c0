"""Bad input is refused before anything changes on the server.

Every case is a bad value on a host alias of the server under test
(conftest.alias_inventory; cases of one role share an alias, see ROLES), and
ONE run of the real site.yml tries them all: each alias must fail in the
preflight play, with a message naming each of its cases' variables, with no
task reporting a change - and no file under the server's configuration
directories may be newer than the run.
"""

from __future__ import annotations

import pytest

from conftest import alias_inventory, executed_tasks, run_playbook

PREFLIGHT_PLAY = "Check the input of every role before anything changes."
READ_ONLY = "/mnt/rpa-read-only"
KEYLESS_USER = "rpa-keytest"

CASES = [
    # (variable, bad value, why it is bad)
    ("common_timezone", "Mars/Olympus_Mons", "unknown time zone"),
    ("common_timezone", "", "empty required value"),
    ("common_ssh_port", "ssh", "wrong type"),
    ("common_ssh_port", 70000, "port out of range"),
    ("common_ssh_permit_root_login", "yes", "unknown choice"),
    ("common_ssh_permit_root_login", "no", "would lock out root, the connecting user"),
    ("common_admin_user", "ops", "an admin account without any key"),
    ("common_ssh_allow_users", ["operator"], "would lock out the connecting user"),
    ("common_ssh_kex_algorithms", ["curve448-sha512"], "a key exchange OpenSSH does not know"),
    ("common_ssh_macs", ["hmac-sha2-256-etm@openssh.com", "hmac-sha3-256"], "one MAC OpenSSH does not know"),
    ("common_journald_system_max_use", "lots", "not a journald size"),
    ("common_unattended_upgrades_reboot_time", "25:00", "not a clock time"),
    ("common_firewall_allowed_tcp_ports", [80, 0], "port 0 in a port list"),
    ("common_firewall_container_tcp_ports", [2020, 65536], "port out of range in a port list"),
    ("common_firewall_peer_rules", [{"name": "db", "v4": ["10.0.0.0/24"], "v6": [], "tcp": [5432], "udp": [],
                                     "protocols": ["gre"]}], "a network where a peer's address goes, and GRE"),
    ("rpa_project_name", "RPA Engine", "not a Compose project name"),
    ("rpa_project_dir", "opt/rpa-engine", "a relative project directory"),
    ("docker_install_source", "snap", "unknown choice"),
    ("docker_log_max_size", "10 MB", "not a Docker size"),
    ("docker_log_max_file", 0, "out of range"),
    ("docker_users", ["nosuchuser"], "user does not exist"),
    ("docker_daemon_options", "live-restore", "wrong type"),
    ("postgres_pgbouncer_pool_mode", "transactional", "unknown pool mode"),
    ("postgres_pgbouncer_default_pool_size", "twenty", "not an integer"),
    ("postgres_pgbouncer_max_prepared_statements", 0, "transaction pooling without prepared statements"),
    ("postgres_memory_limit", "1 GB", "not a Docker memory size"),
    ("postgres_shared_buffers", "256M", "not a PostgreSQL size"),
    ("postgres_app_password", "short-pass", "too short"),
    ("postgres_app_login", "postgres", "neither the app role nor its twin"),
    ("postgres_app_login_previous", "rpa_engine_b", "not one of the two app logins"),
    ("postgres_superuser_password", "CHANGE-ME-0123456789", "the example placeholder"),
    ("redis_password", "tooshort", "too short"),
    ("redis_password_previous", "short-previous", "a rotation's previous password that is too short"),
    ("redis_maxmemory_policy", "allkeys-lru", "would evict Celery's broker keys"),
    ("redis_memory_limit", "384MB", "not a Docker memory size"),
    ("backup_schedule", "every day at three", "not a systemd OnCalendar expression"),
    ("backup_keep_daily", 0, "retention below 1"),
    ("backup_dir", "backups", "a relative path"),
    ("backup_dir", "/proc/rpa-backups", "a virtual file system"),
    ("backup_dir", "/etc/hostname/rpa-backups", "cannot be created: a file is in the way"),
    ("backup_dir", f"{READ_ONLY}/backups", "on a read-only file system"),
    ("monitoring_retention_time", "15 days", "not a Prometheus duration"),
    ("monitoring_retention_size", "2G", "not a Prometheus size"),
    ("monitoring_scrape_interval", "1s", "below 5 s"),
    ("monitoring_scrape_interval", "often", "not a duration"),
    ("monitoring_grafana_port", 70000, "port out of range"),
    ("monitoring_cadvisor_port", 9100, "port taken by node-exporter"),
    ("monitoring_tls_probe_targets", ["rpa.example.com"], "not an https URL"),
    ("monitoring_grafana_root_url", "https://rpa.example.com/grafana", "no trailing slash"),
    ("monitoring_alert_receivers", [{"name": "team-mail"}, {"name": "oncall", "email": ["oncall@rpa.example.com"]}],
     "a receiver without a destination"),
    # The other alerting refusals (bad email, plain-http webhook, a route to no receiver) are the same
    # check's messages: tests/unit/test_alerting.py proves each.
    ("monitoring_alert_repeat_interval", "1s", "shorter than the group interval (2s here)"),
    ("monitoring_alert_replication_lag_bytes", 1024, "below one WAL segment"),
    ("caddy_domain", "https://rpa.example.com/", "a URL, not a DNS name"),
    ("caddy_domain", "rpa_engine.example.com", "an underscore is not valid in a DNS name"),
    ("caddy_acme_email", "ops-at-example", "not an email address"),
    ("caddy_install_source", "snap", "unknown install source"),
    ("caddy_lb_try_duration", "30 seconds", "not a Caddy duration"),
    ("caddy_metrics_port", 70000, "port out of range"),
    ("caddy_metrics_address", "0.0.0.0", "every address"),
    ("caddy_deploy_allowed_cidrs", ["203.0.113.0/24", "203.0.113.10/24"], "host bits set: not a network"),
    ("caddy_grafana_password", "short", "too short for the Grafana route"),
    # Not in one run with caddy_lb_try_duration's bad value (it compares with that variable's default).
    ("caddy_response_header_timeout", "30s", "not shorter than caddy_lb_try_duration (30s): no GET is sent again"),
    ("app_image_source", "ftp", "unknown image source"),
    ("app_image_sources", {"frontend": "build"}, "build chosen without app_build_repo_url"),
    ("app_image_archives", [], "archive chosen without any archive"),
    ("app_images", {"backend": "Registry.Example.com/RPA:latest:1"}, "malformed image reference"),
    ("app_images", {"backend": "registry.example.com/rpa@sha256:" + "a" * 40}, "a digest of 40 hex characters"),
    ("app_image_keep", 0, "no digest kept: nothing to roll back to"),
    ("app_registry_url", "registry.example.com:5000", "a registry URL without a scheme"),
    ("app_jwt_expire_minutes", 1440, "the 24 h lifetime the operators cut to 30 min"),
    ("app_jwt_secret", "short", "too short"),
    ("app_deployer_allowed_services", ["deployer"], "would redeploy itself"),
    ("app_backend_port", 70000, "port out of range"),
    ("app_backend_port", 3000, "the frontend's port"),
    ("app_memory_limits", {"backend": "1 GB"}, "not a Docker memory size"),
    ("app_uid", 0, "the app services would run as root"),
    ("app_celery_stop_grace_period", 10, "shorter than the task time limit: a redeploy would cut tasks short"),
    ("app_start_first_services", ["backend", "flower"], "flower publishes a fixed host port its container holds"),
    ("app_start_first_services", ["celery-beat"], "two schedulers would send every periodic task twice"),
    ("app_frontend_standby_port", 3005, "a standby port Docker cannot give from one range with 3000"),
    ("app_pids_limits", {"backend": 8, "celery-worker": 256, "celery-beat": 64, "flower": 128, "frontend": 128,
                         "deployer": 128}, "a PIDs limit below 16"),
    ("app_capabilities", {"frontend": ["NET_BIND"]}, "no such capability"),
    ("app_gate_stable_seconds", 2, "not longer than Caddy's 2 s health interval: start-first could stop the "
     "old container before Caddy checked the new one"),
    ("redis_pids_limit", 15, "a PIDs limit below 16"),
    ("postgres_cpu_limit", "fast", "not a number of CPUs"),
    ("postgres_healthcheck_interval", "5", "bare seconds: Docker reads a duration with its unit"),
    ("postgres_pitr_cipher_pass", "short-passphrase", "too short for the repository's passphrase"),
    ("postgres_pitr_repo_host_key", "AAAAC3NzaC1lZDI1NTE5", "not a public key line"),
    ("postgres_pitr_archive_timeout", 600, "ten minutes of writes lost with the server"),
    ("postgres_pitr_window_days", 3, "a window shorter than the weekly base backups it starts from",
     {"postgres_pitr_base_backup_interval_hours": 168}),
    # Not a variable: the connecting user's key lives only in ~/.ssh/authorized_keys2 (sshd reads it,
    # so the login works), and the role switches password logins off - the preflight must see no
    # authorized_keys and stop before the hardening could strand that user.
    ("authorized_keys", {"ansible_user": KEYLESS_USER}, "the connecting user has no authorized_keys file"),
]


# A role's preflight reports every failed check of its one task at once (rpa_checks; Ansible's argument
# validation likewise), so cases of one role share an alias: a third as many hosts for the one run to
# template through the preflight play. One value per variable per alias; the cases below that need
# another variable beside them, the connecting user's keys and the project's identity (every role's
# input) keep an alias of their own, and so does a case whose check another bad value would mask.
ROLES = ("common", "docker", "postgres", "redis", "backup", "monitoring", "caddy", "app")
ALONE = {"app_frontend_standby_port", "app_image_archives"}
# Refused by Ansible's argument validation, a task before the role's checks: an alias of their own kind.
SPEC = {("common_ssh_port", "ssh"), ("common_ssh_permit_root_login", "yes"), ("docker_install_source", "snap"),
        ("docker_daemon_options", "live-restore"), ("postgres_pgbouncer_pool_mode", "transactional"),
        ("postgres_pgbouncer_default_pool_size", "twenty"), ("redis_maxmemory_policy", "allkeys-lru"),
        ("caddy_install_source", "snap"), ("app_image_source", "ftp")}
PER_ALIAS = 6


def groups() -> list[list[int]]:
    """The case indexes of each alias, in order."""
    out: list[tuple[str, list[int]]] = []
    for index, case in enumerate(CASES):
        variable = case[0]
        role = variable.split("_")[0] + (":spec" if isinstance(case[1], str) and (variable, case[1]) in SPEC else "")
        if len(case) > 3 or role.split(":")[0] not in ROLES or variable in ALONE:
            out.append(("", [index]))
            continue
        for key, members in out:
            if key == role and len(members) < PER_ALIAS and variable not in {CASES[m][0] for m in members}:
                members.append(index)
                break
        else:
            out.append((role, [index]))
    return [members for _, members in out]


GROUPS = groups()


def alias(index: int) -> str:
    """The alias host that tries case index."""
    return next(f"bad-{n:02d}" for n, members in enumerate(GROUPS) if index in members)


@pytest.fixture(scope="module")
def preflight_run(host, server, tmp_path_factory):
    """Every case at once: one site.yml run over one alias per case; then nothing on the server is newer."""
    host.check_output(f"mkdir -p {READ_ONLY} && mount -t tmpfs -o ro,size=1m rpa-ro {READ_ONLY}")
    # A sudoer whose key sshd accepts from authorized_keys2 only (root's key, copied).
    host.check_output(
        f"id {KEYLESS_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {KEYLESS_USER}; "
        f"install -d -m 700 -o {KEYLESS_USER} -g {KEYLESS_USER} /home/{KEYLESS_USER}/.ssh && "
        f"install -m 600 -o {KEYLESS_USER} -g {KEYLESS_USER} /root/.ssh/authorized_keys "
        f"/home/{KEYLESS_USER}/.ssh/authorized_keys2 && rm -f /home/{KEYLESS_USER}/.ssh/authorized_keys && "
        f"echo '{KEYLESS_USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{KEYLESS_USER} && "
        f"chmod 440 /etc/sudoers.d/{KEYLESS_USER}")
    host.check_output("touch /var/tmp/rpa-preflight-marker && sleep 1")
    aliases = {}
    for index, (variable, value, _why, *also) in enumerate(CASES):
        # A fourth element: other host vars the bad value needs beside it.
        host_vars = value if variable == "authorized_keys" else {variable: value, **(also[0] if also else {})}
        aliases.setdefault(alias(index), {}).update(host_vars)
    inventory = alias_inventory(tmp_path_factory.mktemp("preflight"), aliases)
    try:
        # Facts gathered afresh: the alias names are reused from run to run, and ansible.cfg's
        # day-long fact cache could otherwise hand them facts of another machine.
        proc, data = run_playbook("site.yml", inventory=inventory,
                                  env_extra={"ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory"})
        changed = host.check_output(
            "find /etc /opt /usr/local /root/.ssh -newer /var/tmp/rpa-preflight-marker -print")
    finally:
        host.run(f"umount {READ_ONLY} && rmdir {READ_ONLY}")
        host.run(f"userdel -r {KEYLESS_USER}; rm -f /etc/sudoers.d/{KEYLESS_USER} /var/tmp/rpa-preflight-marker")
    yield proc, data, changed


def test_no_file_on_the_server_changed(preflight_run):
    proc, data, changed = preflight_run
    assert proc.returncode != 0, "site.yml passed although every host had a bad value"
    assert changed == "", f"files changed by runs that should have stopped in preflight:\n{changed}"


@pytest.mark.parametrize(("index", "variable", "value", "why"), [(i, *case[:3]) for i, case in enumerate(CASES)],
                         ids=[f"{c[0]}={c[1]!r}" for c in CASES])
def test_bad_value_fails_in_preflight(preflight_run, index, variable, value, why):
    _proc, data, _changed = preflight_run
    name = alias(index)
    tasks = executed_tasks(data, name)
    failed = [t for t in tasks if t["failed"]]
    assert failed, f"{variable}={value!r} ({why}) was accepted: {[t['task'] for t in tasks][-5:]}"
    first = failed[0]
    assert first["play"] == PREFLIGHT_PLAY, first
    assert variable in first["msg"], first["msg"]
    assert not any(t["changed"] for t in tasks), [t for t in tasks if t["changed"]]
    assert data["stats"][name]["changed"] == 0
