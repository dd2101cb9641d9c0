"""The rotation's pure helpers (module_utils/rpa_vault.py) and its grace-window filters."""

from __future__ import annotations

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.rpa.engine.plugins.filter import rpa_rotation
from ansible_collections.rpa.engine.plugins.module_utils import rpa_vault

VAULT_TEXT = """\
# Production secrets (fake values).
vault_postgres_app_password: "CHANGE-ME-postgres-app-password"
vault_jwt_secret: "CHANGE-ME-jwt-signing-key-at-least-32-characters"
# Optional: vault_ai_api_key
vault_redis_password: 'CHANGE-ME-redis-password'
"""


def test_generate_follows_the_policy():
    value = rpa_vault.generate(48)
    assert len(value) == 48 and value.isalnum()
    assert any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
    assert set(rpa_vault.generate(32, "hex")) <= set("0123456789abcdef")
    assert rpa_vault.generate(32) != rpa_vault.generate(32)


@pytest.mark.parametrize(("length", "alphabet"), [(8, "alnum"), (300, "alnum"), (32, "emoji")])
def test_generate_refuses_a_bad_policy(length, alphabet):
    with pytest.raises(ValueError):
        rpa_vault.generate(length, alphabet)


@pytest.mark.parametrize("value", ["short", "has space in-it-0123456789", "quote'd-0123456789abc", "dollar$-0123456789abc", None])
def test_a_supplied_value_that_would_break_a_consumer_is_refused(value):
    with pytest.raises(ValueError):
        rpa_vault.check_supplied(value)


def test_set_values_replaces_in_place_and_keeps_the_rest():
    out = rpa_vault.set_values(VAULT_TEXT, {"vault_jwt_secret": "Fake-New-Key-0123456789abcdefghij",
                                            "vault_jwt_secret_previous": "Fake-Old-Key-0123456789"})
    lines = out.splitlines()
    assert lines[0] == "# Production secrets (fake values)."
    assert lines[2] == 'vault_jwt_secret: "Fake-New-Key-0123456789abcdefghij"'
    assert lines[3] == "# Optional: vault_ai_api_key"
    assert lines[-1] == 'vault_jwt_secret_previous: "Fake-Old-Key-0123456789"'
    parsed = yaml.safe_load(out)
    assert parsed["vault_redis_password"] == "CHANGE-ME-redis-password"
    assert parsed["vault_jwt_secret"] == "Fake-New-Key-0123456789abcdefghij"


def test_set_values_refuses_to_half_replace_a_block_scalar():
    with pytest.raises(ValueError, match="vault_app_build_deploy_key"):
        rpa_vault.set_values("vault_app_build_deploy_key: |\n  line1\n  line2\n",
                             {"vault_app_build_deploy_key": "x"})


def test_vault_id_is_read_from_a_real_envelope():
    lib = VaultLib([("prod", VaultSecret(b"fake-vault-password"))])
    envelope = lib.encrypt(VAULT_TEXT.encode(), vault_id="prod").decode()
    assert rpa_vault.vault_id_of(envelope) == "prod"
    plain = VaultLib([("default", VaultSecret(b"fake-vault-password"))]).encrypt(b"a: 1\n").decode()
    assert plain.startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert rpa_vault.vault_id_of(plain) is None
    with pytest.raises(ValueError):
        rpa_vault.vault_id_of(VAULT_TEXT)


def test_grace_window_and_max_age():
    meta = {"vault_jwt_secret": {"rotated_at": 1000, "previous_until": 2800}}
    assert rpa_vault.in_grace(meta, "vault_jwt_secret", 2799)
    assert not rpa_vault.in_grace(meta, "vault_jwt_secret", 2800)
    assert not rpa_vault.in_grace(meta, "vault_deploy_token", 0)
    assert not rpa_vault.in_grace(None, "vault_jwt_secret", 0)
    assert rpa_vault.due(meta, "vault_jwt_secret", 1, 1000 + 86401)
    assert not rpa_vault.due(meta, "vault_jwt_secret", 1, 1000 + 86399)
    assert rpa_vault.due(meta, "vault_deploy_token", 90, 0)  # never rotated


def test_previous_secret_filter_passes_it_on_only_within_the_window(monkeypatch):
    meta = {"vault_jwt_secret": {"rotated_at": 1000, "previous_until": 2800}}
    monkeypatch.setattr(rpa_rotation.time, "time", lambda: 2000)
    assert rpa_rotation.rpa_previous_secret("Fake-Old-Key", meta, "vault_jwt_secret") == "Fake-Old-Key"
    assert rpa_rotation.rpa_previous_secret("", meta, "vault_jwt_secret") == ""
    monkeypatch.setattr(rpa_rotation.time, "time", lambda: 3000)
    assert rpa_rotation.rpa_previous_secret("Fake-Old-Key", meta, "vault_jwt_secret") == ""
    assert rpa_rotation.rpa_rotation_due(["vault_jwt_secret", "vault_deploy_token"], meta, 0.01) == \
        ["vault_jwt_secret", "vault_deploy_token"]
