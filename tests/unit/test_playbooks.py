"""site.yml parses, lists every role's tag, and every role has what DESIGN.md asks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())


def ansible_playbook(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(["ansible-playbook", "site.yml", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("inventory", ["inventory/production", "inventory/demo"])
def test_site_syntax_check(inventory):
    proc = ansible_playbook("--syntax-check", "-i", inventory)
    assert proc.returncode == 0, proc.stderr


def test_list_tags_has_every_role():
    proc = ansible_playbook("--list-tags")
    assert proc.returncode == 0, proc.stderr
    for role in ROLES:
        assert role in proc.stdout, f"tag {role} missing from --list-tags"


BARE_HOST_GUARD = {"name": "Stop checking a bare host (check mode; the common role said why).",
                   "ansible.builtin.meta": "end_host",
                   "when": "ansible_check_mode and (common_check_mode_bare | default(false))"}


@pytest.mark.parametrize("role", ROLES)
def test_role_has_specs_preflight_and_thin_main(role):
    base = ROOT / "roles" / role
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    # The input is the preflight entry point's, validated once per run where the preflight runs; no
    # 'main' entry, which every play applying the role would validate again.
    assert "preflight" in specs and "main" not in specs
    assert (base / "tasks" / "preflight.yml").is_file()
    main = yaml.safe_load((base / "tasks" / "main.yml").read_text())
    # Every role after common first ends its play for a bare host in check mode (the common role found no
    # python3-apt, said why and ended its own play: end_host ends one play only).
    if role != "common":
        assert main[0] == BARE_HOST_GUARD | {"tags": [role]}, main[0]
        main = main[1:]
    # Thin main: only tagged includes, preflight first - the role's own preflight entry point, one
    # include that site.yml skips as a whole, since playbooks/preflight.yml has run it already.
    assert all(set(t) & {"ansible.builtin.import_tasks", "ansible.builtin.include_tasks",
                         "ansible.builtin.include_role"} for t in main)
    assert main[0]["ansible.builtin.include_role"] | {"apply": None} == \
        {"name": role, "tasks_from": "preflight", "apply": None}
    assert main[0]["when"] == "not (rpa_preflight_passed | default(false))"
    assert role in main[0]["ansible.builtin.include_role"]["apply"]["tags"]
    assert all(role in t.get("tags", []) for t in main)


def test_the_stack_entry_point_ends_a_bare_hosts_check_too():
    # playbooks/app_stack.yml includes the app role's tasks_from: stack, past main.yml's guard.
    assert yaml.safe_load((ROOT / "roles" / "app" / "tasks" / "stack.yml").read_text())[0] == BARE_HOST_GUARD


@pytest.mark.parametrize("role", ROLES)
def test_role_is_applied_by_site_with_its_tag(role):
    imported = [entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load((ROOT / "site.yml").read_text())]
    applying = [path for path in imported
                if yaml.safe_load((ROOT / path).read_text())[0].get("roles") == [{"role": role, "tags": [role]}]]
    assert len(applying) == 1, f"site.yml should apply role {role} with tag {role} exactly once: {applying}"
    # The roles of several servers are checked from an include of playbooks/preflight.yml.
    preflight = (ROOT / "playbooks" / "preflight.yml").read_text() \
        + (ROOT / "playbooks" / "tasks" / "preflight-cluster.yml").read_text()
    assert f"name: {role}\n" in preflight, f"playbooks/preflight.yml does not check {role}"


def test_preflight_play_runs_first_and_always():
    site = yaml.safe_load((ROOT / "site.yml").read_text())
    assert site[0]["ansible.builtin.import_playbook"] == "playbooks/preflight.yml"
    play = yaml.safe_load((ROOT / "playbooks" / "preflight.yml").read_text())[0]
    assert play["tags"] == ["always"]


def test_no_unencrypted_vault_is_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    for name in tracked:
        path = Path(name)
        if path.name.startswith("vault") and path.suffix in {".yml", ".yaml"}:
            assert (ROOT / path).read_text().startswith("$ANSIBLE_VAULT"), f"{name} is not encrypted"


COLLECTION = ROOT / "collections" / "ansible_collections" / "rpa" / "engine"
MODULES = sorted(p.stem for p in (COLLECTION / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_custom_module_documentation_renders(module):
    """`ansible-doc rpa.engine.NAME` renders DOCUMENTATION, EXAMPLES and RETURN (through ansible.cfg's collections_path)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-doc", f"rpa.engine.{module}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[WARNING]" not in proc.stderr, proc.stderr
    for section in ("OPTIONS", "EXAMPLES", "RETURN VALUES"):
        assert section in proc.stdout, f"{module}: no {section} in ansible-doc output"


@pytest.mark.parametrize("kind", ["module", "filter", "test", "lookup"])
def test_every_plugin_of_the_collection_is_documented(kind):
    """`ansible-doc -t KIND -l rpa.engine` lists no plugin as UNDOCUMENTED (filters and tests: plugins/*/NAME.yml)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(["ansible-doc", "-t", kind, "-l", "rpa.engine", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[WARNING]" not in proc.stderr, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed, f"no {kind} plugin of rpa.engine found"
    assert [name for name, text in listed.items() if text == "UNDOCUMENTED"] == []
