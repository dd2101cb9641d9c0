"""The Mitogen strategy shim (strategy_plugins/mitogen_linear.py): what it does once, before the forks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ansible.collections.list
import ansible_mitogen.planner
import ansible_mitogen.plugins.strategy.mitogen_linear

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = [b"/venv/ansible_collections/community/docker", b"/repo/collections/ansible_collections/rpa/engine"]


def load_shim():
    spec = importlib.util.spec_from_file_location("rpa_mitogen_linear", ROOT / "strategy_plugins" / "mitogen_linear.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Invocation:
    def __init__(self):
        self._extra_sys_paths = set()


def test_the_shim_is_the_strategy_ansible_loads():
    assert issubclass(load_shim().StrategyModule, ansible_mitogen.plugins.strategy.mitogen_linear.StrategyModule)


def test_the_planner_gets_the_same_collection_paths_from_a_list_made_once(monkeypatch):
    listings = []

    def list_collection_dirs(*args, **kwargs):
        listings.append(args)
        return iter(COLLECTIONS)

    monkeypatch.setattr(ansible.collections.list, "list_collection_dirs", list_collection_dirs)
    original = ansible_mitogen.planner._load_collections
    monkeypatch.setattr(ansible_mitogen.planner, "_load_collections", original)
    expected = Invocation()
    original(expected)
    assert expected._extra_sys_paths == {path.decode() for path in COLLECTIONS}

    listings.clear()
    load_shim().load_plugins_once()
    assert ansible_mitogen.planner._load_collections is not original
    assert len(listings) == 1, "the main process lists the collections once"
    for _ in range(3):
        invocation = Invocation()
        ansible_mitogen.planner._load_collections(invocation)
        assert invocation._extra_sys_paths == expected._extra_sys_paths
    assert len(listings) == 1, "a worker listed the collections again"
