"""Run inside the server: which files hold which secret, and could anyone but root or their owner read them?

Reads {name: value} as JSON on stdin (never argv), walks the server's file
systems and prints, as JSON, one entry per (secret, file): the secret's
name (never its value), the file's owner, mode, and whether it is exposed -
readable by some user other than root and its owner, which takes read
permission on the file AND search permission on every directory above it.

Walked: the root file system, /run and /tmp (tmpfs), and Docker's state in
/var/lib/docker - container configs and logs, volumes, and each
container's own writable layer. Not walked: /proc, /sys, /dev, and the
read-only image layers under overlay2 (built before any secret existed;
gigabytes of Debian packages).
"""

import json
import os
import stat
import subprocess
import sys

# /run/docker/netns holds network namespace handles (nsfs), which cannot be read as files.
SKIP = {"/proc", "/sys", "/dev", "/var/lib/docker/overlay2", "/run/docker/netns"}


def upper_dirs():
    ids = subprocess.run(["docker", "ps", "-aq"], capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return []
    out = subprocess.run(["docker", "inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", *ids],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.split() if line.startswith("/")]


def exposed(path, st):
    """Readable by others, or by a group other than root's, through every directory above it."""
    others = bool(st.st_mode & stat.S_IROTH)
    group = bool(st.st_mode & stat.S_IRGRP) and st.st_gid != 0
    if not (others or group):
        return False
    parent = os.path.dirname(path)
    while True:
        mode = os.stat(parent).st_mode
        if not (mode & stat.S_IXOTH or (group and mode & stat.S_IXGRP)):
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


def walk(roots, secrets, found, errors):
    seen = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in SKIP]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                    with open(path, "rb") as handle:
                        data = handle.read()
                except FileNotFoundError:
                    continue  # gone between the listing and the read (runc's transient files)
                except OSError as exc:
                    errors.append(f"{path}: {exc}")
                    continue
                for secret, value in secrets.items():
                    if value in data:
                        found.append({"secret": secret, "path": path, "uid": st.st_uid,
                                      "mode": stat.S_IMODE(st.st_mode), "exposed": exposed(path, st)})


def main():
    secrets = {name: value.encode() for name, value in json.load(sys.stdin).items()}
    found, errors = [], []
    # "/" takes in /run, /tmp and /var/lib/docker (mounts below it) but not the overlay2 layers.
    walk(["/", *upper_dirs()], secrets, found, errors)
    json.dump({"found": found, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
