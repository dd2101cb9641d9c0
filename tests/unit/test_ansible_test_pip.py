"""tools/ansible_test_pip.py: the pip bootstrap script `make sanity` gives ansible-test, written once."""

from __future__ import annotations

import ensurepip
import importlib.util
import subprocess
import venv
from pathlib import Path

from conftest import ROOT

spec = importlib.util.spec_from_file_location("ansible_test_pip", ROOT / "tools" / "ansible_test_pip.py")
ansible_test_pip = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ansible_test_pip)


def cached(home):
    version = ansible_test_pip.pip_version()
    return home / ".ansible" / "test" / "cache" / f"get_pip_{version.replace('.', '_')}.py"


def test_writes_the_script_once_and_leaves_a_real_get_pip_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ansible_test_pip.main() == 0
    path = cached(tmp_path)
    assert path.read_text() == ansible_test_pip.BOOTSTRAP
    mtime = path.stat().st_mtime_ns
    assert ansible_test_pip.main() == 0 and path.stat().st_mtime_ns == mtime
    path.write_text("# the real get-pip.py\n")
    assert ansible_test_pip.main() == 0 and path.read_text() == "# the real get-pip.py\n"
    path.write_text("# " + ansible_test_pip.MARK + ", an older one\n")
    assert ansible_test_pip.main() == 0 and path.read_text() == ansible_test_pip.BOOTSTRAP


def test_the_script_installs_pip_and_nothing_else_into_an_empty_venv(tmp_path):
    # Offline: the requirement is pip itself, found next to the wheel the script runs.
    wheel_dirs = [path.parent for path in sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
                  + sorted(Path("/usr/share/python-wheels").glob("pip-*.whl"))]
    script = tmp_path / "get_pip.py"
    script.write_text(ansible_test_pip.BOOTSTRAP)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = str(env_dir / "bin" / "python")
    proc = subprocess.run([python, str(script), "--disable-pip-version-check", "--no-index", "--find-links",
                           str(wheel_dirs[0]), "pip", "--no-setuptools", "--no-wheel"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "freeze", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True).stdout
    assert [line.split("==")[0] for line in listed.split()] == ["pip"]
