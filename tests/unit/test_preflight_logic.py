"""The roles' preflight helpers: rpa_checks (action plugin) and rpa_preflight_facts' pure logic.

The calendar answers are systemd 257's (Debian 13), captured in the test
bed's server image with `systemd-analyze calendar`.
"""

from __future__ import annotations

import ast
import os
import pwd
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest
import yaml

from conftest import ROOT

from ansible_collections.rpa.engine.plugins.action import rpa_checks
from ansible_collections.rpa.engine.plugins.module_utils import rpa_preflight as rp

VALID = ("  Original form: *-*-* 03:15:00\nNormalized form: *-*-* 03:15:00\n"
         "    Next elapse: Tue 2026-12-01 03:15:00 UTC\n       From now: 19h left\n")
INVALID = "Failed to parse calendar specification 'every day at three': Invalid argument\n"


# ------------------------------------------------------------------ rpa_checks
def test_every_failed_check_is_reported_in_order_and_passed_ones_are_not():
    checks = [{"that": False, "msg": "a_var is bad."}, {"that": True, "msg": "b_var is fine."},
              {"that": False, "msg": "c_var   is\n  bad too."}]
    assert rpa_checks.failures(checks) == ["a_var is bad.", "c_var   is\n  bad too."]
    assert rpa_checks.failures([{"that": True, "msg": "x"}]) == []


@pytest.mark.parametrize("checks", [
    None, "a string", [{"that": "yes", "msg": "m"}], [{"that": 1, "msg": "m"}], [{"that": True}],
    [{"msg": "m"}], [{"that": True, "msg": "m", "extra": 1}], ["not a mapping"],
])
def test_a_malformed_check_is_a_bug_not_a_pass(checks):
    with pytest.raises(ValueError):
        rpa_checks.failures(checks)


REDIS = {"variable": "redis_password", "vault_key": "vault_redis_password", "min_length": 16}
PG = dict(REDIS, variable="postgres_app_password", vault_key="vault_postgres_app_password", printable=True)
MONITOR = dict(PG, optional="no exporter logs in")


@pytest.mark.parametrize(("entry", "value", "weak"), [
    (REDIS, "a" * 16, False), (REDIS, "a" * 15, True), (REDIS, "with spaces is fine here", False),
    (REDIS, "quote'in-it-0123456789", True), (REDIS, "CHANGE-ME-redis-password", True), (REDIS, None, True),
    (REDIS, "", True), (PG, "with spaces is not ok here", True), (PG, "Printable!#0123456789", False),
    (MONITOR, "", False), (MONITOR, "short", True),
])
def test_secret_strength_from_the_catalogue(entry, value, weak):
    problem = rpa_checks.weak_secret(entry, value)
    assert (problem is not None) is weak
    if problem:
        assert entry["variable"] in problem and entry["vault_key"] in problem
        assert not value or value not in problem


# --------------------------------------------------------- rpa_preflight_facts
def test_calendar_verdicts_from_systemd_257():
    assert rp.calendar_verdict(0, VALID, "") == {"valid": True, "normalized": "*-*-* 03:15:00", "error": ""}
    verdict = rp.calendar_verdict(1, "", INVALID)
    assert verdict["valid"] is False
    assert verdict["error"] == "Failed to parse calendar specification 'every day at three': Invalid argument"
    assert rp.calendar_verdict(1, "", "")["error"] == "rejected (exit code 1)"


def test_the_nearest_existing_ancestor_decides(tmp_path):
    (tmp_path / "file").write_text("x")
    assert rp.nearest_existing(str(tmp_path / "a" / "b")) == str(tmp_path)
    assert rp.nearest_existing(str(tmp_path / "file" / "sub")) == str(tmp_path / "file")
    assert rp.nearest_existing("/") == "/"


def test_dir_verdicts(tmp_path):
    (tmp_path / "file").write_text("x")
    assert rp.dir_verdict(str(tmp_path / "new" / "dir"))["problem"] == ""
    assert rp.dir_verdict(str(tmp_path / "file" / "dir"))["problem"] == "not a directory"
    read_only = SimpleNamespace(f_flag=os.ST_RDONLY)
    verdict = rp.dir_verdict(str(tmp_path / "x"), statvfs=lambda _: read_only)
    assert (verdict["read_only"], verdict["problem"]) == (True, "on a read-only file system")
    verdict = rp.dir_verdict(str(tmp_path / "x"), access=lambda *_: False)
    assert verdict["problem"] == "not writable"


def test_user_verdicts(tmp_path):
    entry = SimpleNamespace(pw_dir=str(tmp_path), pw_uid=1234)
    (tmp_path / "keys").write_text("ssh-ed25519 AAAA test\n")
    verdict = rp.user_verdict(entry, os.stat(tmp_path / "keys"))
    assert verdict == {"exists": True, "home": str(tmp_path), "uid": 1234,
                       "authorized_keys": str(tmp_path / ".ssh" / "authorized_keys"), "authorized_keys_size": 22}
    assert rp.user_verdict(entry, None)["authorized_keys_size"] == -1
    assert rp.user_verdict(entry, os.stat(tmp_path))["authorized_keys_size"] == -1  # a directory is no key file
    assert rp.user_verdict(None, None)["exists"] is False
    assert rp.user_verdict(pwd.getpwuid(0), None)["home"] == pwd.getpwuid(0).pw_dir


# ------------------------------------------------------------------ SSH algorithms
# `ssh -Q kex` as printed by Debian 13's OpenSSH 10.0 (the test bed's server) and Debian 12's 9.2.
FIXTURES = Path(__file__).parent / "fixtures"
KEX_10 = (FIXTURES / "ssh_Q_kex_openssh_10.0.txt").read_text()
KEX_9 = (FIXTURES / "ssh_Q_kex_openssh_9.2.txt").read_text()


def test_ssh_query_lists_every_name_and_nothing_when_it_failed():
    names = rp.ssh_algorithms(0, KEX_10)
    assert len(names) == 15 and names[0] == "diffie-hellman-group1-sha1" and names[-1] == "mlkem768x25519-sha256"
    assert rp.ssh_algorithms(255, "ssh: unknown query\n") == []


def sshd_choice(kind: str, chosen: list, known: list) -> list:
    """The role's choice (vars/main.yml) rendered with Jinja, as Ansible would."""
    role_vars = yaml.safe_load((ROOT / "roles" / "common" / "vars" / "main.yml").read_text())
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    context = {"__common_ssh_modern": role_vars["__common_ssh_modern"],
               "__common_ssh_known": {"kex": known, "cipher": known, "mac": known},
               "common_ssh_kex_algorithms": chosen, "common_ssh_ciphers": chosen, "common_ssh_macs": chosen}
    return ast.literal_eval(env.from_string(role_vars["__common_ssh_algorithms"][kind]).render(context))


def test_the_default_key_exchanges_are_the_post_quantum_ones_this_openssh_knows():
    assert sshd_choice("kex", [], rp.ssh_algorithms(0, KEX_10)) == [
        "mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"]
    # OpenSSH 9.2 has no ML-KEM: left out, not written into a config sshd -t would refuse.
    assert sshd_choice("kex", [], rp.ssh_algorithms(0, KEX_9)) == [
        "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"]
    # An OpenSSH without any (before 8.5): nothing left, which the preflight refuses by name.
    assert sshd_choice("kex", [], ["curve25519-sha256"]) == []
    # An operator's own list is taken as it is (the preflight checks each name against ssh -Q).
    assert sshd_choice("kex", ["curve25519-sha256"], rp.ssh_algorithms(0, KEX_10)) == ["curve25519-sha256"]


def test_the_default_ciphers_and_macs_are_aead_and_encrypt_then_mac():
    modern = yaml.safe_load((ROOT / "roles" / "common" / "vars" / "main.yml").read_text())["__common_ssh_modern"]
    assert all(c.startswith("chacha20-poly1305") or "-gcm@" in c for c in modern["cipher"])
    assert all(m.endswith("-etm@openssh.com") and "sha1" not in m and "umac-64" not in m for m in modern["mac"])
