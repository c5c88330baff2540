"""edgeseg.data: read, check, synthesize and convert segmentation datasets (no torch).

Formats (picked automatically by :func:`open_dataset`, or named by ``layout=``; a ``.zip``
of any works too; one reader module each under :mod:`edgeseg.data.formats`):

* folder: ``images/`` + ``masks/`` (id PNGs 8/16 bit, palette PNGs, RGB colour PNGs),
  ``classes.yaml``, ``splits/{train,val,test}.txt``
* CVAT "Segmentation mask 1.1" (Pascal VOC layout with ``labelmap.txt``)
* Pascal VOC 2012 (palette masks, 255 = void, ``trainval`` read as the union it is)
* Cityscapes (``leftImg8bit/`` + ``gtFine/*_labelIds.png``; the 19 train ids or all ids)
* COCO JSON (polygons and RLE, through pycocotools)
* Label Studio JSON export (brush RLE, percent polygons)
* Roboflow "Semantic Segmentation Masks" (``_classes.csv`` + ``*_mask.png``)
* LabelMe JSON (polygons, rectangles, circles, lines, points; image file or ``imageData``)

Void (255) is the ignore label everywhere; a class marked ``ignore: true`` in
``classes.yaml`` (or named in ``open_dataset(..., ignore=[...])``) reads as void too.

API::

    from edgeseg import data
    ds = data.open_dataset("path/")      # SegDataset: len(ds), ds[i] -> (HWC uint8 RGB, HW ids)
    ds.classes                           # ClassMap (id 0 background, 255 void)
    ds.split("val")                      # a view; ds.image_path(i) / ds.label_path(i)
    report = data.check("path/")         # label QA report dict (see edgeseg.data.qa)
    data.synth("out/", task="defects", n=200, size=256, seed=0)
    data.convert("src/", "dst/", to="cvat")

CLI: ``edgeseg data {check,synth,convert,info}`` (``--from FORMAT``, ``--ignore CLASS``).
Errors are :class:`edgeseg.DatasetError` with the file and the fix in the message.
"""

from __future__ import annotations

from edgeseg.data.classes import VOID, ClassInfo, ClassMap
from edgeseg.data.convert import convert
from edgeseg.data.dataset import SPLITS, SegDataset, detect_layout, open_dataset
from edgeseg.data.qa import check, format_report
from edgeseg.data.synth import synth, task_classes
from edgeseg.errors import DatasetError

__all__ = [
    "SPLITS",
    "VOID",
    "ClassInfo",
    "ClassMap",
    "DatasetError",
    "SegDataset",
    "check",
    "convert",
    "detect_layout",
    "format_report",
    "open_dataset",
    "synth",
    "task_classes",
]
