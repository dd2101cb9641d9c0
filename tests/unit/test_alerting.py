"""Alert routing from the inventory (module_utils/rpa_alerting): the config Alertmanager gets, and bad input."""

from __future__ import annotations

import pytest

from ansible_collections.rpa.engine.plugins.module_utils import rpa_alerting as al

SMTP = {"smarthost": "smtp.example.com:587", "from": "alerts@rpa.example.com", "username": "alerts",
        "password": "CHANGE-ME-smtp-password", "require_tls": True}
TIMINGS = {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h", "heartbeat_interval": "1m"}
RECEIVERS = [
    {"name": "ops-email", "email": ["ops@rpa.example.com"]},
    {"name": "oncall", "webhook": ["https://hooks.example.com/T0KEN"], "slack": ["https://chat.example.com/hook/x"],
     "telegram": [{"bot_token": "CHANGE-ME-bot-token", "chat_id": "-100200"}]},
]
ROUTES = [{"receiver": "oncall", "severity": "critical", "continue": True},
          {"receiver": "ops-email", "matchers": ['alertname=~"Backup.*"']}]


def problems(**kw):
    args = dict(receivers=RECEIVERS, routes=ROUTES, default_receiver="ops-email", smtp=SMTP, timings=TIMINGS,
                heartbeat_url="https://hc.example.com/ping/abc")
    args.update(kw)
    return al.problems(args["receivers"], args["routes"], args["default_receiver"], args["smtp"], args["timings"],
                       args["heartbeat_url"])


def test_the_example_input_is_valid():
    assert problems() == []


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25),
                                           ("", None), ("5", None), ("5 m", None), ("-1m", None)])
def test_durations(text, seconds):
    assert al.duration_seconds(text) == seconds


@pytest.mark.parametrize("change, expected", [
    ({"receivers": [{"name": "ops-email"}]}, "monitoring_alert_receivers[0] (ops-email) has no destination"),
    ({"receivers": [{"name": "ops-email", "email": ["ops at example.com"]}]}, "is not an email address"),
    ({"receivers": [{"name": "ops-email", "email": "ops@localhost"}]}, "is not an email address"),
    ({"receivers": [{"name": "ops-email", "webhook": ["http://hooks.example.com/T0KEN"]}]},
     "monitoring_alert_receivers[0] (ops-email).webhook[0] must be an https:// URL"),
    ({"receivers": [{"name": "ops-email", "slack": ["hooks.example.com"]}]}, "must be an https:// URL"),
    ({"receivers": [{"name": "heartbeat", "email": ["ops@rpa.example.com"]}], "default_receiver": ""},
     "are the role's own receivers"),
    ({"receivers": RECEIVERS + [RECEIVERS[0]]}, "the name is used twice"),
    ({"receivers": [{"name": "x", "pager": ["1"]}], "default_receiver": "", "routes": []}, "unknown keys ['pager']"),
    ({"receivers": [{"name": "t", "telegram": [{"bot_token": "CHANGE-ME-bot", "chat_id": "@chan"}]}], "default_receiver": "",
      "routes": []}, "needs bot_token and a numeric chat_id"),
    ({"routes": [{"receiver": "pager", "severity": "critical"}]},
     "monitoring_alert_routes[0] names receiver 'pager', which monitoring_alert_receivers does not define"),
    ({"routes": [{"receiver": "oncall"}]}, "needs severity or matchers"),
    ({"routes": [{"receiver": "oncall", "matchers": ["alertname=Backup"]}]}, "must look like"),
    ({"default_receiver": "nobody"}, "monitoring_alert_default_receiver='nobody' names no receiver"),
    ({"timings": dict(TIMINGS, repeat_interval="1m")},
     "monitoring_alert_repeat_interval=1m is shorter than monitoring_alert_group_interval=5m"),
    ({"timings": dict(TIMINGS, group_wait="soon")}, "monitoring_alert_group_wait='soon' must be a duration"),
    ({"smtp": dict(SMTP, smarthost="smtp.example.com")}, "monitoring_alert_smtp.smarthost='smtp.example.com' must be"),
    ({"smtp": dict(SMTP, **{"from": "alerts"})}, "monitoring_alert_smtp.from='alerts' must be an email address"),
    ({"smtp": {}}, "sends email: set monitoring_alert_smtp.smarthost"),
    ({"heartbeat_url": "http://hc.example.com/ping/abc"}, "monitoring_alert_heartbeat_url must be an https:// URL"),
    ({"receivers": {"name": "ops"}}, "monitoring_alert_receivers must be a list"),
])
def test_bad_input_is_named(change, expected):
    found = problems(**change)
    assert any(expected in p for p in found), found


def test_urls_are_never_echoed():
    found = problems(receivers=[{"name": "ops-email", "webhook": ["http://hooks.example.com/SECRET-T0KEN"]}])
    assert found and not any("SECRET-T0KEN" in p for p in found)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9999/hook", "http://localhost/hook", "https://203.0.113.10/x"])
def test_https_or_loopback_http_is_accepted(url):
    assert al.url_problem(url, "v") is None


def test_the_config_routes_inhibits_and_resolves():
    cfg = al.alertmanager_config(RECEIVERS, ROUTES, "ops-email", SMTP, TIMINGS, "https://hc.example.com/ping/abc",
                                 "/etc/alertmanager/ca.pem")
    route = cfg["route"]
    assert (route["receiver"], route["group_wait"], route["group_interval"], route["repeat_interval"]) == \
        ("ops-email", "30s", "5m", "4h")
    watchdog, critical, backup = route["routes"]
    assert watchdog == {"matchers": ['alertname="Watchdog"'], "receiver": "heartbeat", "group_by": ["alertname"],
                        "group_wait": "0s", "group_interval": "1m", "repeat_interval": "1m"}
    assert critical == {"matchers": ['severity="critical"'], "receiver": "oncall", "continue": True}
    assert backup == {"matchers": ['alertname=~"Backup.*"'], "receiver": "ops-email"}
    assert cfg["global"]["smtp_auth_password"] == "CHANGE-ME-smtp-password"
    assert cfg["global"]["smtp_require_tls"] is True
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert set(receivers) == {"blackhole", "heartbeat", "ops-email", "oncall"}
    assert receivers["heartbeat"]["webhook_configs"][0]["send_resolved"] is False
    assert receivers["ops-email"]["email_configs"] == [
        {"to": "ops@rpa.example.com", "send_resolved": True, "tls_config": {"ca_file": "/etc/alertmanager/ca.pem"}}]
    oncall = receivers["oncall"]
    assert oncall["webhook_configs"][0]["url"] == "https://hooks.example.com/T0KEN"
    assert all(c["send_resolved"] for key in ("webhook_configs", "slack_configs", "telegram_configs")
               for c in oncall[key])
    assert oncall["telegram_configs"][0]["chat_id"] == -100200
    host_down = cfg["inhibit_rules"][0]
    assert host_down["source_matchers"] == ['alertname="HostDown"'] and host_down["equal"] == ["server"]


def test_without_a_heartbeat_url_the_watchdog_goes_nowhere_and_without_receivers_everything_does():
    cfg = al.alertmanager_config([], [], "", {}, TIMINGS)
    assert cfg["route"]["receiver"] == "blackhole"
    assert cfg["route"]["routes"][0]["receiver"] == "blackhole"
    assert cfg["global"] == {"resolve_timeout": "5m"}
    assert cfg["receivers"] == [{"name": "blackhole"}, {"name": "heartbeat"}]
