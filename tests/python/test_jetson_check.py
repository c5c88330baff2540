"""tools/jetson_check (the package behind `make jetson-check`) without the cross tools: its
command line, and the test-vector comparison that decides parity, on outputs written here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from jetson_check.common import CheckError  # noqa: E402
from jetson_check.vectors import check_parity, compare_case, write_vectors  # noqa: E402


def test_command_line_lists_the_checks_and_refuses_unknown_ones():
    tool = [sys.executable, str(ROOT / "tools" / "jetson_check")]
    p = subprocess.run([*tool, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "{aarch64,cuda12,cuda13}" in p.stdout
    p = subprocess.run([*tool, "--only", "x86"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "invalid choice: 'x86'" in p.stderr


def fake_outputs(cases, out: Path, rng) -> None:
    """What kernel_vectors writes: a status file and one raw file per output of each case."""
    out.mkdir()
    for case in cases:
        (out / f"{case.name}.status").write_text("ok\n")
        for suffix, kind in case.outputs.items():
            data = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            if kind == "f32":
                data = rng.normal(size=16).astype(np.float32).tobytes()
            (out / f"{case.name}.{suffix}").write_bytes(data)


def test_vectors_and_parity_verdicts(tmp_path):
    cases = write_vectors(tmp_path / "vec")
    manifest = (tmp_path / "vec" / "manifest.txt").read_text().splitlines()
    assert len(manifest) == len(cases) + 1 and {c.kind for c in cases} == {"pre", "post"}
    x86, arm = tmp_path / "x86", tmp_path / "arm"
    fake_outputs(cases, x86, np.random.default_rng(1))
    arm.mkdir()
    for f in x86.iterdir():
        (arm / f.name).write_bytes(f.read_bytes())
    assert check_parity(cases, x86, arm) == len(cases)

    post = next(c for c in cases if c.outputs.get("confidence") == "f32")
    conf = np.frombuffer((arm / f"{post.name}.confidence").read_bytes(), np.float32).copy()
    conf[3] += 1e-3
    (arm / f"{post.name}.confidence").write_bytes(conf.tobytes())
    status, _, diff, failure = compare_case(post, x86, arm)
    assert status == "ok" and diff == pytest.approx(1e-3, rel=1e-2) and "element 3" in failure
    cmap = bytearray((arm / f"{post.name}.classmap").read_bytes())
    cmap[5] ^= 1
    (arm / f"{post.name}.classmap").write_bytes(bytes(cmap))
    (arm / f"{cases[0].name}.status").write_text("error: boom\n")
    with pytest.raises(CheckError, match="aarch64 outputs differ from x86") as e:
        check_parity(cases, x86, arm)
    assert "first at byte 5" in str(e.value) and "aarch64 said 'error: boom'" in str(e.value)
