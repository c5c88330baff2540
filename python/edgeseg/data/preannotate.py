"""Pre-annotations: a model's predictions in the files a labelling tool opens and corrects.

* **CVAT** — :class:`CvatWriter` writes a "Segmentation mask 1.1" archive: ``labelmap.txt``
  (classes and colours from the model), ``ImageSets/Segmentation/default.txt``,
  ``SegmentationClass/`` (colour masks), ``SegmentationObject/`` (one colour per connected
  region, CVAT's instances) and ``JPEGImages/`` (the images, byte for byte). Upload it to a
  CVAT task with *Upload annotations* (format "Segmentation mask 1.1"; the task holds the
  same images) or create a project from it with *Import dataset*. ``open_dataset`` reads it
  back pixel for pixel.
* **Label Studio** — :class:`LabelStudioWriter` writes ``tasks.json`` (one task per image,
  its ``predictions`` as ``polygonlabels`` regions in percent of the image size),
  ``config.xml`` (the labelling interface: one ``PolygonLabels`` label per class, in the
  class colours) and ``images/``. Polygons come from the class map through OpenCV contours;
  a hole (a region of another class, or background, inside a region) is cut into the outer
  polygon with a zero-width slit to its nearest boundary point, so one simple polygon keeps
  the hole. Rasterised back, the polygon matches the predicted pixels but for the slit (one
  pixel row) and the contour simplification (``tolerance`` pixels, 0 = none).
  :func:`import_labelstudio` turns a Label Studio export (``annotations``, or
  ``predictions`` of tasks nobody corrected) back into a folder dataset.

:func:`import_dataset` merges a corrected export in any layout (CVAT's "Segmentation mask
1.1" zip included) into a base dataset; both importers keep the base's classes first, in
their order and with their ids, and append the labels it lacks.

Background (the first class of the model, id 0) gets no polygon: pixels no polygon covers
are background. Regions are listed largest first and rasterised in that order, so a small
region drawn on top of a large one wins.

One room past 450 lines: both writers share the contour extraction, the class colours and the
image naming, which is most of the code.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union
from urllib.parse import unquote

import numpy as np

from edgeseg.data.classes import VOC_VOID_COLOR, VOID, ClassInfo, ClassMap
from edgeseg.errors import DatasetError

__all__ = [
    "FORMATS",
    "CvatWriter",
    "LabelStudioWriter",
    "class_map_of",
    "import_dataset",
    "import_labelstudio",
    "open_writer",
    "polygons",
    "rasterize_polygons",
]

FORMATS = ("cvat", "labelstudio")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DatasetError(
            "pre-annotations trace polygons with OpenCV, which is not installed; "
            "pip install opencv-python-headless (or edgeseg[data])"
        ) from None
    return cv2


def class_map_of(classes: Sequence) -> ClassMap:
    """A :class:`ClassMap` from a model's classes (objects with ``id``, ``name``, ``color``;
    their order is the logits' index order)."""
    return ClassMap([ClassInfo(int(c.id), str(c.name), tuple(c.color)) for c in classes])


def _index_to_id(classes: ClassMap) -> np.ndarray:
    lut = np.full(256 if classes.max_id < 256 else 65536, VOID, classes.mask_dtype)
    for i, c in enumerate(classes):
        lut[i] = c.id
    return lut


def safe_name(name: str) -> str:
    """A file-name stem that every tool accepts (letters, digits, ``._-``)."""
    return _SAFE.sub("_", name).strip("._") or "image"


# ======================================================================================
# class map → polygons
# ======================================================================================
def _bridge(outer: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``outer`` with ``hole`` spliced in through its two nearest points (a zero-width slit)."""
    d = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(axis=2)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    ring = np.concatenate([hole[j:], hole[: j + 1]])
    return np.concatenate([outer[: i + 1], ring, outer[i:]])


def polygons(mask: np.ndarray, tolerance: float = 0.0) -> list[np.ndarray]:
    """Polygons (N×2 int32 ``x, y`` of boundary pixel centres) covering the True pixels of
    ``mask``, holes bridged into their outer polygon; largest first. ``tolerance`` > 0
    simplifies each ring (Douglas-Peucker, in pixels)."""
    cv2 = _cv2()
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    hier = hierarchy[0]
    out = []
    for k, c in enumerate(contours):
        if hier[k][3] != -1:
            continue  # a hole: handled with its outer ring
        ring = _simplify(cv2, c, tolerance)
        area = cv2.contourArea(c)
        child = hier[k][2]
        while child != -1:
            hole = _simplify(cv2, contours[child], tolerance)
            if len(hole) >= 3:
                ring = _bridge(ring, hole)
            child = hier[child][0]
        out.append((area, len(out), ring))
    out.sort(key=lambda t: (-t[0], t[1]))
    return [r for _, _, r in out]


def _simplify(cv2, contour: np.ndarray, tolerance: float) -> np.ndarray:
    c = cv2.approxPolyDP(contour, tolerance, True) if tolerance > 0 else contour
    ring = c.reshape(-1, 2).astype(np.int32)
    if len(ring) < 3:  # a pixel or a one-pixel line: its pixels as a closed ring
        x0, y0 = ring.min(axis=0)
        x1, y1 = ring.max(axis=0)
        ring = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.int32)
    return ring


def rasterize_polygons(
    shape: tuple[int, int],
    regions: Sequence[tuple[int, np.ndarray]],
    fill: int = 0,
    dtype=np.uint8,
) -> np.ndarray:
    """An H×W map: ``fill``, then each ``(value, N×2 float x, y pixel-centre polygon)``
    painted in order (later regions on top)."""
    cv2 = _cv2()
    out = np.full(shape, fill, np.int32)
    for value, pts in regions:
        p = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(out, [p], int(value), lineType=cv2.LINE_8, shift=4)
    return out.astype(dtype)


# ======================================================================================
# writers
# ======================================================================================
class _Writer:
    def __init__(self, out: Union[str, Path], classes: Sequence, model: str = ""):
        self.out = Path(out)
        self.classes = class_map_of(classes)
        self.model = model
        self._used: set[str] = set()
        self.count = 0

    def _name(self, name: str) -> str:
        base = safe_name(name)
        n, k = base, 1
        while n in self._used:
            n, k = f"{base}_{k}", k + 1
        self._used.add(n)
        return n

    def add(
        self,
        name: str,
        image_file: Union[str, Path],
        class_map: np.ndarray,
        confidence: Optional[np.ndarray] = None,
    ) -> str:
        """Add one image (its file is copied as is) and its predicted class map (indices
        into the model's classes); returns the name it got."""
        raise NotImplementedError

    def close(self) -> Path:
        raise NotImplementedError


class CvatWriter(_Writer):
    """Collects predictions into a CVAT "Segmentation mask 1.1" zip (see the module doc)."""

    def __init__(self, out: Union[str, Path], classes: Sequence, model: str = ""):
        super().__init__(out, classes, model)
        self._lut = _index_to_id(self.classes)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.out.with_name(f".{self.out.name}.part")
        self._zip = zipfile.ZipFile(self._tmp, "w", zipfile.ZIP_DEFLATED)
        self._names: list[str] = []

    def add(self, name, image_file, class_map, confidence=None) -> str:
        from PIL import Image

        n = self._name(name)
        ids = self._lut[np.asarray(class_map)]
        rgb = self.classes.colorize(ids)
        if self.classes.void_color is None:
            rgb[ids == VOID] = VOC_VOID_COLOR
        self._zip.writestr(f"SegmentationClass/{n}.png", _png(Image.fromarray(rgb)))
        self._zip.writestr(f"SegmentationObject/{n}.png", _png(_instances(ids, self.classes)))
        ext = Path(image_file).suffix.lower() or ".png"
        self._zip.write(image_file, f"JPEGImages/{n}{ext}")
        self._names.append(n)
        self.count += 1
        return n

    def close(self) -> Path:
        self._zip.writestr("labelmap.txt", self.classes.labelmap_text())
        if self.classes.ids != list(range(len(self.classes))):
            buf = io.StringIO()
            import yaml

            yaml.safe_dump(self.classes.to_list(), buf, sort_keys=False, default_flow_style=None)
            self._zip.writestr("classes.yaml", buf.getvalue())  # ids labelmap.txt cannot hold
        self._zip.writestr(
            "ImageSets/Segmentation/default.txt", "".join(f"{n}\n" for n in self._names)
        )
        self._zip.close()
        self._tmp.replace(self.out)
        return self.out


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _instances(ids: np.ndarray, classes: ClassMap):
    """SegmentationObject: a palette PNG, one index per connected region of a class other
    than background (VOC colours; 0 = background)."""
    from PIL import Image

    cv2 = _cv2()
    inst = np.zeros(ids.shape, np.uint8)
    k = 0
    for c in list(classes)[1:]:
        m = (ids == c.id).astype(np.uint8)
        if not m.any():
            continue
        n, lab = cv2.connectedComponents(m, connectivity=8)
        for r in range(1, n):
            k = k % 254 + 1  # VOC instance indices 1..254; 255 is the boundary colour
            inst[lab == r] = k
    im = Image.frombytes("P", (ids.shape[1], ids.shape[0]), np.ascontiguousarray(inst).tobytes())
    pal = ClassMap.from_names([f"i{i}" for i in range(255)]).palette()
    im.putpalette(pal.ravel().tolist())
    return im


class LabelStudioWriter(_Writer):
    """Collects predictions into Label Studio tasks (see the module doc).

    ``image_url`` prefixes each image's file name in the task (default: Label Studio's
    local-files URL for an ``images/`` folder under the document root, ``out``).
    """

    def __init__(
        self,
        out: Union[str, Path],
        classes: Sequence,
        model: str = "",
        tolerance: float = 1.0,
        image_url: str = "/data/local-files/?d=images/",
    ):
        super().__init__(out, classes, model)
        self.tolerance = float(tolerance)
        self.image_url = image_url
        self._tasks: list[dict] = []
        (self.out / "images").mkdir(parents=True, exist_ok=True)

    def add(self, name, image_file, class_map, confidence=None) -> str:
        n = self._name(name)
        ext = Path(image_file).suffix.lower() or ".png"
        shutil.copyfile(image_file, self.out / "images" / f"{n}{ext}")
        cmap = np.asarray(class_map)
        h, w = cmap.shape
        regions = []
        for idx, c in enumerate(self.classes):
            if idx == 0:
                continue  # background: what no polygon covers
            m = cmap == idx
            if not m.any():
                continue
            for ring in polygons(m, self.tolerance):
                regions.append((_ring_area(ring), c.name, ring))
        regions.sort(key=lambda t: -t[0])
        result = []
        for k, (_, cname, ring) in enumerate(regions):
            pts = (ring.astype(np.float64) + 0.5) / np.array([w, h]) * 100.0
            result.append(
                {
                    "id": f"{n}_{k}",
                    "from_name": "label",
                    "to_name": "image",
                    "type": "polygonlabels",
                    "original_width": int(w),
                    "original_height": int(h),
                    "image_rotation": 0,
                    "value": {
                        "points": np.round(pts, 4).tolist(),
                        "closed": True,
                        "polygonlabels": [cname],
                    },
                }
            )
        pred = {"model_version": self.model, "result": result}
        if confidence is not None:
            pred["score"] = round(float(np.mean(confidence)), 4)
        self._tasks.append(
            {"data": {"image": f"{self.image_url}{n}{ext}", "name": n}, "predictions": [pred]}
        )
        self.count += 1
        return n

    def close(self) -> Path:
        (self.out / "tasks.json").write_text(json.dumps(self._tasks, indent=1) + "\n")
        (self.out / "config.xml").write_text(labelstudio_config(self.classes))
        return self.out


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def labelstudio_config(classes: ClassMap) -> str:
    """Label Studio's labelling interface for ``classes`` (polygons, class colours)."""
    from xml.sax.saxutils import quoteattr

    labels = "".join(
        f"    <Label value={quoteattr(c.name)} "
        f'background="#{c.color[0]:02x}{c.color[1]:02x}{c.color[2]:02x}"/>\n'
        for c in list(classes)[1:]
    )
    return (
        "<View>\n"
        '  <Image name="image" value="$image" zoom="true"/>\n'
        '  <PolygonLabels name="label" toName="image" strokeWidth="2" opacity="0.4">\n'
        f"{labels}"
        "  </PolygonLabels>\n"
        "</View>\n"
    )


def open_writer(kind: str, out: Union[str, Path], classes: Sequence, model: str = ""):
    """The writer of ``kind`` (``cvat``: ``out`` is the .zip; ``labelstudio``: a folder)."""
    if kind == "cvat":
        return CvatWriter(out, classes, model)
    if kind == "labelstudio":
        return LabelStudioWriter(out, classes, model)
    raise DatasetError(f"unknown pre-annotation format {kind!r}; choose one of {FORMATS}")


# ======================================================================================
# Label Studio export → folder dataset
# ======================================================================================
def _read_tasks(src: Path) -> list:
    try:
        tasks = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{src}: cannot read Label Studio tasks ({e})") from None
    if not isinstance(tasks, list):
        raise DatasetError(f"{src}: expected a JSON list of tasks (Label Studio's JSON export)")
    return tasks


def _with_labels(classes: ClassMap, labels: list[str]) -> tuple[ClassMap, list[str]]:
    """``classes`` with the labels it lacks appended (next free ids, unused VOC colours)."""
    from edgeseg.data.classes import default_color

    new = [lb for lb in dict.fromkeys(labels) if lb not in classes]
    if not new:
        return classes, []
    items = list(classes)
    used_ids = {c.id for c in items} | {VOID}
    used_colors = {c.color for c in items} | {VOC_VOID_COLOR}
    nid, k = max(c.id for c in items) + 1, 0
    for name in new:
        while nid in used_ids:
            nid += 1
        color = default_color(nid)
        while color in used_colors:
            k += 1
            color = default_color(nid + 256 * k)
        items.append(ClassInfo(nid, name, color))
        used_ids.add(nid)
        used_colors.add(color)
    return ClassMap(items, classes.void_color, classes.source), new


def import_labelstudio(
    tasks_json: Union[str, Path],
    out: Union[str, Path],
    classes: Union[ClassMap, str, Path, None] = None,
    base: Union[str, Path, None] = None,
    images: Union[str, Path, None] = None,
    overwrite: bool = False,
) -> dict:
    """Write a folder dataset from Label Studio tasks: each task's latest ``annotations``
    entry (a labeller's work), else its ``predictions``.

    Args:
        tasks_json: Label Studio's JSON export (or the ``tasks.json`` written here).
        out: The folder dataset to write (``images/``, ``masks/``, ``classes.yaml``,
            ``splits/``).
        classes: The class map (default: ``base``'s). Labels it lacks are appended as new
            classes after it (the old order and ids stay); background is its first class,
            what no polygon covers.
        base: A dataset (any layout) to merge into: its images, masks and splits are copied,
            the imported images join its train split.
        images: The folder holding the tasks' images, found by file name (default: the
            ``images/`` folder beside ``tasks_json``).
        overwrite: Replace a non-empty ``out``.

    Returns:
        ``{"out", "images", "annotated", "predicted_only", "new_classes", "classes"}``.

    Raises:
        DatasetError: The JSON cannot be read, an image is missing, a name clashes with a
            ``base`` image, no class map is given; the message names the task and the fix.
    """
    from PIL import Image

    from edgeseg.data.convert import clear_destination, convert, write_mask
    from edgeseg.data.dataset import open_dataset

    src = Path(tasks_json)
    tasks = _read_tasks(src)
    img_dir = Path(images) if images else src.parent / "images"
    out = Path(out)
    clear_destination(out, overwrite)
    base_ds = open_dataset(base) if base is not None else None
    if isinstance(classes, (str, Path)):
        classes = ClassMap.load(classes)
    if classes is None:
        if base_ds is None:
            raise DatasetError(
                f"{src}: give the class map (classes=classes.yaml, the model's classes) or a "
                "base dataset to merge into"
            )
        classes = base_ds.classes
    entries, labels = [], []
    for t, task in enumerate(tasks):
        where = f"{src} task {t + 1}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DatasetError(f"{where}: not a Label Studio task (no 'data')")
        url = str(task["data"].get("image", ""))
        fname = unquote(url.rsplit("/", 1)[-1].rsplit("=", 1)[-1])
        img = img_dir / fname
        if not fname or not img.is_file():
            raise DatasetError(
                f"{where}: image {url!r} not found in {img_dir}; pass the folder of the images"
            )
        done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        entry = done[-1] if done else ((task.get("predictions") or [{}])[-1] or {})
        regions = []
        for r in entry.get("result") or []:
            if not isinstance(r, dict) or r.get("type") != "polygonlabels":
                continue
            v = r.get("value") or {}
            names = v.get("polygonlabels") or []
            pts = np.asarray(v.get("points") or [], np.float64)
            if not names or pts.ndim != 2 or pts.shape[1:] != (2,) or len(pts) < 3:
                continue
            labels.append(str(names[0]))
            regions.append((str(names[0]), pts, r.get("original_width"), r.get("original_height")))
        entries.append((where, img, bool(done), regions))
    classes, new = _with_labels(classes, labels)
    if base_ds is not None:
        convert(base_ds, out, to="folder")
        classes, _ = _with_labels(base_ds.classes, classes.names)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    by_name = {c.name: c.id for c in classes}
    keys = []
    for where, img, _, regions in entries:
        with Image.open(img) as im:
            w, h = im.size
        polys = []
        for name, pts, ow, oh in regions:
            px = pts / 100.0 * np.array([float(ow or w), float(oh or h)]) - 0.5
            polys.append((_ring_area(px), by_name[name], px))
        polys.sort(key=lambda x: -x[0])
        mask = rasterize_polygons(
            (h, w), [(v, p) for _, v, p in polys], classes[0].id, classes.mask_dtype
        )
        stem = img.stem
        if (out / "masks" / f"{stem}.png").exists():
            raise DatasetError(
                f"{where}: {img.name} has the name of an image already in {base}; rename it "
                "before importing"
            )
        shutil.copyfile(img, out / "images" / img.name)
        write_mask(out / "masks" / f"{stem}.png", mask, classes, "folder")
        keys.append(stem)
    classes.save(out / "classes.yaml")
    if base_ds is not None and (out / "splits").is_dir():
        train = out / "splits" / "train.txt"
        old = train.read_text(encoding="utf-8") if train.is_file() else ""
        train.write_text(old + "".join(f"{k}\n" for k in keys), encoding="utf-8")
    return {
        "out": str(out),
        "images": len(entries),
        "annotated": sum(1 for e in entries if e[2]),
        "predicted_only": sum(1 for e in entries if not e[2]),
        "new_classes": new,
        "classes": classes.names,
    }


def import_dataset(
    src: Union[str, Path],
    out: Union[str, Path],
    base: Union[str, Path, None] = None,
    classes: Union[ClassMap, str, Path, None] = None,
    overwrite: bool = False,
) -> dict:
    """Write ``src`` (any layout: a CVAT export, a folder, LabelMe) as a folder dataset,
    merged into ``base`` when given: the base's images, masks and splits are copied, the
    imported images join its train split, and the classes are matched by name (the base's
    first with their ids, new ones appended). ``classes`` gives the class map to start from
    instead of the base's. Returns the same summary as :func:`import_labelstudio`.

    Raises:
        DatasetError: ``src`` cannot be opened or holds files the QA calls unreadable, an
            image name that is already in ``base``, a non-empty ``out``.
    """
    from edgeseg.data.convert import clear_destination, convert, write_mask
    from edgeseg.data.dataset import open_dataset

    ds = open_dataset(src)
    out = Path(out)
    clear_destination(out, overwrite)
    base_ds = open_dataset(base) if base is not None else None
    if isinstance(classes, (str, Path)):
        classes = ClassMap.load(classes)
    start = classes or (base_ds.classes if base_ds is not None else ds.classes)
    merged, new = _with_labels(start, ds.classes.names)
    if base_ds is not None:
        convert(base_ds, out, to="folder")
        merged, _ = _with_labels(base_ds.classes, merged.names)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    lut = np.full(65536, VOID, merged.mask_dtype)
    for c in ds.classes:
        lut[c.id] = merged.by_name(c.name).id
    keys = []
    for i, s in enumerate(ds.samples):
        item = ds.load(i)
        stem = s.key.rsplit("/", 1)[-1]
        if (out / "masks" / f"{stem}.png").exists():
            raise DatasetError(
                f"{ds.image_path(i)}: an image named {stem!r} is already in {base}; rename "
                "it before importing"
            )
        ext = Path(s.image).suffix if s.image else ".png"
        if s.image:
            shutil.copyfile(s.image, out / "images" / f"{stem}{ext}")
        else:
            from PIL import Image

            Image.fromarray(item.image).save(out / "images" / f"{stem}.png")
        write_mask(out / "masks" / f"{stem}.png", lut[item.mask], merged, "folder")
        keys.append(stem)
    merged.save(out / "classes.yaml")
    if base_ds is not None:
        (out / "splits").mkdir(exist_ok=True)
        train = out / "splits" / "train.txt"
        old = train.read_text(encoding="utf-8") if train.is_file() else ""
        train.write_text(old + "".join(f"{k}\n" for k in keys), encoding="utf-8")
    return {
        "out": str(out),
        "images": len(keys),
        "annotated": len(keys),
        "predicted_only": 0,
        "new_classes": new,
        "classes": merged.names,
    }
