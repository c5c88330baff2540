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
    assert res.nonfinite == 0 and res.nonfinite.dtype == np.int64


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


# ---- non-finite logits -----------------------------------------------------------------------

SPECIALS = (np.nan, np.inf, -np.inf)


def inject_nonfinite(rng, logits, per_image):
    """Sets `per_image[i]` random (class, y, x) of image i to NaN, +Inf or -Inf."""
    out = logits.copy()
    n, c, h, w = out.shape
    for i, k in enumerate(per_image):
        for _ in range(k):
            out[i, rng.integers(c), rng.integers(h), rng.integers(w)] = SPECIALS[rng.integers(3)]
    return out


def torch_nonfinite(logits, out_size):
    """Output pixels where F.interpolate's upsampled logits are NaN/Inf in some class."""
    up, _, _, _ = torch_reference(np.asarray(logits, np.float32), out_size)
    return ~np.isfinite(up).all(axis=0)


def bad_cells(logits):
    """(h, w) cells where any class is NaN, +-Inf or >= 2**127 in magnitude."""
    with np.errstate(invalid="ignore"):
        return ~(np.abs(logits.astype(np.float32)) < np.float32(2.0**127)).all(axis=0)


def letterbox_nonfinite(logits, lb):
    """The documented definition through a letterbox, in numpy: the taps of each output pixel
    (canvas position -> logit coordinate, clamped), then any bad cell among the four."""
    _, h, w = logits.shape
    bad = bad_cells(logits)

    def taps(n_out, pad, resized, src, inp, size):
        canvas = pad + (np.arange(n_out) + 0.5) * resized / src
        pos = (canvas * size / inp - 0.5).astype(np.float32)
        pos = np.clip(pos, 0, size - 1)
        i0 = np.minimum(np.floor(pos).astype(int), size - 1)
        return i0, np.minimum(i0 + 1, size - 1)

    x0, x1 = taps(lb.src_width, lb.pad_x, lb.resized_width, lb.src_width, lb.input_width, w)
    y0, y1 = taps(lb.src_height, lb.pad_y, lb.resized_height, lb.src_height, lb.input_height, h)
    return bad[y0][:, x0] | bad[y0][:, x1] | bad[y1][:, x0] | bad[y1][:, x1]


def check_nonfinite_result(res_i, bad_px, c):
    """Non-finite pixels: class 0, confidence 0; counts stay the class map's histogram."""
    assert int(res_i.nonfinite) == int(bad_px.sum())
    assert (res_i.class_map[bad_px] == 0).all()
    if res_i.confidence is not None:
        assert (res_i.confidence[bad_px] == 0).all()
        assert np.isfinite(res_i.confidence).all()
    np.testing.assert_array_equal(res_i.counts, np.bincount(res_i.class_map.ravel(), minlength=c))


@pytest.mark.parametrize("c", [1, 2, 4, 19, 255])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_nonfinite_count_matches_torch(rng, c, dtype):
    n, h, w, out = 3, 9, 13, (37, 50)
    clean = (rng.standard_normal((n, c, h, w)) * 3).astype(dtype)
    logits = inject_nonfinite(rng, clean, [3, 0, 1])  # image 1 stays finite
    frames = rng.integers(0, 256, (n, *out, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    res = kernels.postprocess(logits, frame=frames, palette=palette, alpha=0.6)
    assert res.nonfinite.shape == (n,) and res.nonfinite.dtype == np.int64
    # The same run on the finite logits: every pixel that reads no bad cell must match it.
    ref = kernels.postprocess(clean, frame=frames, palette=palette, alpha=0.6)
    for i in range(n):
        bad_px = torch_nonfinite(logits[i], out)
        res_i = kernels.PostprocessResult(
            res.class_map[i], res.confidence[i], res.overlay[i], res.counts[i], res.nonfinite[i]
        )
        check_nonfinite_result(res_i, bad_px, c)
        assert res.nonfinite[i] > 0 or i == 1
        good = ~bad_px
        np.testing.assert_array_equal(res.class_map[i][good], ref.class_map[i][good])
        np.testing.assert_array_equal(res.confidence[i][good], ref.confidence[i][good])
        np.testing.assert_array_equal(res.overlay[i][good], ref.overlay[i][good])
        # ... and torch's own answer on the finite pixels (ties aside).
        _, cls, conf, gap = torch_reference(logits[i].astype(np.float32), out)
        clear = good & (gap >= TIE_GAP)
        np.testing.assert_array_equal(res.class_map[i][clear], cls[clear])
        np.testing.assert_allclose(res.confidence[i][good], conf[good], rtol=0, atol=1e-4)
        # overlay of non-finite pixels: the class-0 colour blended like any class-0 pixel
        blend = numpy_blend(frames[i], palette, res.class_map[i], 0.6)
        diff = np.abs(res.overlay[i][bad_px].astype(int) - blend[bad_px].astype(int))
        assert diff.size == 0 or diff.max() <= 1
    np.testing.assert_array_equal(ref.nonfinite, [0, 0, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize(
    ("src", "inp", "logit_hw"),
    [((640, 360), (320, 320), (40, 40)), ((300, 500), (256, 192), (16, 12))],
)
def test_nonfinite_through_letterbox(rng, dtype, src, inp, logit_hw):
    lb = kernels.Letterbox(src[0], src[1], inp[0], inp[1])
    c = 4
    clean = (rng.standard_normal((2, c, *logit_hw)) * 3).astype(dtype)
    logits = inject_nonfinite(rng, clean, [4, 2])
    res = kernels.postprocess(logits, letterbox=[lb, lb])
    ref = kernels.postprocess(clean, letterbox=[lb, lb])
    for i in range(2):
        bad_px = letterbox_nonfinite(logits[i], lb)
        res_i = kernels.PostprocessResult(
            res.class_map[i], res.confidence[i], None, res.counts[i], res.nonfinite[i]
        )
        check_nonfinite_result(res_i, bad_px, c)
        good = ~bad_px
        np.testing.assert_array_equal(res.class_map[i][good], ref.class_map[i][good])
        np.testing.assert_array_equal(res.confidence[i][good], ref.confidence[i][good])


def test_nonfinite_unbatched_is_a_scalar_and_every_output_path_clears(rng):
    logits = rng.standard_normal((3, 6, 7)).astype(np.float32)
    logits[1, 2, 3] = np.nan
    bad_px = torch_nonfinite(logits, (20, 30))
    for kw in (dict(), dict(confidence=False), dict(counts=False)):
        res = kernels.postprocess(logits, (20, 30), **kw)
        assert np.ndim(res.nonfinite) == 0 and int(res.nonfinite) == bad_px.sum() > 0
        assert (res.class_map[bad_px] == 0).all()
    # all logits NaN: every pixel is non-finite, none is confident
    res = kernels.postprocess(np.full((2, 4, 4), np.nan, np.float32), (9, 9))
    assert res.nonfinite == 81 and (res.confidence == 0).all() and (res.class_map == 0).all()


def test_huge_finite_logits_count_as_bad_cells():
    # Magnitudes from 2**127 up could overflow the interpolation itself: treated as bad cells.
    logits = np.zeros((2, 4, 4), np.float32)
    logits[1, 1, 1] = np.float32(2.0**127)
    logits[0, 3, 3] = np.float32(-3e38)
    logits[1, 0, 3] = np.float32(1e38)  # below 2**127: an ordinary logit
    res = kernels.postprocess(logits, (8, 8))
    bad = bad_cells(logits)
    assert bad.sum() == 2
    lb = kernels.Letterbox(8, 8, 4, 4)  # identity-like mapping, no padding
    expected = letterbox_nonfinite(logits, lb)
    assert res.nonfinite == expected.sum() > 0
    assert (res.confidence[expected] == 0).all() and (res.confidence[~expected] > 0).all()


def test_nonfinite_identical_across_thread_counts(rng):
    logits = inject_nonfinite(rng, rng.standard_normal((1, 5, 30, 40)).astype(np.float32), [9])
    before = kernels.num_threads()
    try:
        results = []
        for t in (1, 2, 3):
            kernels.set_num_threads(t)
            results.append(kernels.postprocess(logits, (301, 257)))
    finally:
        kernels.set_num_threads(before)
    for other in results[1:]:
        assert other.nonfinite == results[0].nonfinite
        np.testing.assert_array_equal(other.class_map, results[0].class_map)
        np.testing.assert_array_equal(other.confidence, results[0].confidence)


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(1, 9),
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    out_h=st.integers(1, 30),
    out_w=st.integers(1, 30),
    half=st.booleans(),
    bad_fraction=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_nonfinite_never_confident(c, h, w, out_h, out_w, half, bad_fraction, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((c, h, w)) * 4).astype(np.float16 if half else np.float32)
    mask = rng.random(logits.shape) < bad_fraction
    logits[mask] = np.array(SPECIALS, logits.dtype)[rng.integers(0, 3, mask.sum())]
    frame = rng.integers(0, 256, (out_h, out_w, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    res = kernels.postprocess(logits, frame=frame, palette=palette)
    bad_px = torch_nonfinite(logits, (out_h, out_w))
    check_nonfinite_result(res, bad_px, c)
    assert (res.class_map < c).all()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("use_letterbox", [False, True])
def test_cuda_nonfinite_matches_cpu(rng, dtype, use_letterbox):
    c, out = 6, (90, 160)
    logits = inject_nonfinite(rng, (rng.standard_normal((2, c, 20, 30)) * 3).astype(dtype), [5, 0])
    lb = kernels.Letterbox(out[1], out[0], 64, 64) if use_letterbox else None
    cpu = kernels.postprocess(logits, out, letterbox=lb)
    gpu = kernels.postprocess(logits, out, letterbox=lb, device="cuda")
    np.testing.assert_array_equal(gpu.nonfinite, cpu.nonfinite)
    assert cpu.nonfinite[0] > 0 and cpu.nonfinite[1] == 0
    cleared = cpu.confidence == 0
    np.testing.assert_array_equal(gpu.confidence == 0, cleared)
    np.testing.assert_array_equal(gpu.class_map[cleared], 0)


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


# ---- SIMD tiers ---------------------------------------------------------------------------


def runnable_tiers():
    tiers = []
    for level in ("scalar", "sse2", "avx2", "avx512", "neon"):
        try:
            kernels.set_simd_level(level)
        except edgeseg.InvalidArgumentError:
            continue
        finally:
            kernels.set_simd_level(None)
        tiers.append(level)
    return tiers


@pytest.mark.parametrize("c", [2, 4, 9, 16, 17])
@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_simd_tiers_agree(rng, c, alpha):
    """Every tier this CPU runs (forced as on a CPU that has only it) gives the same class map,
    overlay and counts, and the confidence to the last bits (the baseline tier within 1e-6)."""
    tiers = runnable_tiers()
    assert "scalar" in tiers and kernels.simd_level() == tiers[-1]
    logits = inject_nonfinite(
        rng, (rng.standard_normal((2, c, 13, 29)) * 3).astype(np.float32), [2, 0]
    )
    # odd sizes: vector loops end in scalar tails, the last rows end at the buffer's end
    frames = rng.integers(0, 256, (2, 61, 203, 3), dtype=np.uint8)
    palette = rng.integers(0, 256, (c, 3), dtype=np.uint8)
    kw = dict(frame=frames, palette=palette, alpha=alpha, ignore=[1])
    results = {}
    try:
        for level in tiers:
            kernels.set_simd_level(level)
            assert kernels.simd_level() == level
            results[level] = kernels.postprocess(logits, **kw)
    finally:
        kernels.set_simd_level(None)
    ref = results[tiers[-1]]
    for i in range(2):
        assert_overlay(
            kernels.PostprocessResult(ref.class_map[i], None, ref.overlay[i], None),
            frames[i],
            palette,
            alpha,
            ignore=[1],
        )
    for level, res in results.items():
        np.testing.assert_array_equal(res.class_map, ref.class_map, err_msg=level)
        np.testing.assert_array_equal(res.overlay, ref.overlay, err_msg=level)
        np.testing.assert_array_equal(res.counts, ref.counts, err_msg=level)
        np.testing.assert_array_equal(res.nonfinite, ref.nonfinite, err_msg=level)
        tol = 1e-6 if level in ("scalar", "sse2") else 0
        np.testing.assert_allclose(res.confidence, ref.confidence, rtol=0, atol=tol, err_msg=level)


def test_set_simd_level_rejects_unknown_and_unrunnable():
    with pytest.raises(edgeseg.InvalidArgumentError, match="simd level.*avx9"):
        kernels.set_simd_level("avx9")
    other = "neon" if kernels.simd_level() != "neon" else "avx2"
    with pytest.raises(edgeseg.InvalidArgumentError, match="cannot run"):
        kernels.set_simd_level(other)
    kernels.set_simd_level("scalar")
    try:
        assert edgeseg.build_info()["simd"] == "scalar"
    finally:
        kernels.set_simd_level(None)
    assert kernels.simd_level() != "scalar" or runnable_tiers() == ["scalar"]
