"""Checkpoint files of a run: reading, writing (atomically) and rebuilding the model.

``best.pt`` holds ``{"state_dict", "meta"}``, ``last.pt`` adds the optimizer state, epoch,
best score and history that ``--resume`` needs. Both load with ``torch.load(weights_only=True)``
(no pickled code). ``meta`` carries what export and the runtime need: model name and kwargs,
classes (id, name, colour), input size, mean/std, channel order. Training, calibration,
evaluation, export and fine-tuning all read checkpoints through this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch

from edgeseg.data.classes import VOID
from edgeseg.errors import TrainingError
from edgeseg.train.models import arch_kwargs, create_model

__all__ = [
    "WEIGHTS_FORMAT",
    "atomic_save",
    "build_model_from_meta",
    "load_checkpoint",
    "load_model",
    "make_meta",
    "read_checkpoint",
]

WEIGHTS_FORMAT = "edgeseg-weights/1"


def make_meta(cfg, classes, scan, model_kwargs: dict) -> dict:
    """The ``meta`` of a run's checkpoints: what export and the runtime need to rebuild and
    feed the model (``cfg``: the run's TrainConfig, ``classes``: its ClassMap, ``scan``: the
    train split's :class:`~edgeseg.train.data.ScanResult`)."""
    return {
        "format": WEIGHTS_FORMAT,
        "model": cfg.model,
        # without init-only arguments (a pretrained-weights file): export/eval rebuild the
        # architecture from meta and load the trained state dict, never the file
        "model_kwargs": arch_kwargs(model_kwargs),
        "num_classes": len(classes),
        "classes": [c.to_dict() for c in classes],  # learned classes only: no void, no ignored
        "input_size": [cfg.size, cfg.size],
        "mean": [float(v) for v in cfg.mean],
        "std": [float(v) for v in cfg.std],
        "channel_order": "RGB",
        "layout": "NCHW",
        "scale": 1 / 255,
        "resize": "bilinear",
        "ignore_index": VOID,
        # the train split's pixels, labels and class map: export writes it into the ONNX
        # metadata, so a deployed model names the data it learned from
        "data_hash": scan.data_hash,
        "data_images": scan.num_images,
    }


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``: a
    crash mid-write never leaves a truncated checkpoint."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Union[str, Path]) -> dict:
    """The whole checkpoint dict of a ``best.pt``/``last.pt`` (or a run directory: its
    ``best.pt``), weights only, checked to hold ``state_dict`` and ``meta``."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise TrainingError(f"{path}: no such checkpoint; pass a run directory or its best.pt")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TrainingError(f"{path}: not a readable edgeseg checkpoint ({e})") from None
    if not isinstance(ck, dict) or "state_dict" not in ck or "meta" not in ck:
        raise TrainingError(
            f"{path}: not an edgeseg checkpoint (no state_dict/meta); "
            "was it written by edgeseg train?"
        )
    return ck


def load_checkpoint(path: Union[str, Path]) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a ``best.pt``/``last.pt`` (weights only, no pickled code)."""
    ck = read_checkpoint(path)
    return ck["state_dict"], ck["meta"]


def build_model_from_meta(meta: dict) -> torch.nn.Module:
    """The untrained architecture ``meta`` describes (load the checkpoint's state dict into
    it): init-only arguments such as a pretrained-weights file are left out."""
    kw = arch_kwargs(meta.get("model_kwargs", {}))
    return create_model(meta["model"], meta["num_classes"], **kw)


def load_model(path: Union[str, Path]) -> tuple[torch.nn.Module, dict]:
    """``(model in eval mode on the CPU, meta)`` of a run directory or checkpoint file."""
    state, meta = load_checkpoint(path)
    model = build_model_from_meta(meta)
    model.load_state_dict(state)
    return model.eval(), meta
