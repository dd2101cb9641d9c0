"""Helpers of the secret rotation: values by policy, vault text edits, grace windows.

The action plugin rpa_vault_secret (controller side) and tools/demo_vault.py
do the encryption; everything that can be wrong in a subtle way lives here,
where pytest covers it - including the one atomic file write both use.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import tempfile
from pathlib import Path

ALPHABETS = {
    # Safe in a URL, a shell word, YAML and a .env file without quoting rules.
    "alnum": string.ascii_letters + string.digits,
    "hex": "0123456789abcdef",
    "urlsafe": string.ascii_letters + string.digits + "-_",
}
_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):(.*)$")
_BLOCK = re.compile(r"^\s*[|>][-+0-9]*\s*(#.*)?$")


def generate(length: int = 32, alphabet: str = "alnum") -> str:
    """A random value from the CSPRNG; at least one letter and one digit for alnum."""
    if alphabet not in ALPHABETS:
        raise ValueError(f"unknown alphabet {alphabet!r}; one of {', '.join(sorted(ALPHABETS))}")
    if not 16 <= int(length) <= 256:
        raise ValueError(f"length {length} is outside 16..256")
    chars = ALPHABETS[alphabet]
    while True:
        value = "".join(secrets.choice(chars) for _ in range(int(length)))
        if alphabet != "alnum" or (any(c.isalpha() for c in value) and any(c.isdigit() for c in value)):
            return value


def check_supplied(value, length_min: int = 16) -> str:
    """A value given by the operator instead of a generated one: refuse what would break a consumer."""
    if not isinstance(value, str) or len(value) < length_min:
        raise ValueError(f"a supplied value must be a string of at least {length_min} characters")
    if any(c.isspace() for c in value) or any(c in value for c in "'\"\\$#"):
        raise ValueError("a supplied value must not contain whitespace, quotes, backslashes, '$' or '#'")
    return value


def vault_id_of(envelope: str) -> str | None:
    """The vault id in an encrypted file's header ($ANSIBLE_VAULT;1.2;AES256;<id>), None for 1.1."""
    first = envelope.lstrip().split("\n", 1)[0].strip()
    parts = first.split(";")
    if len(parts) < 3 or parts[0] != "$ANSIBLE_VAULT":
        raise ValueError("not an ansible-vault encrypted file")
    return parts[3] if len(parts) >= 4 and parts[3] else None


def set_values(text: str, values: dict[str, str]) -> str:
    """text with each top-level key of values set, as a one-line double-quoted scalar.

    Lines of other keys, comments and order are kept. An existing key whose
    value spans several lines (a block scalar) is refused rather than half
    replaced.
    """
    lines = text.splitlines()
    pending = dict(values)
    out = []
    for line in lines:
        match = _KEY.match(line)
        if match and match.group(1) in pending:
            key = match.group(1)
            if _BLOCK.match(match.group(2)):
                raise ValueError(f"{key} is a multi-line value in the vault; make it one line first")
            out.append(f"{key}: {json.dumps(pending.pop(key))}")
        else:
            out.append(line)
    out.extend(f"{key}: {json.dumps(value)}" for key, value in pending.items())
    return "\n".join(out) + "\n"


def in_grace(meta: dict | None, name: str, now: float) -> bool:
    """True while the previous value of name is still accepted (rotation metadata)."""
    until = ((meta or {}).get(name) or {}).get("previous_until")
    return until is not None and float(until) > now


def due(meta: dict | None, name: str, max_age_days: float, now: float) -> bool:
    """True when name was never rotated or last rotated more than max_age_days ago."""
    rotated = ((meta or {}).get(name) or {}).get("rotated_at")
    return rotated is None or now - float(rotated) > max_age_days * 86400


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace path with data: mode set before the first byte, fsync, rename; no partial file left."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
