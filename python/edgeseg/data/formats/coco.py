"""COCO JSON (instances, stuff or panoptic-free semantic use): ``images`` (``id``,
``file_name``, ``width``, ``height``), ``annotations`` (``image_id``, ``category_id``,
``segmentation`` as polygons ``[[x0, y0, x1, y1, ...], ...]``, uncompressed RLE
``{"counts": [...], "size": [h, w]}`` or compressed RLE ``{"counts": "...", "size": [h, w]}``)
and ``categories`` (``id``, ``name``). Masks are decoded by ``pycocotools``.

* Every ``*.json`` under the folder that has ``images``, ``annotations`` and ``categories``
  is read; an image listed by two files gets the annotations of both. The split comes from
  the file or folder name (``instances_train2017.json``, ``valid/_annotations.coco.json``).
* Image files are looked up next to the JSON, at the top of the folder, in ``images/``, and
  finally by file name anywhere below the folder.
* Class ids are the category ids; pixels no annotation covers are ``background`` (id 0, or
  the category named ``background``). A category 0 that no annotation uses (the
  super-category some exporters put there) is replaced by ``background``.
* **Overlaps**: annotations are painted largest first (by decoded pixel area; equal areas by
  annotation id), so a small region lying on a large one stays visible. Crowd regions
  (``iscrowd: 1``) are painted like the others.
* Problems are findings naming the file and the annotation or image id: an annotation for an
  image id the file does not list or an image file that is missing (``missing_image``,
  image left out), an RLE of another size than its image (``size_mismatch``), a category id
  not in the categories (``unknown_value``, pixels void), a polygon entirely outside the
  image (``outside_image``, error) or partly outside by more than a pixel (warning, clipped).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg._text import short
from edgeseg.data import files
from edgeseg.data.classes import VOID, ClassInfo, ClassMap, default_color
from edgeseg.data.formats._layout import Layout
from edgeseg.data.records import Loaded, Sample, finding, kind_error
from edgeseg.errors import DatasetError

__all__ = ["load", "read"]

_TOLERANCE = 1.0  # px a polygon may stray past the border (exporters round to the edge)
_SPLIT_WORDS = (("train", "train"), ("validation", "val"), ("valid", "val"), ("val", "val"))
_SPLIT_WORDS += (("test", "test"),)


def _mask_utils():
    try:
        from pycocotools import mask
    except ImportError:
        raise DatasetError(
            "reading COCO annotations needs pycocotools; pip install 'edgeseg[data]'"
        ) from None
    return mask


def _split_of(path: Path, root: Path) -> Optional[str]:
    names = [path.stem, *(p.name for p in path.parents if p != root and root in p.parents)]
    for name in names:
        tokens = re.split(r"[^a-z]+", name.lower())
        for word, split in _SPLIT_WORDS:
            if any(t.startswith(word) for t in tokens if t):
                return split
    return None


class _Images:
    """Finds image files by the names COCO files give them."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: Optional[dict[str, list[Path]]] = None

    def find(self, json_path: Path, file_name: str) -> Optional[Path]:
        rel = file_name.replace("\\", "/")
        for base in (json_path.parent, self.root, self.root / "images", json_path.parent.parent):
            cand = base / rel
            if cand.is_file():
                return cand
        if self._by_name is None:
            self._by_name = {}
            for p in self.root.rglob("*"):
                if p.suffix.lower() in files.IMAGE_EXTS and p.is_file():
                    self._by_name.setdefault(p.name, []).append(p)
        hits = self._by_name.get(Path(rel).name, [])
        return hits[0] if len(hits) == 1 else None


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DatasetError(
            f"{path}: not a readable COCO JSON file ({e}); export it again"
        ) from None


def read(root: Path, classes: Optional[ClassMap], options: dict) -> Layout:
    issues: list[dict] = []
    categories: dict[int, str] = {}
    used: set[int] = set()
    by_key: dict[str, Sample] = {}
    finder = _Images(root)
    docs = []
    for p in sorted(root.rglob("*.json")):
        if not p.is_file() or p.name.startswith("."):
            continue
        try:
            doc = _load_json(p)
        except DatasetError as e:
            issues.append(finding("unreadable", str(p), str(e).split(": ", 1)[-1]))
            continue
        if isinstance(doc, dict) and {"images", "annotations", "categories"} <= set(doc):
            bad = [
                k for k in ("images", "annotations", "categories") if not isinstance(doc[k], list)
            ]
            if bad:
                raise DatasetError(
                    f"{p}: {', '.join(bad)} must be lists in a COCO file; export it again"
                )
            docs.append((p, doc))
    for p, doc in docs:
        for c in doc["categories"]:
            if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
                raise DatasetError(f"{p}: category {short(c)} needs an integer 'id' and a 'name'")
            cid, name = c["id"], str(c["name"])
            if categories.get(cid, name) != name:
                raise DatasetError(
                    f"{p}: category id {cid} is {name!r} here but {categories[cid]!r} in another "
                    "file; export all files from one project"
                )
            categories[cid] = name
        split = _split_of(p, root)
        images: dict[int, Sample] = {}
        for im in doc["images"]:
            if (
                not isinstance(im, dict)
                or not isinstance(im.get("id"), (int, str))
                or not isinstance(im.get("file_name"), str)
            ):
                issues.append(
                    finding("unreadable", str(p), f"image entry {short(im)} lacks id or file_name")
                )
                continue
            where = f"{p} (image id {im['id']})"
            path = finder.find(p, str(im["file_name"]))
            if path is None:
                issues.append(
                    finding(
                        "missing_image",
                        where,
                        f"file_name {short(im['file_name'])} not found next to the JSON, in "
                        f"{root} or images/; add the image or remove its entry",
                    )
                )
                continue
            key = path.relative_to(root).with_suffix("").as_posix()
            s = by_key.get(key)
            if s is None:
                payload = {
                    "anns": [],
                    "width": im.get("width"),
                    "height": im.get("height"),
                    "categories": categories,
                }
                s = Sample(key, str(path), str(p), "coco", split, f"image id {im['id']}", payload)
                by_key[key] = s
            elif s.split != split:
                issues.append(
                    finding(
                        "split_mismatch",
                        where,
                        f"{key!r} is in both {s.split} and {split}; keep it in one split",
                    )
                )
            images[im["id"]] = s
        listed = {i.get("id") for i in doc["images"] if isinstance(i, dict)}
        listed = {i for i in listed if isinstance(i, (int, str))}
        for ann in doc["annotations"]:
            if not isinstance(ann, dict):
                issues.append(finding("unreadable", str(p), f"annotation {short(ann)}"))
                continue
            image_id = ann.get("image_id")
            s = images.get(image_id) if isinstance(image_id, (int, str)) else None
            if s is None:
                if image_id in listed:
                    continue  # its image is missing: reported once above
                issues.append(
                    finding(
                        "missing_image",
                        f"{p} (annotation id {ann.get('id')})",
                        f"refers to image id {short(ann.get('image_id'))}, which the file does "
                        "not list; add the image entry or remove the annotation",
                    )
                )
                continue
            s.payload["anns"].append(ann)
            if isinstance(ann.get("category_id"), int):
                used.add(ann["category_id"])
    if 0 in categories and 0 not in used:
        del categories[0]  # an exporter's super-category, not a class
    samples = list(by_key.values())

    def from_categories() -> ClassMap:
        names = set(categories.values())
        infos = [] if "background" in names else [ClassInfo(0, "background", (0, 0, 0))]
        colors = {c.color for c in infos}
        for cid, name in sorted(categories.items()):
            color, k = default_color(cid), cid
            while color in colors:
                k += 256
                color = default_color(k)
            colors.add(color)
            infos.append(ClassInfo(cid, name, color))
        return ClassMap(infos, source=f"{root} (COCO categories)")

    if classes is None and (root / "classes.yaml").is_file():
        classes = ClassMap.load(root / "classes.yaml")
    return Layout(classes or from_categories(), samples, issues)


def _polygons(segm, h: int, w: int, where: str, notes: list) -> list:
    polys = []
    for poly in segm:
        try:
            xy = np.asarray(poly, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise kind_error("unreadable", f"{where}: a polygon is not a list of numbers") from None
        if xy.size < 6 or xy.size % 2 or not np.isfinite(xy).all():
            raise kind_error(
                "unreadable",
                f"{where}: a polygon needs at least 3 finite x, y pairs, has {xy.size} numbers; "
                "redraw it",
            )
        polys.append(xy)
    if not polys:
        raise kind_error("unreadable", f"{where}: empty segmentation; redraw or delete it")
    pts = np.concatenate(polys).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    t = _TOLERANCE
    outside = (x < -t) | (x > w + t) | (y < -t) | (y > h + t)
    if (x.max() < 0) or (y.max() < 0) or (x.min() > w) or (y.min() > h):
        raise kind_error(
            "outside_image",
            f"{where}: polygon lies entirely outside the {w}x{h} image "
            f"(x {x.min():g}..{x.max():g}, y {y.min():g}..{y.max():g}); fix its coordinates",
        )
    if outside.any():
        notes.append(
            (
                "outside_image",
                f"{where}: {int(outside.sum())} polygon point(s) outside the {w}x{h} image "
                f"(x {x.min():g}..{x.max():g}, y {y.min():g}..{y.max():g}); drawn clipped",
            )
        )
    return [p.tolist() for p in polys]


def _decode(ann: dict, h: int, w: int, where: str, notes: list) -> np.ndarray:
    with warnings.catch_warnings():
        # pycocotools' wrappers predate numpy 2's __array__(copy=) protocol and say so
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_rle(ann, h, w, where, notes)


def _decode_rle(ann: dict, h: int, w: int, where: str, notes: list) -> np.ndarray:
    mu = _mask_utils()
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        rle = mu.merge(mu.frPyObjects(_polygons(segm, h, w, where, notes), h, w))
    elif isinstance(segm, dict) and "counts" in segm and "size" in segm:
        size = segm["size"]
        if not isinstance(size, (list, tuple)) or list(size) != [h, w]:
            raise kind_error(
                "size_mismatch",
                f"{where}: RLE size {short(size)} (height, width) but the image is {h}x{w} "
                "(height x width); export the annotations again for this image",
            )
        counts = segm["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise kind_error(
                    "unreadable", f"{where}: RLE counts must be integers >= 0; export again"
                )
            if sum(counts) != h * w:
                raise kind_error(
                    "size_mismatch",
                    f"{where}: RLE counts cover {sum(counts)} pixels, the {w}x{h} image has "
                    f"{h * w}; export the annotations again",
                )
            rle = mu.frPyObjects({"counts": counts, "size": [h, w]}, h, w)
        elif isinstance(counts, (str, bytes)):
            rle = {"size": [h, w], "counts": counts}
        else:
            raise kind_error("unreadable", f"{where}: RLE counts {short(counts)} are not valid")
    else:
        raise kind_error(
            "unreadable",
            f"{where}: segmentation {short(segm)} is neither polygons nor RLE; export again",
        )
    try:
        m = mu.decode(rle)
    except Exception as e:  # pycocotools raises plain exceptions on damaged strings
        raise kind_error("unreadable", f"{where}: RLE cannot be decoded ({e})") from None
    if m.shape != (h, w):
        raise kind_error("size_mismatch", f"{where}: RLE decodes to {m.shape}, image is {h}x{w}")
    return m.astype(bool)


def load(ds, s: Sample) -> Loaded:
    name = f"{ds.display(s.label)} ({s.item})"
    img = files.read_image(s.image, ds.display(s.image))
    h, w = img.rgb.shape[:2]
    p = s.payload
    jw, jh = p.get("width"), p.get("height")
    if isinstance(jw, int) and isinstance(jh, int) and (jh, jw) != (h, w):
        raise kind_error(
            "size_mismatch",
            f"{name}: annotations are for a {jw}x{jh} image but {ds.display(s.image)} is "
            f"{w}x{h}; export the annotations again",
        )
    classes = ds.classes
    bg = classes.by_name("background").id if "background" in classes else 0
    mask = np.full((h, w), bg if classes.has_id(bg) else VOID, classes.mask_dtype)
    notes: list = []
    regions = []
    for ann in p["anns"]:
        where = f"{name}: annotation id {ann.get('id')}"
        m = _decode(ann, h, w, where, notes)
        regions.append((-int(m.sum()), str(ann.get("id")), m, ann.get("category_id")))
    regions.sort(key=lambda r: (r[0], r[1]))
    unknown: dict[str, int] = {}
    for neg_area, _, m, cid in regions:
        cname = p["categories"].get(cid) if isinstance(cid, int) else None
        if cname is not None and cname in classes:
            mask[m] = classes.by_name(cname).id
            continue
        mask[m] = VOID
        if cname is not None and classes.ignored_by_name(cname) is not None:
            continue  # a named void class
        what = f"category id {cid}" if cname is None else f"label {cname!r}"
        unknown[what] = unknown.get(what, 0) - neg_area
    return Loaded(img.rgb, mask, unknown, img.orientation, notes)
