"""The one place that derives a container's name from the project and a service.

Compose names a service's (first) container <project>-<service>-1. Roles,
playbooks and tools address services through this filter (or through
Compose itself), never by a written-out container name, so the project's
name (rpa_project_name, group_vars) is set once.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def rpa_container(service: str, project: str) -> str:
    """The container Compose runs for service in project: rpa_container('redis', 'rpa-engine') -> rpa-engine-redis-1."""
    for what, value in (("service", service), ("project", project)):
        if not isinstance(value, str) or not _NAME.match(value):
            raise AnsibleFilterError(f"rpa_container: {what} {value!r} is not a Compose name (lower case, digits, - and _)")
    return f"{project}-{service}-1"


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_container": rpa_container}
