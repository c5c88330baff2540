"""Pascal VOC 2012 as shipped: ``JPEGImages/``, ``SegmentationClass/`` palette PNGs (palette
index = class id; 255, drawn in the void colour along object borders, is void) and
``ImageSets/Segmentation/{train,val,trainval}.txt``. ``trainval.txt`` is the union of
``train`` and ``val`` and is read as such, not as a split of its own.

Without ``classes.yaml`` the class map is VOC's 21 classes (background + 20 objects) in the
VOC colours. ``JPEGImages/`` also holds VOC's detection-only images; those named in no
segmentation list and without a mask are counted in one ``not_segmented`` warning, never
paired. A listed image without a mask is a ``missing_mask`` error. Colour (RGB) masks, as
some tools re-save them, are read through the class colours with the void colour as void.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgeseg.data import files
from edgeseg.data.classes import VOC_VOID_COLOR, ClassMap
from edgeseg.data.formats._layout import Layout
from edgeseg.data.formats._pairing import index, read_split_files, split_files_in
from edgeseg.data.records import Sample, finding

__all__ = ["VOC_CLASSES", "read", "voc_classes"]

#: The Pascal VOC 2012 segmentation classes, id order (colours: the VOC colour map).
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def voc_classes() -> ClassMap:
    return ClassMap.from_names(VOC_CLASSES, source="Pascal VOC 2012 classes")


def _listed(split_files: dict[str, Path]) -> set[str]:
    out = set()
    for path in split_files.values():
        for raw in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
            entry = raw.strip()
            if entry and not entry.startswith("#"):
                out.add(Path(entry.split()[0]).with_suffix("").as_posix())
    return out


def read(root: Path, classes: Optional[ClassMap], options: dict) -> Layout:
    issues: list[dict] = []
    images = index(root / "JPEGImages", files.IMAGE_EXTS, "image", issues)
    masks = index(root / "SegmentationClass", files.MASK_EXTS, "mask", issues)
    split_files = split_files_in(root / "ImageSets" / "Segmentation", lower=True)
    listed = _listed(split_files)
    samples = []
    for key, mask in masks.items():
        if key in images:
            samples.append(Sample(key, images[key], mask, "mask"))
        else:
            issues.append(
                finding(
                    "missing_image",
                    mask,
                    f"no image JPEGImages/{key}.* for this mask; add it or remove the mask",
                )
            )
    unsegmented = []
    for key, img in images.items():
        if key in masks:
            continue
        if key in listed or not split_files:
            issues.append(
                finding(
                    "missing_mask",
                    img,
                    f"no mask SegmentationClass/{key}.png; label it or remove it"
                    + (" from the segmentation lists" if key in listed else ""),
                )
            )
        else:
            unsegmented.append(img)
    if unsegmented:
        issues.append(
            finding(
                "not_segmented",
                str(root / "JPEGImages"),
                f"{len(unsegmented)} images have no mask and are in no segmentation list "
                f"(e.g. {Path(unsegmented[0]).name}; VOC's detection-only images): not used",
                "warning",
            )
        )
    read_split_files(samples, split_files, issues)
    cm = classes
    if cm is None:  # VOC's own classes are the format's map, not a guess: no warning
        yaml_map = root / "classes.yaml"
        cm = ClassMap.load(yaml_map) if yaml_map.is_file() else voc_classes()
    void = () if cm.by_color(VOC_VOID_COLOR) else (VOC_VOID_COLOR,)
    return Layout(cm, samples, issues, palette_is_ids=True, void_colors=void)
