"""Evaluate a trained model on a dataset split: mIoU, per-class IoU, pixel accuracy, Dice,
boundary F1 (numpy metrics from :mod:`edgeseg.metrics`).

The image is resized to the model's input size as at deployment, the logits are resized
back to the label's size (bilinear) before argmax, and the labels are never resampled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from edgeseg.data import SegDataset, open_dataset
from edgeseg.errors import TrainingError
from edgeseg.metrics import BoundaryF1, ConfusionMatrix, summarize
from edgeseg.train import checkpoint
from edgeseg.train import data as tdata
from edgeseg.train.distributed import resolve_device
from edgeseg.train.predict import predict_batch

__all__ = ["evaluate", "load_model"]


def load_model(path: Union[str, Path], device: str = "cpu"):
    """``(model in eval mode, meta)`` from a run directory or a ``best.pt``/``last.pt``."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        raise TrainingError(
            f"{p}: an ONNX model is not a torch model; evaluate it with evaluate({str(p)!r}, "
            "...) or edgeseg eval, or load the run directory / its best.pt here"
        )
    model, meta = checkpoint.load_model(p)
    return model.to(resolve_device(device)).eval(), meta


def _label_lut(ds: SegDataset, meta: dict) -> np.ndarray:
    """Dataset id -> model class index, matching classes by name."""
    return ds.classes.index_lut([c["name"] for c in meta["classes"]])


def evaluate(
    model_path: Union[str, Path],
    data: Union[str, Path, SegDataset],
    split: Optional[str] = "val",
    device: str = "auto",
    batch: int = 4,
    tolerance: int = 2,
    progress: bool = False,
) -> dict:
    """The ``edgeseg eval`` report (see :func:`edgeseg.metrics.summarize`).

    ``model_path``: a run directory, a ``best.pt``/``last.pt``, or an exported ``.onnx`` or
    ``starter:NAME`` (run by ONNX Runtime on the CPU, see :mod:`edgeseg.export.onnx_eval`;
    ``device`` is then ignored).
    """
    from edgeseg.starters import is_starter, resolve_model_path

    if is_starter(model_path):  # a shipped model: its ONNX file
        model_path = resolve_model_path(model_path)
    if Path(model_path).suffix.lower() == ".onnx":
        from edgeseg.export.onnx_eval import evaluate_onnx

        return evaluate_onnx(model_path, data, split, batch, tolerance, progress)
    model, meta = load_model(model_path, device)
    dev = next(model.parameters()).device
    ds = data if isinstance(data, SegDataset) else open_dataset(data)
    if split:
        ds = ds.split(split)
    if len(ds) == 0:
        raise TrainingError(f"{ds.display_root}: the {split} split is empty; nothing to evaluate")
    tdata.scan(ds, split or "all", progress=False)  # refuses labels outside the class map
    size = int(meta["input_size"][0])
    vset = tdata.ValSet(ds, size)
    vset.lut = _label_lut(ds, meta)
    loader = DataLoader(vset, batch_size=batch, collate_fn=tdata.collate_val)
    mean = torch.tensor(meta["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], device=dev).view(1, 3, 1, 1)
    n = meta["num_classes"]
    cm, bf = ConfusionMatrix(n), BoundaryF1(n, tolerance)
    from tqdm import tqdm

    for images, masks in tqdm(loader, desc="eval", unit="batch", disable=not progress):
        preds = predict_batch(model, images, [m.shape for m in masks], mean, std, dev)
        for p, m in zip(preds, masks):
            cm.update(p, m.numpy())
            bf.update(p, m.numpy())
    report = summarize(cm, [c["name"] for c in meta["classes"]], bf, len(ds))
    report["model"] = str(model_path)
    report["split"] = split
    return report
