"""Bad input is refused before anything changes on the server.

Each case runs the real site.yml against the converged server with one bad
value.  It must fail in the preflight play, with a message naming the
variable, with no task reporting a change - and the server's configuration
directories must not have been touched by any of the runs.
"""

from __future__ import annotations

import json

import pytest

from conftest import executed_tasks, run_site

PREFLIGHT_PLAY = "Check the input of every role before anything changes."

CASES = [
    # (variable, bad value, why it is bad)
    ("common_timezone", "Mars/Olympus_Mons", "unknown time zone"),
    ("common_timezone", "", "empty required value"),
    ("common_ssh_port", "ssh", "wrong type"),
    ("common_ssh_port", 70000, "port out of range"),
    ("common_ssh_permit_root_login", "yes", "unknown choice"),
    ("common_ssh_permit_root_login", "no", "would lock out root, the connecting user"),
    ("common_ssh_allow_users", ["operator"], "would lock out the connecting user"),
    ("common_journald_system_max_use", "lots", "not a journald size"),
    ("common_unattended_upgrades_reboot_time", "25:00", "not a clock time"),
    ("common_firewall_allowed_tcp_ports", [80, 0], "port 0 in a port list"),
    ("common_firewall_container_tcp_ports", [2020, 65536], "port out of range in a port list"),
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
    ("redis_maxmemory_policy", "allkeys-lru", "would evict Celery's broker keys"),
    ("redis_memory_limit", "384MB", "not a Docker memory size"),
    ("backup_schedule", "every day at three", "not a systemd OnCalendar expression"),
    ("backup_keep_daily", 0, "retention below 1"),
    ("backup_dir", "backups", "a relative path"),
    ("backup_dir", "/proc/rpa-backups", "a virtual file system"),
    ("backup_dir", "/etc/hostname/rpa-backups", "cannot be created: a file is in the way"),
    ("monitoring_retention_time", "15 days", "not a Prometheus duration"),
    ("monitoring_retention_size", "2G", "not a Prometheus size"),
    ("monitoring_scrape_interval", "1s", "below 5 s"),
    ("monitoring_scrape_interval", "often", "not a duration"),
    ("monitoring_grafana_port", 70000, "port out of range"),
    ("monitoring_cadvisor_port", 9100, "port taken by node-exporter"),
    ("monitoring_tls_probe_targets", ["rpa.example.com"], "not an https URL"),
    ("monitoring_grafana_root_url", "https://rpa.example.com/grafana", "no trailing slash"),
    ("caddy_domain", "https://rpa.example.com/", "a URL, not a DNS name"),
    ("caddy_domain", "rpa_engine.example.com", "an underscore is not valid in a DNS name"),
    ("caddy_acme_email", "ops-at-example", "not an email address"),
    ("caddy_install_source", "snap", "unknown install source"),
    ("caddy_lb_try_duration", "30 seconds", "not a Caddy duration"),
    ("caddy_metrics_port", 70000, "port out of range"),
    ("caddy_grafana_password", "short", "too short for the Grafana route"),
    ("app_image_source", "ftp", "unknown image source"),
    ("app_image_sources", {"frontend": "build"}, "build chosen without app_build_repo_url"),
    ("app_image_archives", [], "archive chosen without any archive"),
    ("app_images", {"backend": "Registry.Example.com/RPA:latest:1"}, "malformed image reference"),
    ("app_jwt_expire_minutes", 1440, "the 24 h lifetime the operators cut to 30 min"),
    ("app_jwt_secret", "short", "too short"),
    ("app_deployer_allowed_services", ["deployer"], "would redeploy itself"),
    ("app_backend_port", 70000, "port out of range"),
    ("app_memory_limits", {"backend": "1 GB"}, "not a Docker memory size"),
]


@pytest.fixture(scope="module")
def untouched(host):
    """Fail if any preflight run changed the server's configuration."""
    host.check_output("touch /var/tmp/rpa-preflight-marker && sleep 1")
    yield
    changed = host.check_output(
        "find /etc /opt /usr/local /root/.ssh -newer /var/tmp/rpa-preflight-marker -print")
    host.run("rm -f /var/tmp/rpa-preflight-marker")
    assert changed == "", f"files changed by runs that should have stopped in preflight:\n{changed}"


@pytest.mark.parametrize(("variable", "value", "why"), CASES,
                         ids=[f"{c[0]}={c[1]!r}" for c in CASES])
def test_bad_value_fails_in_preflight(server, untouched, variable, value, why):
    proc, data = run_site("-e", json.dumps({variable: value}))
    assert proc.returncode != 0, f"{variable}={value!r} ({why}) was accepted"
    tasks = executed_tasks(data, server["name"])
    failed = [t for t in tasks if t["failed"]]
    assert failed, proc.stdout[-2000:]
    first = failed[0]
    assert first["play"] == PREFLIGHT_PLAY, first
    assert variable in first["msg"], first["msg"]
    assert not any(t["changed"] for t in tasks), [t for t in tasks if t["changed"]]
    assert data["stats"][server["name"]]["changed"] == 0
