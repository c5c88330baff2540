"""The dataset object and the readers behind :func:`open_dataset`.

``open_dataset(path)`` looks at ``path`` (a folder, or a ``.zip`` of one) and picks a reader:

* **folder** — ``images/`` and ``masks/`` paired by relative path + stem (sub-folders
  allowed), optional ``classes.yaml``, optional ``splits/{train,val,test}.txt``. Masks are
  single-channel id PNGs (8/16 bit), palette PNGs (palette index = class id) or RGB colour
  PNGs mapped through the class colours.
* **cvat** — CVAT "Segmentation mask 1.1" (Pascal VOC): ``labelmap.txt``,
  ``SegmentationClass/`` colour masks, ``JPEGImages/``, ``ImageSets/Segmentation/*.txt``.
* **labelme** — LabelMe ``*.json`` files (polygons, rectangles, circles...), images by
  ``imagePath`` or embedded ``imageData``; classes from ``classes.yaml`` or from the labels.

The result is a :class:`SegDataset`, free of torch, shared by training, evaluation,
calibration and QA::

    ds = open_dataset("data/")
    len(ds); image, mask = ds[0]   # HWC uint8 RGB, HW ids (uint8; 255 = void)
    ds.classes                     # ClassMap
    val = ds.split("val")          # a SegDataset view
    ds.image_path(0), ds.label_path(0)   # for messages

Problems found while pairing files (an image without a mask, a mask without an image, an
ambiguous name, split files listing unknown stems) are kept in ``ds.issues`` as QA findings;
an image without a mask is left out of ``ds`` and a warning says so. Problems inside files
raise :class:`~edgeseg.DatasetError` from ``ds[i]`` naming the file; ``edgeseg data check``
lists them all.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
import weakref
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg._text import printable
from edgeseg.data import files, labelme
from edgeseg.data.classes import VOC_VOID_COLOR, VOID, ClassInfo, ClassMap, default_color
from edgeseg.data.zipped import extract_zip
from edgeseg.errors import DatasetError

__all__ = ["SPLITS", "Sample", "SegDataset", "Loaded", "detect_layout", "open_dataset"]

SPLITS = ("train", "val", "test")
LAYOUTS = ("folder", "cvat", "labelme")
_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_LAYOUT_HELP = (
    "expected one of: a folder with images/ and masks/ (+ classes.yaml), a CVAT "
    "'Segmentation mask 1.1' export (labelmap.txt, SegmentationClass/, JPEGImages/), or "
    "LabelMe *.json files; a .zip of any of these works too"
)


def finding(kind: str, file: str, detail: str, severity: str = "error") -> dict:
    """A QA finding as it appears in the report (``severity`` is 'error' or 'warning'); file
    names that are not UTF-8 are shown with ``\\xNN`` escapes."""
    return {
        "kind": kind,
        "file": printable(file),
        "detail": printable(detail),
        "severity": severity,
    }


def _error(kind: str, message: str) -> DatasetError:
    """A DatasetError that also tells QA which finding kind it is."""
    err = DatasetError(message)
    err.kind = kind
    return err


@dataclass
class Sample:
    """One image and its label source. Paths are absolute strings (picklable)."""

    key: str  # relative path without suffix, '/'-separated; the stem used in split files
    image: Optional[str]  # None: embedded in the LabelMe JSON
    label: str  # mask file or LabelMe JSON
    kind: str  # "mask" or "labelme"
    split: Optional[str] = None


@dataclass
class Loaded:
    """What :meth:`SegDataset.load` returns: everything QA needs about one sample."""

    image: np.ndarray
    mask: np.ndarray
    unknown: dict = field(default_factory=dict)  # "colour (r, g, b)" / "id 7" / "label 'x'" → px
    orientation: int = 1


class _TempDir:
    """Owns an extracted zip; removed when the last dataset using it is gone."""

    def __init__(self, path: str):
        self.path = path
        self._finalizer = weakref.finalize(self, shutil.rmtree, path, True)


class SegDataset:
    """Images with integer class-id masks, read without torch (see the module docstring).

    Made by :func:`open_dataset`. ``ds[i]`` is ``(image, mask)``: an H×W×3 uint8 RGB image and
    an H×W uint8 (or uint16) array of class ids, 255 = void. ``len(ds)`` counts the samples,
    ``ds.classes`` is the :class:`~edgeseg.data.classes.ClassMap`, ``ds.split("val")`` a view
    on one split, ``ds.image_path(i)`` / ``ds.label_path(i)`` the files behind a sample.

    Raises:
        DatasetError: From ``ds[i]`` when a file cannot be decoded or a mask holds values
            outside the class map; the message names the file.
        IndexError: An index out of range.
    """

    def __init__(
        self,
        root: Path,
        layout: str,
        classes: ClassMap,
        samples: list[Sample],
        issues: Optional[list[dict]] = None,
        palette_is_ids: bool = True,
        void_colors: tuple = (),
        display_root: Optional[str] = None,
        keepalive: Optional[_TempDir] = None,
        name: Optional[str] = None,
    ):
        self.root = Path(root)
        self.layout = layout
        self.classes = classes
        self.samples = samples
        self.issues = issues if issues is not None else []
        self.palette_is_ids = palette_is_ids
        self.void_colors = tuple(void_colors)
        self.display_root = display_root or str(self.root)
        self.name = name
        self._keepalive = keepalive

    # -- pickling for worker processes: never carry the temp-dir owner -------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_keepalive"] = None
        return state

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        sp = ", ".join(f"{k}={v}" for k, v in self.split_sizes().items())
        return (
            f"SegDataset({self.display_root!r}, layout={self.layout}, {len(self)} images, "
            f"{len(self.classes)} classes{', ' + sp if sp else ''})"
        )

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        item = self.load(i)
        return item.image, item.mask

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # -- paths and splits --------------------------------------------------------------
    def display(self, path: Optional[str]) -> str:
        """A path as the user knows it (inside a zip: ``data.zip!images/a.png``)."""
        if path is None:
            return "<embedded>"
        if self._is_zip_root():
            try:
                rel = Path(path).relative_to(self.root).as_posix()
                return printable(f"{self.display_root}!{rel}")
            except ValueError:
                pass
        return printable(path)

    def _is_zip_root(self) -> bool:
        return self.display_root.lower().endswith(".zip")

    def image_path(self, i: int) -> str:
        s = self.samples[i]
        return self.display(s.image) if s.image else f"{self.display(s.label)} (imageData)"

    def label_path(self, i: int) -> str:
        return self.display(self.samples[i].label)

    def split(self, name: str) -> SegDataset:
        """The samples of split ``name`` (train, val or test) as a dataset view."""
        known = sorted({s.split for s in self.samples if s.split} | set(SPLITS))
        if name not in known:
            raise DatasetError(
                f"{self.display_root}: no split {name!r}; splits are {', '.join(known)}"
            )
        return self._view([s for s in self.samples if s.split == name], name)

    def subset(self, indices: Sequence[int]) -> SegDataset:
        return self._view([self.samples[i] for i in indices], self.name)

    def _view(self, samples: list[Sample], name: Optional[str]) -> SegDataset:
        return SegDataset(
            self.root,
            self.layout,
            self.classes,
            samples,
            [],
            self.palette_is_ids,
            self.void_colors,
            self.display_root,
            self._keepalive,
            name,
        )

    def split_sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.samples:
            if s.split:
                out[s.split] = out.get(s.split, 0) + 1
        return out

    # -- loading -----------------------------------------------------------------------
    def load(self, i: int) -> Loaded:
        """Decode sample ``i``; raises :class:`DatasetError` naming the file on any problem."""
        s = self.samples[i]
        if s.kind == "labelme":
            return self._load_labelme(s)
        img = files.read_image(s.image, self.display(s.image))
        im = files.read_mask_image(s.label, self.display(s.label))
        h, w = img.rgb.shape[:2]
        mh, mw = im.size[1], im.size[0]
        if (mh, mw) != (h, w):
            if img.orientation != 1 and (mh, mw) == img.raw_size:
                # The mask was drawn on the stored (un-rotated) pixels: rotate it the same way.
                im = files.apply_orientation(im, img.orientation)
            else:
                raise _error(
                    "size_mismatch",
                    f"{self.display(s.label)}: mask is {mw}x{mh} but its image "
                    f"{self.display(s.image)} is {w}x{h}; export the mask at the image's size",
                )
        mask, unknown = files.decode_mask(im, self.classes, self.palette_is_ids, self.void_colors)
        return Loaded(img.rgb, mask, unknown, img.orientation)

    def _load_labelme(self, s: Sample) -> Loaded:
        name = self.display(s.label)
        doc = labelme.load_json(s.label)
        if s.image:
            img = files.read_image(s.image, self.display(s.image))
        else:
            img = files.read_image(labelme.image_bytes(doc, name), f"{name} (imageData)")
        h, w = img.rgb.shape[:2]
        jh, jw = doc.get("imageHeight"), doc.get("imageWidth")
        if isinstance(jh, int) and isinstance(jw, int) and (jh, jw) != (h, w):
            raise _error(
                "size_mismatch",
                f"{name}: annotation is for a {jw}x{jh} image but "
                f"{self.image_path(self.samples.index(s))} is {w}x{h}; open the image in "
                "LabelMe and save the annotation again",
            )
        mask, unknown = labelme.rasterize(doc, (h, w), self.classes, name)
        return Loaded(img.rgb, mask, unknown, img.orientation)

    def image_hash(self, image: np.ndarray) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(str(image.shape).encode())
        h.update(np.ascontiguousarray(image).data)
        return h.hexdigest()


# ======================================================================================
# opening
# ======================================================================================
def open_dataset(
    path: Union[str, Path],
    classes: Union[ClassMap, str, Path, None] = None,
    layout: Optional[str] = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> SegDataset:
    """Open a dataset in any supported layout (see the module docstring).

    Args:
        path: A dataset folder or ``.zip`` (folder, CVAT "Segmentation mask 1.1" or LabelMe
            layout, detected from its files).
        classes: A :class:`ClassMap` or a ``classes.yaml`` path overriding the dataset's own.
        layout: ``"folder"``, ``"cvat"`` or ``"labelme"`` instead of detecting it.
        seed: Seed of the deterministic train/val/test split used without split files.
        val_fraction: Share of the samples for ``val`` without split files.
        test_fraction: Share of the samples for ``test`` without split files.

    Returns:
        A :class:`SegDataset`.

    Raises:
        DatasetError: No such path, an unknown layout, a class map that cannot be read, or
            a split file naming missing samples; the message names the file and the fix.
    """
    src = Path(path)
    if not src.exists():
        raise DatasetError(f"{src}: no such file or folder; give a dataset folder or .zip")
    display_root = str(src)
    keepalive = None
    if src.is_file():
        if not zipfile.is_zipfile(src):
            raise DatasetError(f"{src}: not a folder or a .zip archive; {_LAYOUT_HELP}")
        keepalive = _TempDir(tempfile.mkdtemp(prefix="edgeseg-data-"))
        extract_zip(src, Path(keepalive.path))
        root = _unwrap(Path(keepalive.path))
    else:
        root = src
    if isinstance(classes, (str, Path)):
        classes = ClassMap.load(classes)
    layout = layout or detect_layout(root, display_root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    reader = {"folder": _read_folder, "cvat": _read_cvat, "labelme": _read_labelme}[layout]
    ds = reader(root, classes)
    ds.display_root = display_root
    ds._keepalive = keepalive
    if keepalive is not None:
        _redisplay(ds, root)
    if not ds.samples:
        detail = f" ({len(ds.issues)} problems found, e.g. {ds.issues[0]['detail']})"
        raise DatasetError(
            f"{display_root}: no usable image/label pairs in this {layout} dataset"
            f"{detail if ds.issues else ''}; {_LAYOUT_HELP}"
        )
    if not any(s.split for s in ds.samples):
        _seeded_split(ds.samples, seed, val_fraction, test_fraction)
    left_out = [f for f in ds.issues if f["kind"] == "missing_mask"]
    if left_out:
        warnings.warn(
            f"{display_root}: {len(left_out)} image(s) have no label and are left out "
            f"(first: {left_out[0]['file']}); run `edgeseg data check {display_root}` for all "
            "problems",
            stacklevel=2,
        )
    return ds


def _unwrap(root: Path) -> Path:
    """Descend into a single top-level folder (a zip of 'dataset/...')."""
    while True:
        entries = [p for p in root.iterdir() if p.name != "__MACOSX" and not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and not _markers(root):
            if _markers(entries[0]) or not any(p.is_file() for p in entries):
                root = entries[0]
                continue
        return root


def _markers(root: Path) -> bool:
    return any(
        (root / m).exists()
        for m in ("images", "masks", "labelmap.txt", "SegmentationClass", "classes.yaml")
    )


def _redisplay(ds: SegDataset, root: Path) -> None:
    ds.root = root
    for f in ds.issues:
        if f["file"].startswith(str(root)):
            f["file"] = ds.display(f["file"])


def detect_layout(root: Path, display: Optional[str] = None) -> str:
    """'folder', 'cvat' or 'labelme' from the files under ``root``."""
    display = display or str(root)
    if (root / "labelmap.txt").is_file() or (root / "SegmentationClass").is_dir():
        return "cvat"
    if (root / "images").is_dir() or (root / "masks").is_dir():
        return "folder"
    for p in root.rglob("*.json"):
        if p.is_file():
            return "labelme"
    raise DatasetError(f"{display}: cannot tell the dataset layout; {_LAYOUT_HELP}")


def _index(folder: Path, exts: Sequence[str], what: str, issues: list[dict]) -> dict[str, str]:
    """Relative key (no suffix) → file; ambiguous keys and foreign files become findings."""
    found: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.name.lower() in _IGNORED_NAMES:
            continue
        if p.suffix.lower() not in exts:
            issues.append(
                finding(
                    "ignored_file",
                    str(p),
                    f"not a supported {what} type ({', '.join(exts)}); convert or remove it",
                    "warning",
                )
            )
            continue
        key = p.relative_to(folder).with_suffix("").as_posix()
        found.setdefault(key, []).append(p)
    out = {}
    for key, paths in found.items():
        out[key] = str(paths[0])
        if len(paths) > 1:
            issues.append(
                finding(
                    "ambiguous_name",
                    str(paths[1]),
                    f"{len(paths)} {what}s share the name {key!r} "
                    f"({', '.join(p.name for p in paths)}); using {paths[0].name}, rename or "
                    "remove the others",
                )
            )
    return out


def _pair(
    images: dict[str, str], masks: dict[str, str], issues: list[dict], mask_dir: str, img_dir: str
) -> list[Sample]:
    samples = []
    for key, img in images.items():
        if key in masks:
            samples.append(Sample(key, img, masks[key], "mask"))
        else:
            issues.append(
                finding("missing_mask", img, f"no mask {mask_dir}/{key}.png; label it or remove it")
            )
    for key, mask in masks.items():
        if key not in images:
            issues.append(
                finding(
                    "missing_image",
                    mask,
                    f"no image {img_dir}/{key}.* for this mask; add it or remove the mask",
                )
            )
    return samples


def _read_split_files(
    samples: list[Sample], split_files: dict[str, Path], issues: list[dict]
) -> None:
    by_key = {s.key: s for s in samples}
    by_stem: dict[str, list[Sample]] = {}
    for s in samples:
        by_stem.setdefault(s.key.rsplit("/", 1)[-1], []).append(s)
    assigned: dict[str, str] = {}
    for name, path in sorted(split_files.items()):
        # surrogateescape: names that are not UTF-8 match the files' names as Python sees them
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        for lineno, raw in enumerate(text.splitlines(), 1):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            entry = entry.split()[0]
            s = by_key.get(entry) or by_key.get(str(Path(entry).with_suffix("").as_posix()))
            if s is None and len(by_stem.get(entry, [])) == 1:
                s = by_stem[entry][0]
            if s is None:
                issues.append(
                    finding(
                        "split_mismatch",
                        f"{path}:{lineno}",
                        f"{entry!r} matches no labelled image; fix the name or delete the line",
                        "warning",
                    )
                )
                continue
            if s.key in assigned and assigned[s.key] != name:
                issues.append(
                    finding(
                        "split_mismatch",
                        f"{path}:{lineno}",
                        f"{s.key!r} is in both {assigned[s.key]} and {name}; evaluation would "
                        "see training data, keep it in one split",
                    )
                )
                continue
            assigned[s.key] = name
            s.split = name
    if split_files:
        for s in samples:
            if s.split is None:
                issues.append(
                    finding(
                        "split_mismatch",
                        s.image or s.label,
                        f"{s.key!r} is in none of the split files "
                        f"({', '.join(sorted(split_files))}); add it to one",
                        "warning",
                    )
                )


def _seeded_split(samples: list[Sample], seed: int, val: float, test: float) -> None:
    keys = sorted(s.key for s in samples)
    n = len(keys)
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val))
    n_test = int(round(n * test))
    if n >= 2 and val > 0 and n_val == 0:
        n_val = 1
    if n_val + n_test >= n:
        n_test = max(0, n - n_val - 1)
    split_of = {}
    for rank, idx in enumerate(order.tolist()):
        split_of[keys[idx]] = (
            "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
        )
    for s in samples:
        s.split = split_of[s.key]


def _infer_classes(mask_paths: list[str], palette_is_ids: bool, root: Path) -> ClassMap:
    """Class map from the values found in the masks (names class_<id>)."""
    ids: set[int] = set()
    colors: set[tuple] = set()
    palette = None
    for p in mask_paths:
        try:
            im = files.read_mask_image(p)
        except DatasetError:
            continue  # reported by QA as unreadable
        if palette_is_ids and im.mode in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L", "LA"):
            if im.mode == "P" and palette is None:
                palette = im.getpalette()
            arr = np.asarray(im.convert("L") if im.mode == "LA" else im)
            ids.update(np.unique(arr).tolist())
        else:
            rgb = np.asarray(im.convert("RGB")).reshape(-1, 3)
            colors.update(map(tuple, np.unique(rgb, axis=0).tolist()))
    source = f"{root} (classes inferred from masks; add classes.yaml to name them)"
    if ids and colors:
        raise DatasetError(
            f"{root}: masks mix class-id and colour images and there is no classes.yaml; "
            "add classes.yaml with {id, name, color} for every class"
        )
    if colors:
        colors.discard(VOC_VOID_COLOR)
        ordered = sorted(colors, key=lambda c: (c != (0, 0, 0), c))
        infos = [
            ClassInfo(i, "background" if c == (0, 0, 0) and i == 0 else f"class_{i}", c)
            for i, c in enumerate(ordered)
        ]
        return ClassMap(infos, source=source)
    ids.discard(VOID)
    ids = ids or {0}
    infos = []
    used = set()
    for i in sorted(ids):
        color = default_color(i)
        if palette is not None and i < 256:
            color = tuple(palette[3 * i : 3 * i + 3])
        if color in used:
            color = default_color(i)
        used.add(color)
        infos.append(ClassInfo(i, "background" if i == 0 else f"class_{i}", color))
    try:
        return ClassMap(infos, source=source)
    except DatasetError:
        return ClassMap(
            [ClassInfo(c.id, c.name, default_color(c.id)) for c in infos], source=source
        )


def _class_map(root: Path, given: Optional[ClassMap], fallback, issues: list[dict]) -> ClassMap:
    if given is not None:
        return given
    if (root / "classes.yaml").is_file():
        return ClassMap.load(root / "classes.yaml")
    cm = fallback()
    issues.append(
        finding(
            "no_class_map",
            str(root),
            f"no classes.yaml; using {len(cm)} classes inferred from the labels "
            f"({', '.join(cm.names[:8])}{'...' if len(cm) > 8 else ''}); write classes.yaml "
            "to fix names, colours and ids",
            "warning",
        )
    )
    return cm


def _read_folder(root: Path, classes: Optional[ClassMap]) -> SegDataset:
    issues: list[dict] = []
    if not (root / "images").is_dir():
        raise DatasetError(f"{root}: folder layout without an images/ folder; {_LAYOUT_HELP}")
    images = _index(root / "images", files.IMAGE_EXTS, "image", issues)
    masks = _index(root / "masks", files.MASK_EXTS, "mask", issues)
    samples = _pair(images, masks, issues, "masks", "images")
    split_dir = root / "splits"
    split_files = {p.stem: p for p in split_dir.glob("*.txt")} if split_dir.is_dir() else {}
    _read_split_files(samples, split_files, issues)
    cm = _class_map(
        root, classes, lambda: _infer_classes([s.label for s in samples], True, root), issues
    )
    return SegDataset(root, "folder", cm, samples, issues, palette_is_ids=True)


def _read_cvat(root: Path, classes: Optional[ClassMap]) -> SegDataset:
    issues: list[dict] = []
    if classes is None:
        labelmap = root / "labelmap.txt"
        if (root / "classes.yaml").is_file():
            classes = ClassMap.load(root / "classes.yaml")
            if labelmap.is_file():
                lm = ClassMap.from_labelmap(labelmap)
                if {(c.name, c.color) for c in lm} != {(c.name, c.color) for c in classes}:
                    raise DatasetError(
                        f"{root}: classes.yaml and labelmap.txt disagree on names or colours "
                        f"({classes.names} vs {lm.names}); fix one or delete classes.yaml"
                    )
        elif labelmap.is_file():
            classes = ClassMap.from_labelmap(labelmap)
        else:
            raise DatasetError(
                f"{root}: CVAT layout without labelmap.txt; export again with "
                "'Segmentation mask 1.1' or add classes.yaml"
            )
    images = _index(root / "JPEGImages", files.IMAGE_EXTS, "image", issues)
    masks = _index(root / "SegmentationClass", files.MASK_EXTS, "mask", issues)
    samples = _pair(images, masks, issues, "SegmentationClass", "JPEGImages")
    sets = root / "ImageSets" / "Segmentation"
    split_files = {p.stem.lower(): p for p in sets.glob("*.txt")} if sets.is_dir() else {}
    if set(split_files) == {"default"}:
        split_files = {}  # CVAT without subsets: split deterministically
    _read_split_files(samples, split_files, issues)
    void = () if classes.by_color(VOC_VOID_COLOR) else (VOC_VOID_COLOR,)
    return SegDataset(
        root, "cvat", classes, samples, issues, palette_is_ids=False, void_colors=void
    )


def _read_labelme(root: Path, classes: Optional[ClassMap]) -> SegDataset:
    issues: list[dict] = []
    samples: list[Sample] = []
    labels: set[str] = set()
    referenced: set[str] = set()
    for p in sorted(root.rglob("*.json")):
        if not p.is_file() or p.name.startswith("."):
            continue
        try:
            doc = labelme.load_json(p)
        except DatasetError as e:
            issues.append(finding("unreadable", str(p), str(e).split(": ", 1)[-1]))
            continue
        labels.update(labelme.labels_of(doc))
        image = None
        ip = doc.get("imagePath")
        if isinstance(ip, str) and ip:
            cand = (p.parent / ip.replace("\\", "/")).resolve()
            if cand.is_file():
                image = str(cand)
                referenced.add(image)
        if image is None and not doc.get("imageData"):
            issues.append(
                finding(
                    "missing_image",
                    str(p),
                    f"imagePath {ip!r} not found and no imageData embedded; put the image "
                    "next to the JSON or save with 'Save With Image Data'",
                )
            )
            continue
        key = p.relative_to(root).with_suffix("").as_posix()
        samples.append(Sample(key, image, str(p), "labelme"))
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in files.IMAGE_EXTS and not p.name.startswith("."):
            if str(p.resolve()) not in referenced:
                issues.append(
                    finding(
                        "missing_mask",
                        str(p),
                        "no LabelMe JSON refers to this image; annotate it or remove it",
                    )
                )
    split_dir = root / "splits"
    split_files = {p.stem: p for p in split_dir.glob("*.txt")} if split_dir.is_dir() else {}
    _read_split_files(samples, split_files, issues)

    def from_labels() -> ClassMap:
        names = sorted(lb for lb in labels if lb not in labelme.BACKGROUND_LABELS)
        return ClassMap.from_names(["background", *names], source=f"{root} (from labels)")

    cm = _class_map(root, classes, from_labels, issues)
    return SegDataset(root, "labelme", cm, samples, issues)


def cpu_workers(workers: Optional[int]) -> int:
    return max(1, int(workers) if workers else (os.cpu_count() or 1))
