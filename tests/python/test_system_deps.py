"""tools/system_deps.sh: installs what a Debian package list names when it can, otherwise prints
the one command to run — failing for a list the caller cannot do without (--required)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "system_deps.sh"


@pytest.fixture
def as_unprivileged():
    """A copy of the script and a package list that the user ``nobody`` can read (pytest's
    own temporary folders are private to root)."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to run the script as an unprivileged user")
    if shutil.which("dpkg-query") is None:
        pytest.skip("needs dpkg (a Debian/Ubuntu machine)")
    tmp_path = Path(tempfile.mkdtemp(prefix="edgeseg-deps-"))
    script = tmp_path / "system_deps.sh"
    shutil.copy(SCRIPT, script)
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\nedgeseg-no-such-package   # needed by nothing\n")
    tmp_path.chmod(0o755)
    script.chmod(0o755)
    lst.chmod(0o644)

    def run(*args):
        return subprocess.run(
            ["runuser", "-u", "nobody", "--", str(script), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    yield run, lst
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_required_list_without_root_prints_the_command_and_fails(as_unprivileged):
    run, lst = as_unprivileged
    p = run(str(lst), "--required")
    assert p.returncode == 1
    assert "sudo apt-get install -y edgeseg-no-such-package" in p.stdout


def test_optional_list_without_root_prints_the_command_and_goes_on(as_unprivileged):
    run, lst = as_unprivileged
    p = run(str(lst))
    assert p.returncode == 0
    assert "tests needing them will skip" in p.stdout
    assert "sudo apt-get install -y edgeseg-no-such-package" in p.stdout


def test_the_lists_name_real_packages():
    """Every name in the lists is a Debian package name (the script reads them verbatim)."""
    for name in ("apt-packages.txt", "apt-packages-jetson.txt"):
        lines = (ROOT / "tools" / name).read_text().splitlines()
        pkgs = [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]
        assert pkgs and all(p.replace("-", "").replace(".", "").replace("+", "").isalnum()
                            for p in pkgs)  # fmt: skip
    jetson = (ROOT / "tools" / "apt-packages-jetson.txt").read_text()
    for tool in ("g++-aarch64-linux-gnu", "qemu-user", "clang-16"):
        assert tool in jetson
