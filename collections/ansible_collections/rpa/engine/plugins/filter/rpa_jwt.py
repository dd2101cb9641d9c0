"""A short-lived HS256 token signed on the controller, for the app role's verify entry point.

Signing with a key proves what matters in a rotation - does the backend take
tokens signed with this key (the new one, or the previous one within its
window)? - without asking the backend to mint one first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from ansible.errors import AnsibleFilterError


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def rpa_jwt_token(key: str, sub: str = "rpa-verify", minutes: int = 5, now: float | None = None) -> str:
    """An HS256 JWT ({sub, iat, exp}) signed with key, valid for minutes."""
    if not isinstance(key, str) or not key:
        raise AnsibleFilterError("rpa_jwt_token needs the signing key")
    issued = int(time.time() if now is None else now)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64(json.dumps({"sub": sub, "iat": issued, "exp": issued + int(minutes) * 60},
                             separators=(",", ":")).encode())
    signature = hmac.new(key.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


class FilterModule:
    """Ansible entry point."""

    def filters(self):
        return {"rpa_jwt_token": rpa_jwt_token}
