"""The common role, seen from inside the server and from the controller."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, run_playbook, run_site, ssh_argv


def test_timezone_is_utc(host):
    assert host.file("/etc/timezone").content_string.strip() == "UTC"
    assert host.check_output("readlink /etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert host.check_output("date +%Z") == "UTC"


@pytest.mark.parametrize("package", ["ca-certificates", "curl", "nftables", "tzdata",
                                     "unattended-upgrades"])
def test_base_package_installed(host, package):
    assert host.package(package).is_installed


def test_unattended_security_upgrades_are_on(host):
    dump = host.check_output("apt-config dump")
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in dump
    # The distribution's own origins (security) are kept, not replaced.
    assert "Unattended-Upgrade::Origins-Pattern" in dump


def test_journald_is_capped(host):
    effective = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=500M" in effective
    assert "MaxRetentionSec=1month" in effective
    assert host.service("systemd-journald").is_running


def sshd_effective(host) -> dict[str, str]:
    lines = host.check_output("sshd -T").splitlines()
    return {k: v for k, _, v in (line.partition(" ") for line in lines)}


def test_sshd_effective_config_is_hardened(host):
    cfg = sshd_effective(host)
    assert cfg["passwordauthentication"] == "no"
    assert cfg["kbdinteractiveauthentication"] == "no"
    assert cfg["permitemptypasswords"] == "no"
    assert cfg["permitrootlogin"] == "without-password"  # sshd's name for prohibit-password
    assert cfg["authenticationmethods"] == "publickey"
    assert cfg["maxauthtries"] == "3"
    assert cfg["x11forwarding"] == "no"
    assert cfg["allowtcpforwarding"] == "local"
    assert cfg["port"] == "22"


def test_ssh_audit_finds_no_weak_algorithm(server):
    """ssh-audit 3.x, the public tool, from the controller over loopback: no fail and no warn for any
    key exchange, host key, cipher or MAC sshd offers, and nothing it says to remove. Its DHEat
    connection-rate test is skipped: its burst of unauthenticated connections makes sshd's own
    PerSourcePenalties (OpenSSH >= 9.8) shut the controller out for minutes - the defence it probes for."""
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ssh-audit"), "--skip-rate-test", "-j",
                           "-p", str(server["ssh_port"]), "127.0.0.1"], capture_output=True, text=True, timeout=60)
    report = json.loads(proc.stdout)
    weak = {(kind, alg["algorithm"], level): alg["notes"][level]
            for kind in ("kex", "key", "enc", "mac") for alg in report[kind]
            for level in ("fail", "warn") if alg.get("notes", {}).get(level)}
    print(f"ssh-audit: {len(report['kex'])} kex, {len(report['key'])} host key, {len(report['enc'])} ciphers, "
          f"{len(report['mac'])} MACs offered; weak: {len(weak)}")
    assert weak == {}, weak
    # Only "informational" suggestions may remain (to ADD e.g. aes-ctr or an RSA host key).
    assert set(report.get("recommendations", {})) <= {"informational"}, report["recommendations"]
    assert proc.returncode == 0, proc.stderr
    assert [k["algorithm"] for k in report["key"]] == ["ssh-ed25519"]


def test_hardening_file_is_root_only(host):
    f = host.file("/etc/ssh/sshd_config.d/00-rpa-engine-hardening.conf")
    assert f.user == "root" and f.mode == 0o600


def test_password_login_is_refused_but_key_login_works(server):
    base = ["ssh", "-p", str(server["ssh_port"]), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    pw = subprocess.run([*base, "-o", "PubkeyAuthentication=no",
                         "-o", "PreferredAuthentications=password,keyboard-interactive",
                         "root@127.0.0.1", "true"], capture_output=True, text=True, timeout=30)
    assert pw.returncode == 255
    assert "Permission denied (publickey)" in pw.stderr
    key = subprocess.run([*base, "-i", server["key"], "root@127.0.0.1", "true"],
                         capture_output=True, text=True, timeout=30)
    assert key.returncode == 0, key.stderr


# Each guarded template task: the live file it protects, and what its validator says of the candidate.
GUARDED = {
    "common : Ensure the sshd hardening drop-in is in place and valid.":
        ("/etc/ssh/sshd_config.d/00-rpa-engine-hardening.conf", "NoSuchDirective"),
    "common : Ensure the firewall rules are in place and valid.": ("/etc/rpa-firewall.nft", "syntax error"),
    "docker : Ensure daemon.json sets log rotation and live-restore.": ("/etc/docker/daemon.json", "no-such-daemon-option"),
}


def test_validators_refuse_broken_candidates_and_keep_the_live_files(host, server):
    """sshd -t, nft -c and dockerd --validate each refuse a broken candidate before it replaces the live file."""
    before = {path: host.file(path).sha256sum for path, _ in GUARDED.values()}
    proc, data = run_playbook("molecule/default/tests/files/broken_guards.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]  # every failure rescued
    results = {task["task"]["name"]: task["hosts"][server["name"]] for play in data["plays"]
               for task in play["tasks"] if server["name"] in task["hosts"]}
    failed = sorted(name for name, res in results.items() if res.get("failed"))
    assert failed == sorted(GUARDED), failed
    for task, (path, words) in GUARDED.items():
        said = " ".join(str(results[task].get(k, "")) for k in ("msg", "stdout", "stderr"))
        assert "failed to validate" in said and words in said, (task, said[-1000:])
        assert host.file(path).sha256sum == before[path], f"{path} changed although its candidate was refused"
    for unit in ("ssh", "rpa-firewall", "docker"):
        assert host.service(unit).is_running, unit


# The units this project installs; systemd's own rating of their sandboxing (0 safest - 10 exposed).
SANDBOXED_UNITS = ("rpa-backup.service", "rpa-backup-drill.service", "rpa-compose-watchdog.service",
                   "caddy.service")


def test_the_units_this_project_installs_are_sandboxed(host):
    """`systemd-analyze security` rates each at 5.0 or less (they were 8.8-8.9, "EXPOSED")."""
    out = host.check_output("systemd-analyze security --no-pager " + " ".join(SANDBOXED_UNITS))
    levels = dict(re.findall(r"Overall exposure level for (\S+): ([0-9.]+)", out))
    print("systemd-analyze security:", levels)
    assert set(levels) == set(SANDBOXED_UNITS), out[-2000:]
    assert all(float(level) <= 5.0 for level in levels.values()), levels


# One key of each kind the role sets, with its value.
NETWORK_SYSCTLS = {"net.ipv4.conf.all.accept_redirects": "0", "net.ipv4.conf.all.rp_filter": "1",
                   "net.ipv4.tcp_syncookies": "1", "net.ipv4.conf.all.log_martians": "1",
                   "net.ipv6.conf.all.accept_source_route": "0", "net.ipv4.conf.default.send_redirects": "0"}
KERNEL_SYSCTLS = {"kernel.kptr_restrict": "2", "kernel.dmesg_restrict": "1", "fs.protected_symlinks": "1",
                  "fs.suid_dumpable": "0", "kernel.unprivileged_bpf_disabled": "1", "net.core.bpf_jit_harden": "2"}


def test_sysctl_hardening_is_set_where_this_host_owns_the_knob(host):
    """Network keys are live (the server's own network namespace); kernel-wide keys are set on a
    machine of its own, and in a container (the test bed) listed but commented out."""
    lines = host.file("/etc/sysctl.d/90-rpa-engine.conf").content_string.splitlines()
    in_container = host.run("systemd-detect-virt --container").rc == 0
    for key, value in NETWORK_SYSCTLS.items():
        assert f"{key} = {value}" in lines, key
        assert host.check_output(f"sysctl -n {key}") == value, key
    for key, value in KERNEL_SYSCTLS.items():
        if in_container:
            assert f"# {key} = {value}" in lines, key
        else:
            assert f"{key} = {value}" in lines and host.check_output(f"sysctl -n {key}") == value, key


def test_the_security_suite_is_among_apt_sources(host):
    codename = host.system_info.codename
    assert f"{codename}-security" in host.check_output("apt-cache policy"), "no security suite in apt's index"
    # Ours only where no other source names it (the test bed's image has none).
    named = host.run("grep -rlsE '^[^#]*[a-z]-security([[:space:]]|$)' /etc/apt/sources.list /etc/apt/sources.list.d")
    assert named.stdout.split() == ["/etc/apt/sources.list.d/rpa-security.sources"], named.stdout


ADMIN = "rpa-ops"


def ssh_as(server: dict, user: str, command: str, stdin: str = "") -> subprocess.CompletedProcess:
    argv = ssh_argv(server, command)
    argv[argv.index("root@127.0.0.1")] = f"{user}@127.0.0.1"
    return subprocess.run([*argv[:1], "-o", "BatchMode=yes", *argv[1:]], capture_output=True, text=True,
                          timeout=30, input=stdin)


def test_an_admin_account_replaces_root_on_ssh(host, server, tmp_path):
    """common_admin_user: an account with the given key and sudo; connected as it, root's SSH login
    can be switched off, and the admin still gets in and becomes root. Put back at the end.

    While root is refused, the test talks to the server as the admin only, and tries root's login
    from the server itself (127.0.0.1): one refused login from the controller already counts four
    times in Debian's fail2ban sshd jail (it bans at five) and adds to OpenSSH's PerSourcePenalties,
    which would shut the whole run out."""
    key = subprocess.run(["ssh-keygen", "-y", "-f", server["key"]], capture_output=True, text=True,
                         check=True).stdout.strip()
    admin = {"common_admin_user": ADMIN, "common_admin_authorized_keys": [f"{key} rpa-test"]}
    first = tmp_path / "admin.json"
    first.write_text(json.dumps(admin))
    second = tmp_path / "as-admin.json"
    second.write_text(json.dumps({**admin, "ansible_user": ADMIN, "common_ssh_permit_root_login": "no"}))
    try:
        proc, _ = run_site("--tags", "common_admin", "-e", f"@{first}")
        assert proc.returncode == 0, proc.stdout[-2000:]
        assert host.file(f"/home/{ADMIN}/.ssh/authorized_keys").mode == 0o600
        # Locked: no password to guess (useradd's "!" or usermod -L's "!" before a hash).
        assert host.check_output(f"getent shadow {ADMIN}").split(":")[1].startswith("!")
        assert ssh_as(server, ADMIN, "sudo -n id -u").stdout.strip() == "0"
        proc, data = run_site("--tags", "common_admin,common_ssh", "-e", f"@{second}")
        assert proc.returncode == 0 and data["stats"][server["name"]]["changed"] >= 1, proc.stdout[-2000:]
        effective = ssh_as(server, ADMIN, "sudo -n sshd -T | grep -i '^permitrootlogin'").stdout.strip()
        assert effective == "permitrootlogin no", effective
        # root's own key, handed to the admin for one try from 127.0.0.1, and removed at once.
        refused = ssh_as(server, ADMIN, "umask 077; cat > ~/.rpa-test-key; ssh -i ~/.rpa-test-key -o BatchMode=yes "
                         "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1 true; "
                         "echo rc=$?; rm -f ~/.rpa-test-key", stdin=Path(server["key"]).read_text())
        assert "rc=255" in refused.stdout and "Permission denied" in refused.stderr, refused
        assert ssh_as(server, ADMIN, "sudo -n id -u").stdout.strip() == "0"
    finally:
        # Back to the inventory's root login, connected as the admin (root may be shut out by now).
        proc, _ = run_site("--tags", "common_ssh", "-e", f"ansible_user={ADMIN}")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert ssh_as(server, "root", "true").returncode == 0
    host.run(f"userdel -r {ADMIN}; rm -f /etc/sudoers.d/90-rpa-admin")


def test_lynis_hardening_index(lynis_audit):
    """Lynis's audit of the converged server (conftest.lynis_audit runs it in the background from the first
    test on); its hardening index and findings are printed (README, Benchmarks)."""
    assert not isinstance(lynis_audit, str), lynis_audit
    report = lynis_audit.communicate(timeout=600)[0].splitlines()
    index = int(next(line.split("=", 1)[1] for line in report if line.startswith("hardening_index=")))
    warnings = [line.split("=", 1)[1] for line in report if line.startswith("warning[]=")]
    suggestions = [line.split("=", 1)[1].split("|")[0] for line in report if line.startswith("suggestion[]=")]
    print(f"Lynis {next(line.split('=', 1)[1] for line in report if line.startswith('lynis_version='))}: "
          f"hardening index {index}, {len(warnings)} warnings, {len(suggestions)} suggestions")
    print("warnings: " + "; ".join(warnings))
    print("suggestions: " + ", ".join(suggestions))
    assert index >= 80, (index, warnings)
