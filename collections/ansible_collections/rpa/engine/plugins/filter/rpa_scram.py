"""SCRAM-SHA-256 verifiers in PostgreSQL's format, for Postgres and PgBouncer alike.

PgBouncer can log in to Postgres with a SCRAM secret from its userlist only
when that secret is *identical* to the role's verifier in Postgres (same
salt and iterations), so the postgres role computes one verifier and gives
the same string to both: ``ALTER ROLE ... PASSWORD '<verifier>'`` and
userlist.txt.  To stay idempotent, an existing verifier is kept when it
still matches the password: a new random salt is drawn only when the
password changed.

Format (RFC 5803, as PostgreSQL stores it):
``SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>``
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from ansible.errors import AnsibleFilterError

ITERATIONS = 4096  # PostgreSQL's scram_iterations default
_VERIFIER = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _normalize(password: str) -> bytes:
    # PostgreSQL applies SASLprep, which leaves printable ASCII (space
    # included) unchanged. Other passwords are refused rather than guessed.
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("rpa_scram_sha256: the password must be a non-empty string")
    if not all(32 <= ord(c) < 127 for c in password):
        raise AnsibleFilterError("rpa_scram_sha256: only printable ASCII passwords are supported")
    return password.encode("ascii")


def compute(password: str, salt: bytes, iterations: int = ITERATIONS) -> str:
    salted = hashlib.pbkdf2_hmac("sha256", _normalize(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def parse(verifier: str):
    """(iterations, salt) of a verifier, or None when it is not one."""
    match = _VERIFIER.match(verifier or "")
    if not match:
        return None
    return int(match.group(1)), base64.b64decode(match.group(2))


def matches(password: str, verifier: str) -> bool:
    """True when verifier was made from password (constant-time comparison)."""
    parsed = parse(verifier)
    if parsed is None:
        return False
    iterations, salt = parsed
    return hmac.compare_digest(compute(password, salt, iterations), verifier)


def rpa_scram_sha256(password: str, existing: str | None = None) -> str:
    """The verifier for password: existing when it still matches, else a fresh one."""
    if existing and matches(password, existing):
        return existing
    return compute(password, os.urandom(16))


def rpa_scram_matches(verifier: str, password: str) -> bool:
    return matches(password, verifier)


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_scram_sha256": rpa_scram_sha256, "rpa_scram_matches": rpa_scram_matches}
