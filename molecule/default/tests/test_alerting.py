"""Alerts that reach a person: Alertmanager routes Prometheus' alerts to the test bed's sink.

The sink (testbed.py sink, container rpa-alert-sink on the CI host's engine) plays the mail server -
STARTTLS and AUTH required - and the webhook and heartbeat services over HTTPS, with a CA made at run
time that only Alertmanager is told to trust. Both the demo and the Molecule server send there: every
check filters on this server's name (the `server` label).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import time

from conftest import PROJECT_DIR, cname, secret, wait_for

SINK = "rpa-alert-sink"
AM = "http://127.0.0.1:9093"
AM_CONFIG = f"{PROJECT_DIR}/config/monitoring/alertmanager/alertmanager.yml"


def sink(kind: str) -> list[dict]:
    """What the sink received: kind "mail" or "webhook", one record per message."""
    out = subprocess.run(["docker", "exec", SINK, "sh", "-c", f"cat /data/{kind}.jsonl 2>/dev/null || true"],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def hooks(server: dict, since: float, path_prefix: str = "/hook/") -> list[dict]:
    """Alertmanager's webhook bodies for this server since a moment."""
    return [r["body"] for r in sink("webhook") if r["time"] >= since and r["path"].startswith(path_prefix)
            and isinstance(r["body"], dict) and r["body"].get("commonLabels", {}).get("server") == server["name"]]


def alerts_in(bodies: list[dict], status: str, **labels) -> list[dict]:
    return [a for b in bodies for a in b["alerts"]
            if a["status"] == status and all(a["labels"].get(k) == v for k, v in labels.items())]


def text(mail: dict) -> str:
    """The mail's words without its HTML (Alertmanager's default mail is HTML only)."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", mail["body"])))


def mails(server: dict, since: float) -> list[dict]:
    return [m for m in sink("mail") if m["time"] >= since and server["name"] in m["subject"]]


def am(host, path: str):
    return json.loads(host.check_output(f"curl -fsS '{AM}{path}'"))


def prom_alerts(host) -> list[dict]:
    return json.loads(host.check_output("curl -fsS http://127.0.0.1:9090/api/v1/alerts"))["data"]["alerts"]


def test_alertmanager_is_wired_checked_and_keeps_its_secrets(host):
    assert am(host, "/api/v2/status")["cluster"]["status"] == "disabled"
    # Polled: this runs right after the drill's kill and restart (test_a_killed_server.py), and Prometheus lists
    # its Alertmanager only after its first discovery update (seen empty once, 0 s after every service was
    # healthy; the Watchdog's heartbeat arrived soon after).
    wait_for(lambda: json.loads(host.check_output("curl -fsS http://127.0.0.1:9090/api/v1/alertmanagers"))[
        "data"]["activeAlertmanagers"], 60, "Prometheus lists an Alertmanager")
    active = json.loads(host.check_output("curl -fsS http://127.0.0.1:9090/api/v1/alertmanagers"))
    assert [a["url"] for a in active["data"]["activeAlertmanagers"]] == ["http://alertmanager:9093/api/v2/alerts"]
    res = host.run(f"docker exec {cname('alertmanager')} amtool check-config /etc/alertmanager/alertmanager.yml")
    assert res.rc == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr
    # The SMTP password and the webhook token are in the file: Alertmanager's group alone reads it.
    config = host.file(AM_CONFIG)
    assert (config.user, config.group, config.mode) == ("root", "nogroup", 0o640)
    assert secret("alert_smtp_password") in config.content_string


def test_the_watchdog_heartbeat_reaches_the_outside(server):
    """The dead man's switch: the always-firing Watchdog arrives at the heartbeat URL, nothing else does."""
    token = secret("alert_webhook_token")
    beats = wait_for(lambda: [r for r in sink("webhook") if r["path"] == f"/heartbeat/{token}"
                              and r["body"]["commonLabels"].get("server") == server["name"]],
                     90, "no Watchdog heartbeat from this server")
    assert {a["labels"]["alertname"] for b in beats for a in b["body"]["alerts"]} == {"Watchdog"}


def test_a_broken_target_pages_by_mail_and_webhook_and_a_host_down_inhibits_the_rest(host, server):
    """A stopped exporter's TargetDown reaches the on-call mail and webhook with its labels, then its
    resolution after the repair; while the host's node-exporter is down, HostDown arrives and the host's
    other alerts are held back (inhibited)."""
    # The test inventory's timings: scrapes every 5 s, TargetDown and HostDown after 5 s.
    since = time.time()
    exporter, node_exporter = cname("redis-exporter"), cname("node-exporter")
    try:
        host.check_output(f"docker stop {exporter}")
        firing = wait_for(lambda: alerts_in(hooks(server, since), "firing", alertname="TargetDown", job="redis"),
                          120, "no TargetDown webhook for the stopped exporter")
        assert firing[0]["labels"]["severity"] == "critical"
        assert firing[0]["annotations"]["summary"] == "redis target redis-exporter:9121 is down"
        # The same alert by mail to the on-call address (critical), over STARTTLS with the vault's password.
        mail = wait_for(lambda: [m for m in mails(server, since) if m["subject"].startswith("[FIRING")
                                 and "TargetDown" in m["subject"] and "job = redis" in text(m)],
                        60, "no TargetDown mail naming the job")[0]
        assert mail["rcpt_tos"] == ["oncall@rpa.example.com"], mail["rcpt_tos"]
        assert "severity = critical" in text(mail) and "redis target redis-exporter:9121 is down" in text(mail)
        assert mail["auth_user"] == "alerts@rpa.example.com"
        assert mail["auth_password_sha256"] == hashlib.sha256(secret("alert_smtp_password").encode()).hexdigest()
        host.check_output(f"docker start {exporter}")
        wait_for(lambda: alerts_in(hooks(server, since), "resolved", alertname="TargetDown", job="redis"),
                 90, "no resolved TargetDown webhook after the repair")
        wait_for(lambda: [m for m in mails(server, since) if m["subject"].startswith("[RESOLVED] TargetDown")],
                 60, "no resolved TargetDown mail")

        # The host "goes down": HostDown arrives; the host's TargetDown is held back by the inhibition.
        stopped = time.time()
        host.check_output(f"docker stop {node_exporter}")
        wait_for(lambda: alerts_in(hooks(server, stopped), "firing", alertname="HostDown"), 90, "no HostDown webhook")

        def inhibited():
            found = am(host, "/api/v2/alerts?filter=alertname%3D%22TargetDown%22&filter=job%3D%22node%22")
            return [a for a in found if a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"]]
        wait_for(inhibited, 60, "TargetDown of the node job is not inhibited in Alertmanager")
        assert [a for a in prom_alerts(host) if a["labels"]["alertname"] == "TargetDown"
                and a["labels"].get("job") == "node" and a["state"] == "firing"], "it did fire in Prometheus"
        time.sleep(3)  # group_wait is 1 s, group_interval 2 s here: a leaked notification would be in by now
        leaked = alerts_in(hooks(server, stopped), "firing", alertname="TargetDown", job="node")
        leaked += [m for m in mails(server, stopped) if "TargetDown" in m["subject"] and "job = node" in text(m)]
        assert not leaked, leaked
        host.check_output(f"docker start {node_exporter}")
        wait_for(lambda: alerts_in(hooks(server, stopped), "resolved", alertname="HostDown"), 90,
                 "no resolved HostDown")
    finally:
        host.run(f"docker start {exporter} {node_exporter}")
