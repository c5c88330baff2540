"""tools/gpu_check.sh, the one-command GPU check, on a machine without a GPU: its dry run names
every step with the architecture it was given, it refuses bad input with a clear message, and its
configure step really configures a CUDA build for that architecture where nvcc is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gpu_check.sh"


def gpu_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable, **env},
        timeout=300,
    )


def nvcc() -> str | None:
    return (
        os.environ.get("CUDACXX")
        or shutil.which("nvcc")
        or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    )


@pytest.fixture
def needs_nvcc_and_cmake():
    if nvcc() is None:
        pytest.skip("needs nvcc (the CUDA toolkit) to configure a CUDA build")
    if shutil.which("cmake") is None and not (Path(sys.executable).parent / "cmake").exists():
        pytest.skip("needs cmake")


def test_dry_run_names_every_step_for_the_given_arch(needs_nvcc_and_cmake, tmp_path):
    p = gpu_check("--dry-run", "--arch", "87", "--build-dir", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    steps = dict(line.split(":", 1) for line in p.stdout.splitlines()[1:])
    assert list(steps) == [
        "configure", "build", "stage", "verify", "pytest", "memcheck", "racecheck", "bench"
    ]  # fmt: skip
    assert "-DCMAKE_CUDA_ARCHITECTURES=87" in steps["configure"]
    assert "-DEDGESEG_ENABLE_CUDA=ON" in steps["configure"]
    assert str(tmp_path / "b") in steps["build"]
    assert " -m gpu " in steps["pytest"] and "test_preprocess.py" in steps["pytest"]
    for tool in ("memcheck", "racecheck"):
        assert f"--tool {tool}" in steps[tool] and "test_postprocess.py" in steps[tool]
    assert "tools/bench_gpu.py" in steps["bench"]
    assert not (tmp_path / "b").exists()  # a dry run runs nothing


def test_bad_arguments_are_refused_with_the_fix(tmp_path):
    p = gpu_check("--dry-run", "--arch", "sm_90")
    assert p.returncode == 2 and "--arch 'sm_90' is not a CUDA architecture number" in p.stderr
    p = gpu_check("--frobnicate")
    assert p.returncode == 2 and "unknown argument '--frobnicate'" in p.stderr
    if shutil.which("nvidia-smi") is None:
        p = gpu_check("--dry-run")
        assert p.returncode == 2 and "pass --arch" in p.stderr
    p = gpu_check("--dry-run", "--arch", "90", PYTHON=str(tmp_path / "no-python"))
    assert p.returncode == 2 and "set PYTHON=" in p.stderr


@pytest.mark.slow
def test_configure_only_sets_up_a_cuda_build_for_the_arch(needs_nvcc_and_cmake, tmp_path):
    build = tmp_path / "gpu"
    p = gpu_check("--configure-only", "--arch", "87", "--build-dir", str(build))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "configure  PASS" in p.stdout
    cache = (build / "CMakeCache.txt").read_text()
    assert re.search(r"^CMAKE_CUDA_ARCHITECTURES:\w+=87$", cache, flags=re.M)
    assert "EDGESEG_ENABLE_CUDA:STRING=ON" in cache
    # The kernels are compiled for that architecture and no other.
    rules = "".join(
        p.read_text() for p in build.rglob("*") if p.name in ("build.ninja", "flags.make")
    )
    archs = set(re.findall(r"code=\[compute_(\d+),sm_\d+\]", rules))
    assert archs == {"87"}
