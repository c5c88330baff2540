"""CVAT "Segmentation mask 1.1" (a Pascal VOC layout with CVAT's colours): ``labelmap.txt``
(``name:r,g,b:parts:actions``, line order = id), ``SegmentationClass/`` RGB colour masks,
``JPEGImages/``, ``ImageSets/Segmentation/*.txt`` (``default.txt`` alone: no splits). The VOC
void colour (224, 224, 192) is void unless a class uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgeseg.data import files
from edgeseg.data.classes import VOC_VOID_COLOR, ClassMap
from edgeseg.data.formats._layout import Layout
from edgeseg.data.formats._pairing import index, pair, read_split_files, split_files_in
from edgeseg.errors import DatasetError


def read(root: Path, classes: Optional[ClassMap], options: dict) -> Layout:
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
    images = index(root / "JPEGImages", files.IMAGE_EXTS, "image", issues)
    masks = index(root / "SegmentationClass", files.MASK_EXTS, "mask", issues)
    samples = pair(images, masks, issues, "SegmentationClass", "JPEGImages")
    split_files = split_files_in(root / "ImageSets" / "Segmentation", lower=True)
    if set(split_files) == {"default"}:
        split_files = {}  # CVAT without subsets: split deterministically
    read_split_files(samples, split_files, issues)
    void = () if classes.by_color(VOC_VOID_COLOR) else (VOC_VOID_COLOR,)
    return Layout(classes, samples, issues, palette_is_ids=False, void_colors=void)
