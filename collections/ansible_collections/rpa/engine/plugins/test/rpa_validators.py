"""Jinja tests the roles' preflight tasks use to check input.

A preflight writes ``that: common_timezone is rpa_timezone`` or lists the
offenders with ``reject('rpa_port')``; the unit tests import the plain
functions.  Each returns a bool and never raises on odd input: a preflight
must turn bad input into a clear message, not a traceback.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo

_SYSTEMD_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGTPE]?$")
# journald's time spans: one or more "<number><unit>" groups ("1month", "2w 3d").
_TIMESPAN_UNIT = (r"(us|usec|ms|msec|s|sec|second|seconds|m|min|minute|minutes|h|hr|hour|hours|"
                  r"d|day|days|w|week|weeks|M|month|months|y|year|years)")
_SYSTEMD_TIMESPAN = re.compile(rf"^([0-9]+\s*{_TIMESPAN_UNIT}\s*)+$")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_DOCKER_SIZE = re.compile(r"^[0-9]+[kmg]$")
# Docker also takes "1m30s" or "500ms"; the roles want whole seconds so the preflight message stays simple.
_HEALTH_INTERVAL = re.compile(r"[1-9][0-9]{0,2}s")
_UNIX_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){1,2}$")
# Docker's reference grammar (distribution/reference): [domain[:port]/]name[:tag][@digest].
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_NAME_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(
    rf"^(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_NAME_PART}(?:/{_NAME_PART})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")
# What git clone accepts that we are willing to take: https, ssh, scp-like, or a path on the host.
_GIT_URL = re.compile(r"^(https://[^\s]+|ssh://[^\s]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+|file:///[^\s]*|/[^\s]*)$")


def rpa_timezone(value) -> bool:
    """True for a name in the IANA database (``Europe/Berlin``, ``UTC``)."""
    if not isinstance(value, str) or not value or value.startswith("/") or ".." in value:
        return False
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        return False
    return True


def rpa_systemd_size(value) -> bool:
    """journald sizes: ``500M``, ``1G``, ``1048576``."""
    return isinstance(value, str) and bool(_SYSTEMD_SIZE.match(value))


def rpa_systemd_timespan(value) -> bool:
    """journald time spans: ``1month``, ``2weeks``, ``12h 30min``."""
    return isinstance(value, str) and bool(_SYSTEMD_TIMESPAN.match(value.strip()))


def rpa_clock_time(value) -> bool:
    """24-hour ``HH:MM``."""
    return isinstance(value, str) and bool(_CLOCK.match(value))


def rpa_docker_size(value) -> bool:
    """Docker log-opts sizes: ``10m``, ``512k``, ``1g``."""
    return isinstance(value, str) and bool(_DOCKER_SIZE.match(value))


def rpa_health_interval(value) -> bool:
    """A container health-check interval in whole seconds: ``1s`` to ``300s``."""
    return isinstance(value, str) and bool(_HEALTH_INTERVAL.fullmatch(value)) and int(value[:-1]) <= 300


def rpa_unix_name(value) -> bool:
    """A portable user or group name."""
    return isinstance(value, str) and bool(_UNIX_NAME.match(value))


def rpa_version(value) -> bool:
    """A dotted release number: ``2.20`` or ``2.20.3``."""
    return isinstance(value, str) and bool(_VERSION.match(value))


def rpa_port(value) -> bool:
    """An integer TCP/UDP port, 1-65535 (bools are not ports)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def rpa_image_ref(value) -> bool:
    """A Docker image reference: ``registry.example.com:5000/team/app:1.2@sha256:...``."""
    return isinstance(value, str) and len(value) <= 512 and bool(_IMAGE_REF.match(value))


def rpa_git_url(value) -> bool:
    """A git remote: https://, ssh://, ``git@host:path``, file:/// or an absolute path on the host."""
    return isinstance(value, str) and bool(_GIT_URL.match(value)) and "\n" not in value


def rpa_string_list(value) -> bool:
    """A non-empty list of strings (a command or a health check)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


_PRINTABLE_NO_SPACE = re.compile(r"^[\x21-\x7e]+$")


def rpa_secret(value, min_length=16) -> bool:
    """A secret that fits a Compose .env literally: a string of min_length+ characters, no single quote or
    newline, and not the examples' ``CHANGE-ME`` placeholder."""
    return (isinstance(value, str) and len(value) >= min_length and "'" not in value and "\n" not in value
            and "\r" not in value and "CHANGE-ME" not in value)


def rpa_db_password(value) -> bool:
    """A database password: a secret (16+) of printable ASCII without spaces, as libpq URLs and SCRAM take it."""
    return rpa_secret(value, 16) and bool(_PRINTABLE_NO_SPACE.match(value))


# Linux capabilities (capabilities(7), up to 6.x), as Docker's cap_add takes them (without "CAP_").
CAPABILITIES = frozenset("""
    AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN DAC_OVERRIDE
    DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE
    MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP SETGID SETPCAP SETUID
    SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM""".split())
# Below this a container cannot even run its health check beside its own threads.
MIN_PIDS = 16


def rpa_pids_limit(value) -> bool:
    """A container PIDs limit: a whole number from 16 (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and MIN_PIDS <= value <= 4194304


def rpa_cpu_limit(value) -> bool:
    """A container CPU limit (Compose ``cpus``): a number of CPUs from 0.01 to 64."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        number = float(value)
    except ValueError:
        return False
    return 0.01 <= number <= 64


def rpa_capability(value) -> bool:
    """A Linux capability name as Docker takes it (``NET_BIND_SERVICE``; ``CAP_`` prefix allowed)."""
    return isinstance(value, str) and value.upper().removeprefix("CAP_") in CAPABILITIES and value == value.upper()


def rpa_cidr(value) -> bool:
    """An IPv4 or IPv6 network (``203.0.113.0/24``, ``2001:db8::/32``) or a single address, host bits clear."""
    if not isinstance(value, str) or not value or value != value.strip():
        return False
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return False
    return True


class TestModule:
    """Ansible entry point."""

    def tests(self):
        return {
            "rpa_timezone": rpa_timezone,
            "rpa_systemd_size": rpa_systemd_size,
            "rpa_systemd_timespan": rpa_systemd_timespan,
            "rpa_clock_time": rpa_clock_time,
            "rpa_docker_size": rpa_docker_size,
            "rpa_health_interval": rpa_health_interval,
            "rpa_unix_name": rpa_unix_name,
            "rpa_version": rpa_version,
            "rpa_port": rpa_port,
            "rpa_image_ref": rpa_image_ref,
            "rpa_git_url": rpa_git_url,
            "rpa_string_list": rpa_string_list,
            "rpa_secret": rpa_secret,
            "rpa_db_password": rpa_db_password,
            "rpa_pids_limit": rpa_pids_limit,
            "rpa_cpu_limit": rpa_cpu_limit,
            "rpa_capability": rpa_capability,
            "rpa_cidr": rpa_cidr,
        }
