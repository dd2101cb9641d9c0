#!/usr/bin/env python3
"""Let `ansible-test sanity` put pip into its test environments without ci-files.testing.ansible.com.

ansible-test creates one virtual environment per sanity test (cached in
~/.ansible/test/venv), without pip, and then runs a pip bootstrap script -
get-pip.py, downloaded once from https://ci-files.testing.ansible.com into
~/.ansible/test/cache/get_pip_<version>.py. That host does not resolve
everywhere PyPI does (it did not on the machine `make sanity` was written on),
and the download failing fails `make sanity` before any test runs.

    python3 tools/ansible_test_pip.py     write that cached bootstrap script (make sanity runs this first)

The script written (BOOTSTRAP below) does what get-pip.py does for
ansible-test, with what Python brings and PyPI only: it runs the pip wheel
that comes with Python (the one ensurepip installs) to install the exact pip
ansible-test asks for (`pip==<version>`, from PyPI like every other
requirement), and nothing else (get-pip's --no-setuptools / --no-wheel); if
that wheel cannot be found or run, it falls back to ensurepip and upgrades.
A script already there - the real get-pip.py or a former one of these - is
replaced only when it is one of these and differs, so running this again
changes nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

BOOTSTRAP = '''\
"""Stand-in for get-pip.py, written by tools/ansible_test_pip.py (rpa-engine): pip ARGS, run from Python's own pip wheel."""
import ensurepip
import glob
import os
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
# The pip wheel this Python's ensurepip would install (Debian keeps it in /usr/share/python-wheels), run as
# it is: it installs the requested pip, and nothing else, from PyPI.
wheels = (sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))
          + sorted(glob.glob("/usr/share/python-wheels/pip-*.whl")))
try:
    subprocess.check_call([sys.executable, os.path.join(wheels[0], "pip"), "install", *args])
except (IndexError, subprocess.CalledProcessError):
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade", "--force-reinstall", *args])
    if "--no-setuptools" in sys.argv[1:]:
        # ensurepip brings setuptools along on Python < 3.12; get-pip.py would not have installed it.
        subprocess.call([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "setuptools"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''

MARK = "written by tools/ansible_test_pip.py (rpa-engine)"


def pip_version() -> str:
    """The pip version ansible-test bootstraps into its environments (ansible-test's own pin)."""
    from ansible_test._internal.python_requirements import get_venv_packages

    return get_venv_packages(SimpleNamespace(version="%d.%d" % sys.version_info[:2]))["pip"]


def main() -> int:
    version = pip_version()
    path = Path(os.path.expanduser(f"~/.ansible/test/cache/get_pip_{version.replace('.', '_')}.py"))
    if path.exists() and (path.read_text() == BOOTSTRAP or MARK not in path.read_text()):
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(BOOTSTRAP)
    tmp.replace(path)
    print(f"ansible-test: pip {version} bootstrap script written to {path} (Python's own pip wheel, then PyPI)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
