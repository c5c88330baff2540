"""edgeseg.train: models, losses, augmentation and the trainer (needs torch: ``[train]``).

::

    from edgeseg.train import create_model, train, TrainConfig, evaluate
    model = create_model("unet", num_classes=4, width=0.5)
    train(TrainConfig(data="data/", out="runs/a"))        # = edgeseg train --data ... --out ...
    evaluate("runs/a", "data/", split="val")              # = edgeseg eval runs/a --data ...

Metrics are torch-free in :mod:`edgeseg.metrics`.
"""

from __future__ import annotations

import os as _os

# Idle OpenMP threads sleep instead of spinning (libgomp reads this once, when torch loads,
# so it is set before the first torch import; an explicit setting wins). On a CPU shared
# with other work a spinning thread waits on a descheduled peer: measured on the 2-core
# machine at load ~8, a UNet training step took 2.0-6.4 s with spinning, 0.5-0.6 s without.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from edgeseg.train.data import train_transform  # noqa: E402
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
