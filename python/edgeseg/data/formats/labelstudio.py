"""Label Studio JSON export (``Export → JSON``): a list of tasks, each with ``data``
(the image reference, e.g. ``{"image": "/data/upload/3/1a2b3c4d-part.png"}``) and
``annotations`` whose ``result`` lists regions. Two region types draw pixels:

* ``brushlabels`` with ``value.format == "rle"``: Label Studio's brush RLE (below), an RGBA
  image of ``original_width`` × ``original_height`` whose alpha channel is the stroke;
  alpha > 0 is labelled (as in Label Studio's own converters).
* ``polygonlabels``: ``value.points`` in percent of the image width and height.

Regions are painted in file order (a later region covers an earlier one); pixels no region
covers are ``background`` (id 0). The first annotation of a task that is not cancelled is
used (more than one is a ``multiple_annotations`` warning). Images are found by the path in
``data`` (``/data/local-files/?d=...`` included) below the export's folder, or by file
name, with or without the 8-hex-digit prefix Label Studio gives uploads. Classes come from
``classes.yaml`` or from the labels (sorted, after ``background``).

**Brush RLE** (Label Studio's, after the rle-pack encoding): a big-endian bit stream of a
32-bit value count, a 5-bit word size − 1, four 4-bit run-length sizes − 1, then chunks:
a 1-bit repeat flag, a 2-bit size class, a run length − 1 in that class's bits, and either
one word repeated (flag 1) or that many literal words (flag 0).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from edgeseg._text import short
from edgeseg.data import files
from edgeseg.data.classes import VOID, ClassMap
from edgeseg.data.formats._layout import Layout
from edgeseg.data.records import Loaded, Sample, finding, kind_error

__all__ = ["decode_brush_rle", "load", "read"]

_DRAWN = ("brushlabels", "polygonlabels")
#: region types that would draw pixels but are not read: refused, never skipped silently
_REFUSED = ("rectanglelabels", "ellipselabels", "keypointlabels", "labels", "rectangle")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_TOLERANCE = 0.5  # percent a polygon point may stray past the border


def decode_brush_rle(rle, where: str = "brush RLE") -> np.ndarray:
    """Label Studio's brush RLE (a list of byte values) → the flat array of decoded words.

    Raises:
        DatasetError: A stream that ends early or is not a list of bytes (kind
            ``unreadable``).
    """
    try:
        raw = np.asarray(rle, dtype=np.int64)
        if raw.ndim != 1 or raw.size < 7 or raw.min() < 0 or raw.max() > 255:
            raise ValueError
    except (TypeError, ValueError):
        raise kind_error(
            "unreadable", f"{where}: rle is not a list of byte values; export it again"
        ) from None
    bit_array = np.unpackbits(raw.astype(np.uint8))
    bits = (bit_array + ord("0")).tobytes().decode("ascii")
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        if pos + n > len(bits):
            raise kind_error("unreadable", f"{where}: the RLE stream ends early; export it again")
        value = int(bits[pos : pos + n], 2)
        pos += n
        return value

    count = take(32)
    word = take(5) + 1
    sizes = [take(4) + 1 for _ in range(4)]
    if count > (1 << 31):
        raise kind_error("unreadable", f"{where}: RLE claims {count} values; export it again")
    out = np.zeros(count, np.uint32 if word > 16 else np.uint16 if word > 8 else np.uint8)
    weights = np.left_shift(np.uint64(1), np.arange(word - 1, -1, -1, dtype=np.uint64))
    i = 0
    while i < count:
        repeat = take(1)
        n = take(sizes[take(2)]) + 1
        if i + n > count:
            raise kind_error(
                "unreadable", f"{where}: an RLE run passes the {count} values; export it again"
            )
        if repeat:
            out[i : i + n] = take(word)
        else:  # n literal words at once: the bits as an (n, word) matrix times the weights
            if pos + n * word > len(bits):
                raise kind_error(
                    "unreadable", f"{where}: the RLE stream ends early; export it again"
                )
            chunk = bit_array[pos : pos + n * word].reshape(n, word).astype(np.uint64)
            out[i : i + n] = chunk @ weights
            pos += n * word
        i += n
    return out


def _labels_of(result: dict) -> list[str]:
    value = result.get("value") if isinstance(result.get("value"), dict) else {}
    kind = result.get("type")
    labels = value.get(kind) if isinstance(kind, str) else None
    if labels is None:
        labels = next((v for k, v in value.items() if k.endswith("labels")), [])
    return [str(v) for v in labels] if isinstance(labels, list) else []


def _image_ref(data) -> Optional[str]:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("image"), str):
        return data["image"]
    return next((v for v in data.values() if isinstance(v, str) and "." in v), None)


class _Images:
    def __init__(self, root: Path):
        self.root = root
        self.by_name: Optional[dict[str, list[Path]]] = None

    def find(self, ref: str, json_dir: Path) -> Optional[Path]:
        url = urlparse(ref)
        rels = [*parse_qs(url.query).get("d", []), unquote(url.path).lstrip("/")]
        for rel in rels:
            for base in (json_dir, self.root):
                cand = base / rel
                if rel and cand.is_file():
                    return cand
        if self.by_name is None:
            self.by_name = {}
            for p in self.root.rglob("*"):
                if p.suffix.lower() in files.IMAGE_EXTS and p.is_file():
                    self.by_name.setdefault(p.name, []).append(p)
        name = Path(unquote(url.path)).name
        for cand in (name, _UPLOAD_PREFIX.sub("", name)):
            hits = self.by_name.get(cand, [])
            if len(hits) == 1:
                return hits[0]
        return None


def read(root: Path, classes: Optional[ClassMap], options: dict) -> Layout:
    issues: list[dict] = []
    samples: list[Sample] = []
    labels: set[str] = set()
    finder = _Images(root)
    for p in sorted(root.rglob("*.json")):
        if not p.is_file() or p.name.startswith("."):
            continue
        try:
            with open(p, encoding="utf-8") as f:
                tasks = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            issues.append(finding("unreadable", str(p), f"not a readable JSON file ({e})"))
            continue
        if not isinstance(tasks, list):
            continue  # not a Label Studio export (a config or another tool's file)
        for n, task in enumerate(tasks):
            tid = task.get("id", n + 1) if isinstance(task, dict) else n + 1
            where = f"{p} (task {tid})"
            if not isinstance(task, dict):
                issues.append(finding("unreadable", where, "a task is not a JSON object"))
                continue
            ref = _image_ref(task.get("data"))
            image = finder.find(ref, p.parent) if ref else None
            if image is None:
                issues.append(
                    finding(
                        "missing_image",
                        where,
                        f"image {short(ref)} not found below {root}; copy the task's images "
                        "next to the export (same file names)",
                    )
                )
                continue
            anns = [
                a
                for a in task.get("annotations") or []
                if isinstance(a, dict) and not a.get("was_cancelled")
            ]
            if not anns:
                issues.append(
                    finding(
                        "missing_mask",
                        str(image),
                        f"{where} has no annotation that is not cancelled; label it or remove it",
                    )
                )
                continue
            if len(anns) > 1:
                issues.append(
                    finding(
                        "multiple_annotations",
                        where,
                        f"{len(anns)} annotations; using the first (id {anns[0].get('id')}), "
                        "delete the others to choose",
                        "warning",
                    )
                )
            results = anns[0].get("result") or []
            if not isinstance(results, list):
                issues.append(finding("unreadable", where, "annotation result is not a list"))
                continue
            for r in results:
                if isinstance(r, dict) and r.get("type") in _DRAWN:
                    labels.update(_labels_of(r))
            key = image.relative_to(root).with_suffix("").as_posix()
            payload = {"results": results, "annotation": anns[0].get("id")}
            item = f"task {tid}"
            samples.append(Sample(key, str(image), str(p), "labelstudio", None, item, payload))

    def from_labels() -> ClassMap:
        names = sorted(lb for lb in labels if lb != "background")
        return ClassMap.from_names(["background", *names], source=f"{root} (from labels)")

    if classes is None and (root / "classes.yaml").is_file():
        classes = ClassMap.load(root / "classes.yaml")
    return Layout(classes or from_labels(), samples, issues)


def _polygon(value: dict, h: int, w: int, where: str, notes: list) -> np.ndarray:
    from PIL import Image, ImageDraw

    try:
        pts = np.asarray(value.get("points"), np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise kind_error("unreadable", f"{where}: points are not [x, y] pairs; redraw it") from None
    if len(pts) < 3 or not np.isfinite(pts).all():
        raise kind_error(
            "unreadable", f"{where}: a polygon needs 3 or more finite points; redraw it"
        )
    x, y = pts[:, 0], pts[:, 1]
    if x.max() < 0 or y.max() < 0 or x.min() > 100 or y.min() > 100:
        raise kind_error(
            "outside_image",
            f"{where}: polygon lies entirely outside the image (x {x.min():g}..{x.max():g} %, "
            f"y {y.min():g}..{y.max():g} %); fix its points",
        )
    t = _TOLERANCE
    outside = (x < -t) | (x > 100 + t) | (y < -t) | (y > 100 + t)
    if outside.any():
        notes.append(
            (
                "outside_image",
                f"{where}: {int(outside.sum())} polygon point(s) outside the image "
                f"(x {x.min():g}..{x.max():g} %, y {y.min():g}..{y.max():g} %); drawn clipped",
            )
        )
    canvas = Image.new("L", (w, h), 0)
    xy = [(float(a) * w / 100.0, float(b) * h / 100.0) for a, b in pts]
    ImageDraw.Draw(canvas).polygon(xy, outline=1, fill=1)
    return np.asarray(canvas) > 0


def _brush(value: dict, h: int, w: int, where: str) -> np.ndarray:
    if value.get("format", "rle") != "rle" or "rle" not in value:
        raise kind_error(
            "unreadable", f"{where}: brush format {short(value.get('format'))}, expected rle"
        )
    flat = decode_brush_rle(value["rle"], where)
    if flat.size != h * w * 4:
        raise kind_error(
            "size_mismatch",
            f"{where}: brush RLE holds {flat.size} values, a {w}x{h} RGBA image needs "
            f"{h * w * 4}; the brush was drawn on another image size, export it again",
        )
    return flat.reshape(h, w, 4)[:, :, 3] > 0


def load(ds, s: Sample) -> Loaded:
    name = f"{ds.display(s.label)} ({s.item})"
    img = files.read_image(s.image, ds.display(s.image))
    h, w = img.rgb.shape[:2]
    classes = ds.classes
    mask = np.full((h, w), 0 if classes.has_id(0) else VOID, classes.mask_dtype)
    unknown: dict[str, int] = {}
    notes: list = []
    for n, r in enumerate(s.payload["results"]):
        if not isinstance(r, dict):
            raise kind_error("unreadable", f"{name}: result {n + 1} is not a JSON object")
        kind = r.get("type")
        where = f"{name}: region {r.get('id', n + 1)}"
        if kind in _REFUSED:
            raise kind_error(
                "unreadable",
                f"{where}: {kind} regions are not read (brushlabels and polygonlabels are); "
                "draw the region as a brush or polygon",
            )
        if kind not in _DRAWN:
            continue  # choices, text, ratings: no pixels
        ow, oh = r.get("original_width"), r.get("original_height")
        if isinstance(ow, int) and isinstance(oh, int) and (oh, ow) != (h, w):
            raise kind_error(
                "size_mismatch",
                f"{where}: drawn on a {ow}x{oh} image but {ds.display(s.image)} is {w}x{h}; "
                "export the task again with its own image",
            )
        value = r.get("value") if isinstance(r.get("value"), dict) else {}
        labels = _labels_of(r)
        if len(labels) != 1:
            raise kind_error(
                "unreadable", f"{where}: {len(labels)} labels on one region; give it exactly one"
            )
        m = _brush(value, h, w, where) if kind == "brushlabels" else None
        if m is None:
            m = _polygon(value, h, w, where, notes)
        label = labels[0]
        if label in classes:
            mask[m] = classes.by_name(label).id
            continue
        mask[m] = VOID
        if classes.ignored_by_name(label) is None:
            unknown[f"label {label!r}"] = unknown.get(f"label {label!r}", 0) + int(m.sum())
    return Loaded(img.rgb, mask, unknown, img.orientation, notes)
