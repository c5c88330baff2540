"""Cityscapes: ``leftImg8bit/{split}/{city}/{name}_leftImg8bit.png`` with
``gtFine/{split}/{city}/{name}_gtFine_labelIds.png``.

The label files hold Cityscapes *label ids* 0..33. By default (``cityscapes_ids="train"``)
they are read as the 19 classes of the Cityscapes benchmark (road 0 ... bicycle 18, the
"train ids"); every other label id (unlabeled, ego vehicle, ground, parking, guard rail,
caravan, ...) is void (255), as in the benchmark. With ``cityscapes_ids="all"`` every label
id 0..33 is its own class. Values outside 0..33 are reported as unknown. The other files in
``gtFine/`` (colour, instance and polygon files) are not read; splits come from the folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg.data import files
from edgeseg.data.classes import VOID, ClassInfo, ClassMap, default_color
from edgeseg.data.formats._layout import Layout
from edgeseg.data.records import Sample, finding

__all__ = ["LABELS", "cityscapes_classes", "read", "value_map"]

_IMAGE_SUFFIX = "_leftImg8bit"
_LABEL_SUFFIX = "_gtFine_labelIds"

#: (label id, name, train id or 255, colour): the Cityscapes label definitions.
LABELS = (
    (0, "unlabeled", VOID, (0, 0, 0)),
    (1, "ego vehicle", VOID, (0, 0, 0)),
    (2, "rectification border", VOID, (0, 0, 0)),
    (3, "out of roi", VOID, (0, 0, 0)),
    (4, "static", VOID, (0, 0, 0)),
    (5, "dynamic", VOID, (111, 74, 0)),
    (6, "ground", VOID, (81, 0, 81)),
    (7, "road", 0, (128, 64, 128)),
    (8, "sidewalk", 1, (244, 35, 232)),
    (9, "parking", VOID, (250, 170, 160)),
    (10, "rail track", VOID, (230, 150, 140)),
    (11, "building", 2, (70, 70, 70)),
    (12, "wall", 3, (102, 102, 156)),
    (13, "fence", 4, (190, 153, 153)),
    (14, "guard rail", VOID, (180, 165, 180)),
    (15, "bridge", VOID, (150, 100, 100)),
    (16, "tunnel", VOID, (150, 120, 90)),
    (17, "pole", 5, (153, 153, 153)),
    (18, "polegroup", VOID, (153, 153, 153)),
    (19, "traffic light", 6, (250, 170, 30)),
    (20, "traffic sign", 7, (220, 220, 0)),
    (21, "vegetation", 8, (107, 142, 35)),
    (22, "terrain", 9, (152, 251, 152)),
    (23, "sky", 10, (70, 130, 180)),
    (24, "person", 11, (220, 20, 60)),
    (25, "rider", 12, (255, 0, 0)),
    (26, "car", 13, (0, 0, 142)),
    (27, "truck", 14, (0, 0, 70)),
    (28, "bus", 15, (0, 60, 100)),
    (29, "caravan", VOID, (0, 0, 90)),
    (30, "trailer", VOID, (0, 0, 110)),
    (31, "train", 16, (0, 80, 100)),
    (32, "motorcycle", 17, (0, 0, 230)),
    (33, "bicycle", 18, (119, 11, 32)),
)


def cityscapes_classes(ids: str = "train") -> ClassMap:
    """The 19 train classes (ids 0..18) or, with ``ids="all"``, the 34 label ids as classes
    (colours that Cityscapes shares between labels are replaced by unique ones)."""
    if ids == "train":
        infos = [ClassInfo(t, n, c) for _, n, t, c in LABELS if t != VOID]
        return ClassMap(sorted(infos, key=lambda c: c.id), source="Cityscapes train classes")
    used: set[tuple] = set()
    infos = []
    for lid, name, _, color in LABELS:
        k = lid
        while color in used:
            color = default_color(k)
            k += 256
        used.add(color)
        infos.append(ClassInfo(lid, name, color))
    return ClassMap(infos, source="Cityscapes label ids")


def value_map(ids: str = "train") -> np.ndarray:
    """``lut[label id] -> class id`` over 16-bit values (identity outside 0..33, so stray
    values stay visible as unknown)."""
    lut = np.arange(65536, dtype=np.uint16)
    if ids == "train":
        for lid, _, tid, _ in LABELS:
            lut[lid] = tid
    return lut


def _collect(folder: Path, suffix: str, exts: tuple) -> dict[str, str]:
    out = {}
    if folder.is_dir():
        for p in sorted(folder.rglob(f"*{suffix}.*")):
            if p.is_file() and p.suffix.lower() in exts and p.stem.endswith(suffix):
                rel = p.relative_to(folder).with_suffix("").as_posix()
                out[rel[: -len(suffix)]] = str(p)
    return out


def read(root: Path, classes: Optional[ClassMap], options: dict) -> Layout:
    ids = options.get("cityscapes_ids", "train")
    issues: list[dict] = []
    images = _collect(root / "leftImg8bit", _IMAGE_SUFFIX, files.IMAGE_EXTS)
    labels = _collect(root / "gtFine", _LABEL_SUFFIX, files.MASK_EXTS)
    samples = []
    for key, img in images.items():
        if key in labels:
            split = key.split("/", 1)[0] if "/" in key else None
            samples.append(Sample(key, img, labels[key], "mask", split=split))
        else:
            issues.append(
                finding(
                    "missing_mask",
                    img,
                    f"no label gtFine/{key}{_LABEL_SUFFIX}.png; add it or remove the image",
                )
            )
    for key, lab in labels.items():
        if key not in images:
            issues.append(
                finding(
                    "missing_image",
                    lab,
                    f"no image leftImg8bit/{key}{_IMAGE_SUFFIX}.png for this label; add it or "
                    "remove the label",
                )
            )
    if classes is None:
        yaml_map = root / "classes.yaml"
        classes = ClassMap.load(yaml_map) if yaml_map.is_file() else cityscapes_classes(ids)
    return Layout(classes, samples, issues, palette_is_ids=True, value_map=value_map(ids))
