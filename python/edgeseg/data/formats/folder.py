"""The folder layout: ``images/`` and ``masks/`` paired by relative path and stem
(sub-folders allowed), optional ``classes.yaml``, optional ``splits/{train,val,test}.txt``.
Masks are single-channel id PNGs (8/16 bit), palette PNGs (palette index = class id) or RGB
colour PNGs mapped through the class colours."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgeseg.data import files
from edgeseg.data.classes import ClassMap
from edgeseg.data.formats._layout import LAYOUT_HELP, Layout
from edgeseg.data.formats._pairing import (
    class_map,
    index,
    infer_classes,
    pair,
    read_split_files,
    split_files_in,
)
from edgeseg.errors import DatasetError


def read(root: Path, classes: Optional[ClassMap], options: dict) -> Layout:
    issues: list[dict] = []
    if not (root / "images").is_dir():
        raise DatasetError(f"{root}: folder layout without an images/ folder; {LAYOUT_HELP}")
    images = index(root / "images", files.IMAGE_EXTS, "image", issues)
    masks = index(root / "masks", files.MASK_EXTS, "mask", issues)
    samples = pair(images, masks, issues, "masks", "images")
    read_split_files(samples, split_files_in(root / "splits"), issues)
    cm = class_map(
        root, classes, lambda: infer_classes([s.label for s in samples], True, root), issues
    )
    return Layout(cm, samples, issues, palette_is_ids=True)
