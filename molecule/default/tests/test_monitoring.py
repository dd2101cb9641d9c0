"""The monitoring role: Prometheus, Grafana (stand-in), cAdvisor (stand-in), node-exporter.

In the test bed Grafana and cAdvisor are stand-ins (testbed/images/grafana,
testbed/images/cadvisor; see the README): the tests check what the stand-ins
honestly reproduce - the interface, the provisioning files, real container
metrics - not Grafana's UI.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import time
from pathlib import Path

import pytest

from conftest import PROJECT_DIR, cname, probe_from_outside, put_file, secret, wait_for

PORTS = {"prometheus": 9090, "grafana": 3001, "cadvisor": 8080, "node-exporter": 9100, "alertmanager": 9093}
# A page each serves without a login, with 200 (the same in the real images and the stand-ins).
HEALTH_PATHS = {"prometheus": "/-/ready", "grafana": "/api/health", "cadvisor": "/metrics", "node-exporter": "/metrics",
                "alertmanager": "/-/ready"}
RULES = f"{PROJECT_DIR}/config/monitoring/prometheus/rules/rpa-engine.yml"
# The jobs the role itself configures (the inventories add "backend" through
# monitoring_extra_scrape_configs).
ROLE_JOBS = {"prometheus", "node", "cadvisor", "alertmanager", "postgres", "pgbouncer", "redis", "caddy", "tls", "http"}
PROM_CFG = f"{PROJECT_DIR}/config/monitoring/prometheus/prometheus.yml"


def prom(host, path: str) -> dict:
    return json.loads(host.check_output(f"curl -fsS 'http://127.0.0.1:9090{path}'"))


def targets(host) -> dict[str, str]:
    return {t["labels"]["job"]: t["health"] for t in prom(host, "/api/v1/targets")["data"]["activeTargets"]}


def test_every_configured_target_is_up(host):
    wait_for(lambda: set(targets(host).values()) == {"up"}, 90, f"targets not all up: {targets(host)}")
    assert set(targets(host)) == ROLE_JOBS | {"backend"}


def test_prometheus_sees_caddy_request_metrics(host):
    """Caddy runs on the host: its metrics reach Prometheus through the Docker bridge."""
    host.check_output("curl -fsSk -o /dev/null --resolve localhost:443:127.0.0.1 https://localhost/api/health")
    query = "/api/v1/query?query=sum(caddy_http_requests_total%7Bjob%3D%22caddy%22%7D)"
    wait_for(lambda: prom(host, query)["data"]["result"], 60, "no caddy_http_requests_total in Prometheus")
    # The listener is for containers only: the firewall admits Docker's bridges, nobody else.
    rules = host.check_output("nft list chain inet rpa_firewall input")
    bridges = re.findall(r'iifname \{ (.*) \} tcp dport 2020 accept', rules)
    assert [set(b.split(", ")) for b in bridges] == [{'"br-*"', '"docker0"', '"docker_gwbridge"'}], rules


def test_tls_probe_reports_the_live_certificate_expiry(host):
    """The blackbox exporter's expiry is the notAfter of the certificate Caddy really serves."""
    def served() -> int:
        not_after = host.check_output(
            "echo | openssl s_client -connect 127.0.0.1:443 -servername localhost 2>/dev/null "
            "| openssl x509 -noout -enddate")
        return calendar.timegm(time.strptime(not_after.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))

    def agree():
        result = prom(host, "/api/v1/query?query=probe_ssl_earliest_cert_expiry%7Bjob%3D%22tls%22%7D")["data"]["result"]
        # Caddy's local CA renews its 12-hour certificates: right after a renewal the last scrape may
        # still show the previous one, so poll until a scrape has seen the one served now.
        return result and float(result[0]["value"][1]) == served()
    wait_for(agree, 60, "probe_ssl_earliest_cert_expiry never matched the certificate Caddy serves")
    success = prom(host, "/api/v1/query?query=probe_success%7Bjob%3D%22tls%22%7D")["data"]["result"]
    assert success[0]["value"][1] == "1", success
    assert served() > time.time()


def test_promtool_accepts_the_live_config_and_rules(host):
    # The paths inside the container (the host's config directory is mounted on /etc/prometheus).
    for check in ("check config /etc/prometheus/prometheus.yml",
                  "check rules /etc/prometheus/rules/rpa-engine.yml"):
        res = host.run(f"docker exec {cname('prometheus')} promtool {check}")
        assert res.rc == 0, res.stdout + res.stderr
        assert "SUCCESS" in res.stdout + res.stderr


def test_alert_rules_pass_their_promtool_unit_tests(host, server):
    """Each alert fires on the series it is meant for (files/rules_test.yml)."""
    work = "/root/.rpa-rules-test"
    put_file(server, f"{work}/rules_test.yml", (Path(__file__).parent / "files" / "rules_test.yml").read_text())
    try:
        host.check_output(f"cp {RULES} {work}/rpa-engine.yml")
        res = host.run(f"docker run --rm --network none --user 0:0 -v {work}:/rt:ro -w /rt "
                       "--entrypoint promtool rpa-testbed/prometheus:latest test rules rules_test.yml")
        assert res.rc == 0, res.stdout + res.stderr
    finally:
        host.run(f"rm -rf {work}")


def test_retention_caps_are_effective(host):
    flags = prom(host, "/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.retention.time"] == "15d"
    assert flags["storage.tsdb.retention.size"] == "2GiB"  # Prometheus' "GB" is 1024-based


@pytest.mark.parametrize("service", sorted(PORTS))
def test_port_is_bound_to_loopback_only(host, server, service):
    port = PORTS[service]
    listeners = [line.split()[3] for line in host.check_output("ss -Htln").splitlines()
                 if line.split()[3].endswith(f":{port}")]
    assert listeners == [f"127.0.0.1:{port}"], listeners
    bindings = json.loads(host.check_output(
        f"docker inspect --format '{{{{json .HostConfig.PortBindings}}}}' {cname(service)}"))
    assert [b["HostIp"] for spec in bindings.values() for b in spec] == ["127.0.0.1"], bindings
    # Inside, the service itself answers ...
    code = host.check_output(f"curl -s -o /dev/null --max-time 5 -w '%{{http_code}}' "
                             f"http://127.0.0.1:{port}{HEALTH_PATHS[service]}")
    assert code == "200", (service, code)
    # ... and from outside nothing does.
    assert probe_from_outside(server["address"], [port]) == {port: "filtered"}, f"{service} answers from outside"


def test_node_exporter_serves_the_backup_metrics_to_prometheus(host):
    def value():
        result = prom(host, "/api/v1/query?query=rpa_backup_last_success_timestamp_seconds")["data"]["result"]
        return result and float(result[0]["value"][1])
    assert wait_for(value, 60, "rpa_backup_last_success_timestamp_seconds not in Prometheus") > 1.7e9


def test_cadvisor_reports_real_container_metrics(host):
    metrics = host.check_output("curl -fsS http://127.0.0.1:8080/metrics")
    redis = [line for line in metrics.splitlines()
             if line.startswith("container_memory_usage_bytes{") and f'name="{cname("redis")}"' in line]
    assert redis and float(redis[0].rsplit(" ", 1)[1]) > 1e6, redis
    limit = [line for line in metrics.splitlines()
             if line.startswith("container_spec_memory_limit_bytes{") and f'name="{cname("redis")}"' in line]
    assert float(limit[0].rsplit(" ", 1)[1]) == 384 * 1024 * 1024


def grafana(host, path: str, password: str | None = None) -> tuple[int, str]:
    auth = ""
    if password is not None:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        auth = f"-H 'Authorization: Basic {token}'"
    out = host.check_output(f"curl -sS -o /dev/stdout -w '\\n%{{http_code}}' {auth} http://127.0.0.1:3001{path}")
    body, _, code = out.rpartition("\n")
    return int(code), body


def test_grafana_is_healthy_and_refuses_anonymous_access(host):
    code, body = grafana(host, "/api/health")
    assert code == 200 and json.loads(body)["database"] == "ok"
    assert grafana(host, "/api/datasources")[0] == 401
    assert grafana(host, "/api/datasources", "wrong-password-0123456789")[0] == 401


def test_grafana_provisioning_is_loaded_and_its_datasource_resolves(host):
    code, body = grafana(host, "/api/datasources", secret("grafana_admin_password"))
    assert code == 200, body
    [ds] = json.loads(body)
    assert (ds["type"], ds["url"], ds["uid"]) == ("prometheus", "http://prometheus:9090", "prometheus")
    code, body = grafana(host, "/api/search", secret("grafana_admin_password"))
    assert {d["uid"] for d in json.loads(body)} == {"rpa-host", "rpa-containers", "rpa-postgres",
                                                     "rpa-redis-celery", "rpa-backups"}
    # The datasource URL, from the Grafana container on the project network.
    res = host.run(f"docker exec {cname('grafana')} wget -q -O - http://prometheus:9090/-/ready")
    assert res.rc == 0 and "Ready" in res.stdout, res.stdout + res.stderr


def query(host, expr: str) -> list[dict]:
    from urllib.parse import quote
    return prom(host, f"/api/v1/query?query={quote(expr)}")["data"]["result"]


def test_exporters_see_the_data_tier(host):
    for metric in ("pg_up", "pgbouncer_up", "redis_up"):
        result = wait_for(lambda m=metric: query(host, m), 60, f"{metric} not in Prometheus")
        assert float(result[0]["value"][1]) == 1, metric
    assert float(query(host, "redis_memory_max_bytes")[0]["value"][1]) == 256 * 1024 * 1024
    waiting = query(host, 'pgbouncer_pools_client_waiting_connections{database="rpa_engine"}')
    assert waiting, "PgBouncer's pool for the application database is not reported"


def test_the_exporters_login_is_read_only(host):
    def su(sql):
        return host.check_output(f"docker exec {cname('postgres')} psql -X -tA -U postgres -d postgres -c "
                                 + json.dumps(sql))
    assert su("select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = 'rpa_monitor'") == "f|f|f"
    assert su("select pg_has_role('rpa_monitor', 'pg_monitor', 'member')") == "t"
    assert su("select has_database_privilege('rpa_monitor', 'rpa_engine', 'CREATE')") == "f"
