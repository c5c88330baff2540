"""``edgeseg eval model.onnx``: the metrics of :func:`edgeseg.train.evaluate` for an exported
model, run by ONNX Runtime on the CPU or by OpenVINO (``backend=``, torch-free).

As at deployment: the frame is stretched to the embedded input size by the fused
:func:`edgeseg.kernels.preprocess` (bilinear, mean/std from the file's metadata), the
logits are brought back to the label's size by :func:`edgeseg.kernels.postprocess`
(bilinear, ``align_corners=False``) before argmax; labels are never resampled. The ``.pt``
path shrinks images more than 2x with area interpolation instead, so on large images the two
reports can differ slightly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeseg import kernels
from edgeseg.data import SegDataset, open_dataset
from edgeseg.errors import DatasetError
from edgeseg.metrics import BoundaryF1, ConfusionMatrix, summarize
from edgeseg.onnx_metadata import read_onnx_metadata
from edgeseg.runtime.backends import create_backend
from edgeseg.runtime.model_info import load_model_info

__all__ = ["evaluate_onnx"]


def _label_lut(ds: SegDataset, meta: dict) -> np.ndarray:
    """Dataset id -> model class index, matching classes by name (as the .pt evaluation)."""
    return ds.classes.index_lut([c["name"] for c in meta["classes"]])


def evaluate_onnx(
    model_path: Union[str, Path],
    data: Union[str, Path, SegDataset],
    split: Optional[str] = "val",
    batch: int = 4,
    tolerance: int = 2,
    progress: bool = False,
    threads: int = 2,
    backend: str = "onnxruntime",
) -> dict:
    """The ``edgeseg eval`` report of an exported ``.onnx`` (same keys as for a ``.pt``).
    ``backend``: ``onnxruntime``, ``openvino`` or ``auto`` (as :class:`edgeseg.Segmenter`)."""
    meta = read_onnx_metadata(model_path)
    engine = create_backend(load_model_info(model_path), backend, None, threads)
    step = engine.max_batch or max(1, int(batch))
    ds = data if isinstance(data, SegDataset) else open_dataset(data)
    if split:
        ds = ds.split(split)
    if len(ds) == 0:
        raise DatasetError(f"{ds.display_root}: the {split} split is empty; nothing to evaluate")
    lut = _label_lut(ds, meta)
    n = int(meta["num_classes"])
    size = meta["input_size"]
    cm, bf = ConfusionMatrix(n), BoundaryF1(n, tolerance)
    from tqdm import tqdm

    for start in tqdm(range(0, len(ds), step), desc="eval", unit="batch", disable=not progress):
        images, masks = [], []
        for i in range(start, min(start + step, len(ds))):
            item = ds.load(i)
            ds.classes.check_known(item.unknown, ds.label_path(i))
            images.append(item.image)
            masks.append(lut[item.mask])
        blob = np.asarray(
            kernels.preprocess(images, size, meta["mean"], meta["std"], input_order="rgb")
        )
        logits = engine.infer(blob)
        for lg, m in zip(logits, masks):
            pred = kernels.postprocess(lg, m.shape, confidence=False, counts=False).class_map
            cm.update(pred, m)
            bf.update(pred, m)
    report = summarize(cm, [c["name"] for c in meta["classes"]], bf, len(ds))
    report["model"] = str(model_path)
    engine.close()
    report["split"] = split
    return report
