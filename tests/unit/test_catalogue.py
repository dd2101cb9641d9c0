"""The secret catalogue (catalogue/secrets.yml) and its checks (lookup_plugins/rpa_catalogue.py)."""

from __future__ import annotations

import copy

import pytest
import yaml

from ansible_collections.rpa.engine.plugins.lookup import rpa_catalogue
from conftest import ROOT

CATALOGUE = yaml.safe_load((ROOT / "catalogue" / "secrets.yml").read_text())


def test_the_catalogue_is_complete_and_consistent():
    assert rpa_catalogue.problems(CATALOGUE) == []
    assert set(rpa_catalogue.load()) == set(CATALOGUE["secrets"])


def broken(name: str, **changes) -> dict:
    catalogue = copy.deepcopy(CATALOGUE)
    entry = catalogue["secrets"][name]
    for key, value in changes.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return catalogue


@pytest.mark.parametrize(("catalogue", "problem"), [
    (broken("redis_password", owner=None), "redis_password: has no owner"),
    (broken("redis_password", owner="nginx"), "owner 'nginx' is not a role"),
    (broken("jwt_secret", overlap="forever"), "overlap 'forever' is not one of"),
    (broken("jwt_secret", grace=None), "overlap window needs grace"),
    (broken("redis_password", grace=60), "grace is for overlap window only"),
    (broken("flower_password", vault_key="vault_redis_password"), "vault_key vault_redis_password is also"),
    (broken("flower_password", vault_key="flower"), "must start with vault_"),
    (broken("flower_password", length=8), "length must be 16..256"),
    (broken("redis_password", consumers={"redis": "x"}), "consumers must map roles other than the owner"),
    (broken("redis_password", demo="yes"), "printable and demo are true or false"),
    (broken("redis_password", cluster="yes"), "cluster is true or false"),
    ({"secrets": {}}, "non-empty mapping"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_broken_entry_is_named(catalogue, problem):
    found = rpa_catalogue.problems(catalogue)
    assert any(problem in p for p in found), found


def test_what_rotates_on_several_servers():
    """Every secret rotates on several servers too (rotate-secrets.yml refuses any other there): the application's
    own, Redis' and the database's passwords reach the split shape's Compose app host or the Swarm stack; the
    superuser's and the exporters' passwords rotate through the patroni role, which plays the postgres role's
    part there; Caddy's Grafana route password on the edge, which reaches Grafana on the monitoring host."""
    assert {n: e.get("cluster") for n, e in CATALOGUE["secrets"].items()} == dict.fromkeys(CATALOGUE["secrets"], True)


def test_vault_example_names_every_secret_with_a_placeholder():
    example = yaml.safe_load((ROOT / "inventory/production/group_vars/all/vault.yml.example").read_text())
    for name, entry in CATALOGUE["secrets"].items():
        assert str(example.get(entry["vault_key"], "")).startswith("CHANGE-ME"), \
            f"vault.yml.example has no CHANGE-ME placeholder for {entry['vault_key']} ({name})"


def test_inventories_map_every_secret_to_its_role_variable():
    for inventory in ("production", "demo"):
        text = (ROOT / "inventory" / inventory / "group_vars/all/vars.yml").read_text()
        for name, entry in CATALOGUE["secrets"].items():
            if inventory == "demo" and not entry["demo"]:
                continue
            assert f"{{{{ vault_{entry['vault_key'].removeprefix('vault_')}" in text, (inventory, name)


def test_every_owner_and_consumer_has_the_entry_points_with_their_own_specs():
    roles = {e["owner"] for e in CATALOGUE["secrets"].values()}
    roles |= {r for e in CATALOGUE["secrets"].values() for r in (e.get("consumers") or {})}
    for role in sorted(roles):
        base = ROOT / "roles" / role
        specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for entry in ("credentials", "verify"):
            assert (base / "tasks" / f"{entry}.yml").is_file(), f"{role} has no tasks/{entry}.yml"
            assert entry in specs, f"{role}'s meta/argument_specs.yml has no {entry} entry point"
        assert "rpa_verify" in specs["verify"]["options"], role
        # Each variable the catalogue hands to the role is one its credentials entry point takes.
        for entry in CATALOGUE["secrets"].values():
            wanted = [entry["variable"]] if entry["owner"] == role else []
            wanted += [v for r, v in (entry.get("consumers") or {}).items() if r == role]
            for variable in wanted:
                assert variable in specs["credentials"]["options"], f"{role} credentials: {variable}"
