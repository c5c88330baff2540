"""The pixel budget: the largest image edgeseg decodes.

A 2.6 MB PNG can declare 30000 × 30000 pixels and decode to gigabytes. Every image and mask
edgeseg reads from a file (datasets, ``edgeseg predict``, folder sources) is checked against
the budget from its header, before any pixel is decoded:

- ``EDGESEG_MAX_IMAGE_PIXELS`` (width × height, default :data:`DEFAULT_MAX_IMAGE_PIXELS`,
  100 Mpx: a 12000 × 8000 line-scan frame still fits) sets it;
- Pillow's ``Image.MAX_IMAGE_PIXELS`` is set to the same value, and so is OpenCV's
  ``OPENCV_IO_MAX_IMAGE_PIXELS`` when it is not set already. OpenCV reads that variable once,
  when ``cv2`` is first imported; ``import edgeseg`` sets it, so import edgeseg before cv2
  (or export the variable yourself) for OpenCV's own check to use the budget.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Optional, Union

from edgeseg.errors import EdgesegError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "ENV",
    "apply_to_decoders",
    "bomb_error",
    "check_image_file",
    "check_pil_image",
    "check_pixels",
    "max_image_pixels",
    "too_large",
]

#: The default pixel budget (width × height).
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
#: The environment variable that sets the budget.
ENV = "EDGESEG_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel budget: ``$EDGESEG_MAX_IMAGE_PIXELS`` or the default."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        n = int(float(value))
    except ValueError:
        n = 0
    if n <= 0:
        raise EdgesegError(
            f"{ENV}={value!r}: expected a number of pixels > 0 (e.g. {DEFAULT_MAX_IMAGE_PIXELS})"
        )
    return n


def apply_to_decoders() -> None:
    """Sets OpenCV's limit (if cv2 is not imported yet and the variable is unset) and
    Pillow's to the budget."""
    try:
        budget = max_image_pixels()
    except EdgesegError:
        budget = DEFAULT_MAX_IMAGE_PIXELS  # reported where an image is read
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(budget))
    import sys

    if "PIL.Image" in sys.modules:
        sys.modules["PIL.Image"].MAX_IMAGE_PIXELS = budget


def check_pixels(
    width: int, height: int, name: str, what: str = "image", error=EdgesegError
) -> None:
    """Raises ``error`` (with ``kind = "too_large"``) naming ``name``, its size and the knob
    when ``width × height`` is above the budget."""
    if int(width) * int(height) > max_image_pixels():
        raise too_large(f"{int(width)}×{int(height)}", int(width) * int(height), name, what, error)


def too_large(size: str, pixels: int, name: str, what: str = "image", error=EdgesegError):
    """The error for an image of ``pixels`` (``size`` as shown) above the budget."""
    budget = max_image_pixels()
    err = error(
        f"{name}: the {what} is {size} = {pixels / 1e6:.1f} Mpx, above the pixel budget of "
        f"{budget / 1e6:g} Mpx; shrink or tile the {what}, or raise {ENV} if the machine has the "
        "memory for it"
    )
    err.kind = "too_large"
    return err


def check_pil_image(im, name: str, what: str = "image", error=EdgesegError) -> None:
    """Checks an opened, not yet loaded Pillow image (its header size) against the budget."""
    check_pixels(im.size[0], im.size[1], name, what, error)


def bomb_error(exc: BaseException, src, name: str, what: str = "image", error=EdgesegError):
    """The budget error for Pillow's DecompressionBombError (``Image.open`` raises it above
    twice its limit, which is the budget), with the size read from ``src``'s header."""
    size = _header_size(src)
    if size is not None:
        return too_large(f"{size[0]}×{size[1]}", size[0] * size[1], name, what, error)
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found.group(1)) if found else 2 * max_image_pixels() + 1
    return too_large(f"{pixels} pixels", pixels, name, what, error)


def _header_size(src) -> Optional[tuple[int, int]]:
    """Width and height from an image header through Pillow's format plugins directly (their
    constructors parse the header only; the size check is in ``Image.open``)."""
    from PIL import Image

    Image.init()
    try:
        fp = io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115
    except (OSError, TypeError):
        return None
    with fp:
        prefix = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept is None or not accept(prefix):
                continue
            fp.seek(0)
            try:
                im = factory(fp, "")
            except Exception:  # not this format after all
                continue
            return im.size
    return None


def check_image_file(path: Union[str, Path], what: str = "image", error=EdgesegError) -> None:
    """Reads the header of an image file (not its pixels) and checks its size against the
    budget; files Pillow cannot identify are left to the decoder that follows."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_image_pixels()
    try:
        with Image.open(path) as im:
            size = im.size
    except Image.DecompressionBombError as e:
        raise bomb_error(e, path, str(path), what, error) from None
    except Exception:
        return
    check_pixels(size[0], size[1], str(path), what, error)


apply_to_decoders()
