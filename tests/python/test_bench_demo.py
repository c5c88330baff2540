"""The benchmark harness produces sane, checkable output (the demo: test_demo.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg import bench, kernels


def test_bench_json_rows_and_ratios(capsys):
    assert bench.main(["--only", "post-c4", "--repeat", "2", "--warmup", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    assert report["machine"]["threads"] == 2
    impls = [r["impl"] for r in rows]
    assert impls[0].startswith("edgeseg")
    assert "numpy+OpenCV" in impls and any(i.startswith("torch") for i in impls)
    ours = rows[0]["median_ms"]
    for r in rows:
        assert r["median_ms"] > 0
        assert r["speedup_vs_ours"] == pytest.approx(r["median_ms"] / ours)


def test_bench_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        bench.main(["--threads", "0"])


def test_numpy_opencv_peer_agrees_with_kernel():
    """The peer we compare against computes the same thing (else the ratio would be unfair)."""
    cv2 = pytest.importorskip("cv2")
    logits, frame, palette = bench.make_postprocess_inputs(4, 16, 24, 90, 160, seed=5)
    cm, conf, ov, counts = bench.numpy_opencv_postprocess(cv2, logits, 90, 160, frame, palette)
    ours = kernels.postprocess(logits, (90, 160), frame=frame, palette=palette)
    assert (ours.class_map == cm).mean() > 0.999
    np.testing.assert_allclose(ours.confidence, conf, atol=1e-4)
    assert np.abs(ours.overlay.astype(int) - ov).max() <= 1 or (ours.class_map != cm).any()
    assert np.abs(ours.counts - counts).sum() <= 2 * (ours.class_map != cm).sum()


def test_bench_times_each_simd_tier_in_the_same_rounds(capsys):
    best = kernels.simd_level()
    argv = ["--only", "post-c4", "--repeat", "4", "--rounds", "2", "--warmup", "1", "--pause", "0"]
    assert bench.main([*argv, "--simd", f"scalar,{best}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    impls = [r["impl"] for r in report["rows"]]
    assert impls[:2] == ["edgeseg (fused C++, simd=scalar)", f"edgeseg (fused C++, simd={best})"]
    assert report["machine"]["simd_tiers"] == ["scalar", best]
    assert kernels.simd_level() == best  # the forced tier does not leak out of the bench


def test_bench_rejects_unknown_tier_and_missing_core(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--simd", "avx9"])
    with pytest.raises(SystemExit):
        bench.main(["--compare-core", str(tmp_path / "missing.so")])
