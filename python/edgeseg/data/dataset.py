"""The dataset object and :func:`open_dataset`, which picks a reader for a path.

``open_dataset(path)`` looks at ``path`` (a folder, or a ``.zip`` of one), detects its
format and reads it with that format's reader (:mod:`edgeseg.data.formats`, one module per
format): folder, CVAT "Segmentation mask 1.1", Pascal VOC 2012, Cityscapes, COCO, Label
Studio, Roboflow "Semantic Segmentation Masks" and LabelMe.

The result is a :class:`SegDataset`, free of torch, shared by training, evaluation,
calibration and QA::

    ds = open_dataset("data/")
    len(ds); image, mask = ds[0]   # HWC uint8 RGB, HW ids (uint8; 255 = void)
    ds.classes                     # ClassMap
    val = ds.split("val")          # a SegDataset view
    ds.image_path(0), ds.label_path(0)   # for messages

Problems found while pairing files (an image without a mask, a mask without an image, an
ambiguous name, split files listing unknown stems, an annotation naming a missing image)
are kept in ``ds.issues`` as QA findings; an image without a label is left out of ``ds`` and
a warning says so. Problems inside files raise :class:`~edgeseg.DatasetError` from ``ds[i]``
naming the file (and the annotation item); ``edgeseg data check`` lists them all.
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
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg._text import printable
from edgeseg.data import files, formats
from edgeseg.data.classes import ClassMap
from edgeseg.data.formats import FORMATS, LAYOUT_HELP
from edgeseg.data.records import Loaded, Sample, finding, kind_error
from edgeseg.data.zipped import extract_zip
from edgeseg.errors import DatasetError

__all__ = [
    "LAYOUTS",
    "SPLITS",
    "Loaded",
    "Sample",
    "SegDataset",
    "detect_layout",
    "finding",
    "open_dataset",
]

SPLITS = ("train", "val", "test")
LAYOUTS = FORMATS
_MARKERS = (
    "images",
    "masks",
    "labelmap.txt",
    "SegmentationClass",
    "classes.yaml",
    "leftImg8bit",
    "_classes.csv",
)


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
        value_map: Optional[np.ndarray] = None,
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
        self.value_map = value_map
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
        """The label file of sample ``i`` (with the annotation item: ``x.json (image id 7)``)."""
        s = self.samples[i]
        return self.display(s.label) + (f" ({s.item})" if s.item else "")

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
            self.value_map,
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
        if s.kind != "mask":
            return formats.loader(s.kind)(self, s)
        img = files.read_image(s.image, self.display(s.image))
        im = files.read_mask_image(s.label, self.display(s.label))
        h, w = img.rgb.shape[:2]
        mh, mw = im.size[1], im.size[0]
        if (mh, mw) != (h, w):
            if img.orientation != 1 and (mh, mw) == img.raw_size:
                # The mask was drawn on the stored (un-rotated) pixels: rotate it the same way.
                im = files.apply_orientation(im, img.orientation)
            else:
                raise kind_error(
                    "size_mismatch",
                    f"{self.display(s.label)}: mask is {mw}x{mh} but its image "
                    f"{self.display(s.image)} is {w}x{h}; export the mask at the image's size",
                )
        if self.value_map is not None and im.mode in ("L", "P", "I;16", "I"):
            mask, unknown = files.decode_ids(self.value_map[np.asarray(im)], self.classes)
        else:
            mask, unknown = files.decode_mask(
                im, self.classes, self.palette_is_ids, self.void_colors
            )
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
    ignore: Sequence[str] = (),
    cityscapes_ids: str = "train",
) -> SegDataset:
    """Open a dataset in any supported format (see the module docstring).

    Args:
        path: A dataset folder or ``.zip`` (its format is detected from its files).
        classes: A :class:`ClassMap` or a ``classes.yaml`` path overriding the dataset's own.
        layout: One of :data:`LAYOUTS` (``"folder"``, ``"cvat"``, ``"voc"``,
            ``"cityscapes"``, ``"coco"``, ``"labelstudio"``, ``"roboflow"``, ``"labelme"``)
            instead of detecting it.
        seed: Seed of the deterministic train/val/test split used without split files.
        val_fraction: Share of the samples for ``val`` without split files.
        test_fraction: Share of the samples for ``test`` without split files.
        ignore: Class names whose pixels are void (ignored by training and metrics), e.g. a
            dataset's ``unlabeled`` class; they leave the class map.
        cityscapes_ids: ``"train"`` (the 19 Cityscapes train classes, the others void) or
            ``"all"`` (every label id is a class).

    Returns:
        A :class:`SegDataset`.

    Raises:
        DatasetError: No such path, an unknown layout, a class map that cannot be read, an
            ``ignore`` name that is not a class, or a split file naming missing samples;
            the message names the file and the fix.
    """
    src = Path(path)
    if not src.exists():
        raise DatasetError(f"{src}: no such file or folder; give a dataset folder or .zip")
    if cityscapes_ids not in ("train", "all"):
        raise DatasetError(f"cityscapes_ids {cityscapes_ids!r}: choose 'train' or 'all'")
    display_root = str(src)
    keepalive = None
    if src.is_file():
        if not zipfile.is_zipfile(src):
            raise DatasetError(f"{src}: not a folder or a .zip archive; {LAYOUT_HELP}")
        keepalive = _TempDir(tempfile.mkdtemp(prefix="edgeseg-data-"))
        extract_zip(src, Path(keepalive.path))
        root = _unwrap(Path(keepalive.path))
    else:
        root = src
    if isinstance(classes, (str, Path)):
        classes = ClassMap.load(classes)
    layout = layout or detect_layout(root, display_root)
    found = formats.reader(layout)(root, classes, {"cityscapes_ids": cityscapes_ids})
    cm = found.classes.with_ignored(ignore)
    ds = SegDataset(
        root,
        layout,
        cm,
        found.samples,
        found.issues,
        palette_is_ids=found.palette_is_ids,
        void_colors=found.void_colors,
        value_map=found.value_map,
    )
    ds.display_root = display_root
    ds._keepalive = keepalive
    if keepalive is not None:
        _redisplay(ds, root)
    if not ds.samples:
        detail = (
            f" ({len(ds.issues)} problems found, e.g. {ds.issues[0]['detail']})"
            if ds.issues
            else ""
        )
        raise DatasetError(
            f"{display_root}: no usable image/label pairs in this {layout} dataset"
            f"{detail}; {LAYOUT_HELP}"
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
    return any((root / m).exists() for m in _MARKERS)


def _redisplay(ds: SegDataset, root: Path) -> None:
    ds.root = root
    for f in ds.issues:
        if f["file"].startswith(str(root)):
            f["file"] = ds.display(f["file"])


def detect_layout(root: Path, display: Optional[str] = None) -> str:
    """The format of the dataset under ``root``, one of :data:`LAYOUTS`."""
    return formats.detect(Path(root), display)


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


def cpu_workers(workers: Optional[int]) -> int:
    return max(1, int(workers) if workers else (os.cpu_count() or 1))
