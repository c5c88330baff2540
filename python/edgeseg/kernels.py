"""Fused pre- and postprocessing kernels (C++ on the CPU, CUDA twins when built with CUDA).

``preprocess`` turns camera frames into a network input blob; ``postprocess`` turns network
logits into a class map, per-pixel confidence, a colour overlay and class counts in one pass
over the output pixels. Both release the GIL and use the core's thread pool
(:func:`set_num_threads`).

One room past 450 lines: the Python face of the two fused kernels, each a thin argument check
around one ``_core`` call, and the checks they share (image lists, sizes, mean/std ranges,
palettes, CPU/CUDA dispatch).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from edgeseg import _core
from edgeseg.errors import DeviceUnavailableError, InvalidArgumentError

__all__ = [
    "Blob",
    "Letterbox",
    "PostprocessResult",
    "check_normalization",
    "cuda_available",
    "num_threads",
    "postprocess",
    "preprocess",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
]

#: Where a frame sits inside a letterboxed network input (see ``preprocess(letterbox=True)``).
#: Fields: ``src_width, src_height`` (the frame), ``input_width, input_height`` (the network
#: input), ``resized_width, resized_height`` (the frame's size inside it), ``pad_x, pad_y``
#: (its top-left corner) and ``scale``. ``Letterbox(src_w, src_h, in_w, in_h)`` builds one.
Letterbox = _core.Letterbox

_ORDERS = ("bgr", "rgb")
_DEVICES = ("cpu", "cuda")


def num_threads() -> int:
    """Threads the CPU kernels use."""
    return _core.num_threads()


def set_num_threads(n: int) -> None:
    """Sets the number of threads the CPU kernels use (>= 1)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise InvalidArgumentError(f"set_num_threads: n must be an integer >= 1, got {n!r}")
    _core.set_num_threads(int(n))


def simd_level() -> str:
    """The instruction-set tier the CPU kernels use now: ``"avx512"``, ``"avx2"``,
    ``"sse2"``, ``"neon"`` or ``"scalar"``."""
    return _core.simd_level()


def set_simd_level(level: Optional[str]) -> None:
    """Forces the CPU kernels onto a tier this CPU runs, for the whole process (``None``:
    back to the best one). ``"avx2"`` on an AVX-512 machine runs the AVX2 clones, which is what
    an AVX2-only CPU runs; ``EDGESEG_SIMD=avx2`` in the environment does the same for a whole
    run. Not safe to call while a kernel runs."""
    if level is not None and not isinstance(level, str):
        raise InvalidArgumentError(f"level: expected a string or None, got {level!r}")
    _core.set_simd_level(level or "")


def cuda_available() -> tuple[bool, str]:
    """``(usable, reason)``: whether the CUDA kernels can run here and, if not, why."""
    return _core.cuda_available()


def _use_cuda(device: str) -> bool:
    if device not in _DEVICES:
        raise InvalidArgumentError(f"device: expected one of {_DEVICES}, got {device!r}")
    if device == "cpu":
        return False
    ok, reason = _core.cuda_available()
    if not ok:
        raise DeviceUnavailableError(f"device='cuda' requested but CUDA is unusable: {reason}")
    return True


def _pair(value, name: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{name}: expected a pair (h, w) of ints, got {value!r}"
        ) from None
    if a <= 0 or b <= 0:
        raise InvalidArgumentError(f"{name}: expected positive (h, w), got ({a}, {b})")
    return a, b


def _as_image_list(images, name: str) -> tuple[list[np.ndarray], bool]:
    """Returns (list of HW/HWC uint8 arrays, batched?)."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [images[i] for i in range(images.shape[0])], True
        return [images], False
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise InvalidArgumentError(f"{name}: expected at least one image, got an empty list")
        return list(images), True
    raise InvalidArgumentError(
        f"{name}: expected a HxWxC uint8 ndarray, an NxHxWxC ndarray or a list of images, "
        f"got {type(images).__name__}"
    )


def _check_image(img, name: str, allow_gray: bool = True) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise InvalidArgumentError(f"{name}: expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise InvalidArgumentError(
            f"{name}: expected dtype uint8, got {img.dtype} (convert with .astype(np.uint8) "
            "after scaling to 0..255)"
        )
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2 and not allow_gray:
        raise InvalidArgumentError(f"{name}: expected HxWx3, got shape {img.shape}")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise InvalidArgumentError(
            f"{name}: expected HxW, HxWx1 or HxWx3 (BGR/RGB), got shape {img.shape}"
        )
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise InvalidArgumentError(f"{name}: image is empty, shape {img.shape}")
    if img.ndim == 3 and img.strides[2] != 1:
        img = np.ascontiguousarray(img)
    return img


_DTYPE_MAX = {"float32": float(np.finfo(np.float32).max), "float16": 65504.0}


def check_normalization(
    mean: Sequence[float], std: Sequence[float], dtype: str = "float32"
) -> None:
    """Raises :class:`~edgeseg.InvalidArgumentError` (naming the channel and the fix) unless
    every mean/std is finite, std is non-zero and ``(level / 255 - mean) / std`` is finite in
    ``dtype`` (``"float32"`` or ``"float16"``) for every level 0..255. :func:`preprocess`
    calls it; backends that normalize on their own (TensorRT) call it once per model."""
    _check_normalization(
        tuple(float(v) for v in mean), tuple(float(v) for v in std), str(np.dtype(dtype))
    )


@functools.lru_cache(maxsize=64)
def _check_normalization(mean: tuple, std: tuple, dtype: str) -> None:
    # The values the kernel tabulates: fma(level, float32(1 / (255 std)), float32(-mean /
    # std)), rounded to dtype. Cached: a camera loop passes the same model constants per frame.
    for i, (m, s) in enumerate(zip(mean, std)):
        if not np.isfinite(m):
            raise InvalidArgumentError(f"mean[{i}]: expected a finite number, got {m!r}")
        if not np.isfinite(s) or s == 0:
            raise InvalidArgumentError(
                f"std[{i}]: expected a finite non-zero number, got {s!r} (a std of 0 divides "
                "by zero; use the dataset's per-channel standard deviation, e.g. 0.229)"
            )
    limit = _DTYPE_MAX[dtype]
    levels = np.arange(256, dtype=np.float64)
    for i, (m, s) in enumerate(zip(mean, std)):
        with np.errstate(over="ignore", invalid="ignore"):
            scale = np.float32(1.0 / (255.0 * s))
            offset = np.float32(-m / s)
            values = (levels * np.float64(scale) + np.float64(offset)).astype(np.float32)
            ok = np.isfinite(scale) and np.isfinite(offset)
            ok = ok and bool(np.isfinite(values.astype(dtype)).all())
        if not ok:
            worst = max(abs(m), abs(1.0 - m))
            need = worst / limit * 1.01
            also = " or dtype='float32'" if dtype == "float16" else ""
            raise InvalidArgumentError(
                f"std[{i}]={s!r}: with mean[{i}]={m!r} the normalized input (x/255 - mean)/std "
                f"reaches {worst / abs(s):.4g}, beyond {dtype}'s largest value {limit:.6g}; "
                f"use |std[{i}]| >= {need:.3g}{also} (mean and std are in units of x/255, "
                "e.g. 0.485 and 0.229)"
            )


def preprocess(
    images,
    size: Sequence[int],
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    input_order: str = "bgr",
    output_order: str = "rgb",
    dtype: str = "float32",
    letterbox: bool = False,
    pad_value: int = 114,
    *,
    device: str = "cpu",
) -> Blob:
    """Resize + normalize + HWC→CHW in one pass.

    ``images``: one HxWx3 / HxW / HxWx1 uint8 array (any row or pixel stride), a list of them
    (sizes may differ) or an NxHxWxC array. Output: ``(N, C, h, w)`` ``float32`` or
    ``float16`` holding ``(resize(x) / 255 - mean) / std`` with ``C = len(mean)``; mean and
    std are given in *output* channel order. The resize is bit-exact with OpenCV's
    ``cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)`` on uint8 images. A grayscale
    input with three mean/std values is replicated to three channels.

    The result always has the leading N axis (networks take NCHW).

    With ``letterbox=True`` the aspect ratio is kept, the image is centred and the border
    filled with ``pad_value`` (before normalization); ``blob.letterbox`` then holds the
    :data:`Letterbox` transform (a list of them when ``images`` was a batch) to pass to
    ``postprocess(letterbox=blob.letterbox)``. Otherwise ``blob.letterbox`` is None.

    ``blob.nonfinite`` counts the NaN/±Inf values written per image (``int64`` array
    ``(N,)`` for a batch, an ``np.int64`` for one image). A mean/std whose normalized range
    ``(x/255 - mean)/std`` is not finite in ``dtype`` is refused up front
    (:class:`~edgeseg.InvalidArgumentError` naming the channel), so it is 0 here; the count
    guards the paths that bypass this check.

    Args:
        images: One uint8 image, a list of them, or an NxHxWxC array.
        size: Output ``(h, w)``.
        mean: Per-channel mean, in output channel order.
        std: Per-channel standard deviation, in output channel order.
        input_order: ``"bgr"`` (OpenCV) or ``"rgb"``.
        output_order: ``"rgb"`` or ``"bgr"``.
        dtype: ``"float32"`` or ``"float16"``.
        letterbox: Keep the aspect ratio and pad instead of stretching.
        pad_value: Border value of the letterbox (0..255).
        device: ``"cpu"``, or ``"cuda"`` for the CUDA twin (a core built with CUDA and a GPU).

    Returns:
        A :class:`Blob`: the ``(N, C, h, w)`` array with ``letterbox`` and ``nonfinite``
        attributes.

    Raises:
        InvalidArgumentError: Empty images, a wrong dtype or rank, zero sizes, mean/std of
            the wrong length, not finite, or a std so small that the output overflows, an
            unknown order or dtype.
        DeviceUnavailableError: ``device="cuda"`` without CUDA in the core or a GPU.
    """
    out_h, out_w = _pair(size, "size")
    for name, order in (("input_order", input_order), ("output_order", output_order)):
        if order not in _ORDERS:
            raise InvalidArgumentError(f"{name}: expected one of {_ORDERS}, got {order!r}")
    if dtype not in ("float32", "float16", np.float32, np.float16):
        raise InvalidArgumentError(f"dtype: expected 'float32' or 'float16', got {dtype!r}")
    mean_l = [float(v) for v in np.atleast_1d(np.asarray(mean, dtype=np.float64))]
    std_l = [float(v) for v in np.atleast_1d(np.asarray(std, dtype=np.float64))]
    if len(mean_l) not in (1, 3) or len(std_l) != len(mean_l):
        raise InvalidArgumentError(
            f"mean/std: expected 1 or 3 values each (one per output channel), got "
            f"{len(mean_l)} and {len(std_l)}"
        )
    check_normalization(mean_l, std_l, "float16" if dtype in ("float16", np.float16) else "float32")
    if isinstance(pad_value, bool) or not 0 <= int(pad_value) <= 255:
        raise InvalidArgumentError(f"pad_value: expected 0..255, got {pad_value!r}")
    imgs, batched = _as_image_list(images, "images")
    imgs = [_check_image(im, f"images[{i}]") for i, im in enumerate(imgs)]
    if len(mean_l) == 1 and any(im.ndim == 3 for im in imgs):
        raise InvalidArgumentError(
            "mean/std: a 3-channel image needs 3 mean/std values; got 1 (pass a grayscale "
            "HxW image for a 1-channel model)"
        )
    blob, transforms, nonfinite = _core.preprocess(
        imgs,
        out_h,
        out_w,
        len(mean_l),
        mean_l,
        std_l,
        input_order != output_order,
        dtype in ("float16", np.float16),
        bool(letterbox),
        int(pad_value),
        _use_cuda(device),
    )
    out = blob.view(Blob)
    if letterbox:
        out.letterbox = transforms if batched else transforms[0]
    out.nonfinite = nonfinite if batched else nonfinite[0]
    return out


class Blob(np.ndarray):
    """The ``(N, C, h, w)`` network input from :func:`preprocess`: a plain ndarray plus
    ``letterbox`` (the transform(s) to undo in postprocess, or None) and ``nonfinite`` (NaN/±Inf
    values written per image)."""

    letterbox = None
    nonfinite = None

    def __array_finalize__(self, obj) -> None:
        # Slices and copies of a blob no longer describe the letterboxed batch as a whole.
        self.letterbox = None
        self.nonfinite = None


@dataclass
class PostprocessResult:
    """Outputs of :func:`postprocess`. Arrays keep the leading N axis when the logits had it.

    - ``class_map``: ``(…, H, W)`` uint8 class ids (argmax, ties → lowest class index)
    - ``confidence``: ``(…, H, W)`` float32 softmax max-probability, or None
    - ``overlay``: ``(…, H, W, 3)`` uint8 frame blended with class colours, or None
    - ``counts``: ``(…, C)`` int64 pixels per class, or None
    - ``nonfinite``: output pixels read from non-finite logits, per image: int64 ``(N,)``, or
      an ``np.int64`` for unbatched logits. Always computed. Those pixels have class 0 and
      confidence 0 (see :func:`postprocess`).
    """

    class_map: np.ndarray
    confidence: Optional[np.ndarray]
    overlay: Optional[np.ndarray]
    counts: Optional[np.ndarray]
    nonfinite: Union[np.ndarray, np.int64] = 0


def _as_palette(palette, num_classes: int) -> Optional[np.ndarray]:
    if palette is None:
        return None
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or pal.shape[0] < num_classes:
        raise InvalidArgumentError(
            f"palette: expected shape (C, 3) with C >= {num_classes} (one colour per class, in "
            f"the frame's channel order), got {pal.shape}"
        )
    if pal.dtype != np.uint8:
        if not np.issubdtype(pal.dtype, np.integer) or pal.min() < 0 or pal.max() > 255:
            raise InvalidArgumentError(
                f"palette: expected uint8 colours 0..255, got dtype {pal.dtype}"
            )
        pal = pal.astype(np.uint8)
    return np.ascontiguousarray(pal)


def postprocess(
    logits,
    out_size: Optional[Sequence[int]] = None,
    frame=None,
    palette=None,
    alpha: float = 0.5,
    confidence: bool = True,
    counts: bool = True,
    letterbox=None,
    *,
    ignore: Sequence[int] = (),
    device: str = "cpu",
) -> PostprocessResult:
    """Upsample logits + argmax + softmax confidence + overlay + counts, in one pass.

    ``logits``: float32 or float16, ``(C, h, w)`` or ``(N, C, h, w)``, 1 ≤ C ≤ 255.
    Upsampling follows ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)`` to ``out_size = (H, W)`` (default: the frame's size). With
    ``letterbox`` (one :data:`Letterbox` or a list, from ``preprocess(letterbox=True)``) the
    logits are read as covering the letterboxed input and mapped back onto the original frame
    (``out_size`` must then equal the frame size). ``frame`` (HxWx3 uint8, or a list/NHWC
    array for a batch) and ``palette`` (Cx3 uint8 in the frame's channel order) give
    ``overlay = frame * (1 - alpha) + colour * alpha`` (rounded); classes in ``ignore`` stay
    transparent.

    Non-finite logits: a logit cell (one ``(y, x)`` of the ``h × w`` grid) is bad when any
    class there is NaN, ±Inf or of magnitude ≥ 2**127. An output pixel is non-finite when one
    of the four cells its bilinear taps read is bad (also at weight 0: ``0 × inf`` is NaN; an
    axis a plain resize keeps at its size reads one cell) — for logits below 2**127 exactly
    where ``F.interpolate`` gives a non-finite value in some class. Such pixels get class 0
    and confidence 0 (never 1), are blended and counted as class 0, and ``result.nonfinite``
    counts them.

    Args:
        logits: ``(C, h, w)`` or ``(N, C, h, w)`` float32/float16 network output.
        out_size: ``(H, W)`` of the outputs (default: the frame's size).
        frame: The frame(s) to blend the overlay over.
        palette: Cx3 uint8 class colours, in the frame's channel order.
        alpha: Overlay opacity, 0..1.
        confidence: Compute the softmax max-probability per pixel.
        counts: Count the pixels of each class.
        letterbox: The transform from ``preprocess(letterbox=True)`` to undo.
        ignore: Class indices drawn transparent in the overlay.
        device: ``"cpu"``, or ``"cuda"`` for the CUDA twin.

    Returns:
        A :class:`PostprocessResult` with ``class_map`` (uint8, ties → lowest class),
        ``confidence`` (float32 or None), ``overlay`` (uint8 or None), ``counts``
        (int64 or None) and ``nonfinite`` (non-finite pixels per image), each with the batch
        axis when the logits had one.

    Raises:
        InvalidArgumentError: C = 0 or > 255, a wrong dtype or rank, a mismatched batch,
            zero sizes, a palette of the wrong shape, an alpha outside 0..1.
        DeviceUnavailableError: ``device="cuda"`` without CUDA in the core or a GPU.
    """
    if not isinstance(logits, np.ndarray):
        raise InvalidArgumentError(
            f"logits: expected a numpy array, got {type(logits).__name__} (use "
            "tensor.cpu().numpy())"
        )
    if logits.dtype not in (np.float32, np.float16):
        raise InvalidArgumentError(f"logits: expected float32 or float16, got {logits.dtype}")
    if logits.ndim not in (3, 4):
        raise InvalidArgumentError(
            f"logits: expected (C, h, w) or (N, C, h, w), got shape {logits.shape}"
        )
    batched = logits.ndim == 4
    lg = logits if batched else logits[None]
    n, c, h, w = lg.shape
    if n == 0:
        raise InvalidArgumentError(f"logits: batch is empty, shape {logits.shape}")
    if not 1 <= c <= 255:
        raise InvalidArgumentError(f"logits: expected 1..255 classes (C), got C={c}")
    if h == 0 or w == 0:
        raise InvalidArgumentError(f"logits: spatial size is empty, shape {logits.shape}")
    lg = np.ascontiguousarray(lg)

    frames = None
    if frame is not None:
        if batched:
            frame_list, _ = _as_image_list(frame, "frame")
        else:
            frame_list = [frame]
        frames = [
            _check_image(f, f"frame[{i}]", allow_gray=False) for i, f in enumerate(frame_list)
        ]
        if len(frames) != n:
            raise InvalidArgumentError(
                f"frame: expected {n} frame(s) for a batch of {n} logits, got {len(frames)}"
            )
        fh, fw = frames[0].shape[:2]
        if out_size is None:
            out_size = (fh, fw)
    if out_size is None:
        if letterbox is not None:
            lb0 = letterbox if isinstance(letterbox, Letterbox) else list(letterbox)[0]
            out_size = (lb0.src_height, lb0.src_width)
        else:
            raise InvalidArgumentError(
                "out_size: required when no frame is given, e.g. (720, 1280)"
            )
    out_h, out_w = _pair(out_size, "out_size")
    if frames is not None:
        for i, f in enumerate(frames):
            if f.shape[:2] != (out_h, out_w):
                raise InvalidArgumentError(
                    f"frame[{i}]: expected size {(out_h, out_w)} (out_size), got {f.shape[:2]}"
                )
    pal = _as_palette(palette, c)
    if not isinstance(alpha, (int, float, np.floating)) or not 0.0 <= float(alpha) <= 1.0:
        raise InvalidArgumentError(f"alpha: expected a number in [0, 1], got {alpha!r}")
    ignore_l = [int(i) for i in ignore]
    for i in ignore_l:
        if not 0 <= i <= 255:
            raise InvalidArgumentError(f"ignore: class ids must be 0..255, got {i}")
    lbs = None
    if letterbox is not None:
        lbs = [letterbox] * n if isinstance(letterbox, Letterbox) else list(letterbox)
        if len(lbs) != n or not all(isinstance(t, Letterbox) for t in lbs):
            raise InvalidArgumentError(
                f"letterbox: expected a Letterbox or a list of {n} (from preprocess), got "
                f"{letterbox!r}"
            )
        for t in lbs:
            if (t.src_height, t.src_width) != (out_h, out_w):
                raise InvalidArgumentError(
                    f"letterbox: out_size {(out_h, out_w)} must equal the letterboxed frame's "
                    f"size {(t.src_height, t.src_width)}"
                )
    cm, conf, ov, cnt, nonfinite = _core.postprocess(
        lg,
        out_h,
        out_w,
        frames,
        pal,
        float(alpha),
        bool(confidence),
        bool(counts),
        ignore_l,
        lbs,
        _use_cuda(device),
    )
    if not batched:
        cm = cm[0]
        conf = None if conf is None else conf[0]
        ov = None if ov is None else ov[0]
        cnt = None if cnt is None else cnt[0]
        nonfinite = nonfinite[0]
    return PostprocessResult(
        class_map=cm, confidence=conf, overlay=ov, counts=cnt, nonfinite=nonfinite
    )
