"""The Jinja tests behind the roles' preflight checks."""

from __future__ import annotations

import pytest

from ansible_collections.rpa.engine.plugins.test import rpa_validators as v


@pytest.mark.parametrize(("value", "ok"), [
    ("UTC", True), ("Europe/Berlin", True), ("America/Argentina/Buenos_Aires", True),
    ("Etc/GMT+5", True), ("Mars/Olympus_Mons", False), ("", False), ("europe/berlin", False),
    ("/etc/passwd", False), ("../../etc/passwd", False), ("Europe", False), (None, False), (5, False),
])
def test_timezone(value, ok):
    assert v.rpa_timezone(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("500M", True), ("1G", True), ("1048576", True), ("1.5G", True),
    ("500 M", False), ("500MB", False), ("lots", False), ("", False), (500, False),
])
def test_systemd_size(value, ok):
    assert v.rpa_systemd_size(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("1month", True), ("2weeks", True), ("12h 30min", True), ("30d", True),
    ("forever", False), ("", False), ("1 fortnight", False), (30, False),
])
def test_systemd_timespan(value, ok):
    assert v.rpa_systemd_timespan(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("04:00", True), ("23:59", True), ("00:00", True),
    ("24:00", False), ("25:00", False), ("4:00", False), ("04:60", False), ("", False),
])
def test_clock_time(value, ok):
    assert v.rpa_clock_time(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("10m", True), ("512k", True), ("1g", True),
    ("10M", False), ("10 MB", False), ("10", False), ("m", False), (10, False),
])
def test_docker_size(value, ok):
    assert v.rpa_docker_size(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("1s", True), ("20s", True), ("300s", True),
    ("0s", False), ("301s", False), ("5", False), (5, False), (True, False), (None, False), ("5m", False),
    ("05s", False), (" 5s", False), ("5s ", False), ("5s\n", False), ("1000s", False),
])
def test_health_interval(value, ok):
    assert v.rpa_health_interval(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("root", True), ("deploy", True), ("_apt", True), ("ops-1", True),
    ("Root", False), ("1user", False), ("user name", False), ("", False), ("a" * 33, False),
])
def test_unix_name(value, ok):
    assert v.rpa_unix_name(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("2.20", True), ("2.20.3", True), ("2", False), ("v2.20", False), ("2.20.3.1", False), (2.2, False),
])
def test_version(value, ok):
    assert v.rpa_version(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    (22, True), (1, True), (65535, True), (0, False), (65536, False), (-1, False),
    ("22", False), (True, False), (None, False),
])
def test_port(value, ok):
    assert v.rpa_port(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("redis:8.0.2-bookworm", True), ("rpa-testbed/refapp:latest", True), ("mher/flower:2.0.1", True),
    ("registry.example.com/rpa-engine/backend:1.0.0", True), ("localhost:5000/app", True),
    ("ghcr.io/example/app@sha256:" + "a" * 64, True), ("quay.io/prometheuscommunity/postgres-exporter:v0.17.1", True),
    ("Registry.Example.com/RPA:latest:1", False), ("ghcr.io/Example/app", False), ("redis:", False),
    ("redis::1", False), ("a b", False), ("/redis", False), ("redis@sha256:abc", False), ("", False), (None, False),
])
def test_image_ref(value, ok):
    assert v.rpa_image_ref(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("https://github.com/example/rpa-engine.git", True), ("ssh://git@203.0.113.10:2222/rpa.git", True),
    ("git@github.com:example/rpa-engine.git", True), ("/srv/refapp.git", True), ("file:///srv/refapp.git", True),
    ("", False), ("ftp://example.com/x.git", False), ("http://example.com/x.git", False),
    ("relative/path", False), ("https://x\n", False), (None, False),
])
def test_git_url(value, ok):
    assert v.rpa_git_url(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    (["CMD", "true"], True), (["python3"], True), ([], False), ("CMD true", False), (["CMD", 1], False), (None, False),
])
def test_string_list(value, ok):
    assert v.rpa_string_list(value) is ok


def test_every_validator_is_registered():
    tests = v.TestModule().tests()
    assert set(tests) == {name for name in dir(v) if name.startswith("rpa_")}


@pytest.mark.parametrize(("value", "min_length", "ok"), [
    ("a" * 16, 16, True), ("a" * 15, 16, False), ("x" * 31, 32, False), ("x y" * 8, 16, True),
    ("it's-a-long-enough-secret", 16, False), ("line\nbreak-long-enough-secret", 16, False),
    ("CHANGE-ME-0123456789abcdef", 16, False), (1234567890123456789, 16, False), (None, 16, False),
])
def test_secret(value, min_length, ok):
    assert v.rpa_secret(value, min_length) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("Aa1!" * 4, True), ("with space in it ok?", False), ("ünïcödé-password-long", False), ("short", False),
    ("CHANGE-ME-0123456789", False), ("quote'inside-the-password", False),
])
def test_db_password(value, ok):
    assert v.rpa_db_password(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    (16, True), (256, True), (4194304, True),
    (15, False), (0, False), (-1, False), ("256", False), (True, False), (256.0, False), (None, False),
])
def test_pids_limit(value, ok):
    assert v.rpa_pids_limit(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    (0.5, True), (1, True), ("1.5", True), (0.01, True), (64, True),
    (0, False), (0.001, False), (65, False), ("half", False), ("", False), (True, False), (None, False), ([1], False),
])
def test_cpu_limit(value, ok):
    assert v.rpa_cpu_limit(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("NET_BIND_SERVICE", True), ("CAP_NET_RAW", True), ("CHOWN", True), ("SYS_ADMIN", True),
    ("net_bind_service", False), ("NET_BIND", False), ("ALL", False), ("", False), (None, False), (["CHOWN"], False),
])
def test_capability(value, ok):
    assert v.rpa_capability(value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("203.0.113.0/24", True), ("203.0.113.10", True), ("203.0.113.10/32", True), ("2001:db8::/32", True),
    ("0.0.0.0/0", True),
    ("203.0.113.10/24", False), ("203.0.113.0/33", False), ("203.0.113", False), ("rpa.example.com", False),
    (" 203.0.113.0/24", False), ("", False), (None, False), (24, False),
])
def test_cidr(value, ok):
    assert v.rpa_cidr(value) is ok
