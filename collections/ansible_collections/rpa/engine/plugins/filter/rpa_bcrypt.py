"""bcrypt hashes for Caddy's basicauth, hashed with passlib.

A fresh hash has a fresh random salt, so hashing on every run would rewrite
the Caddyfile (and reload Caddy) every run. Like rpa_scram_sha256, the filter
is given the hash already in place and keeps it while it still matches the
password; only a changed password draws a new salt.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

try:
    from passlib.hash import bcrypt
except ImportError as exc:  # reported when the filter is used, not when Ansible loads it
    bcrypt = None
    PASSLIB_IMPORT_ERROR: ImportError | None = exc
else:
    PASSLIB_IMPORT_ERROR = None

ROUNDS = 12
_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


def _passlib():
    if bcrypt is None:
        raise AnsibleFilterError("rpa_bcrypt needs the Python library passlib on the controller, in the Python that runs "
                                 "ansible-playbook (requirements.txt pins it: pip install -r requirements.txt)"
                                 ) from PASSLIB_IMPORT_ERROR
    return bcrypt


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
    return _passlib().verify(_check(password), existing)


def rpa_bcrypt(password: str, existing: str | None = None) -> str:
    """The bcrypt hash of password: existing when it still matches, else a new one."""
    _check(password)
    if matches(password, existing):
        return existing
    return _passlib().using(rounds=ROUNDS, ident="2b").hash(password)


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_bcrypt": rpa_bcrypt}
