"""Alertmanager's configuration from the inventory, and what is wrong with the input (module_utils/rpa_alerting)."""

from __future__ import annotations

from ansible_collections.rpa.engine.plugins.module_utils import rpa_alerting


def _timings(timings):
    return {key: str(value) for key, value in dict(timings).items()}


def rpa_alertmanager_config(receivers, routes, default_receiver, smtp, timings, heartbeat_url="", ca_file="",
                            group_by=("alertname", "server")):
    return rpa_alerting.alertmanager_config(list(receivers), list(routes), default_receiver, dict(smtp),
                                            _timings(timings), heartbeat_url, ca_file, group_by)


def rpa_alerting_problems(receivers, routes, default_receiver, smtp, timings, heartbeat_url=""):
    return rpa_alerting.problems(receivers, routes, default_receiver, dict(smtp or {}), _timings(timings),
                                 heartbeat_url)


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_alertmanager_config": rpa_alertmanager_config, "rpa_alerting_problems": rpa_alerting_problems}
