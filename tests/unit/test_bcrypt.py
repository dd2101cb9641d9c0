"""bcrypt hashes for Caddy's basicauth: passlib's must be what Caddy itself makes and reads."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rpa.engine.plugins.filter import rpa_bcrypt

# Captured from Caddy 2.6.2 (Debian 13, the test bed's server):
#   caddy hash-password --plaintext 'correct horse battery staple'
CADDY_HASH = "$2a$14$LGrPySI93O6sifE8MHqMHeti9jvWtm2PQvyq5cZl.Ym6FbRVU7zpS"  # secret-scan: allow (hash of a published test password)
CADDY_PASSWORD = "correct horse battery staple"


def test_verifies_the_hash_caddy_made():
    assert rpa_bcrypt.matches(CADDY_PASSWORD, CADDY_HASH)
    assert not rpa_bcrypt.matches(CADDY_PASSWORD + "!", CADDY_HASH)


def test_keeps_a_hash_that_still_matches():
    assert rpa_bcrypt.rpa_bcrypt(CADDY_PASSWORD, CADDY_HASH) == CADDY_HASH


def test_changed_password_gets_a_new_salted_hash():
    first = rpa_bcrypt.rpa_bcrypt("Fake-Grafana-Route-Pass-1", CADDY_HASH)
    assert first != CADDY_HASH
    assert first.startswith("$2b$12$")
    assert rpa_bcrypt.matches("Fake-Grafana-Route-Pass-1", first)
    # A fresh salt each time a new hash is needed.
    assert rpa_bcrypt.rpa_bcrypt("Fake-Grafana-Route-Pass-1") != first


@pytest.mark.parametrize("existing", ["", None, "not-a-hash", "$2b$12$short"])
def test_anything_but_a_bcrypt_hash_is_replaced(existing):
    assert rpa_bcrypt.matches("Fake-Grafana-Route-Pass-1", rpa_bcrypt.rpa_bcrypt("Fake-Grafana-Route-Pass-1", existing))


@pytest.mark.parametrize("password", ["", None, "x" * 73])
def test_refuses_what_bcrypt_cannot_hash_faithfully(password):
    with pytest.raises(AnsibleFilterError, match="rpa_bcrypt"):
        rpa_bcrypt.rpa_bcrypt(password)


def test_without_passlib_the_filter_names_the_missing_library(monkeypatch):
    # The plugin still loads without passlib (ansible-test's import test); using it says what is missing.
    monkeypatch.setattr(rpa_bcrypt, "bcrypt", None)
    with pytest.raises(AnsibleFilterError, match="passlib"):
        rpa_bcrypt.rpa_bcrypt("Fake-Grafana-Route-Pass-1")
    with pytest.raises(AnsibleFilterError, match="passlib"):
        rpa_bcrypt.rpa_bcrypt(CADDY_PASSWORD, CADDY_HASH)
