"""filter rpa_topology and the preflight's shape check (issue 21's first step): the shape derived from the
inventory's groups, and the impossible ones refused before any host is contacted.

The example inventories are the repository's own (inventory/split, inventory/ha), read by Ansible's own
inventory loader; the playbook runs redirect every host to 127.0.0.1:9, where nothing answers, and must
stop in the shape play, on the controller, without needing a host.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from ansible_collections.rpa.engine.plugins.filter import rpa_topology as t
from conftest import ROOT

IMAGE = "postgres:17.2-bookworm"
SHAPE_TASK = "Ensure the inventory's shape is one this repository can provision."


def load(inventory: Path) -> tuple[dict, dict, dict]:
    """(groups, {host: rpa_private_address}, the group rpa_engine's vars) as Ansible reads the inventory."""
    manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
    groups = {name: [h.name for h in group.get_hosts()] for name, group in manager.groups.items()}
    addresses = {h.name: h.vars.get("rpa_private_address", "") for h in manager.get_hosts()}
    return groups, addresses, manager.groups["rpa_engine"].get_vars()


def settings(group_vars: dict, inventory: Path | None = None) -> dict:
    out = {"pg_failover": group_vars.get("rpa_pg_failover")}
    if inventory is not None:
        # Each host's docker_live_restore as Ansible resolves it (group vars included; the role's default: true).
        manager = InventoryManager(loader=DataLoader(), sources=[str(inventory)])
        variables = VariableManager(loader=DataLoader(), inventory=manager)
        out["live_restore"] = {h.name: variables.get_vars(host=h).get("docker_live_restore", True)
                               for h in manager.get_hosts()}
    return out


# ------------------------------------------------------------ the inventories of the repository

@pytest.mark.parametrize("inventory", ["inventory/production", "inventory/demo"])
def test_the_single_host_inventories_keep_the_single_shape(inventory):
    groups, addresses, _ = load(ROOT / inventory)
    topo = t.rpa_topology(groups, addresses, IMAGE)
    assert (topo["shape"], topo["swarm"], topo["patroni"], topo["problems"]) == ("single", False, False, [])


def test_the_split_example_is_one_app_host_and_one_db_host():
    """The db host is a Patroni cluster of one member (its own one-member etcd): no Swarm, no failover."""
    groups, addresses, group_vars = load(ROOT / "inventory" / "split")
    topo = t.rpa_topology(groups, addresses, IMAGE, settings(group_vars))
    assert topo["problems"] == []
    assert (topo["shape"], topo["swarm"], topo["patroni"]) == ("split", False, True)
    assert (topo["app"], topo["pg_cluster"], topo["edge"]) == (["rpa-app-1"], ["rpa-db-1"], ["rpa-app-1"])
    assert topo["etcd_cluster"] == ["rpa-db-1"]


def test_the_ha_example_has_odd_quorums_and_the_database_apart():
    groups, addresses, group_vars = load(ROOT / "inventory" / "ha")
    topo = t.rpa_topology(groups, addresses, IMAGE, settings(group_vars, ROOT / "inventory" / "ha"))
    assert topo["problems"] == []
    assert (topo["shape"], topo["swarm"], topo["patroni"]) == ("ha", True, True)
    assert len(topo["swarm_managers"]) == 3 and len(topo["etcd_cluster"]) == 3
    assert not set(topo["app"]) & set(topo["pg_cluster"])
    assert topo["redis_host"] == ["rpa-db-1"]


# ------------------------------------------------------------ impossible shapes, each named

HA = {"edge": ["a1"], "app": ["a1", "a2"], "swarm_managers": ["a1", "a2", "w"], "pg_cluster": ["d1", "d2"],
      "etcd_cluster": ["d1", "d2", "w"], "redis_host": ["d1"], "monitoring": ["w"]}
ADDRESSES = {"a1": "10.0.0.11", "a2": "10.0.0.12", "d1": "10.0.0.21", "d2": "10.0.0.22", "w": "10.0.0.31"}


def problems(groups=None, addresses=None, image=IMAGE, **options) -> list[str]:
    return t.rpa_topology(dict(HA, **(groups or {})), dict(ADDRESSES, **(addresses or {})), image, options)["problems"]


def test_the_reference_ha_shape_passes():
    assert problems() == []


@pytest.mark.parametrize(("change", "options", "words"), [
    ({"etcd_cluster": ["d1", "d2"]}, {}, ["etcd_cluster has 2 hosts", "odd"]),
    ({"swarm_managers": ["a1", "a2"]}, {}, ["swarm_managers has 2 hosts", "odd"]),
    ({"swarm_managers": []}, {}, ["swarm_managers is empty"]),
    ({"etcd_cluster": []}, {}, ["etcd_cluster is empty"]),
    ({"pg_cluster": ["d1"], "etcd_cluster": ["d1", "d2", "w"]}, {"pg_failover": True},
     ["rpa_pg_failover=true", "at least two pg_cluster hosts (it has 1)"]),
    ({"pg_cluster": ["a2", "d2"]}, {}, ["a2 is in both app and pg_cluster", "rpa_allow_db_on_app_hosts"]),
    ({"edge": ["e1"]}, {}, ["edge host e1 is not in app", "rpa_edge_upstreams"]),
    ({"edge": ["e1"], "app": ["a1"], "pg_cluster": ["d1"], "etcd_cluster": ["d1"]}, {"edge_upstreams": ["10.0.0.11"]},
     ["edge host e1 is not in app, whose one host runs Compose"]),
    ({"redis_host": ["d1", "d2"]}, {}, ["redis_host has 2 hosts"]),
    ({"monitoring": []}, {}, ["group monitoring is empty"]),
    ({"monitoring": ["w", "a1"]}, {}, ["group monitoring has 2 hosts"]),
    # Patroni's pg_hba admits the exporter's login by the monitoring host's private address.
    ({"monitoring": ["d1"]}, {}, ["monitoring host d1 is in pg_cluster"]),
    ({"app": []}, {}, ["group app is empty"]),
    # The stack is deployed from app[0], and the deployer needs a manager's engine.
    ({"app": ["a3", "a1", "a2"]}, {}, ["a3, the first app host, is not in swarm_managers"]),
])
def test_an_impossible_shape_is_refused_naming_the_group_or_variable(change, options, words):
    found = problems(change, **options)
    assert any(all(w in p for w in words) for p in found), found


def test_one_host_that_is_both_the_app_host_and_the_cluster_is_refused_naming_it():
    groups = {"edge": ["a"], "app": ["a"], "pg_cluster": ["a"], "etcd_cluster": ["a"], "monitoring": ["a"]}
    problems = t.rpa_topology(groups, {"a": "10.0.0.1"}, IMAGE)["problems"]
    assert any(p.startswith("a is both the one app host and the one pg_cluster host") for p in problems), problems


def test_a_db_host_on_an_app_host_is_allowed_when_said_so_and_an_edge_with_upstreams():
    assert problems({"pg_cluster": ["a2", "d2"]}, allow_db_on_app_hosts=True) == []
    assert problems({"edge": ["e1"]}, addresses={"e1": "10.0.0.5"}, edge_upstreams=["10.0.0.11"]) == []


@pytest.mark.parametrize("value", ["", None, "10.0.0", "app-1.internal", "10.0.0.300"])
def test_an_unset_or_unparsable_private_address_is_refused_naming_the_host(value):
    found = problems(addresses={"d2": value})
    assert [p for p in found if p.startswith("d2: rpa_private_address=")], found
    assert problems(addresses={"d2": "fd00::22"}) == []


def test_a_postgres_major_other_than_the_images_is_refused():
    assert [p for p in problems(pg_major=16) if "rpa_pg_major=16 differs" in p and "(17)" in p]
    assert problems(pg_major=17) == []
    assert [p for p in problems(image="registry.example.com/pg@sha256:" + "a" * 64) if "has no version tag" in p]


def test_live_restore_on_a_swarm_host_is_refused_naming_it_and_the_variable():
    found = problems(live_restore={"a1": True, "a2": False, "d2": True})
    assert [p for p in found if p.startswith("docker_live_restore=true on a1:")], found
    assert problems(live_restore={"a1": False, "a2": False, "d2": True}) == []


@pytest.mark.parametrize(("image", "major"), [("postgres:17.2-bookworm", 17), ("postgres:16", 16),
                                              ("docker.io/library/postgres:15.8-alpine3.20", 15),
                                              ("registry.example.com:5000/pg:17.1@sha256:" + "b" * 64, 17),
                                              ("rpa-testbed/postgres:latest", None), ("postgres", None)])
def test_the_major_version_comes_from_the_images_tag(image, major):
    assert t.image_major(image) == major


# ------------------------------------------------------------ the preflight, for real

def preflight(inventory: Path, *extra: str, playbook: str = "playbooks/preflight.yml") -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CACHE_PLUGIN="ansible.builtin.memory")
    env.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)
    # Every host at a loopback port where nothing listens: a run that got past the shape play would fail
    # unreachable there, not in the shape task this asserts.
    return subprocess.run(["ansible-playbook", playbook, "-i", str(inventory),
                           "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=9", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("shape", ["split", "ha"])
def test_preflight_lets_the_split_and_ha_examples_past_the_shape_play(shape):
    """site.yml provisions both examples (one app host on Compose beside the cluster, several as a Swarm stack):
    the shape play passes, and the run goes on to the hosts (unreachable here, on purpose)."""
    proc = preflight(ROOT / "inventory" / shape)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert f"TASK [{SHAPE_TASK}]" in out and "UNREACHABLE" in out, out[-3000:]
    assert "failed=1" not in out.split("PLAY [Check the input of every role")[0], out[-3000:]


def test_site_yml_runs_the_one_host_plays_on_one_host_only():
    """The Compose database and the dumps are the single host's: on the ha example those plays and the Compose
    application's match no host and the Swarm stack's play the first app host alone; on the split example the
    Compose application's play is its one app host's and there is no stack; on one host, all three and no stack."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)

    def plays(inventory: str) -> dict[str, list[str]]:
        out = subprocess.run(["ansible-playbook", "site.yml", "--list-hosts", "-i", str(ROOT / inventory)],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
        found, name = {}, ""
        for line in out.splitlines():
            if line.strip().startswith("play #"):
                name = line.split("): ", 1)[1].split("\t")[0].strip()
                found[name] = []
            elif name and line.startswith("      ") and line.strip():
                found[name].append(line.strip())
        return found

    one_host = ("Apply the postgres role.", "Apply the app role.", "Apply the backup role.")
    stack = "Run the application services as a Swarm stack."
    ha = plays("inventory/ha")
    assert {name: ha[name] for name in (*one_host, stack)} == {**dict.fromkeys(one_host, []), stack: ["rpa-app-1"]}
    split = plays("inventory/split")
    assert {name: split[name] for name in (*one_host, stack)} == {
        "Apply the postgres role.": [], "Apply the app role.": ["rpa-app-1"], "Apply the backup role.": [], stack: []}
    single = plays("inventory/production")
    assert {name: single[name] for name in (*one_host, stack)} == {**dict.fromkeys(one_host, ["rpa-prod-1"]), stack: []}


def test_a_rotation_on_several_servers_takes_every_secret_of_the_catalogue():
    """Every secret the catalogue marks `cluster` (all of them) passes the request's checks on both shapes, and none
    is left out: the run goes on to draw the values instead of refusing any on the controller."""
    every = sorted(yaml.safe_load((ROOT / "catalogue" / "secrets.yml").read_text())["secrets"])
    for shape in ("ha", "split"):
        proc = preflight(ROOT / "inventory" / shape, "-e", json.dumps({"rpa_rotate": every}),
                         playbook="playbooks/rotate-secrets.yml")
        out = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode != 0
        request = out.split("TASK [Ensure the rotation request names secrets", 1)[1].split("TASK [", 1)[0]
        assert "ok: [" in request and "fatal" not in request, (shape, request[-3000:])
        left = out.split("TASK [Report the secrets due that cannot rotate", 1)[1].split("TASK [", 1)[0]
        assert "skipping: [" in left and "ok: [" not in left, (shape, left)
        # It goes on to draw the values (and stops there: the example inventories hold no vault).
        assert "TASK [Create: draw the pending values" in out, out[-3000:]


def test_preflight_reads_a_switch_given_as_text_on_the_command_line_as_a_boolean():
    """-e rpa_pg_failover=false is the string "false": it must switch failover off, not on."""
    proc = preflight(ROOT / "inventory" / "split", "-e", "rpa_pg_failover=false")
    out = proc.stdout + proc.stderr
    assert "UNREACHABLE" in out and "rpa_pg_failover=true" not in out, out[-3000:]
    proc = preflight(ROOT / "inventory" / "split", "-e", "rpa_pg_failover=true")
    assert "rpa_pg_failover=true needs at least two pg_cluster hosts" in proc.stdout + proc.stderr


def test_preflight_reports_every_problem_of_a_broken_inventory_at_once(tmp_path):
    ha = yaml.safe_load((ROOT / "inventory" / "ha" / "hosts.yml").read_text())
    children = ha["rpa_engine"]["children"]
    children["etcd_cluster"]["hosts"].pop("rpa-witness")
    children["pg_cluster"]["hosts"]["rpa-app-2"] = None
    ha["rpa_engine"]["hosts"]["rpa-db-2"]["rpa_private_address"] = "10.0.0"
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(ha))
    (tmp_path / "group_vars").symlink_to(ROOT / "inventory" / "production" / "group_vars")
    proc = preflight(tmp_path)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    for words in ("etcd_cluster has 2 hosts", "rpa-app-2 is in both app and pg_cluster",
                  "rpa-db-2: rpa_private_address='10.0.0'"):
        assert words in out, (words, out[-3000:])
    assert "The inventory has the ha shape" not in out
    assert "UNREACHABLE" not in out


# ------------------------------------------------------------ the firewall's peer rules (rpa_peer_rules)

def peer_rules(inventory: str, host: str) -> list[dict]:
    groups, addresses, _ = load(ROOT / inventory)
    return t.rpa_peer_rules(groups, addresses, host)


@pytest.mark.parametrize("inventory", ["inventory/production", "inventory/demo"])
def test_a_single_host_admits_no_peer(inventory):
    groups, addresses, _ = load(ROOT / inventory)
    assert [t.rpa_peer_rules(groups, addresses, h) for h in groups["all"]] == [[] for _ in groups["all"]]


def test_the_ha_examples_hosts_admit_exactly_the_peers_of_each_service():
    swarm = {"tcp": [2377, 7946], "udp": [4789, 7946], "v6": [], "protocols": ["esp"]}
    # The witness is the monitoring host too: the node exporter, the engine's and Caddy's metrics, to it alone.
    assert peer_rules("inventory/ha", "rpa-app-1") == [
        {"name": "swarm", "v4": ["10.0.0.12", "10.0.0.31"], **swarm},
        {"name": "node metrics", "v4": ["10.0.0.31"], "v6": [], "tcp": [9100], "udp": [], "protocols": []},
        {"name": "engine metrics", "v4": ["10.0.0.31"], "v6": [], "tcp": [9323], "udp": [], "protocols": []},
        {"name": "caddy metrics", "v4": ["10.0.0.31"], "v6": [], "tcp": [2020], "udp": [], "protocols": []}]
    assert peer_rules("inventory/ha", "rpa-witness") == [
        {"name": "swarm", "v4": ["10.0.0.11", "10.0.0.12"], **swarm},
        # The db hosts are Patroni's etcd clients too: the members' rule admits them to 2379 already.
        {"name": "etcd members", "v4": ["10.0.0.21", "10.0.0.22"], "v6": [], "tcp": [2379, 2380], "udp": [], "protocols": []},
    ]
    # A Patroni member: the other member for replication and the REST API, etcd for the witness too; the
    # app hosts' HAProxy (roles/pg_endpoint) for Postgres and the /primary check, the witness for neither.
    assert peer_rules("inventory/ha", "rpa-db-1") == [
        {"name": "etcd members", "v4": ["10.0.0.22", "10.0.0.31"], "v6": [], "tcp": [2379, 2380], "udp": [], "protocols": []},
        {"name": "patroni", "v4": ["10.0.0.22"], "v6": [], "tcp": [5432, 8008], "udp": [], "protocols": []},
        {"name": "patroni clients", "v4": ["10.0.0.11", "10.0.0.12"], "v6": [], "tcp": [5432, 8008], "udp": [],
         "protocols": []},
        # The redis_host: Redis (published by Docker) for the app hosts alone.
        {"name": "redis clients", "v4": ["10.0.0.11", "10.0.0.12"], "v6": [], "tcp": [6379], "udp": [], "protocols": []},
        # The monitoring host (the witness, an etcd member already): what its Prometheus and exporters read.
        {"name": "node metrics", "v4": ["10.0.0.31"], "v6": [], "tcp": [9100], "udp": [], "protocols": []},
        {"name": "etcd metrics", "v4": ["10.0.0.31"], "v6": [], "tcp": [2381], "udp": [], "protocols": []},
        {"name": "patroni metrics", "v4": ["10.0.0.31"], "v6": [], "tcp": [5432, 8008], "udp": [], "protocols": []},
        {"name": "redis metrics", "v4": ["10.0.0.31"], "v6": [], "tcp": [6379], "udp": [], "protocols": []},
    ]
    assert peer_rules("inventory/ha", "rpa-db-2")[-1]["name"] == "patroni metrics"
    # The other app host: Caddy on the edge to its backend, frontend and deployer (published in host mode by
    # the stack).
    assert peer_rules("inventory/ha", "rpa-app-2")[1] == {
        "name": "app upstreams", "v4": ["10.0.0.11"], "v6": [], "tcp": [8000, 3000, 9000], "udp": [], "protocols": []}
    assert [r["name"] for r in peer_rules("inventory/ha", "rpa-app-2")[2:]] == ["node metrics", "engine metrics"]


def test_grafana_on_the_monitoring_host_admits_the_edge_alone_and_only_when_asked():
    """Caddy's /grafana/ route on an edge that is not the monitoring host (common: while caddy_grafana_route is
    on): the edge's address to Grafana's port there, nobody else; no rule without the port, nor where the edge
    is the monitoring host."""
    groups, addresses, _ = load(ROOT / "inventory" / "ha")
    rules = t.rpa_peer_rules(groups, addresses, "rpa-witness", {"grafana": [3001]})
    assert [r for r in rules if r["name"] == "grafana"] == [
        {"name": "grafana", "v4": ["10.0.0.11"], "v6": [], "tcp": [3001], "udp": [], "protocols": []}]
    assert "grafana" not in [r["name"] for r in t.rpa_peer_rules(groups, addresses, "rpa-witness")]
    groups, addresses, _ = load(ROOT / "inventory" / "split")
    assert "grafana" not in [r["name"] for r in t.rpa_peer_rules(groups, addresses, "rpa-app-1", {"grafana": [3001]})]


def test_the_app_upstreams_take_the_app_roles_ports_and_need_a_swarm():
    groups = {"edge": ["a"], "app": ["a", "b"]}
    addresses = {"a": "10.0.0.1", "b": "10.0.0.2"}
    assert t.rpa_peer_rules(groups, addresses, "b", {"app upstreams": [8080, 3030, 9090]})[-1]["tcp"] == [8080, 3030, 9090]
    # One app host runs Compose behind its own Caddy: nobody reaches its ports.
    assert t.rpa_peer_rules({"edge": ["a"], "app": ["a"]}, addresses, "a") == []


def test_app_hosts_that_are_patroni_members_too_are_admitted_once():
    # The CI shape: two app+db hosts and a witness; a member's peer is admitted by the members' rule already.
    groups = {"app": ["a", "b"], "pg_cluster": ["a", "b"], "etcd_cluster": ["a", "b", "w"]}
    addresses = {"a": "10.0.0.1", "b": "10.0.0.2", "w": "10.0.0.3"}
    assert [r["name"] for r in t.rpa_peer_rules(groups, addresses, "a")] == ["swarm", "etcd members", "patroni"]


def test_patroni_hosts_outside_etcd_reach_its_client_port_only():
    groups = {"etcd_cluster": ["e1", "e2", "e3"], "pg_cluster": ["p1", "p2", "e3"]}
    addresses = {"e1": "10.0.0.1", "e2": "10.0.0.2", "e3": "10.0.0.3", "p1": "10.0.0.4", "p2": "10.0.0.5"}
    assert t.rpa_peer_rules(groups, addresses, "e1") == [
        {"name": "etcd members", "v4": ["10.0.0.2", "10.0.0.3"], "v6": [], "tcp": [2379, 2380], "udp": [], "protocols": []},
        # e3 is a member already: only the Patroni hosts outside etcd are its clients here.
        {"name": "etcd clients", "v4": ["10.0.0.4", "10.0.0.5"], "v6": [], "tcp": [2379], "udp": [], "protocols": []},
    ]


def test_the_split_examples_db_host_admits_the_app_host_to_postgres_and_redis_alone():
    # One app host (no Swarm) and one db host (no Patroni peers, its etcd its own): the app host's HAProxy and
    # its Redis clients, and as the monitoring host the node exporter and etcd's metrics (Postgres, Patroni's
    # API and Redis it reaches already); the engine's metrics exist only on Swarm.
    assert peer_rules("inventory/split", "rpa-app-1") == []
    assert peer_rules("inventory/split", "rpa-db-1") == [
        {"name": "patroni clients", "v4": ["10.0.0.11"], "v6": [], "tcp": [5432, 8008], "udp": [], "protocols": []},
        {"name": "redis clients", "v4": ["10.0.0.11"], "v6": [], "tcp": [6379], "udp": [], "protocols": []},
        {"name": "node metrics", "v4": ["10.0.0.11"], "v6": [], "tcp": [9100], "udp": [], "protocols": []},
        {"name": "etcd metrics", "v4": ["10.0.0.11"], "v6": [], "tcp": [2381], "udp": [], "protocols": []}]


def test_the_monitoring_host_scrapes_what_the_peer_rules_admit_and_nothing_on_one_host():
    groups, addresses, _ = load(ROOT / "inventory" / "ha")
    targets = t.rpa_monitoring_targets(groups, addresses, "rpa-witness", {"caddy": 2021})
    assert {job: [(x["host"], x["target"]) for x in found] for job, found in targets.items()} == {
        # Its own node exporter runs in the monitoring project.
        "node": [("rpa-app-1", "10.0.0.11:9100"), ("rpa-app-2", "10.0.0.12:9100"), ("rpa-db-1", "10.0.0.21:9100"),
                 ("rpa-db-2", "10.0.0.22:9100")],
        "engine": [("rpa-app-1", "10.0.0.11:9323"), ("rpa-app-2", "10.0.0.12:9323"), ("rpa-witness", "10.0.0.31:9323")],
        "etcd": [("rpa-db-1", "10.0.0.21:2381"), ("rpa-db-2", "10.0.0.22:2381"), ("rpa-witness", "10.0.0.31:2381")],
        "patroni": [("rpa-db-1", "10.0.0.21:8008"), ("rpa-db-2", "10.0.0.22:8008")],
        "postgres": [("rpa-db-1", "10.0.0.21:5432"), ("rpa-db-2", "10.0.0.22:5432")],
        "redis": [("rpa-db-1", "10.0.0.21:6379")], "caddy": [("rpa-app-1", "10.0.0.11:2021")]}
    # Every port scraped on another host is one its firewall admits from the monitoring host.
    for job, found in targets.items():
        for item in found:
            if item["host"] == "rpa-witness":
                continue
            rules = t.rpa_peer_rules(groups, addresses, item["host"], {"caddy metrics": [2021]})
            port = int(item["target"].rsplit(":", 1)[1])
            assert any("10.0.0.31" in r["v4"] and port in r["tcp"] for r in rules), (job, item)
    assert t.rpa_monitoring_targets(groups, addresses, "rpa-app-1") == {}
    single, single_addresses, _ = load(ROOT / "inventory" / "demo")
    assert all(t.rpa_monitoring_targets(single, single_addresses, h) == {} for h in single["all"])
    # No engine metrics without Swarm; an IPv6 address in brackets; an unparsable one left out.
    split = {"edge": ["a"], "app": ["a"], "pg_cluster": ["d"], "etcd_cluster": ["d"], "monitoring": ["a"]}
    found = t.rpa_monitoring_targets(split, {"a": "10.0.0.1", "d": "fd00::2"}, "a")
    assert found["engine"] == [] and found["node"] == [{"host": "d", "target": "[fd00::2]:9100"}]
    assert t.rpa_monitoring_targets(split, {"a": "10.0.0.1", "d": "10.0.0"}, "a")["postgres"] == []


def test_peer_rules_sort_by_family_skip_the_host_itself_and_unparsable_addresses():
    groups = {"app": ["a", "b", "c", "d"], "swarm_managers": ["a", "b", "c"]}
    # d shares a's address (a host listed twice under two names) and must not admit a to itself.
    addresses = {"a": "10.0.0.1", "b": "fd00::2", "c": "10.0.0", "d": " 10.0.0.1 "}
    assert t.rpa_peer_rules(groups, addresses, "a") == [
        {"name": "swarm", "v4": [], "v6": ["fd00::2"], "tcp": [2377, 7946], "udp": [4789, 7946], "protocols": ["esp"]}]
    assert t.rpa_peer_rules(groups, addresses, "b")[0]["v4"] == ["10.0.0.1"]
    assert t.rpa_peer_rules(groups, addresses, "x") == []


def render_firewall(rules: list[dict]) -> str:
    import jinja2
    template = (ROOT / "roles" / "common" / "templates" / "rpa-firewall.nft.j2").read_text()
    return jinja2.Environment(trim_blocks=True, lstrip_blocks=False).from_string(template).render(
        ansible_managed="managed", common_ssh_port=22, common_firewall_allowed_tcp_ports=[80, 443],
        common_ssh_rate_limit="30/minute", common_ssh_rate_burst=200, common_firewall_container_tcp_ports=[2020],
        common_firewall_peer_rules=rules)


def test_the_firewall_template_admits_each_peer_service_by_family_and_protocol():
    rules = peer_rules("inventory/ha", "rpa-witness") + [
        {"name": "six", "v4": [], "v6": ["fd00::1", "fd00::2"], "tcp": [2379], "udp": [], "protocols": []}]
    text = render_firewall(rules)
    accepts = [line.strip() for line in text.split("chain forward {", 1)[0].splitlines() if "saddr {" in line]
    assert accepts == [
        "ip saddr { 10.0.0.11, 10.0.0.12 } tcp dport { 2377, 7946 } accept",
        "ip saddr { 10.0.0.11, 10.0.0.12 } udp dport { 4789, 7946 } accept",
        "ip saddr { 10.0.0.11, 10.0.0.12 } meta l4proto { esp } accept",
        "ip saddr { 10.0.0.21, 10.0.0.22 } tcp dport { 2379, 2380 } accept",
        "ip6 saddr { fd00::1, fd00::2 } tcp dport { 2379 } accept",
    ]
    # Inside the input chain, after the public ports and before the chain ends (policy drop).
    body = text.split("chain input {", 1)[1].split("\n  }", 1)[0]
    assert all(line in body for line in accepts)
    # The forward chain admits the same peers to the same ports where Docker DNATs them (a container publishes
    # the port), before its drop of everything else DNAT-ed from outside.
    forward = [line.strip() for line in text.split("chain forward {", 1)[1].splitlines() if line.strip()]
    peers = [line for line in forward if "saddr {" in line]
    assert peers == [
        "ip saddr { 10.0.0.11, 10.0.0.12 } ct status dnat ct original proto-dst { 2377, 4789, 7946 } accept",
        "ip saddr { 10.0.0.21, 10.0.0.22 } ct status dnat ct original proto-dst { 2379, 2380 } accept",
        "ip6 saddr { fd00::1, fd00::2 } ct status dnat ct original proto-dst { 2379 } accept",
    ]
    drop = next(i for i, line in enumerate(forward) if line.endswith(" drop"))
    assert all(forward.index(line) < drop for line in peers)


def test_the_firewall_template_is_unchanged_for_the_single_host_shape():
    text = render_firewall([])
    assert "saddr {" not in text and "the project's own hosts" not in text


def test_hosts_in_networks_finds_an_address_inside_a_pool_of_its_family_only():
    addresses = {"a": "10.200.3.4", "b": "10.0.0.11", "c": "fd00::1", "d": "", "e": "10.200.0"}
    assert t.rpa_hosts_in_networks(addresses, ["10.200.0.0/16", "fd00::/8", "bogus"]) == ["a", "c"]
    assert t.rpa_hosts_in_networks(addresses, ["10.0.0.0/8"]) == ["a", "b"]
    assert t.rpa_hosts_in_networks(addresses, []) == []


def test_the_derived_peer_rules_pass_their_own_check():
    for host in ("rpa-app-1", "rpa-db-1", "rpa-witness"):
        assert t.rpa_peer_rules_problems(peer_rules("inventory/ha", host)) == [], host
    assert t.rpa_peer_rules_problems([]) == []


@pytest.mark.parametrize(("rules", "problem"), [
    ("10.0.0.1", "must be a list"),
    ([{"v4": ["10.0.0.1"]}], "rule 1 must be a mapping with a name"),
    ([{"name": "db", "v4": ["10.0.0.0/24"], "tcp": [5432]}], "rule 'db': '10.0.0.0/24' in v4 is not a single IPv4"),
    ([{"name": "db", "v4": ["fd00::1"]}], "'fd00::1' in v4 is not a single IPv4 address"),
    ([{"name": "db", "v6": ["10.0.0.1"]}], "'10.0.0.1' in v6 is not a single IPv6 address"),
    ([{"name": "db", "tcp": [0, 5432]}], "0 in tcp is not a port"),
    ([{"name": "db", "udp": ["4789"]}], "'4789' in udp is not a port"),
    ([{"name": "db", "tcp": [True]}], "True in tcp is not a port"),
    ([{"name": "db", "protocols": ["gre"]}], "protocol 'gre' is not admitted (only esp)"),
])
def test_hand_written_peer_rules_are_refused_naming_the_problem(rules, problem):
    found = t.rpa_peer_rules_problems(rules)
    assert len(found) == 1 and problem in found[0], found


def test_private_addresses_map_each_host_to_its_address_or_nothing():
    hostvars = {"a": {"rpa_private_address": "10.0.0.1"}, "b": {}, "c": {"rpa_private_address": " fd00::3 "}}
    # As given (the checks that own the values trim and name them); unset is ''.
    assert t.rpa_private_addresses(["a", "b", "c"], hostvars) == {"a": "10.0.0.1", "b": "", "c": " fd00::3 "}
    assert t.rpa_private_addresses(["b"], hostvars) == {"b": ""} and t.rpa_private_addresses([], hostvars) == {}


def test_hostport_brackets_ipv6_and_every_role_writes_its_addresses_through_it():
    assert t.rpa_hostport("10.0.0.5", 2379) == "10.0.0.5:2379"
    assert t.rpa_hostport(" fd00::5 ", "2379") == "[fd00::5]:2379"
    assert t.rpa_hostport("fd00::5") == "[fd00::5]" and t.rpa_hostport("10.0.0.5") == "10.0.0.5"
    assert t.rpa_hostport("", 9100) == ":9100"
    # The role vars that used to bracket by hand, rendered as Ansible would, for each family.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["rpa.engine.rpa_hostport"] = t.rpa_hostport
    role_vars = {role: yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text())
                 for role in ("swarm", "etcd", "patroni", "monitoring")}
    for a, host in (("10.0.0.5", "10.0.0.5"), ("fd00::5", "[fd00::5]")):
        hostvars = {"m1": {"rpa_private_address": a}, "m2": {"etcd_listen_address": "10.0.0.6"}}
        context = {"swarm_advertise_address": a, "etcd_listen_address": a, "patroni_listen_address": a,
                   "rpa_private_address": a, "monitoring_node_exporter_port": 9100, "hostvars": hostvars,
                   "groups": {"etcd_cluster": ["m1", "m2"]}, "__etcd_members": ["m1", "m2"]}
        rendered = {name: env.from_string(role_vars[role][name]).render(context) for role, name in (
            ("swarm", "__swarm_listen"), ("etcd", "__etcd_host"), ("etcd", "__etcd_initial_cluster"),
            ("patroni", "__patroni_host"), ("patroni", "__patroni_etcd_hosts"),
            ("monitoring", "__monitoring_agent_listen"))}
        assert rendered == {"__swarm_listen": f"{host}:2377", "__etcd_host": host,
                            "__etcd_initial_cluster": f"m1=http://{host}:2380,m2=http://10.0.0.6:2380",
                            "__patroni_host": host, "__patroni_etcd_hosts": str([f"{host}:2379", "10.0.0.6:2379"]),
                            "__monitoring_agent_listen": f"{host}:9100"}, rendered
