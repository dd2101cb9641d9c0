"""filter_plugins/rpa_jwt.py against PyJWT, the library the reference backend verifies tokens with."""

from __future__ import annotations

import jwt
import pytest

from ansible_collections.rpa.engine.plugins.filter import rpa_jwt

KEY = "Fake-Signing-Key-0123456789abcdefghij"  # secret-scan: allow (a made-up key)


def test_a_token_the_backend_library_accepts_with_the_key_and_refuses_without():
    token = rpa_jwt.rpa_jwt_token(KEY, sub="rpa-verify", minutes=5)
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims["sub"] == "rpa-verify" and claims["exp"] - claims["iat"] == 300
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, KEY + "x", algorithms=["HS256"])


def test_an_expired_token_is_refused():
    token = rpa_jwt.rpa_jwt_token(KEY, minutes=5, now=1000)
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(token, KEY, algorithms=["HS256"])
