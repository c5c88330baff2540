"""LabelMe JSON → class-id mask, rasterized the way LabelMe's own export does (Pillow draw).

Shapes are drawn in file order (a later shape covers an earlier one): ``polygon``,
``rectangle``, ``circle`` (centre + a point on the rim), ``line``/``linestrip`` (10 px wide)
and ``point`` (radius 5), as in ``labelme.utils.shape_to_mask``; ``mask`` shapes (LabelMe
5.3+, a base64 PNG placed at the first point) are pasted. Pixels no shape covers are
background (id 0). Labels ``_background_`` and ``background`` mean id 0; the label of an
ignored (named void) class paints void.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from pathlib import Path
from typing import Union

import numpy as np

from edgeseg._limits import check_pil_image
from edgeseg.data.classes import VOID, ClassMap
from edgeseg.errors import DatasetError

BACKGROUND_LABELS = ("_background_", "background")
_LINE_WIDTH = 10
_POINT_SIZE = 5


def load_json(path: Union[str, Path]) -> dict:
    """Parse a LabelMe file; a broken file raises :class:`DatasetError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(
            f"{path}: not a readable LabelMe JSON file ({e}); save it again from LabelMe"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("shapes"), list):
        raise DatasetError(
            f"{path}: JSON without a 'shapes' list, so not a LabelMe annotation; "
            "move it out of the dataset folder"
        )
    return doc


def image_bytes(doc: dict, name: str) -> bytes:
    try:
        return base64.b64decode(doc["imageData"], validate=False)
    except (binascii.Error, TypeError, ValueError) as e:
        raise DatasetError(
            f"{name}: imageData is not valid base64 ({e}); save the file again from LabelMe"
        ) from None


def labels_of(doc: dict) -> list[str]:
    return [str(s.get("label", "")) for s in doc["shapes"] if isinstance(s, dict)]


def rasterize(
    doc: dict, size: tuple[int, int], classes: ClassMap, name: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Draw ``doc``'s shapes on an (h, w) canvas → (ids, {"label 'x'": pixels} for unknown)."""
    from PIL import Image, ImageDraw

    h, w = size
    canvas = Image.new("I", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    index: dict[str, int] = {}
    for n, shape in enumerate(doc["shapes"]):
        where = f"{name}: shape {n + 1}"
        if not isinstance(shape, dict):
            raise DatasetError(f"{where} is not an object; fix or delete it in LabelMe")
        label = str(shape.get("label", ""))
        value = index.setdefault(label, len(index) + 1)
        kind = shape.get("shape_type") or "polygon"
        try:
            xy = [(float(p[0]), float(p[1])) for p in shape.get("points", [])]
        except (TypeError, ValueError, IndexError):
            raise DatasetError(f"{where} ({label!r}) has malformed points; redraw it") from None
        need = {"circle": 2, "rectangle": 2, "line": 2, "linestrip": 2, "point": 1, "mask": 1}
        if len(xy) < need.get(kind, 3):
            raise DatasetError(
                f"{where} ({label!r}): a {kind} needs at least {need.get(kind, 3)} points, "
                f"has {len(xy)}; redraw or delete it"
            )
        if kind == "circle":
            (cx, cy), (px, py) = xy[:2]
            d = math.hypot(cx - px, cy - py)
            draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=value, fill=value)
        elif kind == "rectangle":
            (x0, y0), (x1, y1) = xy[:2]
            box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
            draw.rectangle(box, outline=value, fill=value)
        elif kind in ("line", "linestrip"):
            draw.line(xy=xy, fill=value, width=_LINE_WIDTH)
        elif kind == "point":
            cx, cy = xy[0]
            r = _POINT_SIZE
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=value, fill=value)
        elif kind == "polygon":
            draw.polygon(xy=xy, outline=value, fill=value)
        elif kind == "mask":
            _paste_mask(canvas, shape, xy[0], value, where)
        else:
            raise DatasetError(
                f"{where} ({label!r}) has shape_type {kind!r}; supported are polygon, "
                "rectangle, circle, line, linestrip, point, mask"
            )
    drawn = np.asarray(canvas)
    lut = np.full(len(index) + 1, VOID, classes.mask_dtype)
    lut[0] = 0 if classes.has_id(0) else VOID
    unknown_values = []
    for label, value in index.items():
        if label in classes:
            lut[value] = classes.by_name(label).id
        elif label in BACKGROUND_LABELS and classes.has_id(0):
            lut[value] = 0
        elif classes.ignored_by_name(label) is not None:
            pass  # a named void class: its pixels stay void
        else:
            unknown_values.append((label, value))
    ids = lut[drawn]
    unknown = {}
    for label, value in unknown_values:
        count = int(np.count_nonzero(drawn == value))
        if count:
            unknown[f"label {label!r}"] = count
    return ids, unknown


def _paste_mask(canvas, shape: dict, origin, value: int, where: str) -> None:
    from PIL import Image

    try:
        data = base64.b64decode(shape["mask"])
        with Image.open(io.BytesIO(data)) as im:
            check_pil_image(im, where, "shape mask", DatasetError)
            m = np.asarray(im.convert("L")) > 0
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{where}: its 'mask' is not a base64 PNG ({e}); redraw it") from None
    x0, y0 = int(origin[0]), int(origin[1])
    arr = np.array(canvas)
    h, w = arr.shape
    ys, xs = np.nonzero(m)
    ys, xs = ys + y0, xs + x0
    keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    arr[ys[keep], xs[keep]] = value
    canvas.paste(Image.fromarray(arr))
