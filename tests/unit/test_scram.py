"""SCRAM verifiers: ours must equal what PostgreSQL itself stores."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rpa.engine.plugins.filter import rpa_scram

# Captured from PostgreSQL 17 (testbed image):
#   SET password_encryption='scram-sha-256';
#   CREATE ROLE probe LOGIN PASSWORD 'correct horse battery staple';
#   SELECT rolpassword FROM pg_authid WHERE rolname='probe';
PG_VERIFIER = ("SCRAM-SHA-256$4096:0CCMrnDar4AVMEv9hXb9bA==$A75WPfQ1vy4wS/oOzAJmLDPFKZueD3xDYSnAmGQqA40="  # secret-scan: allow (test vector of a published password)
               ":PYmpcfynqZfGy36KjsMl7ywyCLjkfMoyW2suT18KZCE=")
PG_PASSWORD = "correct horse battery staple"


def test_recomputes_postgres_own_verifier_exactly():
    iterations, salt = rpa_scram.parse(PG_VERIFIER)
    assert (iterations, len(salt)) == (4096, 16)
    assert rpa_scram.compute(PG_PASSWORD, salt, iterations) == PG_VERIFIER
    assert rpa_scram.matches(PG_PASSWORD, PG_VERIFIER)
    assert not rpa_scram.matches(PG_PASSWORD + "x", PG_VERIFIER)


def test_matches_accepts_right_and_refuses_wrong_password():
    verifier = rpa_scram.rpa_scram_sha256("Fake-Pass-0123456789abcdef")
    assert rpa_scram.matches("Fake-Pass-0123456789abcdef", verifier)
    assert not rpa_scram.matches("Fake-Pass-0123456789abcdeF", verifier)
    assert not rpa_scram.matches("anything", "md5abc")
    assert not rpa_scram.matches("anything", "")


def test_same_salt_gives_postgres_format():
    v = rpa_scram.compute("Fake-Pass-0123456789", b"\x00" * 16)
    assert v.startswith("SCRAM-SHA-256$4096:AAAAAAAAAAAAAAAAAAAAAA==$")
    assert rpa_scram.parse(v) == (4096, b"\x00" * 16)


def test_existing_verifier_is_kept_while_the_password_matches():
    first = rpa_scram.rpa_scram_sha256("Fake-Pass-0123456789abcdef")
    assert rpa_scram.rpa_scram_sha256("Fake-Pass-0123456789abcdef", first) == first
    rotated = rpa_scram.rpa_scram_sha256("New-Fake-Pass-0123456789", first)
    assert rotated != first and rpa_scram.matches("New-Fake-Pass-0123456789", rotated)


def test_fresh_verifiers_use_fresh_salts():
    assert rpa_scram.rpa_scram_sha256("Fake-Pass-0123456789") != rpa_scram.rpa_scram_sha256("Fake-Pass-0123456789")


@pytest.mark.parametrize("bad", ["", "tab\there", "pässwörd", None, 12345])
def test_unsupported_passwords_are_refused(bad):
    with pytest.raises(AnsibleFilterError):
        rpa_scram.rpa_scram_sha256(bad)
