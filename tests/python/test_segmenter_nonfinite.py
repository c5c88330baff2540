"""Segmenter fills SegResult.nonfinite / nonfinite_input on every CPU path (batch, mixed sizes,
tiled): the real ONNX model's logits with NaN/Inf written into some cells, as an engine that
overflows would return them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from edgeseg import kernels  # noqa: E402
from edgeseg.runtime import Segmenter  # noqa: E402


def poison(seg, cells, images=(0,)):
    """Wraps the backend's real inference: logits[i, c, y, x] = value for i in `images`.
    Returns the list of logits the postprocess saw."""
    real = seg.backend.infer
    seen = []

    def infer(blob):
        out = np.array(real(blob), copy=True)
        for i in images:
            if i < out.shape[0]:
                for c, y, x, value in cells:
                    out[i, c, y, x] = value
        seen.append(out.copy())
        return out

    seg.backend.infer = infer
    return seen


@pytest.fixture
def frames():
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(2)]


def test_batch_path_counts_per_frame(tiny_onnx, frames):
    seg = Segmenter(tiny_onnx, threads=1)
    seen = poison(seg, [(1, 3, 4, np.nan), (0, 10, 20, np.inf), (1, 30, 1, -np.inf)])
    results = seg.predict_batch(frames)
    blob = seg._preprocess(frames, False)
    ref = kernels.postprocess(seen[0], frame=frames, letterbox=blob.letterbox)
    assert results[0].nonfinite == ref.nonfinite[0] > 0
    assert results[1].nonfinite == 0 and results[1].valid
    assert not results[0].valid and "output not finite" in results[0].invalid_reason
    assert all(r.nonfinite_input == 0 for r in results)
    bad = ref.confidence[0] == 0
    assert bad.sum() == results[0].nonfinite
    assert (results[0].class_map[bad] == 0).all() and (results[0].confidence[bad] == 0).all()


def test_mixed_sizes_and_single_frame(tiny_onnx, frames):
    seg = Segmenter(tiny_onnx, threads=1)
    poison(seg, [(0, 0, 0, np.nan)], images=(1,))
    small = frames[1][:45, :70]
    results = seg.predict_batch([frames[0], small])
    assert results[0].nonfinite == 0 and results[1].nonfinite > 0
    one = seg.predict(frames[0])  # a batch of one: image 0 of it is not poisoned
    assert one.nonfinite == 0 and one.valid


def test_tiled_path(tiny_onnx, frames):
    seg = Segmenter(tiny_onnx, threads=1, tile=(64, 64), overlap=8)
    poison(seg, [(0, 32, 32, np.nan)])
    res = seg.predict(frames[0])
    assert res.nonfinite > 0 and not res.valid and res.nonfinite_input == 0
    clean = Segmenter(tiny_onnx, threads=1, tile=(64, 64), overlap=8).predict(frames[0])
    assert clean.nonfinite == 0 and clean.valid
