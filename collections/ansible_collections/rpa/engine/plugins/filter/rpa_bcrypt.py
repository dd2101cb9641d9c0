"""bcrypt hashes for Caddy's basicauth, hashed with passlib.

A fresh hash has a fresh random salt, so hashing on every run would rewrite
the Caddyfile (and reload Caddy) every run. Like rpa_scram_sha256, the filter
is given the hash already in place and keeps it while it still matches the
password; only a changed password draws a new salt.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from passlib.hash import bcrypt

ROUNDS = 12
_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


def _check(password) -> str:
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("rpa_bcrypt: the password must be a non-empty string")
    # bcrypt reads only the first 72 bytes: a longer password would be
    # accepted by its prefix alone.
    if len(password.encode("utf-8")) > 72:
        raise AnsibleFilterError("rpa_bcrypt: bcrypt uses only the first 72 bytes; use a shorter password")
    return password


def matches(password: str, existing: str | None) -> bool:
    if not existing or not _HASH.match(existing):
        return False
    return bcrypt.verify(_check(password), existing)


def rpa_bcrypt(password: str, existing: str | None = None) -> str:
    """The bcrypt hash of password: existing when it still matches, else a new one."""
    _check(password)
    if matches(password, existing):
        return existing
    return bcrypt.using(rounds=ROUNDS, ident="2b").hash(password)


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_bcrypt": rpa_bcrypt}
