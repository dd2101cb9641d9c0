# -*- coding: utf-8 -*-
"""Pure logic of the monitoring role's alert routing: Alertmanager's configuration from the inventory.

The inventory names receivers (email, webhook, Slack-style chat, Telegram),
routes by severity or matchers, and the timings; ``problems`` says what is
wrong with them, naming the variable, before anything changes, and
``alertmanager_config`` turns them into Alertmanager's own configuration
(which ``amtool check-config`` then judges on the host). Two receivers are
always there: ``heartbeat`` (the dead man's switch: the always-firing
Watchdog alert to a healthchecks.io-style URL) and ``blackhole`` (nothing).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

RESERVED = ("heartbeat", "blackhole")
DESTINATIONS = ("email", "webhook", "slack", "telegram")
# Prometheus/Alertmanager durations: "30s", "1h30m".
DURATION = re.compile(r"^(?:(\d+)(ms|s|m|h|d|w|y))+$")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# What an operator can type and a mail server takes: one address, no display name.
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$")
NAME = re.compile(r"^[A-Za-z0-9_-]+$")
MATCHER = re.compile(r'^\s*[A-Za-z_][A-Za-z0-9_]*\s*(=|!=|=~|!~)\s*"[^"]*"\s*$')
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# A host that is down makes every other alert of that server noise (equal: server).
HOST_DOWN = "HostDown"
WATCHDOG = "Watchdog"


def duration_seconds(text):
    """Seconds of a Prometheus duration, or None when it is not one."""
    text = str(text or "")
    if not DURATION.match(text):
        return None
    return sum(int(n) * UNIT_SECONDS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))


def _as_list(value):
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def url_problem(url, variable):
    """Why url cannot carry alerts (https, or plain http to loopback only), or None."""
    parts = urlsplit(str(url or ""))
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return None
    # Never echo the URL: webhook URLs carry their token.
    return ("%s must be an https:// URL (plain http only to 127.0.0.1/localhost); it is %s"
            % (variable, "a plain-http URL to another host" if parts.scheme == "http" else "not a URL"))


def problems(receivers, routes, default_receiver, smtp, timings, heartbeat_url=""):
    """Every mistake in the alerting input, each naming its variable; empty when all is well."""
    found = []
    names = []
    if not isinstance(receivers, list):
        return ["monitoring_alert_receivers must be a list of receivers, e.g. [{name: ops, email: [ops@rpa.example.com]}]"]
    for i, receiver in enumerate(receivers):
        where = "monitoring_alert_receivers[%d]" % i
        if not isinstance(receiver, dict) or not NAME.match(str(receiver.get("name", ""))):
            found.append("%s needs a name of letters, digits, _ and - (e.g. name: ops)" % where)
            continue
        name = receiver["name"]
        where = "%s (%s)" % (where, name)
        if name in RESERVED:
            found.append("%s: the names %s are the role's own receivers; choose another" % (where, "/".join(RESERVED)))
        if name in names:
            found.append("%s: the name is used twice" % where)
        names.append(name)
        unknown = sorted(set(receiver) - set(DESTINATIONS) - {"name"})
        if unknown:
            found.append("%s: unknown keys %s (a receiver has name and %s)" % (where, unknown, ", ".join(DESTINATIONS)))
        if not any(_as_list(receiver.get(key)) for key in DESTINATIONS):
            found.append("%s has no destination: give it email, webhook, slack or telegram" % where)
        for address in _as_list(receiver.get("email")):
            if not EMAIL.match(str(address)):
                found.append("%s: email %r is not an email address (e.g. ops@rpa.example.com)" % (where, address))
        if _as_list(receiver.get("email")) and not smtp.get("smarthost"):
            found.append("%s sends email: set monitoring_alert_smtp.smarthost (host:port) and .from" % where)
        for key in ("webhook", "slack"):
            for j, url in enumerate(_as_list(receiver.get(key))):
                problem = url_problem(url, "%s.%s[%d]" % (where, key, j))
                if problem:
                    found.append(problem)
        for j, chat in enumerate(_as_list(receiver.get("telegram"))):
            if not (isinstance(chat, dict) and chat.get("bot_token") and str(chat.get("chat_id", "")).lstrip("-").isdigit()):
                found.append("%s.telegram[%d] needs bot_token and a numeric chat_id" % (where, j))
    if smtp.get("smarthost") and not HOST_PORT.match(str(smtp["smarthost"])):
        found.append("monitoring_alert_smtp.smarthost=%r must be host:port, e.g. smtp.example.com:587"
                     % smtp["smarthost"])
    if smtp.get("smarthost") and not EMAIL.match(str(smtp.get("from", ""))):
        found.append("monitoring_alert_smtp.from=%r must be an email address, e.g. alerts@rpa.example.com"
                     % smtp.get("from", ""))
    if default_receiver and default_receiver not in names:
        found.append("monitoring_alert_default_receiver=%r names no receiver of monitoring_alert_receivers %s"
                     % (default_receiver, names))
    if not isinstance(routes, list):
        found.append("monitoring_alert_routes must be a list of {receiver, severity or matchers}")
        routes = []
    for i, route in enumerate(routes):
        where = "monitoring_alert_routes[%d]" % i
        if not isinstance(route, dict) or route.get("receiver") not in names:
            found.append("%s names receiver %r, which monitoring_alert_receivers does not define %s"
                         % (where, route.get("receiver") if isinstance(route, dict) else route, names))
            continue
        if not route.get("severity") and not route.get("matchers"):
            found.append("%s needs severity or matchers (it would catch every alert; use "
                         "monitoring_alert_default_receiver for that)" % where)
        for matcher in _as_list(route.get("matchers")):
            if not MATCHER.match(str(matcher)):
                found.append('%s: matcher %r must look like alertname=~"Backup.*"' % (where, matcher))
    seconds = {}
    for key in ("group_wait", "group_interval", "repeat_interval", "heartbeat_interval"):
        seconds[key] = duration_seconds(timings.get(key))
        if seconds[key] is None or seconds[key] <= 0:
            found.append("monitoring_alert_%s=%r must be a duration such as 30s, 5m or 4h"
                         % (key, timings.get(key)))
    if seconds["group_interval"] and seconds["repeat_interval"] and \
            seconds["repeat_interval"] < seconds["group_interval"]:
        found.append("monitoring_alert_repeat_interval=%s is shorter than monitoring_alert_group_interval=%s: "
                     "Alertmanager repeats only at a group interval, so make it at least that"
                     % (timings["repeat_interval"], timings["group_interval"]))
    if heartbeat_url:
        problem = url_problem(heartbeat_url, "monitoring_alert_heartbeat_url")
        if problem:
            found.append(problem)
    return found


def _http_config(ca_file):
    return {"http_config": {"tls_config": {"ca_file": ca_file}}} if ca_file else {}


def receiver_config(receiver, ca_file=""):
    """One receiver of the inventory as Alertmanager writes it; every one also says when it is resolved."""
    out = {"name": receiver["name"]}
    emails = _as_list(receiver.get("email"))
    if emails:
        out["email_configs"] = [dict({"to": address, "send_resolved": True},
                                     **({"tls_config": {"ca_file": ca_file}} if ca_file else {}))
                                for address in emails]
    if _as_list(receiver.get("webhook")):
        out["webhook_configs"] = [dict({"url": url, "send_resolved": True}, **_http_config(ca_file))
                                  for url in _as_list(receiver.get("webhook"))]
    if _as_list(receiver.get("slack")):
        # Alertmanager's own Slack title and text (no Go template here: Ansible would read it as Jinja).
        out["slack_configs"] = [dict({"api_url": url, "send_resolved": True}, **_http_config(ca_file))
                                for url in _as_list(receiver.get("slack"))]
    if _as_list(receiver.get("telegram")):
        out["telegram_configs"] = [dict({"bot_token": chat["bot_token"], "chat_id": int(chat["chat_id"]),
                                         "send_resolved": True}, **_http_config(ca_file))
                                   for chat in _as_list(receiver.get("telegram"))]
    return out


def alertmanager_config(receivers, routes, default_receiver, smtp, timings, heartbeat_url="", ca_file="",
                        group_by=("alertname", "server")):
    """Alertmanager's configuration (a dict for to_nice_yaml) from the inventory's receivers and routes."""
    default = default_receiver or (receivers[0]["name"] if receivers else "blackhole")
    global_ = {"resolve_timeout": "5m"}
    if smtp.get("smarthost"):
        global_.update({"smtp_smarthost": smtp["smarthost"], "smtp_from": smtp["from"],
                        "smtp_require_tls": bool(smtp.get("require_tls", True))})
        if smtp.get("username"):
            global_.update({"smtp_auth_username": smtp["username"], "smtp_auth_password": smtp.get("password", "")})
    child_routes = [{
        # The dead man's switch: always firing, so each repeat is a heartbeat; never grouped with others.
        "matchers": ['alertname="%s"' % WATCHDOG],
        "receiver": "heartbeat" if heartbeat_url else "blackhole",
        "group_by": ["alertname"],
        "group_wait": "0s",
        "group_interval": timings["heartbeat_interval"],
        "repeat_interval": timings["heartbeat_interval"],
    }]
    for route in routes:
        matchers = ['severity="%s"' % route["severity"]] if route.get("severity") else []
        matchers += [str(m).strip() for m in _as_list(route.get("matchers"))]
        child_routes.append(dict({"matchers": matchers, "receiver": route["receiver"]},
                                 **({"continue": True} if route.get("continue") else {})))
    heartbeat = {"name": "heartbeat"}
    if heartbeat_url:
        heartbeat["webhook_configs"] = [dict({"url": heartbeat_url, "send_resolved": False},
                                             **_http_config(ca_file))]
    return {
        "global": global_,
        "route": {
            "receiver": default,
            "group_by": list(group_by),
            "group_wait": timings["group_wait"],
            "group_interval": timings["group_interval"],
            "repeat_interval": timings["repeat_interval"],
            "routes": child_routes,
        },
        "inhibit_rules": [
            # A host that is down silences everything else that server says (its containers' alerts).
            {"source_matchers": ['alertname="%s"' % HOST_DOWN],
             "target_matchers": ['alertname!~"%s|%s"' % (HOST_DOWN, WATCHDOG)],
             "equal": ["server"]},
            # The critical form of an alert silences its warning form.
            {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
             "equal": ["alertname", "server", "instance"]},
        ],
        "receivers": [{"name": "blackhole"}, heartbeat] + [receiver_config(r, ca_file) for r in receivers],
    }
