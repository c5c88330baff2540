"""edgeseg.train: models, losses, augmentation and the trainer (needs torch: ``[train]``).

::

    from edgeseg.train import create_model, train, TrainConfig, evaluate
    model = create_model("unet", num_classes=4, width=0.5)
    train(TrainConfig(data="data/", out="runs/a"))        # = edgeseg train --data ... --out ...
    evaluate("runs/a", "data/", split="val")              # = edgeseg eval runs/a --data ...

Metrics are torch-free in :mod:`edgeseg.metrics`.
"""

from __future__ import annotations

from edgeseg.train.data import train_transform
from edgeseg.train.evaluate import evaluate, load_model
from edgeseg.train.losses import LOSSES, class_weights, create_loss
from edgeseg.train.models import MODELS, create_model, model_names
from edgeseg.train.trainer import TrainConfig, load_checkpoint, train

__all__ = [
    "LOSSES",
    "MODELS",
    "TrainConfig",
    "class_weights",
    "create_loss",
    "create_model",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "model_names",
    "train",
    "train_transform",
]
