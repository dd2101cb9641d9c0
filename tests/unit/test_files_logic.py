"""rpa_files' pure part: every wanted entry normalized and checked before anything is written."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ansible_collections.rpa.engine.plugins.module_utils import rpa_files as rf


@pytest.mark.parametrize(("entry", "state"), [
    ({"path": "/etc/x"}, "directory"),
    ({"path": "/etc/x", "content": ""}, "file"),
    ({"path": "/etc/x", "target": "/usr/share/zoneinfo/UTC"}, "link"),
    ({"path": "/etc/x", "state": "absent", "content": "ignored"}, "absent"),
])
def test_the_state_follows_from_what_is_given(entry, state):
    assert rf.normalize(entry)["state"] == state


def test_defaults_and_modes():
    want = rf.normalize({"path": "/etc/x", "content": "a", "mode": "0640"})
    assert (want["mode"], want["owner"], want["group"], want["force"]) == (0o640, "root", "root", True)
    assert rf.normalize({"path": "/etc/x"})["mode"] is None


@pytest.mark.parametrize(("entry", "problem"), [
    ({"path": "etc/x"}, "absolute path"),
    ({}, "absolute path"),
    ({"path": "/etc/x", "state": "fifo"}, "state 'fifo' is not one of"),
    ({"path": "/etc/x", "state": "file"}, "needs its content"),
    ({"path": "/etc/x", "state": "link"}, "needs its target"),
    ({"path": "/etc/x", "content": "a", "mode": "rw-r--r--"}, "is not an octal number"),
])
def test_a_bad_entry_is_refused_naming_it(entry, problem):
    with pytest.raises(rf.FilesError, match=problem):
        rf.normalize(entry)


def test_ids_from_names_or_numbers():
    assert rf.resolve_id("root", "user") == 0 and rf.resolve_id("0", "group") == 0 and rf.resolve_id(999, "user") == 999
    with pytest.raises(rf.FilesError, match="no user named 'no-such-user'"):
        rf.resolve_id("no-such-user", "user")


def test_which_attributes_differ(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    os.chmod(path, 0o640)
    st = os.stat(path)
    assert rf.attributes_differ(st, 0o640, st.st_uid, st.st_gid) == []
    assert rf.attributes_differ(st, 0o600, st.st_uid + 1, st.st_gid) == ["mode", "owner"]
    assert rf.attributes_differ(SimpleNamespace(st_mode=0o100644, st_uid=0, st_gid=5), None, 0, 0) == ["group"]
