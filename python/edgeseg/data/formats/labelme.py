"""LabelMe ``*.json`` files (polygons, rectangles, circles, lines, points, masks; drawn by
:mod:`edgeseg.data.labelme`), images by ``imagePath`` or embedded ``imageData``; classes from
``classes.yaml`` or from the labels; optional ``splits/{train,val,test}.txt``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgeseg.data import files
from edgeseg.data import labelme as lm
from edgeseg.data.classes import ClassMap
from edgeseg.data.formats._layout import Layout
from edgeseg.data.formats._pairing import class_map, read_split_files, split_files_in
from edgeseg.data.records import Loaded, Sample, finding, kind_error
from edgeseg.errors import DatasetError


def read(root: Path, classes: Optional[ClassMap], options: dict) -> Layout:
    issues: list[dict] = []
    samples: list[Sample] = []
    labels: set[str] = set()
    referenced: set[str] = set()
    for p in sorted(root.rglob("*.json")):
        if not p.is_file() or p.name.startswith("."):
            continue
        try:
            doc = lm.load_json(p)
        except DatasetError as e:
            issues.append(finding("unreadable", str(p), str(e).split(": ", 1)[-1]))
            continue
        labels.update(lm.labels_of(doc))
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
    read_split_files(samples, split_files_in(root / "splits"), issues)

    def from_labels() -> ClassMap:
        names = sorted(lb for lb in labels if lb not in lm.BACKGROUND_LABELS)
        return ClassMap.from_names(["background", *names], source=f"{root} (from labels)")

    return Layout(class_map(root, classes, from_labels, issues), samples, issues)


def load(ds, s: Sample) -> Loaded:
    name = ds.display(s.label)
    doc = lm.load_json(s.label)
    if s.image:
        img = files.read_image(s.image, ds.display(s.image))
    else:
        img = files.read_image(lm.image_bytes(doc, name), f"{name} (imageData)")
    h, w = img.rgb.shape[:2]
    jh, jw = doc.get("imageHeight"), doc.get("imageWidth")
    if isinstance(jh, int) and isinstance(jw, int) and (jh, jw) != (h, w):
        shown = ds.display(s.image) if s.image else f"{name} (imageData)"
        raise kind_error(
            "size_mismatch",
            f"{name}: annotation is for a {jw}x{jh} image but {shown} is {w}x{h}; open the "
            "image in LabelMe and save the annotation again",
        )
    mask, unknown = lm.rasterize(doc, (h, w), ds.classes, name)
    return Loaded(img.rgb, mask, unknown, img.orientation)
