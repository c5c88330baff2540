"""Conversion between layouts without changing a pixel.

``convert(src, dst, to="folder"|"cvat")`` reads any supported format (VOC, Cityscapes, COCO,
Label Studio, Roboflow and LabelMe included) and
writes a folder dataset or a CVAT "Segmentation mask 1.1" export (``dst`` ending in ``.zip``
writes an archive). Image files are copied byte for byte (EXIF and all); masks are written
from the decoded class ids: palette PNGs (index = id; 16-bit PNGs past id 254) for
``folder``, RGB colour PNGs for ``cvat`` with void as the VOC void colour. Splits are
written explicitly. Reading the result gives the same ``ds[i]`` for every sample.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg.data import files, labelme
from edgeseg.data.classes import VOC_VOID_COLOR, ClassMap
from edgeseg.data.dataset import SegDataset, open_dataset
from edgeseg.errors import DatasetError

__all__ = ["FORMATS", "convert", "write_mask"]

FORMATS = ("folder", "cvat")


def write_mask(path: Union[str, Path], mask: np.ndarray, classes: ClassMap, to: str) -> None:
    """Write ids ``mask`` as ``to``'s mask file (palette/16-bit PNG or RGB colour PNG)."""
    from PIL import Image

    h, w = mask.shape
    if to == "cvat":
        rgb = classes.colorize(mask)
        if classes.void_color is None:
            rgb[mask == 255] = VOC_VOID_COLOR
        Image.fromarray(np.ascontiguousarray(rgb)).save(path)
    elif mask.dtype == np.uint8:
        im = Image.frombytes("P", (w, h), np.ascontiguousarray(mask).tobytes())
        im.putpalette(classes.palette().ravel().tolist())
        im.save(path)
    else:
        im = Image.frombytes("I;16", (w, h), np.ascontiguousarray(mask, "<u2").tobytes())
        im.save(path)


def clear_destination(dst: Path, overwrite: bool) -> None:
    """Makes room for an output at ``dst``: nothing to do when it is missing or an empty
    folder; removed when ``overwrite``; else a ``DatasetError`` naming it."""
    if dst.exists() and (dst.is_file() or any(dst.iterdir())):
        if not overwrite:
            raise DatasetError(f"{dst}: already exists; choose another path or pass --overwrite")
        if dst.is_dir():
            shutil.rmtree(dst)
        else:
            dst.unlink()


def convert(
    src: Union[str, Path, SegDataset],
    dst: Union[str, Path],
    to: str = "folder",
    classes: Union[ClassMap, str, Path, None] = None,
    overwrite: bool = False,
    progress: bool = False,
    layout: Optional[str] = None,
    ignore: Sequence[str] = (),
) -> Path:
    """Convert ``src`` (any layout, or an open dataset) to ``to`` at ``dst``; returns ``dst``.

    ``layout`` names the source format instead of detecting it and ``ignore`` class names to
    write as void (see :func:`~edgeseg.data.open_dataset`)."""
    if to not in FORMATS:
        raise DatasetError(f"unknown target format {to!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(src, SegDataset):
        ds = src
    else:
        ds = open_dataset(src, classes=classes, layout=layout, ignore=ignore)
    dst = Path(dst)
    as_zip = dst.suffix.lower() == ".zip"
    clear_destination(dst, overwrite)
    if as_zip:
        with tempfile.TemporaryDirectory(prefix="edgeseg-convert-") as tmp:
            _write(ds, Path(tmp), to, progress)
            shutil.make_archive(str(dst.with_suffix("")), "zip", tmp)
    else:
        dst.mkdir(parents=True, exist_ok=True)
        _write(ds, dst, to, progress)
    return dst


def _write(ds: SegDataset, out: Path, to: str, progress: bool) -> None:
    from tqdm import tqdm

    img_dir, mask_dir = ("JPEGImages", "SegmentationClass") if to == "cvat" else ("images", "masks")
    unknown_files = []
    for i in tqdm(range(len(ds)), unit="img", desc=f"to {to}", disable=not progress, leave=False):
        s = ds.samples[i]
        try:
            item = ds.load(i)
        except DatasetError as e:
            raise DatasetError(
                f"cannot convert: {e} (run `edgeseg data check` for every problem)"
            ) from None
        if item.unknown:
            unknown_files.append(ds.label_path(i))
        if s.image is not None:
            data = Path(s.image).read_bytes()
            ext = Path(s.image).suffix
        else:  # LabelMe imageData: the embedded file, byte for byte
            data = labelme.image_bytes(labelme.load_json(s.label), ds.label_path(i))
            ext = files.sniff_image_ext(data)
        img_path = out / img_dir / f"{s.key}{ext}"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        img_path.write_bytes(data)
        mask_path = out / mask_dir / f"{s.key}.png"
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        write_mask(mask_path, item.mask, ds.classes, to)
    if unknown_files:
        warnings.warn(
            f"{len(unknown_files)} mask(s) had values not in the class map (first: "
            f"{unknown_files[0]}); they were written as void (255)",
            stacklevel=3,
        )
    splits: dict[str, list[str]] = {}
    for s in ds.samples:
        if s.split:
            splits.setdefault(s.split, []).append(s.key)
    if to == "cvat":
        (out / "labelmap.txt").write_text(ds.classes.labelmap_text(), encoding="utf-8")
        cm = ds.classes
        if cm.ids != list(range(len(cm))) or cm.void_color is not None or cm.ignored:
            ds.classes.save(out / "classes.yaml")  # labelmap.txt alone cannot hold these ids
        split_dir = out / "ImageSets" / "Segmentation"
    else:
        ds.classes.save(out / "classes.yaml")
        split_dir = out / "splits"
    split_dir.mkdir(parents=True, exist_ok=True)
    for name, keys in sorted(splits.items()):
        (split_dir / f"{name}.txt").write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
