"""Reading images and masks from disk (Pillow + numpy; no OpenCV, no torch).

Images come back as HWC uint8 RGB whatever the file holds: grayscale is repeated to three
channels, alpha is dropped, 16-bit samples keep their high byte (the same rule Pillow applies
to 16-bit colour TIFF, so grey and colour files agree). EXIF orientation is applied.

8-bit grey, RGB and RGBA PNG files without EXIF are decoded by libspng (``pyspng``, in the
``[data]`` extra) when it is installed: the same pixels (PNG is lossless; tests compare the
two paths), about 1.5x faster than Pillow's decoder, which QA and training spend most of
their reading time in. Anything else, and any file libspng refuses, goes through Pillow,
whose messages name the problem.

Masks come back as HW integer class ids (``ClassMap.mask_dtype``) plus the pixel counts of
values the class map does not know; those pixels become :data:`~edgeseg.data.classes.VOID`,
as do the pixels of the map's ignored (named void) classes, which are not counted as unknown.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg._limits import bomb_error, check_pil_image, max_image_pixels
from edgeseg.data.classes import VOID, ClassMap
from edgeseg.errors import DatasetError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_EXTS = (".png", ".tif", ".tiff", ".bmp")
_ORIENTATION_TAG = 0x0112

Source = Union[str, Path, bytes]


def _pil():
    from PIL import Image, ImageOps

    # Inspection images are large, but not unbounded: the pixel budget (edgeseg._limits).
    Image.MAX_IMAGE_PIXELS = max_image_pixels()
    return Image, ImageOps


def _open(src: Source, name: str, what: str, load: bool = True):
    Image, _ = _pil()
    try:
        im = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
        check_pil_image(im, name, what, DatasetError)  # from the header, before decoding
        if load:
            im.load()
    except DatasetError:
        raise
    except Image.DecompressionBombError as e:
        raise bomb_error(e, src, name, what, DatasetError) from None
    except FileNotFoundError:
        raise DatasetError(f"{name}: {what} file not found; restore it or fix the path") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... on bad files
        raise DatasetError(
            f"{name}: cannot read the {what} ({type(e).__name__}: {e}); the file is truncated "
            f"or not an image: export it again or remove it from the dataset"
        ) from None
    return im


def _png_fast(im, src: Source) -> Optional[np.ndarray]:
    """The pixels of an 8-bit grey/RGB/RGBA PNG without EXIF, decoded by libspng as
    :func:`_to_rgb` would give them; None when it does not apply or libspng refuses."""
    if getattr(im, "format", None) != "PNG" or not im.tile:
        return None
    rawmode = im.tile[0][3] if len(im.tile[0]) > 3 else None
    rawmode = rawmode[0] if isinstance(rawmode, tuple) else rawmode
    if im.mode not in ("L", "RGB", "RGBA") or rawmode != im.mode or "transparency" in im.info:
        return None
    try:
        import pyspng
    except ImportError:
        return None
    try:
        data = src if isinstance(src, bytes) else Path(src).read_bytes()
        if _has_exif_chunk(data):
            return None  # Pillow applies its orientation
        arr = pyspng.load(data)
    except Exception:
        return None  # Pillow decodes it, or names what is wrong with it
    h, w = im.size[1], im.size[0]
    if arr.dtype != np.uint8 or arr.shape[:2] != (h, w):
        return None
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    if arr.shape[2] == 4:
        return np.ascontiguousarray(arr[:, :, :3])
    return None


def _has_exif_chunk(data: bytes) -> bool:
    """Whether a PNG stream holds an eXIf chunk (before or after the image data)."""
    i, n = 8, len(data)
    while i + 8 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        if kind == b"eXIf":
            return True
        if kind == b"IEND":
            return False
        i += 12 + length
    return False


def orientation_of(im) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:
        return 1
    return value if 1 <= value <= 8 else 1


def apply_orientation(im, orientation: int):
    """Apply an EXIF orientation (1..8) to a PIL image, as ``ImageOps.exif_transpose`` does."""
    Image, _ = _pil()
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return im.transpose(method) if method is not None else im


def _to_rgb(im, name: str) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DatasetError(
                f"{name}: 32-bit integer image with values outside 0..65535; save it as 8 or 16 bit"
            )
        gray = (arr.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        raise DatasetError(
            f"{name}: floating-point image; convert it to 8 or 16-bit integers before training"
        )
    if mode in ("1", "L", "LA"):
        gray = np.asarray(im.convert("L"))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im)


class ImageData:
    """A decoded image: ``rgb`` (HWC uint8, orientation applied) and how it was stored."""

    __slots__ = ("rgb", "orientation", "raw_size")

    def __init__(self, rgb: np.ndarray, orientation: int, raw_size: tuple[int, int]):
        self.rgb = rgb
        self.orientation = orientation
        self.raw_size = raw_size  # (h, w) before orientation


def read_image(src: Source, name: Optional[str] = None) -> ImageData:
    name = name or str(src)
    im = _open(src, name, "image", load=False)
    fast = _png_fast(im, src)
    im.close()
    if fast is not None:
        return ImageData(fast, 1, fast.shape[:2])
    im = _open(src, name, "image")
    orientation = orientation_of(im)
    raw_size = (im.size[1], im.size[0])
    if orientation != 1:
        im = apply_orientation(im, orientation)
    rgb = _to_rgb(im, name)
    return ImageData(np.ascontiguousarray(rgb), orientation, raw_size)


def read_mask_image(src: Source, name: Optional[str] = None):
    """Open a mask file with Pillow (pixels loaded); its own EXIF orientation is applied."""
    name = name or str(src)
    im = _open(src, name, "mask")
    orientation = orientation_of(im)
    if orientation != 1:
        im = apply_orientation(im, orientation)
    return im


# --------------------------------------------------------------------------------------
# value → class id
# --------------------------------------------------------------------------------------
_COLOR_LUTS: dict = {}


def _color_lut(classes: ClassMap, void_colors: tuple) -> np.ndarray:
    key = (tuple((c.id, c.color) for c in classes), void_colors)
    lut = _COLOR_LUTS.get(key)
    if lut is None:
        lut = np.full(1 << 24, VOID, classes.mask_dtype)
        for c in classes:
            r, g, b = c.color
            lut[(r << 16) | (g << 8) | b] = c.id
        _COLOR_LUTS.clear()  # one dataset at a time per process; 16-32 MB each
        _COLOR_LUTS[key] = lut
    return lut


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32, copy=False)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def decode_colors(
    rgb: np.ndarray, classes: ClassMap, void_colors: tuple = ()
) -> tuple[np.ndarray, dict[str, int]]:
    """RGB colour mask → ids; unknown colours become void and are counted."""
    vc = set(tuple(c) for c in void_colors) | {c.color for c in classes.ignored}
    if classes.void_color is not None:
        vc |= {classes.void_color}
    vc = tuple(sorted(vc))
    packed = _pack(rgb[..., :3])
    ids = _color_lut(classes, vc)[packed]
    unknown: dict[str, int] = {}
    void = ids == VOID
    if void.any():
        values, counts = np.unique(packed[void], return_counts=True)
        void_packed = {(r << 16) | (g << 8) | b for r, g, b in vc}
        for v, n in zip(values.tolist(), counts.tolist()):
            if v not in void_packed:
                unknown[f"colour ({v >> 16}, {(v >> 8) & 255}, {v & 255})"] = n
    return ids, unknown


def decode_ids(arr: np.ndarray, classes: ClassMap) -> tuple[np.ndarray, dict[str, int]]:
    """Integer mask → ids; values that are neither a class nor void become void and are counted."""
    out_dtype = classes.mask_dtype
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        values, counts = np.unique(arr, return_counts=True)
        arr = np.where((arr < 0) | (arr > 65535), 65535, arr)
        extra = {
            f"id {v}": n for v, n in zip(values.tolist(), counts.tolist()) if v < 0 or v > 65535
        }
    else:
        extra = {}
    arr = arr.astype(np.uint16 if arr.dtype.itemsize > 1 else np.uint8, copy=False)
    size = 256 if arr.dtype == np.uint8 else 65536
    lut = np.full(size, VOID, out_dtype)
    for c in classes:
        if c.id < size:
            lut[c.id] = c.id
    void_ids = {VOID, *classes.ignored_ids}
    ids = lut[arr]
    unknown: dict[str, int] = {}
    if (ids == VOID).any():
        counts = np.bincount(arr.ravel(), minlength=size)
        for v in np.flatnonzero(counts).tolist():
            if v not in void_ids and lut[v] == VOID and f"id {v}" not in extra:
                unknown[f"id {v}"] = int(counts[v])
    unknown.update(extra)
    return ids, unknown


def decode_mask(
    im, classes: ClassMap, palette_is_ids: bool = True, void_colors: tuple = ()
) -> tuple[np.ndarray, dict[str, int]]:
    """A loaded PIL mask → (ids, unknown values with pixel counts).

    Single-channel masks (8/16 bit, or palette masks when ``palette_is_ids``) hold ids;
    RGB(A) masks hold colours mapped through ``classes``.
    """
    mode = im.mode
    if mode == "P" and palette_is_ids:
        return decode_ids(np.asarray(im), classes)
    if mode in ("L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N") and palette_is_ids:
        return decode_ids(np.asarray(im), classes)
    if mode == "LA" and palette_is_ids:
        return decode_ids(np.asarray(im.convert("L")), classes)
    if mode != "RGB":
        im = im.convert("RGB")
    return decode_colors(np.asarray(im), classes, void_colors)


def sniff_image_ext(data: bytes) -> str:
    """File extension for encoded image bytes (LabelMe's embedded imageData)."""
    Image, _ = _pil()
    try:
        fmt = Image.open(io.BytesIO(data)).format or "PNG"
    except Exception:
        return ".png"
    return {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif"}.get(fmt, ".png")
