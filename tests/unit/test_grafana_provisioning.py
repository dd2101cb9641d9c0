"""Grafana provisioning files and dashboards, checked against Grafana's documented format.

The test bed runs a Grafana stand-in (no Grafana package, no registry), so the
files a real Grafana 11 would load are checked here against
https://grafana.com/docs/grafana/latest/administration/provisioning/ (apiVersion 1,
datasources: name/type/access/url/uid; providers: name/type file/options.path)
and the dashboard JSON model (uid <= 40 chars of [a-zA-Z0-9-_], title,
panels with type/title/gridPos inside the 24-column grid, targets with refId
and a datasource that is provisioned).
"""

from __future__ import annotations

import json
import re

import jinja2
import pytest
import yaml

from conftest import ROOT

ROLE = ROOT / "roles" / "monitoring"
DASHBOARDS = sorted((ROLE / "files" / "dashboards").glob("*.json"))


def render(name: str) -> dict:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    text = env.from_string((ROLE / "templates" / "grafana" / name).read_text()).render(
        ansible_managed="managed", monitoring_scrape_interval="15s")
    return yaml.safe_load(text)


def datasources() -> list[dict]:
    return render("datasources.yaml.j2")["datasources"]


def test_datasource_provisioning():
    doc = render("datasources.yaml.j2")
    assert doc["apiVersion"] == 1
    [ds] = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] in ("proxy", "direct")
    # The Compose service name and port of Prometheus inside the project network.
    assert ds["url"] == "http://prometheus:9090"
    assert ds["isDefault"] is True and ds["uid"] == "prometheus"
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    compose = yaml.safe_load(jinja2.Environment().from_string(
        (ROLE / "templates" / "compose.yml.j2").read_text()).render(dict(defaults, rpa_project_dir="/opt/rpa-engine")))
    assert "prometheus" in compose["services"]
    assert any(p.endswith(":9090") for p in compose["services"]["prometheus"]["ports"])


def test_dashboard_provider_points_at_the_mounted_dashboards():
    doc = render("dashboards.yaml.j2")
    assert doc["apiVersion"] == 1
    [provider] = doc["providers"]
    assert provider["type"] == "file" and provider["name"]
    compose = (ROLE / "templates" / "compose.yml.j2").read_text()
    assert f"/grafana/dashboards:{provider['options']['path']}:ro" in compose


def test_there_is_a_dashboard_per_concern():
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS}
    assert len(titles) == 5
    for word in ("Host", "Containers", "Postgres", "Redis", "Backups"):
        assert any(word in t for t in titles), word


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_model(path):
    board = json.loads(path.read_text())
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", board["uid"]), board["uid"]
    assert board["title"] and isinstance(board["schemaVersion"], int)
    uids = {ds["uid"] for ds in datasources()}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = set()
    for panel in board["panels"]:
        assert panel["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}
        assert panel["title"]
        g = panel["gridPos"]
        assert g["w"] >= 1 and g["h"] >= 1 and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {panel['title']} overlaps another"
                cells.add((x, y))
        assert panel["datasource"]["uid"] in uids
        assert panel["targets"]
        for target in panel["targets"]:
            assert re.fullmatch(r"[A-Z]", target["refId"])
            assert target["datasource"]["uid"] in uids
            assert target["expr"].count("(") == target["expr"].count(")")


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_queries_name_no_project_and_only_defined_variables(path):
    """The dashboards are shipped as files, not templates, so a project name written into a query
    would leave them empty under any other rpa_project_name: the project is a dashboard variable
    (one value on a one-project server). Every $variable a query uses must be defined."""
    board = json.loads(path.read_text())
    defined = {v["name"] for v in board.get("templating", {}).get("list", [])}
    for var in board.get("templating", {}).get("list", []):
        if var["type"] == "query":
            assert var["datasource"]["uid"] in {ds["uid"] for ds in datasources()}, var
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            assert not re.search(r'compose_project=~?"(?!\$)', expr), f"{panel['title']}: {expr}"
            used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", expr)) - {"__rate_interval", "__interval", "__range"}
            assert used <= defined, f"{panel['title']} uses undefined {used - defined}"
