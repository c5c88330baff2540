"""What every format reader returns (:class:`Layout`) and the layouts' help line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgeseg.data.classes import ClassMap
from edgeseg.data.records import Sample

LAYOUT_HELP = (
    "expected one of: a folder with images/ and masks/ (+ classes.yaml), a CVAT "
    "'Segmentation mask 1.1' export (labelmap.txt, SegmentationClass/, JPEGImages/), Pascal "
    "VOC (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/), Cityscapes (leftImg8bit/, "
    "gtFine/), a COCO JSON with its images, a Label Studio JSON export with its images, a "
    "Roboflow 'Semantic Segmentation Masks' export (_classes.csv, *_mask.png) or LabelMe "
    "*.json files; a .zip of any of these works too"
)


@dataclass
class Layout:
    """What a reader found: everything a ``SegDataset`` needs besides its paths."""

    classes: ClassMap
    samples: list[Sample]
    issues: list[dict]
    #: single-channel and palette masks hold ids (else colours through the class map)
    palette_is_ids: bool = True
    #: colours that mark void pixels in colour masks
    void_colors: tuple = ()
    #: ``value_map[v]`` is the class id of mask value ``v`` (Cityscapes labelIds → train ids)
    value_map: Optional[np.ndarray] = None
