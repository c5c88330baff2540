"""What every check uses: the repository root, running commands, installing tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class CheckError(Exception):
    """A check failed; the message says what and how to fix or retry."""


def log(message: str) -> None:
    print(message, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Runs cmd, raising CheckError with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise CheckError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    return proc


def apt_install(packages) -> None:
    """Installs Debian packages (CI only: it runs as root on a throw-away machine)."""
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "apt-get"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run([*apt, "update", "-q"], env=env)
    run([*apt, "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


def tool_path(name: str) -> str:
    """A build tool from this interpreter's environment first (the venv's cmake/ninja)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise CheckError(f"{name} not found; install it (pip install {name}) and retry")
    return found
