# -*- coding: utf-8 -*-
"""Pure logic of the rpa_preflight_facts module: what the roles' preflights ask of the host.

A role's preflight needs a few facts only the host knows: does this user
exist and can they log in by key, is this a calendar expression systemd
accepts, can this directory be created and written. Asked one task at a
time, each answer is a round trip; the module answers all of them in one.
Everything here only reads.
"""

from __future__ import annotations

import os
import stat


def nearest_existing(path, lexists=os.path.lexists):
    """The path itself, or its closest ancestor that exists (the one that decides whether it can be made)."""
    path = os.path.abspath(path)
    while not lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def dir_verdict(path, lexists=os.path.lexists, isdir=os.path.isdir, statvfs=os.statvfs, access=os.access):
    """Whether ``path`` can be created (or used) as a writable directory, judged by its nearest existing ancestor."""
    ancestor = nearest_existing(path, lexists)
    is_dir = bool(isdir(ancestor))
    read_only = bool(statvfs(ancestor).f_flag & os.ST_RDONLY) if is_dir else False
    writable = bool(is_dir and access(ancestor, os.W_OK | os.X_OK))
    if not is_dir:
        problem = "not a directory"
    elif read_only:
        problem = "on a read-only file system"
    elif not writable:
        problem = "not writable"
    else:
        problem = ""
    return {"ancestor": ancestor, "is_dir": is_dir, "read_only": read_only, "writable": writable,
            "problem": problem}


def calendar_verdict(rc, stdout, stderr):
    """``systemd-analyze calendar EXPR``'s answer: valid, its normalized form, or systemd's own error."""
    if rc == 0:
        normalized = ""
        for line in (stdout or "").splitlines():
            key, _, value = line.strip().partition(":")
            if key == "Normalized form":
                normalized = value.strip()
                break
        return {"valid": True, "normalized": normalized, "error": ""}
    lines = [line.strip() for line in ((stderr or "") + "\n" + (stdout or "")).splitlines() if line.strip()]
    return {"valid": False, "normalized": "", "error": lines[0] if lines else "rejected (exit code %s)" % rc}


def user_verdict(pw_entry, keys_stat):
    """One user: exists, home, uid and the size of ~/.ssh/authorized_keys (-1 when there is none).

    ``pw_entry`` is a ``pwd.struct_passwd`` (or None), ``keys_stat`` an ``os.stat_result`` of the
    authorized_keys file (or None).
    """
    if pw_entry is None:
        return {"exists": False, "home": "", "uid": -1, "authorized_keys": "", "authorized_keys_size": -1}
    keys = os.path.join(pw_entry.pw_dir, ".ssh", "authorized_keys")
    size = keys_stat.st_size if keys_stat is not None and stat.S_ISREG(keys_stat.st_mode) else -1
    return {"exists": True, "home": pw_entry.pw_dir, "uid": pw_entry.pw_uid, "authorized_keys": keys,
            "authorized_keys_size": size}


# What `ssh -Q` is asked for each kind of algorithm sshd_config can restrict.
SSH_QUERIES = ("kex", "cipher", "mac")


def ssh_algorithms(rc, stdout):
    """The algorithm names one `ssh -Q KIND` printed (one per line); none when it failed."""
    if rc != 0:
        return []
    return [line.strip() for line in stdout.splitlines() if line.strip()]
