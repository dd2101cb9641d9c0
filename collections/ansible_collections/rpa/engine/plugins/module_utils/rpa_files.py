# -*- coding: utf-8 -*-
"""Pure logic of the rpa_files module: what each wanted file, directory or link lacks on the host.

A role hands over every file it owns with its content (rendered on the
controller: lookup('template') / lookup('file')), owner, group and mode; the
module compares them all in one call and rewrites only what differs. These
functions decide; the module does the I/O.
"""

from __future__ import annotations

import grp
import pwd
import stat

STATES = ("file", "directory", "link", "absent")


class FilesError(Exception):
    """A wanted entry that cannot be: the message names the path and why."""


def normalize(entry):
    """One wanted entry with every field present and checked: state, mode (int), owner/group (names or ids)."""
    if not isinstance(entry, dict) or not entry.get("path") or not str(entry["path"]).startswith("/"):
        raise FilesError("every entry needs an absolute path: %r" % (entry,))
    path = entry["path"]
    state = entry.get("state") or ("link" if "target" in entry else "file" if "content" in entry else "directory")
    if state not in STATES:
        raise FilesError("%s: state %r is not one of %s" % (path, state, ", ".join(STATES)))
    if state == "file" and not isinstance(entry.get("content"), str):
        raise FilesError("%s: a file needs its content (a string)" % path)
    if state == "link" and not entry.get("target"):
        raise FilesError("%s: a link needs its target" % path)
    mode = entry.get("mode")
    if mode is not None:
        try:
            mode = int(str(mode), 8)
        except ValueError:
            raise FilesError("%s: mode %r is not an octal number such as \"0640\"" % (path, entry["mode"]))
    return {"path": path, "state": state, "content": entry.get("content"), "target": entry.get("target"),
            "mode": mode, "owner": entry.get("owner", "root"), "group": entry.get("group", "root"),
            "validate": entry.get("validate"), "force": entry.get("force", True)}


def resolve_id(value, kind):
    """A uid/gid from a name or a number (as a string or an int)."""
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    try:
        return (pwd.getpwnam(value).pw_uid if kind == "user" else grp.getgrnam(value).gr_gid)
    except KeyError:
        raise FilesError("no %s named %r on the host" % (kind, value))


def attributes_differ(st, mode, uid, gid):
    """Which of mode, owner and group of an existing path differ from the wanted ones."""
    diffs = []
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        diffs.append("mode")
    if st.st_uid != uid:
        diffs.append("owner")
    if st.st_gid != gid:
        diffs.append("group")
    return diffs
