"""One reader per dataset format; :func:`detect` names the format of a folder.

Each module reads one way people store pixel labels and returns a :class:`Layout` (the
class map, the samples, the findings and how to decode the masks); formats whose labels
are drawn from annotations (LabelMe, COCO, Label Studio) also give a ``load(ds, sample)``
that draws one sample. :mod:`edgeseg.data.dataset` turns a layout into a ``SegDataset``.

=============  ==================================================================
folder         ``images/`` + ``masks/`` (+ ``classes.yaml``, ``splits/``)
cvat           CVAT "Segmentation mask 1.1": ``labelmap.txt`` + colour masks
voc            Pascal VOC 2012: ``SegmentationClass/`` palette PNGs, 255 = void
cityscapes     ``leftImg8bit/`` + ``gtFine/*_labelIds.png`` (19 train ids or all)
coco           COCO JSON, polygons and RLE (pycocotools)
labelstudio    Label Studio JSON export: brush RLE and polygons
roboflow       Roboflow "Semantic Segmentation Masks": ``_classes.csv`` + ``*_mask.png``
labelme        LabelMe ``*.json``
=============  ==================================================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from edgeseg.data.formats._layout import LAYOUT_HELP, Layout
from edgeseg.errors import DatasetError

__all__ = ["FORMATS", "LAYOUT_HELP", "Layout", "detect", "loader", "reader"]

#: Every format, in the order :func:`detect` tries them.
FORMATS = ("cvat", "voc", "cityscapes", "folder", "roboflow", "coco", "labelstudio", "labelme")


def reader(name: str) -> Callable[..., Layout]:
    """The ``read(root, classes, options) -> Layout`` function of format ``name``."""
    from edgeseg.data.formats import (
        cityscapes,
        coco,
        cvat,
        folder,
        labelme,
        labelstudio,
        roboflow,
        voc,
    )

    table = {
        "folder": folder.read,
        "cvat": cvat.read,
        "voc": voc.read,
        "cityscapes": cityscapes.read,
        "coco": coco.read,
        "labelstudio": labelstudio.read,
        "roboflow": roboflow.read,
        "labelme": labelme.read,
    }
    if name not in table:
        raise DatasetError(f"unknown layout {name!r}; choose one of {', '.join(FORMATS)}")
    return table[name]


def loader(kind: str) -> Callable:
    """The ``load(ds, sample) -> Loaded`` of a sample kind drawn from annotations."""
    from edgeseg.data.formats import coco, labelme, labelstudio

    table = {"labelme": labelme.load, "coco": coco.load, "labelstudio": labelstudio.load}
    if kind not in table:
        raise DatasetError(f"unknown sample kind {kind!r}; kinds are mask, {', '.join(table)}")
    return table[kind]


def _json_kind(path: Path) -> Optional[str]:
    """'coco', 'labelstudio', 'labelme' or None from the top of a JSON document."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if isinstance(doc, dict) and {"images", "annotations", "categories"} <= set(doc):
        return "coco"
    if isinstance(doc, dict) and isinstance(doc.get("shapes"), list):
        return "labelme"
    if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "data" in doc[0]:
        if "annotations" in doc[0] or "predictions" in doc[0]:
            return "labelstudio"
    return None


def detect(root: Path, display: Optional[str] = None) -> str:
    """The format of the dataset under ``root`` (see :data:`FORMATS`) from its files."""
    display = display or str(root)
    if (root / "labelmap.txt").is_file():
        return "cvat"
    if (root / "SegmentationClass").is_dir():
        return "voc"
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if (root / "masks").is_dir():
        return "folder"
    if (root / "_classes.csv").is_file() or any(root.glob("*/_classes.csv")):
        return "roboflow"
    any_json = False
    for p in sorted(root.rglob("*.json")):
        if p.is_file() and not p.name.startswith("."):
            kind = _json_kind(p)
            if kind and (kind != "labelme" or not (root / "images").is_dir()):
                return kind  # COCO and Label Studio keep their images in images/ too
            any_json = any_json or kind is None
    if (root / "images").is_dir():
        return "folder"
    if any_json:  # unreadable JSON files: the LabelMe reader reports each one
        return "labelme"
    raise DatasetError(f"{display}: cannot tell the dataset layout; {LAYOUT_HELP}")
