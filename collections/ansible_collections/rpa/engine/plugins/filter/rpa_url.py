"""Percent-encoding for credentials placed inside a URL (user:password@host).

Jinja's urlencode leaves '/' alone, which would end the authority part of
postgresql://user:pa/ss@host early; here nothing is safe.
"""

from __future__ import annotations

from urllib.parse import quote


def rpa_urlquote(value) -> str:
    return quote(str(value), safe="")


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_urlquote": rpa_urlquote}
