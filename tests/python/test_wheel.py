"""Distributions: the manylinux wheel installs into a clean virtual environment and segments
images from outside the source tree; the sdist carries what a build needs.

The wheel is built by tools/build_wheel.py, which reuses the core already compiled in build/
(incremental), so this costs a link, an auditwheel repair and a pip install."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import venv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_WHEEL = ROOT / "tools" / "build_wheel.py"

pytestmark = pytest.mark.slow


def _needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (pip install -e '.[dev]')")


def _clean_env() -> dict:
    """The environment without this checkout on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def test_manylinux_wheel_installs_and_predicts_outside_the_tree(tiny_onnx, tmp_path):
    _needs("auditwheel", "cv2")
    if sys.platform != "linux":
        pytest.skip("manylinux wheels are built on Linux")
    dist = tmp_path / "dist"
    p = subprocess.run(
        [sys.executable, str(BUILD_WHEEL), "--dist", str(dist)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (wheel,) = dist.glob("edgeseg-*.whl")
    assert (
        "manylinux" in wheel.name
        and wheel.name.endswith("_x86_64.whl")
        or ("manylinux" in wheel.name and "aarch64" in wheel.name)
    )

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    p = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"{wheel}[camera]"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=_clean_env(),
    )
    assert p.returncode == 0, p.stdout + p.stderr

    work = tmp_path / "elsewhere"  # not the source tree: the import must come from the venv
    work.mkdir()
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(work / "part.png"), img)
    where = subprocess.run(
        [str(py), "-c", "import edgeseg; print(edgeseg.__file__); print(edgeseg.__version__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=_clean_env(),
    )
    assert where.returncode == 0, where.stderr
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(env_dir) and version in wheel.name

    edgeseg_bin = env_dir / "bin" / "edgeseg"
    p = subprocess.run(
        [str(edgeseg_bin), "predict", str(tiny_onnx), "part.png", "--out", "preds"],
        capture_output=True,
        text=True,
        cwd=work,
        env=_clean_env(),
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    from PIL import Image

    mask = np.asarray(Image.open(work / "preds" / "part_mask.png"))  # palette PNG: class ids
    assert mask.shape == (48, 64) and mask.max() < len(summary_classes(work))
    summary = json.loads((work / "preds" / "summary.json").read_text())
    assert summary["images"] == 1 and summary["failed"] == []
    assert sum(summary["counts"].values()) == 48 * 64

    v = subprocess.run(
        [str(edgeseg_bin), "--version"], capture_output=True, text=True, cwd=work, env=_clean_env()
    )
    assert v.returncode == 0 and v.stdout.startswith(f"edgeseg {version}")


def summary_classes(work: Path) -> list:
    return list(json.loads((work / "preds" / "summary.json").read_text())["counts"])


def test_sdist_carries_the_build_inputs(tmp_path):
    _needs("build")
    p = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path), ROOT],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    (sdist,) = tmp_path.glob("edgeseg-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        pkg_info = tar.extractfile(
            next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO"))
        )
        meta = pkg_info.read().decode()
    for needed in (
        "pyproject.toml",
        "CMakeLists.txt",
        "LICENSE",
        "README.md",
        "cmake/FindTensorRT.cmake",
        "python/edgeseg/__init__.py",
        "python/edgeseg/_core.pyi",
        "cpp/bindings/module.cpp",
    ):
        assert needed in names, needed
    assert any(n.startswith("cpp/src/") and n.endswith(".cpp") for n in names)
    assert not any(n.startswith((".venv/", "build/", "dist/")) for n in names)
    assert "License-Expression: Apache-2.0" in meta and "License-File: LICENSE" in meta
