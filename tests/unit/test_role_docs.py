"""The README's variable tables and every role's spec/defaults agree."""

from __future__ import annotations

import role_docs

from conftest import ROOT


def test_specs_and_defaults_agree():
    problems = [p for role in sorted((ROOT / "roles").iterdir()) if role.is_dir()
                for p in role_docs.role_problems(role)]
    assert problems == []


def test_readme_tables_are_fresh():
    text = (ROOT / "README.md").read_text()
    start, end = text.index(role_docs.BEGIN), text.index(role_docs.END) + len(role_docs.END)
    assert text[start:end] == role_docs.render(), "run `make docs`"


def test_problems_are_reported(tmp_path):
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  preflight:\n    options:\n"
        "      demo_port: {type: int, description: A port.}\n"
        "      other_name: {type: str}\n"
        "  main:\n    options: {}\n")
    (role / "defaults" / "main.yml").write_text("demo_port: 1\ndemo_undocumented: 2\n")
    problems = role_docs.role_problems(role)
    assert "demo: meta/argument_specs.yml has a 'main' entry point; the input is 'preflight''s" in problems
    assert "demo: default demo_undocumented is not described in meta/argument_specs.yml" in problems
    assert "demo: variable other_name lacks the role prefix 'demo_'" in problems
    assert "demo: other_name has no description" in problems
    assert "demo: other_name is optional but has no default in defaults/main.yml" in problems


def test_a_role_without_a_preflight_entry_point_is_reported(tmp_path):
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text("argument_specs:\n  main:\n    options: {}\n")
    assert role_docs.role_problems(role) == ["demo: meta/argument_specs.yml has no 'preflight' entry point"]
