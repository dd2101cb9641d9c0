"""The project's identity as an inventory sets it: rpa_project_name and rpa_project_dir (group_vars).

The roles read these variables through Ansible; the tools and tests outside
Ansible read them here, so the name is written once - in the inventory.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def identity(inventory: Path = ROOT / "inventory" / "demo") -> tuple[str, str]:
    """(rpa_project_name, rpa_project_dir) of the inventory directory given."""
    data = yaml.safe_load((Path(inventory) / "group_vars" / "all" / "vars.yml").read_text())
    name = data["rpa_project_name"]
    return name, str(data["rpa_project_dir"]).replace("{{ rpa_project_name }}", name)


def container(service: str, name: str) -> str:
    """The container Compose runs for service (the filter rpa.engine.rpa_container derives it the same way)."""
    return f"{name}-{service}-1"


def compose_command(name: str, directory: str) -> str:
    """The project's own `docker compose` command, as the deployer runs it (SYSTEM.md)."""
    return (f"docker compose --project-name {name} --project-directory {directory} "
            f"-f {directory}/docker-compose.yml --env-file {directory}/.env")
