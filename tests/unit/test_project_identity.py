"""The project's identity (rpa_project_name) is set once in group_vars: nothing the roles ship may
write it out. A second project name on a second server was converged for real (README, "The project's
identity"); these checks keep the literals from coming back."""

from __future__ import annotations

import re

import jinja2
import yaml

from conftest import ROOT

SHIPPED = [p for d in ("roles", "playbooks", "collections/ansible_collections/rpa/engine/plugins")
           for p in sorted((ROOT / d).rglob("*")) if p.is_file() and p.suffix in {".yml", ".yaml", ".j2", ".json", ".py"}]
# A container name or a Compose project label with the demo's project name in it.
LITERAL = re.compile(r'rpa-engine-[a-z-]+-1\b|compose_project="rpa-engine"|compose\.project=rpa-engine')
# The one place that derives container names documents its own example.
DERIVING = {"collections/ansible_collections/rpa/engine/plugins/filter/rpa_project.py",
            "collections/ansible_collections/rpa/engine/plugins/filter/rpa_container.yml"}


def test_no_shipped_file_writes_out_the_project_name():
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in SHIPPED
             if str(p.relative_to(ROOT)) not in DERIVING
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if LITERAL.search(line)]
    assert not found, "\n".join(found)


def test_alert_rules_select_the_configured_project():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["regex_escape"] = re.escape
    defaults = yaml.safe_load((ROOT / "roles" / "monitoring" / "defaults" / "main.yml").read_text())
    text = env.from_string((ROOT / "roles" / "monitoring" / "templates" / "rules.yml.j2").read_text()).render(
        dict(defaults, ansible_managed="managed", rpa_project_name="rpa-second", __monitoring_cluster={},
             monitoring_singleton_upstream_ports=[9000]))
    exprs = [rule["expr"] for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]
    selectors = [m for e in exprs for m in re.findall(r'compose_project="([^"]*)"', e)]
    assert selectors and set(selectors) == {"rpa-second"}, selectors
