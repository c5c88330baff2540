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


def omp_env(environ, load: float, cores: int) -> dict:
    """The OpenMP settings :mod:`edgeseg.train` adds before torch loads (libgomp reads them
    once, at the first parallel region), given the environment, the 1-minute load average and
    the usable cores. An explicit ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins (nothing
    added). Otherwise idle threads never spin on a busy CPU (``PASSIVE``: a spinning thread
    waits on a descheduled peer — at load ~8 on 2 cores a default UNet step took 1.1-1.2 s
    passive, 2.2 s with 10 000 spins, 2.0-6.4 s with libgomp's default spinning) and spin
    briefly on a quiet one (``GOMP_SPINCOUNT=10000``: 0.234 s per step against 0.31-0.33 s
    passive, the next op's threads are still awake)."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    out = {"OMP_WAIT_POLICY": "PASSIVE"}
    if load < 0.5 * max(1, cores):
        out["GOMP_SPINCOUNT"] = "10000"
    return out


def _apply_omp_env() -> None:
    from edgeseg._platform import usable_cpus

    cores = usable_cpus()
    try:
        load = _os.getloadavg()[0]
    except OSError:
        load = float(cores)  # unknown: assume busy
    _os.environ.update(omp_env(_os.environ, load, cores))


_apply_omp_env()

from edgeseg.train.checkpoint import load_checkpoint  # noqa: E402
from edgeseg.train.config import TrainConfig  # noqa: E402
from edgeseg.train.data import train_transform  # noqa: E402
from edgeseg.train.evaluate import evaluate, load_model  # noqa: E402
from edgeseg.train.losses import LOSSES, class_weights, create_loss  # noqa: E402
from edgeseg.train.models import MODELS, create_model, model_names  # noqa: E402
from edgeseg.train.trainer import Trainer, train  # noqa: E402

__all__ = [
    "LOSSES",
    "MODELS",
    "TrainConfig",
    "Trainer",
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
