"""edgeseg.kernels.postprocess against independent references (torch, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import edgeseg
from edgeseg import kernels

TIE_GAP = 1e-5


def torch_reference(logits: np.ndarray, out_size, grid=None):
    """(upsampled logits, class map, confidence, top-2 gap) from torch, float32 math."""
    x = torch.from_numpy(np.asarray(logits, dtype=np.float32))[None]
    if grid is None:
        up = F.interpolate(x, size=tuple(out_size), mode="bilinear", align_corners=False)[0]
    else:
        up = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    cls = up.argmax(0).numpy().astype(np.uint8)
    conf = torch.softmax(up, 0).max(0).values.numpy()
    if up.shape[0] > 1:
        top2 = torch.topk(up, 2, dim=0).values
        gap = (top2[0] - top2[1]).numpy()
    else:
        gap = np.full(up.shape[1:], np.inf, dtype=np.float32)
    return up.numpy(), cls, conf, gap


def assert_matches_torch(res, logits, out_size, grid=None, conf_tol=1e-4):
    _, cls, conf, gap = torch_reference(logits, out_size, grid)
    clear = gap >= TIE_GAP
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(res.class_map[clear], cls[clear])
    if res.confidence is not None:
        np.testing.assert_allclose(res.confidence, conf, rtol=0, atol=conf_tol)
    if res.counts is not None:
        np.testing.assert_array_equal(
            res.counts, np.bincount(res.class_map.ravel(), minlength=logits.shape[0])
        )


def numpy_blend(frame, palette, class_map, alpha, ignore=()):
    blended = np.round(
        frame.astype(np.float64) * (1 - alpha) + palette[class_map].astype(np.float64) * alpha
    )
    for c in ignore:
        blended[class_map == c] = frame[class_map == c]
    return blended


def assert_overlay(res, frame, palette, alpha, ignore=()):
    ref = numpy_blend(frame, palette, res.class_map, alpha, ignore)
    diff = np.abs(res.overlay.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1
    # The 1-LSB slack is for rounding only (numpy rounds halves to even, the kernel up, which
    # at alpha 0.5 splits a quarter of the bytes): most bytes must agree exactly.
    assert (diff == 0).mean() > 0.6


@pytest.mark.parametrize(
    ("c", "h", "w", "out"),
    [
        (4, 16, 16, (72, 128)),  # upsampling
        (19, 32, 64, (100, 77)),  # mixed up/down
        (5, 40, 50, (13, 17)),  # downsampling
        (3, 1, 300, (7, 2000)),  # extreme aspect ratio
        (6, 9, 1, (300, 3)),
        (7, 1, 1, (5, 6)),  # 1x1 logits
        (8, 20, 30, (1, 1)),  # 1x1 output
        (2, 16, 16, (16, 16)),  # identity size
    ],
)
def test_matches_torch_interpolate(rng, c, h, w, out):
    logits = rng.standard_normal((c, h, w)).astype(np.float32) * 3
    res = kernels.postprocess(logits, out)
    assert res.class_map.shape == out and res.class_map.dtype == np.uint8
    assert res.confidence.dtype == np.float32 and res.counts.dtype == np.int64
    assert_matches_torch(res, logits, out)


def test_upsampling_is_torch_bit_exact_through_confidence(rng):
    # Same fused rounding as torch: confidence differs only by the exp polynomial (~1e-7).
    logits = rng.standard_normal((4, 128, 128)).astype(np.float32)
    res = kernels.postprocess(logits, (180, 320))
    _, cls, conf, _ = torch_reference(logits, (180, 320))
    np.testing.assert_array_equal(res.class_map, cls)
    np.testing.assert_allclose(res.confidence, conf, rtol=0, atol=1e-6)


def test_float16_logits(rng):
    logits = (rng.standard_normal((5, 24, 40)) * 4).astype(np.float16)
    res = kernels.postprocess(logits, (50, 90))
    assert_matches_torch(res, logits.astype(np.float32), (50, 90))


def test_float16_special_values():
    # Class 1 against a class 0 of zeros, at identity size: subnormal, max-normal and signed
    # zero halves must survive the conversion with their sign and order.
    vals = np.array([6e-8, -6e-8, 65504.0, -65504.0, -0.0, 0.0, 1.5], dtype=np.float16)
    logits = np.zeros((2, 1, vals.size), dtype=np.float16)
    logits[1, 0] = vals
    res = kernels.postprocess(logits, (1, vals.size))
    np.testing.assert_array_equal(res.class_map[0], [1, 0, 1, 0, 0, 0, 1])
    np.testing.assert_allclose(
        res.confidence[0, 2:], [1.0, 1.0, 0.5, 0.5, 1 / (1 + np.exp(-1.5))], rtol=1e-6
    )


def test_single_class():
    logits = np.random.default_rng(3).standard_normal((1, 7, 9)).astype(np.float32)
    res = kernels.postprocess(logits, (20, 11))
    assert (res.class_map == 0).all()
    np.testing.assert_array_equal(res.confidence, np.ones((20, 11), np.float32))
    np.testing.assert_array_equal(res.counts, [220])


def test_255_classes(rng):
    logits = rng.standard_normal((255, 6, 5)).astype(np.float32) * 5
    res = kernels.postprocess(logits, (31, 17))
    assert_matches_torch(res, logits, (31, 17))
    assert res.class_map.max() > 200  # high class ids survive the uint8 path


@pytest.mark.parametrize("c", [1, 2, 7, 40])
def test_ties_pick_lowest_class(c):
    logits = np.full((c, 4, 4), 0.25, dtype=np.float32)
    res = kernels.postprocess(logits, (9, 10))
    assert (res.class_map == 0).all()
    np.testing.assert_allclose(res.confidence, 1.0 / c, rtol=1e-6)
    if c > 1:
        # Without class 0 the remaining classes tie and the lowest of them, 1, wins.
        logits[0] = -1.0
        res = kernels.postprocess(logits, (9, 10))
        assert (res.class_map == 1).all()


def test_outputs_can_be_skipped(rng):
    logits = rng.standard_normal((3, 8, 8)).astype(np.float32)
    res = kernels.postprocess(logits, (16, 16), confidence=False, counts=False)
    assert res.confidence is None and res.counts is None and res.overlay is None
    full = kernels.postprocess(logits, (16, 16))
    np.testing.assert_array_equal(res.class_map, full.class_map)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_overlay_matches_numpy_blend(rng, alpha):
    c, out = 6, (45, 70)
    logits = rng.standard_normal((c, 12, 20)).astype(np.float32)
    frame = rng.integers(0, 256, (*out, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    res = kernels.postprocess(logits, frame=frame, palette=palette, alpha=alpha)
    assert res.overlay.shape == (*out, 3) and res.overlay.dtype == np.uint8
    assert_overlay(res, frame, palette, alpha)
    if alpha == 0.0:
        np.testing.assert_array_equal(res.overlay, frame)
    if alpha == 1.0:
        np.testing.assert_array_equal(res.overlay, palette[res.class_map])


def test_overlay_ignore_classes_stay_transparent(rng):
    c, out = 5, (40, 60)
    logits = rng.standard_normal((c, 10, 10)).astype(np.float32)
    frame = rng.integers(0, 256, (*out, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    res = kernels.postprocess(logits, frame=frame, palette=palette, alpha=0.7, ignore=[0, 3])
    mask = np.isin(res.class_map, [0, 3])
    assert 0 < mask.mean() < 1
    np.testing.assert_array_equal(res.overlay[mask], frame[mask])
    assert (res.overlay[~mask] != frame[~mask]).any()
    assert_overlay(res, frame, palette, 0.7, ignore=[0, 3])


@pytest.mark.parametrize(
    "make_frame",
    [
        lambda f: f[5:45, 10:70],  # crop: row stride larger than width * 3
        lambda f: f[5:45, 10:130:2],  # pixel stride 6
        lambda f: f[5:45, 10:70][::-1],  # negative row stride
        lambda f: f[5:45, 10:70][:, ::-1],  # negative pixel stride
    ],
)
def test_overlay_strided_frames(rng, make_frame):
    big = rng.integers(0, 256, (60, 140, 3), dtype=np.uint8)
    frame = make_frame(big)
    assert not frame.flags.c_contiguous
    logits = rng.standard_normal((4, 8, 12)).astype(np.float32)
    palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    res = kernels.postprocess(logits, frame=frame, palette=palette, alpha=0.4)
    assert res.overlay.shape == (40, 60, 3)
    assert_overlay(res, frame, palette, 0.4)


def test_batch_with_frame_list_and_nhwc(rng):
    n, c, out = 3, 4, (30, 40)
    logits = rng.standard_normal((n, c, 10, 12)).astype(np.float32)
    frames = rng.integers(0, 256, (n, *out, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    res_list = kernels.postprocess(logits, frame=list(frames), palette=palette)
    res_nhwc = kernels.postprocess(logits, frame=frames, palette=palette)
    assert res_list.class_map.shape == (n, *out)
    assert res_list.overlay.shape == (n, *out, 3)
    assert res_list.counts.shape == (n, c)
    for field in ("class_map", "confidence", "overlay", "counts"):
        np.testing.assert_array_equal(getattr(res_list, field), getattr(res_nhwc, field))
    for i in range(n):
        single = kernels.postprocess(logits[i], frame=frames[i], palette=palette)
        assert single.class_map.shape == out  # unbatched input drops N
        np.testing.assert_array_equal(single.class_map, res_list.class_map[i])
        np.testing.assert_array_equal(single.overlay, res_list.overlay[i])
        np.testing.assert_array_equal(single.counts, res_list.counts[i])
        assert_matches_torch(single, logits[i], out)


def letterbox_grid(lb, h, w):
    """grid_sample grid for output pixels of the original frame through a letterbox."""
    xs = (lb.pad_x + (np.arange(lb.src_width) + 0.5) * lb.resized_width / lb.src_width) * (
        w / lb.input_width
    ) - 0.5
    ys = (lb.pad_y + (np.arange(lb.src_height) + 0.5) * lb.resized_height / lb.src_height) * (
        h / lb.input_height
    ) - 0.5
    gx = (xs + 0.5) / w * 2 - 1
    gy = (ys + 0.5) / h * 2 - 1
    grid = np.stack(np.meshgrid(gx, gy), axis=-1)[None]
    return torch.from_numpy(grid.astype(np.float32))


@pytest.mark.parametrize(
    ("src", "inp", "logit_hw"),
    [
        ((640, 360), (320, 320), (40, 40)),
        ((300, 500), (256, 192), (64, 48)),
        ((50, 50), (64, 64), (64, 64)),
    ],
)
def test_letterbox_matches_grid_sample(rng, src, inp, logit_hw):
    lb = kernels.Letterbox(src[0], src[1], inp[0], inp[1])
    c = 5
    logits = rng.standard_normal((c, *logit_hw)).astype(np.float32)
    res = kernels.postprocess(logits, letterbox=lb)
    assert res.class_map.shape == (src[1], src[0])
    grid = letterbox_grid(lb, *logit_hw)
    assert_matches_torch(res, logits, None, grid=grid)
    # A letterbox with padding samples differently from a plain resize.
    if lb.pad_x or lb.pad_y:
        plain = kernels.postprocess(logits, (src[1], src[0]))
        assert (plain.class_map != res.class_map).any()


def test_thread_counts_give_identical_results(rng):
    logits = rng.standard_normal((7, 30, 40)).astype(np.float32)
    frame = rng.integers(0, 256, (333, 250, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (7, 3), dtype=np.uint8)
    before = kernels.num_threads()
    try:
        kernels.set_num_threads(1)
        one = kernels.postprocess(logits, frame=frame, palette=palette)
        kernels.set_num_threads(2)
        two = kernels.postprocess(logits, frame=frame, palette=palette)
        kernels.set_num_threads(3)
        three = kernels.postprocess(logits, frame=frame, palette=palette)
    finally:
        kernels.set_num_threads(before)
    for other in (two, three):
        for field in ("class_map", "confidence", "overlay", "counts"):
            np.testing.assert_array_equal(getattr(one, field), getattr(other, field))


def test_repeated_calls_do_not_leak_state(rng):
    # Per-thread row caches must not carry rows over from a previous call.
    a = rng.standard_normal((3, 10, 10)).astype(np.float32)
    b = rng.standard_normal((3, 10, 10)).astype(np.float32)
    ref_b = kernels.postprocess(b, (50, 50))
    kernels.postprocess(a, (50, 50))
    again_b = kernels.postprocess(b, (50, 50))
    np.testing.assert_array_equal(ref_b.class_map, again_b.class_map)
    np.testing.assert_array_equal(ref_b.confidence, again_b.confidence)


@settings(max_examples=50, deadline=None)
@given(
    c=st.integers(1, 12),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    out_h=st.integers(1, 40),
    out_w=st.integers(1, 40),
    half=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_small_shapes(c, h, w, out_h, out_w, half, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((c, h, w)) * 2).astype(np.float16 if half else np.float32)
    frame = rng.integers(0, 256, (out_h, out_w, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    res = kernels.postprocess(logits, frame=frame, palette=palette, alpha=0.6)
    _, cls, conf, gap = torch_reference(logits.astype(np.float32), (out_h, out_w))
    clear = gap >= TIE_GAP
    np.testing.assert_array_equal(res.class_map[clear], cls[clear])
    np.testing.assert_allclose(res.confidence, conf, rtol=0, atol=1e-4)
    assert (res.confidence >= 1.0 / c - 1e-6).all() and (res.confidence <= 1 + 1e-6).all()
    np.testing.assert_array_equal(res.counts, np.bincount(res.class_map.ravel(), minlength=c))
    assert res.counts.sum() == out_h * out_w
    ref = numpy_blend(frame, palette, res.class_map, 0.6)
    assert np.abs(res.overlay.astype(int) - ref).max() <= 1


LOGITS = np.zeros((3, 4, 4), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"logits": np.zeros((0, 4, 4), np.float32), "out_size": (8, 8)}, "C=0"),
        ({"logits": np.zeros((256, 2, 2), np.float32), "out_size": (8, 8)}, "C=256"),
        ({"logits": np.zeros((3, 4, 4), np.int32), "out_size": (8, 8)}, "logits"),
        ({"logits": np.zeros((4, 4), np.float32), "out_size": (8, 8)}, "logits"),
        ({"logits": LOGITS, "out_size": (0, 5)}, "out_size"),
        ({"logits": LOGITS, "out_size": (8, 8), "alpha": 1.5}, "alpha"),
        (
            {
                "logits": LOGITS,
                "frame": np.zeros((8, 8, 3), np.uint8),
                "palette": np.zeros((3, 4), np.uint8),
            },
            "palette",
        ),
        (
            {
                "logits": LOGITS,
                "frame": np.zeros((8, 8, 3), np.uint8),
                "palette": np.zeros((2, 3), np.uint8),
            },
            "palette",
        ),
        ({"logits": LOGITS, "out_size": (8, 9), "frame": np.zeros((8, 8, 3), np.uint8)}, "frame"),
        (
            {
                "logits": np.zeros((2, 3, 4, 4), np.float32),
                "frame": [np.zeros((8, 8, 3), np.uint8)],
            },
            "frame",
        ),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, needle):
    with pytest.raises(ValueError, match=needle) as info:
        kernels.postprocess(**kwargs)
    assert isinstance(info.value, edgeseg.EdgesegError)


def test_native_core_validates_too():
    # The wrapper's checks are repeated by the binding, which names the argument as well.
    from edgeseg import _core

    with pytest.raises(ValueError, match="C=256"):
        _core.postprocess(
            np.zeros((1, 256, 2, 2), np.float32), 4, 4, None, None, 0.5, True, True, [], None
        )
    with pytest.raises(ValueError, match="alpha"):
        _core.postprocess(
            np.zeros((1, 3, 2, 2), np.float32), 4, 4, None, None, 2.0, True, True, [], None
        )


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("use_letterbox", [False, True])
def test_cuda_matches_cpu(rng, dtype, use_letterbox):
    c, out = 9, (120, 200)
    logits = (rng.standard_normal((2, c, 30, 40)) * 3).astype(dtype)
    big = rng.integers(0, 256, (2, 130, 420, 3), dtype=np.uint8)
    frames = [big[0, 5:125, 10:210], big[1, 5:125, 10:410:2][::-1]]
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    lb = kernels.Letterbox(out[1], out[0], 64, 64) if use_letterbox else None
    kw = dict(frame=frames, palette=palette, alpha=0.45, ignore=[2], letterbox=lb)
    cpu = kernels.postprocess(logits, **kw)
    gpu = kernels.postprocess(logits, device="cuda", **kw)
    same = gpu.class_map == cpu.class_map
    assert same.mean() > 0.999
    if lb is None:
        gap = torch_reference(logits[0].astype(np.float32), out)[3]
        assert (same[0] | (gap < TIE_GAP)).all()
    np.testing.assert_allclose(gpu.confidence, cpu.confidence, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(gpu.overlay[same], cpu.overlay[same])
    for i in range(2):
        np.testing.assert_array_equal(
            gpu.counts[i], np.bincount(gpu.class_map[i].ravel(), minlength=c)
        )


@pytest.mark.gpu
def test_cuda_extreme_shapes(rng):
    for c, h, w, out in [(1, 1, 1, (1, 1)), (255, 3, 5, (17, 33)), (3, 1, 300, (7, 2000))]:
        logits = rng.standard_normal((c, h, w)).astype(np.float32)
        cpu = kernels.postprocess(logits, out)
        gpu = kernels.postprocess(logits, out, device="cuda")
        assert (gpu.class_map == cpu.class_map).mean() > 0.999
        np.testing.assert_allclose(gpu.confidence, cpu.confidence, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(gpu.counts, np.bincount(gpu.class_map.ravel(), minlength=c))
