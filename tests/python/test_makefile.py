"""`make help` describes the targets as they are (the demo runs the whole chain)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_make_help_lists_every_documented_target_and_the_real_demo():
    if shutil.which("make") is None:
        pytest.skip("needs make")
    p = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    text = p.stdout
    targets = set(re.findall(r"^make (\S+)", text, flags=re.M))
    assert {"demo", "test", "docs", "wheel", "jetson-check", "bench", "system-deps"} <= targets
    makefile = (ROOT / "Makefile").read_text()
    for t in targets:  # every target help names exists in the Makefile
        assert re.search(rf"^{re.escape(t)}:", makefile, flags=re.M), t
    demo = next(ln for ln in text.splitlines() if ln.startswith("make demo"))
    assert "training" in demo and "report.html" in text  # the whole chain, not a kernel demo
