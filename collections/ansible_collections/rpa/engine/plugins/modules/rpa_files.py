#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module rpa_files: many files, directories and links brought to their wanted state in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rpa_files
short_description: Ensure a role's files, directories and links, in one round trip
description:
  - A role hands over every file it owns - its content rendered on the controller (C(lookup('template', ...)),
    C(lookup('file', ..., rstrip=false))), owner, group and mode - together with its directories and links.
    The module compares them all in one call and rewrites only what differs, where one C(template),
    C(copy) or C(file) task per path costs a module run each even when nothing changes.
  - A file is written atomically (a temporary file in the same directory, owner and mode set before the
    content, fsync, rename). With C(validate), the candidate is checked by that command first (C(%s) is its
    path, as for C(ansible.builtin.template)); a refused candidate fails the task and the live file stays.
  - Entries are handled in the order given, so directories come before the files in them.
version_added: "1.1.0"
author:
  - rpa-engine infrastructure team (@rpa-engine)
options:
  files:
    description:
      - The wanted entries. Each has C(path) (absolute) and, by state, C(content) (file), C(target) (link);
        optionally C(state) (file, directory, link, absent; by default file when there is content, link when
        there is a target, else directory), C(owner) and C(group) (names or ids; root), C(mode) (octal string),
        C(validate) (a command with C(%s)), C(force) (false - write a missing file, never change an existing
        one's content; for a link, leave a regular file in its place alone) and C(secret) (true - leave the
        content out of the diff).
    type: list
    elements: dict
    required: true
attributes:
  check_mode:
    support: full
    description: Reports the paths it would change; writes and validates nothing.
  diff_mode:
    support: full
    description: Shows each changed file's content before and after, except for entries marked secret.
"""

EXAMPLES = r"""
- name: Ensure the backup tool and its settings are in place.
  rpa.engine.rpa_files:
    files:
      - {path: /etc/rpa-engine, mode: "0750"}
      - path: /usr/local/lib/rpa-engine/rpa-backup.py
        content: "{{ lookup('ansible.builtin.file', 'rpa-backup.py', rstrip=false) }}"
        mode: "0755"
      - {path: /usr/local/sbin/rpa-backup, target: /usr/local/lib/rpa-engine/rpa-backup.py}
      - path: /etc/rpa-engine/backup.json
        content: "{{ lookup('ansible.builtin.template', 'backup.json.j2') }}"
        mode: "0600"
        secret: true
"""

RETURN = r"""
changed_paths:
  description: The paths this run created, rewrote, re-owned, re-moded or removed (or would, in check mode).
  type: list
  elements: str
  returned: always
"""

import os
import shlex
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rpa.engine.plugins.module_utils.rpa_files import FilesError, attributes_differ, normalize, resolve_id


def read_bytes(path):
    with open(path, "rb") as handle:
        return handle.read()


class Files(object):
    def __init__(self, module):
        self.m = module
        self.changed = []
        self.diffs = []

    def fail(self, msg, **kw):
        self.m.fail_json(msg=msg, changed_paths=self.changed, **kw)

    def attributes(self, path, want, uid, gid, follow=True):
        st = os.stat(path) if follow else os.lstat(path)
        diffs = attributes_differ(st, want["mode"], uid, gid)
        if diffs and not self.m.check_mode:
            os.chown(path, uid, gid)
            if want["mode"] is not None:
                os.chmod(path, want["mode"])
        return bool(diffs)

    def directory(self, want, uid, gid):
        path = want["path"]
        if os.path.lexists(path) and not os.path.isdir(path):
            self.fail("%s exists and is not a directory" % path)
        if not os.path.isdir(path):
            if not self.m.check_mode:
                os.makedirs(path)
                os.chown(path, uid, gid)
                os.chmod(path, want["mode"] if want["mode"] is not None else 0o755)
            return True
        return self.attributes(path, want, uid, gid)

    def validate(self, want, data):
        folder = os.path.dirname(want["path"])
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rpa_files.validate.")
        try:
            os.write(fd, data)
            os.close(fd)
            argv = [arg.replace("%s", tmp) for arg in shlex.split(want["validate"])]
            rc, out, err = self.m.run_command(argv)
        finally:
            os.unlink(tmp)
        if rc != 0:
            self.fail("failed to validate %s: the candidate was refused and the live file is unchanged" % want["path"],
                      cmd=" ".join(argv), rc=rc, stdout=out, stderr=err)

    def file(self, want, uid, gid):
        path = want["path"]
        data = want["content"].encode("utf-8")
        if os.path.lexists(path) and not os.path.isfile(path) or os.path.islink(path):
            self.fail("%s exists and is not a regular file" % path)
        if not os.path.isdir(os.path.dirname(path)):
            self.fail("%s: its directory does not exist (list the directory first)" % path)
        exists = os.path.exists(path)
        before = read_bytes(path) if exists else None
        if exists and (before == data or not want["force"]):
            return self.attributes(path, want, uid, gid)
        if self.m._diff:
            secret = want.get("secret")
            self.diffs.append({"before_header": path, "after_header": path,
                               "before": "(secret, not shown)\n" if secret and exists else
                               (before or b"").decode("utf-8", "replace"),
                               "after": "(secret, not shown)\n" if secret else want["content"]})
        if self.m.check_mode:
            return True
        if want["validate"]:
            self.validate(want, data)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".rpa_files.")
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, want["mode"] if want["mode"] is not None else 0o644)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return True

    def link(self, want, uid, gid):
        path, target = want["path"], want["target"]
        if os.path.islink(path):
            if os.readlink(path) == target:
                return False
        elif os.path.isdir(path) or os.path.lexists(path) and not want["force"]:
            self.fail("%s exists and is not a symbolic link" % path)
        if not self.m.check_mode:
            tmp = "%s.rpa_files.%d" % (path, os.getpid())
            os.symlink(target, tmp)
            os.lchown(tmp, uid, gid)
            os.rename(tmp, path)
        return True

    def absent(self, want, uid, gid):
        path = want["path"]
        if not os.path.lexists(path):
            return False
        if os.path.isdir(path) and not os.path.islink(path):
            self.fail("%s is a directory; rpa_files removes files and links only" % path)
        if not self.m.check_mode:
            os.unlink(path)
        return True

    def apply(self, entries):
        for entry in entries:
            try:
                want = normalize(entry)
                uid, gid = resolve_id(want["owner"], "user"), resolve_id(want["group"], "group")
            except FilesError as exc:
                self.fail(str(exc))
            try:
                if getattr(self, want["state"])(want, uid, gid):
                    self.changed.append(want["path"])
            except OSError as exc:
                self.fail("%s: %s" % (want["path"], exc))


def main():
    module = AnsibleModule(
        argument_spec=dict(files=dict(type="list", elements="dict", required=True)),
        supports_check_mode=True,
    )
    files = Files(module)
    files.apply(module.params["files"])
    result = dict(changed=bool(files.changed), changed_paths=files.changed)
    if module._diff and files.diffs:
        result["diff"] = files.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
