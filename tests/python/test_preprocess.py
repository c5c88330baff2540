"""edgeseg.kernels.preprocess against OpenCV + numpy references.

The resize must be bit-exact with cv2.resize(INTER_LINEAR) on uint8 images, so every
comparison uses a tolerance far below one uint8 step after normalization (1 / (255 * std)).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgeseg
from edgeseg import kernels

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# One uint8 step is >= 1 / (255 * 0.229) ~ 0.017 after normalization; float32 rounding of the
# normalization itself stays below 1e-5.
ATOL = 1e-5


def cv_resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    out = cv2.resize(np.ascontiguousarray(img), (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(h, w, -1)  # cv2 drops a trailing channel axis of 1


def normalize(r: np.ndarray, mean, std) -> np.ndarray:
    """HWC uint8 (already in output channel order) -> CHW float32."""
    m = np.asarray(mean, np.float32)
    s = np.asarray(std, np.float32)
    return ((r.astype(np.float32) / np.float32(255) - m) / s).transpose(2, 0, 1)


def to_output_channels(r: np.ndarray, n_out: int, swap: bool) -> np.ndarray:
    if r.shape[2] == 1 and n_out == 3:
        r = np.repeat(r, 3, axis=2)
    return r[:, :, ::-1] if swap and r.shape[2] == 3 else r


def reference(img, size, mean=MEAN, std=STD, swap=True) -> np.ndarray:
    h, w = size
    r = to_output_channels(cv_resize(img, w, h), len(mean), swap)
    return normalize(r, mean, std)


def letterbox_geometry(src_w: int, src_h: int, w: int, h: int) -> tuple[int, int, int, int]:
    """(resized_w, resized_h, pad_x, pad_y), written independently of the core."""
    scale = min(w / src_w, h / src_h)
    rw = min(max(int(math.floor(src_w * scale + 0.5)), 1), w)
    rh = min(max(int(math.floor(src_h * scale + 0.5)), 1), h)
    return rw, rh, (w - rw) // 2, (h - rh) // 2


def reference_letterbox(img, size, pad=114, mean=MEAN, std=STD, swap=True):
    h, w = size
    rw, rh, px, py = letterbox_geometry(img.shape[1], img.shape[0], w, h)
    r = cv_resize(img, rw, rh)
    canvas = np.full((h, w, r.shape[2]), pad, np.uint8)
    canvas[py : py + rh, px : px + rw] = r
    return normalize(to_output_channels(canvas, len(mean), swap), mean, std), (rw, rh, px, py)


def random_image(rng, h, w, c=3) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def restore_threads():
    n = kernels.num_threads()
    yield
    kernels.set_num_threads(n)


# ---- resize exactness -----------------------------------------------------------------------

SIZES = [
    # (src_h, src_w, out_h, out_w)
    (1080, 1920, 512, 512),
    (480, 640, 512, 512),
    (37, 53, 300, 200),
    (300, 200, 37, 53),
    (100, 100, 50, 50),  # exact 2x: OpenCV switches to INTER_AREA, which must agree
    (64, 64, 64, 64),  # identity
    (1, 1, 1, 1),
    (1, 1, 7, 5),
    (7, 5, 1, 1),
    (1, 2000, 4, 64),
    (2000, 1, 64, 4),
    (2, 3, 1, 2000),
    (17, 31, 1, 1),
    (33, 1023, 129, 17),
]


@pytest.mark.parametrize("src_h,src_w,out_h,out_w", SIZES)
def test_matches_cv2_resize(rng, src_h, src_w, out_h, out_w):
    img = random_image(rng, src_h, src_w)
    blob = kernels.preprocess(img, (out_h, out_w))
    assert blob.shape == (1, 3, out_h, out_w) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[0], reference(img, (out_h, out_w)), rtol=0, atol=ATOL)


def test_many_random_sizes(rng):
    for _ in range(60):
        sh, sw, oh, ow = (int(v) for v in rng.integers(1, 160, 4))
        img = random_image(rng, sh, sw)
        out = kernels.preprocess(img, (oh, ow))[0]
        np.testing.assert_allclose(
            out, reference(img, (oh, ow)), rtol=0, atol=ATOL, err_msg=f"{sh}x{sw} -> {oh}x{ow}"
        )


def test_edge_values_are_exact(rng):
    # Saturated and constant images hit the extremes of the fixed-point arithmetic.
    for value in (0, 1, 128, 254, 255):
        img = np.full((45, 77, 3), value, np.uint8)
        out = kernels.preprocess(img, (91, 13), mean=(0, 0, 0), std=(1, 1, 1))
        np.testing.assert_allclose(out, np.float32(value) / 255, rtol=0, atol=1e-7)
    img = np.zeros((40, 40, 3), np.uint8)
    img[::2, ::2] = 255
    np.testing.assert_allclose(
        kernels.preprocess(img, (23, 61))[0], reference(img, (23, 61)), rtol=0, atol=ATOL
    )


# ---- layouts and channel orders -------------------------------------------------------------

STRIDED = {
    "crop": lambda a: a[5:, 3:],
    "crop_inner": lambda a: a[7:-9, 11:-4],
    "pixel_step": lambda a: a[:, ::2],
    "rows_reversed": lambda a: a[::-1],
    "cols_reversed": lambda a: a[:, ::-1],
    "both_steps": lambda a: a[::3, ::-2],
}


@pytest.mark.parametrize("view", sorted(STRIDED))
def test_strided_views(rng, view):
    base = random_image(rng, 121, 203)
    img = STRIDED[view](base)
    assert not img.flags.c_contiguous
    for size in ((64, 96), (300, 41)):
        out = kernels.preprocess(img, size)[0]
        np.testing.assert_allclose(out, reference(img, size), rtol=0, atol=ATOL)


@pytest.mark.parametrize("in_order", ["bgr", "rgb"])
@pytest.mark.parametrize("out_order", ["bgr", "rgb"])
def test_channel_orders_and_per_channel_stats(rng, in_order, out_order):
    img = random_image(rng, 50, 70)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.4, 0.8)  # distinct, so a mixed-up channel shows
    out = kernels.preprocess(
        img, (33, 44), mean=mean, std=std, input_order=in_order, output_order=out_order
    )[0]
    expected = reference(img, (33, 44), mean, std, swap=in_order != out_order)
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape", [(61, 47), (61, 47, 1)])
def test_gray_replicated_to_three_channels(rng, shape):
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    out = kernels.preprocess(img, (30, 90))[0]
    np.testing.assert_allclose(out, reference(img, (30, 90)), rtol=0, atol=ATOL)
    # swap is meaningless for gray: the same plane lands in every channel
    same = kernels.preprocess(img, (30, 90), input_order="rgb", output_order="rgb")[0]
    np.testing.assert_array_equal(out, same)


def test_gray_single_channel_model(rng):
    img = random_image(rng, 80, 60, c=None)
    out = kernels.preprocess(img, (17, 29), mean=(0.5,), std=(0.25,))
    assert out.shape == (1, 1, 17, 29)
    np.testing.assert_allclose(out[0], reference(img, (17, 29), (0.5,), (0.25,)), rtol=0, atol=ATOL)


def test_nhwc_batch_and_list_of_sizes(rng):
    batch = random_image(rng, 4 * 40, 30).reshape(4, 40, 30, 3)
    out = kernels.preprocess(batch, (20, 25))
    assert out.shape == (4, 3, 20, 25)
    for i in range(4):
        np.testing.assert_allclose(out[i], reference(batch[i], (20, 25)), rtol=0, atol=ATOL)

    images = [random_image(rng, 13, 200), random_image(rng, 300, 7), random_image(rng, 1, 1)]
    out = kernels.preprocess(images, (32, 48))
    assert out.shape == (3, 3, 32, 48)
    for i, img in enumerate(images):
        np.testing.assert_allclose(out[i], reference(img, (32, 48)), rtol=0, atol=ATOL)


# ---- float16 --------------------------------------------------------------------------------


def test_float16_is_float32_rounded(rng):
    img = random_image(rng, 97, 131)
    for size in ((64, 64), (45, 203)):
        h16 = kernels.preprocess(img, size, dtype="float16")
        f32 = kernels.preprocess(img, size, dtype="float32")
        assert h16.dtype == np.float16
        # the same float, rounded to nearest even
        np.testing.assert_array_equal(h16, f32.astype(np.float16))
        # and the independent reference, up to float16 rounding of a 1-ulp float32 difference
        ref16 = reference(img, size).astype(np.float16)
        ulp = np.spacing(np.abs(ref16)).astype(np.float32)
        diff = np.abs(h16[0].astype(np.float32) - ref16.astype(np.float32))
        assert np.all(diff <= ulp)
        assert np.mean(diff == 0) > 0.99


def core_preprocess(images, size, mean, std, float16=False, letterbox=False):
    """The native kernel without the wrapper's range check (it counts instead)."""
    from edgeseg import _core

    return _core.preprocess(
        list(images), *size, len(mean), list(mean), list(std), False, float16, letterbox, 114
    )


def test_float16_overflow_and_tiny_values(rng):
    img = random_image(rng, 20, 20)
    with pytest.raises(edgeseg.InvalidArgumentError, match=r"std\[0\].*float16.*float32"):
        kernels.preprocess(img, (8, 8), mean=(0, 0, 0), std=(1e-6, 1e-6, 1e-6), dtype="float16")
    big, _, nonfinite = core_preprocess([img], (8, 8), (0, 0, 0), (1e-6,) * 3, float16=True)
    f32 = kernels.preprocess(img, (8, 8), mean=(0, 0, 0), std=(1e-6, 1e-6, 1e-6))
    assert f32.nonfinite == 0
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(big, f32.astype(np.float16))  # inf where > 65504
    assert np.isinf(big).any()
    assert nonfinite[0] == np.isinf(big).sum()
    tiny = kernels.preprocess(img, (8, 8), mean=(0, 0, 0), std=(1e5, 1e5, 1e5), dtype="float16")
    f32 = kernels.preprocess(img, (8, 8), mean=(0, 0, 0), std=(1e5, 1e5, 1e5))
    np.testing.assert_array_equal(tiny, f32.astype(np.float16))
    subnormal = (tiny != 0) & (np.abs(tiny) < np.finfo(np.float16).tiny)
    assert subnormal.any()


# ---- non-finite output ----------------------------------------------------------------------


def test_nonfinite_is_zero_and_shaped_like_letterbox(rng):
    img = random_image(rng, 30, 40)
    one = kernels.preprocess(img, (16, 16))
    assert isinstance(one.nonfinite, np.integer) and one.nonfinite == 0
    batch = kernels.preprocess([img, img[:10]], (16, 16), dtype="float16", letterbox=True)
    assert batch.nonfinite.shape == (2,) and batch.nonfinite.dtype == np.int64
    np.testing.assert_array_equal(batch.nonfinite, [0, 0])
    assert batch[:1].nonfinite is None  # a slice no longer describes the batch


@pytest.mark.parametrize(
    ("mean", "std", "dtype", "needle"),
    [
        ((0.5, 0.5, 0.5), (0.2, 1e-45, 0.2), "float32", r"std\[1\]=1e-45"),
        ((0.5, 0.5, 0.5), (0.2, 0.2, -1e-40), "float32", r"std\[2\].*float32"),
        ((0.5, 0.5, 0.5), (0.2, 0.2, 5e-6), "float16", r"std\[2\].*float16.*dtype='float32'"),
        ((0.0, 2e5, 0.0), (1.0, 1.0, 1.0), "float16", r"std\[1\].*mean\[1\]=200000"),
        ((float("nan"), 0.5, 0.5), STD, "float32", r"mean\[0\].*finite"),
        ((0.5, float("inf"), 0.5), STD, "float16", r"mean\[1\].*finite"),
        (MEAN, (0.2, float("inf"), 0.2), "float32", r"std\[1\].*finite"),
        (MEAN, (0.2, 0.2, 0.0), "float32", r"std\[2\].*non-zero"),
    ],
)
def test_normalization_that_overflows_is_refused(mean, std, dtype, needle):
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(edgeseg.InvalidArgumentError, match=needle):
        kernels.preprocess(img, (4, 4), mean=mean, std=std, dtype=dtype)


def test_normalization_limit_is_what_the_dtype_holds(rng):
    # Just inside float16's range is accepted and finite; the fix the error names works.
    img = random_image(rng, 12, 12)
    ok = kernels.preprocess(img, (6, 6), mean=(0, 0, 0), std=(1 / 65000,) * 3, dtype="float16")
    assert np.isfinite(ok).all() and ok.nonfinite == 0
    with pytest.raises(edgeseg.InvalidArgumentError, match=r"use \|std\[0\]\| >= ([0-9.e-]+)") as e:
        kernels.preprocess(img, (6, 6), mean=(0, 0, 0), std=(1 / 66000,) * 3, dtype="float16")
    need = float(str(e.value).split(">= ")[1].split(" ")[0])
    fixed = kernels.preprocess(img, (6, 6), mean=(0, 0, 0), std=(need,) * 3, dtype="float16")
    assert np.isfinite(fixed).all()


@pytest.mark.parametrize("float16", [False, True])
@pytest.mark.parametrize("letterbox", [False, True])
def test_core_counts_nonfinite_values_it_writes(rng, float16, letterbox):
    images = [random_image(rng, 23, 41), random_image(rng, 50, 20), random_image(rng, 9, 9)]
    # channel 0 valid, channel 1: 1/(255 std) overflows float32 (0 * inf = NaN at level 0),
    # channel 2: overflows float16 only.
    std = (0.25, 1e-45, 5e-6)
    blob, _, nonfinite = core_preprocess(images, (17, 19), (0.5, 0.5, 0.5), std, float16, letterbox)
    assert nonfinite.shape == (3,) and nonfinite.dtype == np.int64
    for i in range(3):
        expected = (~np.isfinite(blob[i].astype(np.float32))).sum()
        assert nonfinite[i] == expected > 0
        assert np.isfinite(blob[i, 0]).all()
        assert (~np.isfinite(blob[i, 2])).any() == float16


# ---- letterbox ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src_h,src_w,out_h,out_w",
    [
        (1080, 1920, 512, 512),
        (400, 300, 256, 320),
        (5, 800, 64, 64),
        (64, 64, 64, 64),
        (1, 1, 9, 4),
    ],
)
def test_letterbox(rng, src_h, src_w, out_h, out_w):
    img = random_image(rng, src_h, src_w)
    blob = kernels.preprocess(img, (out_h, out_w), letterbox=True, pad_value=37)
    expected, (rw, rh, px, py) = reference_letterbox(img, (out_h, out_w), pad=37)
    np.testing.assert_allclose(blob[0], expected, rtol=0, atol=ATOL)
    lb = blob.letterbox
    assert (lb.src_width, lb.src_height) == (src_w, src_h)
    assert (lb.input_width, lb.input_height) == (out_w, out_h)
    assert (lb.resized_width, lb.resized_height, lb.pad_x, lb.pad_y) == (rw, rh, px, py)
    assert lb.scale == pytest.approx(min(out_w / src_w, out_h / src_h))


def test_letterbox_gray_swap_and_batch(rng):
    gray = random_image(rng, 90, 30, c=None)
    color = random_image(rng, 30, 90)
    blob = kernels.preprocess(
        [gray, color],
        (48, 48),
        letterbox=True,
        pad_value=0,
        input_order="rgb",
        output_order="bgr",
        dtype="float16",
    )
    assert isinstance(blob.letterbox, list) and len(blob.letterbox) == 2
    for i, img in enumerate((gray, color)):
        expected, geom = reference_letterbox(img, (48, 48), pad=0)
        h16 = blob[i].astype(np.float32)
        assert np.all(np.abs(h16 - expected) <= np.spacing(np.abs(expected).astype(np.float16)))
        lb = blob.letterbox[i]
        assert (lb.resized_width, lb.resized_height, lb.pad_x, lb.pad_y) == geom


def test_no_letterbox_attribute_without_letterbox(rng):
    assert kernels.preprocess(random_image(rng, 10, 10), (4, 4)).letterbox is None


# ---- threads and SIMD dispatch --------------------------------------------------------------


def test_thread_count_does_not_change_output(rng, restore_threads):
    img = random_image(rng, 333, 517)
    results = []
    for n in (1, 2, 3):
        kernels.set_num_threads(n)
        results.append(kernels.preprocess(img, (257, 301), letterbox=True))
    for r in results[1:]:
        np.testing.assert_array_equal(results[0], r)


def test_scalar_path_matches_simd(rng, monkeypatch):
    images = [
        random_image(rng, 200, 333),
        random_image(rng, 91, 257, c=None),
        random_image(rng, 121, 203)[3:, ::2],
    ]
    sizes = [(64, 100), (130, 77), (7, 515)]
    for dtype in ("float32", "float16"):
        fast = [kernels.preprocess(images, s, dtype=dtype) for s in sizes]
        monkeypatch.setenv("EDGESEG_SIMD", "scalar")
        slow = [kernels.preprocess(images, s, dtype=dtype) for s in sizes]
        monkeypatch.delenv("EDGESEG_SIMD")
        for a, b in zip(fast, slow):
            np.testing.assert_array_equal(a, b)


# ---- properties -----------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    src=st.tuples(st.integers(1, 70), st.integers(1, 70)),
    out=st.tuples(st.integers(1, 70), st.integers(1, 70)),
    gray=st.booleans(),
    letterbox=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_random_shapes(src, out, gray, letterbox, seed):
    rng = np.random.default_rng(seed)
    img = random_image(rng, *src, c=None if gray else 3)
    blob = kernels.preprocess(img, out, letterbox=letterbox, pad_value=200)
    if letterbox:
        expected, _ = reference_letterbox(img, out, pad=200)
    else:
        expected = reference(img, out)
    assert blob.shape == (1, 3, *out)
    np.testing.assert_allclose(blob[0], expected, rtol=0, atol=ATOL)


# ---- bad arguments --------------------------------------------------------------------------

GOOD = np.zeros((8, 8, 3), np.uint8)

BAD_CALLS = [
    (lambda: kernels.preprocess(np.zeros((0, 5, 3), np.uint8), (4, 4)), "images[0]"),
    (lambda: kernels.preprocess(np.zeros((8, 8, 3), np.float32), (4, 4)), "uint8"),
    (lambda: kernels.preprocess(np.zeros((2, 2, 8, 8, 3), np.uint8), (4, 4)), "images"),
    (lambda: kernels.preprocess(np.zeros(8, np.uint8), (4, 4)), "images[0]"),
    (lambda: kernels.preprocess(np.zeros((8, 8, 4), np.uint8), (4, 4)), "images[0]"),
    (lambda: kernels.preprocess(GOOD, (0, 5)), "size"),
    (lambda: kernels.preprocess(GOOD, (4, 4), mean=(0.5, 0.5)), "mean"),
    (lambda: kernels.preprocess(GOOD, (4, 4), std=(0.2, 0.0, 0.2)), "std[1]"),
    (lambda: kernels.preprocess(GOOD, (4, 4), pad_value=300), "pad_value"),
    (lambda: kernels.preprocess(GOOD, (4, 4), input_order="bgra"), "input_order"),
    (lambda: kernels.preprocess(GOOD, (4, 4), output_order="RGB"), "output_order"),
    (lambda: kernels.preprocess(GOOD, (4, 4), dtype="int8"), "dtype"),
    (lambda: kernels.preprocess(GOOD, (4, 4), mean=(0.5,), std=(0.5,)), "mean/std"),
    (lambda: kernels.preprocess([], (4, 4)), "images"),
]


@pytest.mark.parametrize("call,name", BAD_CALLS, ids=[n for _, n in BAD_CALLS])
def test_bad_arguments_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")) as info:
        call()
    assert isinstance(info.value, edgeseg.EdgesegError)


def test_core_rejects_bad_shapes_too():
    # The binding re-checks what it relies on, so a caller bypassing the wrapper gets errors.
    from edgeseg import _core

    with pytest.raises(ValueError, match="size"):
        _core.preprocess([GOOD], 0, 4, 3, list(MEAN), list(STD), True, False, False, 114)
    with pytest.raises(ValueError, match="std"):
        _core.preprocess([GOOD], 4, 4, 3, list(MEAN), [1.0, 0.0, 1.0], True, False, False, 114)
    with pytest.raises(ValueError, match="channels"):
        _core.preprocess(
            [np.zeros((4, 4, 2), np.uint8)], 4, 4, 3, list(MEAN), list(STD), True, False, False, 114
        )


# ---- CUDA twin ------------------------------------------------------------------------------

GPU_CASES = [
    dict(img=(1080, 1920, 3), size=(512, 512)),
    dict(img=(37, 53, 3), size=(300, 200), dtype="float16"),
    dict(img=(480, 640, 3), size=(256, 320), letterbox=True, pad_value=7),
    dict(img=(61, 47), size=(30, 90), input_order="rgb"),
    dict(img=(1, 1, 3), size=(5, 9), letterbox=True),
    dict(img=(121, 203, 3), size=(64, 96), view="pixel_step", dtype="float16"),
    dict(img=(121, 203, 3), size=(64, 96), view="rows_reversed"),
    dict(img=(121, 203, 3), size=(64, 96), view="cols_reversed"),
]


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES, ids=[str(i) for i in range(len(GPU_CASES))])
def test_cuda_matches_cpu_bit_for_bit(rng, case):
    case = dict(case)
    img = rng.integers(0, 256, case.pop("img"), dtype=np.uint8)
    view = case.pop("view", None)
    if view:
        img = STRIDED[view](img)
    size = case.pop("size")
    cpu = kernels.preprocess(img, size, device="cpu", **case)
    gpu = kernels.preprocess(img, size, device="cuda", **case)
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    np.testing.assert_array_equal(gpu.view(np.uint8), cpu.view(np.uint8))
    if case.get("letterbox"):
        assert repr(gpu.letterbox) == repr(cpu.letterbox)


@pytest.mark.gpu
def test_cuda_batch_of_different_sizes(rng):
    images = [random_image(rng, 13, 200), random_image(rng, 300, 7, c=None)]
    cpu = kernels.preprocess(images, (32, 48), device="cpu")
    gpu = kernels.preprocess(images, (32, 48), device="cuda")
    np.testing.assert_array_equal(gpu, cpu)
