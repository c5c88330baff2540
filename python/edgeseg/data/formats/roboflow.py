"""Roboflow "Semantic Segmentation Masks" export: one folder per split (``train/``,
``valid/``, ``test/``; ``valid`` is read as ``val``), each with ``_classes.csv``
(``Pixel Value, Class`` rows) and, for every image ``name.jpg``, a single-channel mask
``name_mask.png`` whose pixel values are the class ids of ``_classes.csv``. A flat export (the
files at the top, no split folders) reads too and gets the seeded split.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from edgeseg._text import short
from edgeseg.data import files
from edgeseg.data.classes import ClassInfo, ClassMap, default_color
from edgeseg.data.formats._layout import Layout
from edgeseg.data.records import Sample, finding
from edgeseg.errors import DatasetError

__all__ = ["read", "read_classes_csv"]

_MASK_SUFFIX = "_mask"
_SPLIT_NAMES = {"train": "train", "valid": "val", "val": "val", "test": "test"}


def read_classes_csv(path: Path) -> ClassMap:
    """``_classes.csv`` → class map (id = pixel value, VOC colours)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot read the class list ({e}); export it again") from None
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"{path}: empty class list; export it again from Roboflow")
    header = [c.strip().lower() for c in rows[0]]
    if "pixel value" in header and "class" in header:
        iv, ic = header.index("pixel value"), header.index("class")
        rows = rows[1:]
    else:
        iv, ic = 0, 1
    infos = []
    for n, row in enumerate(rows, 2):
        try:
            value, name = int(row[iv].strip()), row[ic].strip()
        except (ValueError, IndexError):
            raise DatasetError(
                f"{path}:{n}: {short(','.join(row))} is not 'pixel value, class name'; fix the line"
            ) from None
        infos.append(ClassInfo(value, name, default_color(value)))
    return ClassMap(infos, source=str(path))


def _split_dirs(root: Path) -> list[tuple[Path, Optional[str]]]:
    dirs = [(p, _SPLIT_NAMES.get(p.name.lower(), p.name)) for p in sorted(root.iterdir())]
    dirs = [(p, name) for p, name in dirs if p.is_dir() and (p / "_classes.csv").is_file()]
    if (root / "_classes.csv").is_file():
        dirs.insert(0, (root, None))
    return dirs


def read(root: Path, classes: Optional[ClassMap], options: dict) -> Layout:
    issues: list[dict] = []
    samples: list[Sample] = []
    found: Optional[ClassMap] = None
    for folder, split in _split_dirs(root):
        cm = read_classes_csv(folder / "_classes.csv")
        if found is None:
            found = cm
        elif [(c.id, c.name) for c in cm] != [(c.id, c.name) for c in found]:
            raise DatasetError(
                f"{folder / '_classes.csv'}: classes {[f'{c.id}={c.name}' for c in cm]} differ "
                f"from {found.source} ({[f'{c.id}={c.name}' for c in found]}); export all "
                "splits from one dataset version"
            )
        images, masks = {}, {}
        for p in sorted(folder.iterdir()):
            if not p.is_file() or p.name.startswith("."):
                continue
            ext = p.suffix.lower()
            if p.stem.endswith(_MASK_SUFFIX) and ext in files.MASK_EXTS:
                masks[p.stem[: -len(_MASK_SUFFIX)]] = str(p)
            elif ext in files.IMAGE_EXTS:
                images[p.stem] = str(p)
        prefix = "" if split is None else f"{folder.name}/"
        for stem, img in images.items():
            if stem in masks:
                samples.append(Sample(prefix + stem, img, masks[stem], "mask", split=split))
            else:
                issues.append(
                    finding("missing_mask", img, f"no mask {stem}_mask.png; label it or remove it")
                )
        for stem, mask in masks.items():
            if stem not in images:
                issues.append(
                    finding(
                        "missing_image",
                        mask,
                        f"no image {stem}.* for this mask; add it or remove the mask",
                    )
                )
    if found is None:
        raise DatasetError(f"{root}: no _classes.csv; export 'Semantic Segmentation Masks' again")
    if classes is None:
        yaml_map = root / "classes.yaml"
        classes = ClassMap.load(yaml_map) if yaml_map.is_file() else found
    return Layout(classes, samples, issues, palette_is_ids=True)
