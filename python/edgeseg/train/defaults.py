"""Recipe values of a training run and the settings picked from the dataset size and the
device for the knobs a :class:`~edgeseg.train.config.TrainConfig` leaves at ``None``."""

from __future__ import annotations

import math

import torch

from edgeseg._platform import usable_cpus
from edgeseg.train.config import TrainConfig
from edgeseg.train.distributed import Dist

__all__ = [
    "DEFAULT_MINUTES",
    "MIN_VAL_IMAGES",
    "PLATEAU_MIN_GAIN",
    "PLATEAU_MIN_VALIDATIONS",
    "ZOOM_DEFAULT",
    "auto_settings",
    "cpu_bf16_fast",
]

#: minutes a run may take when neither --epochs nor --time-limit is given: the clock, not a
#: guessed epoch count, ends a run (a converged one stops earlier, see ``plateau``)
DEFAULT_MINUTES = 15.0
#: the default scale jitter of the training crops (1: deployment scale)
ZOOM_DEFAULT = [1.0, 1.0]
#: the val mIoU gain that counts as progress for the plateau stop, and the validations in a
#: row without it that the stop needs
PLATEAU_MIN_GAIN = 0.002
PLATEAU_MIN_VALIDATIONS = 4
#: fewer val images than this get a warning: the best checkpoint is picked on noise
MIN_VAL_IMAGES = 8


def cpu_bf16_fast() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AMX tiles: Xeon Sapphire
    Rapids and later), where autocast to bfloat16 makes a training step 1.5-2x faster.
    Elsewhere bfloat16 is emulated or converted and brings nothing."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # a private probe: never let it break training
        return False


def auto_settings(cfg: TrainConfig, n_train: int, device: torch.device, d: Dist) -> dict:
    """Defaults from dataset size and device for the knobs left at None."""
    cuda = device.type == "cuda"
    picked = {}
    if cfg.amp is None:
        picked["amp"] = (not cuda) and cpu_bf16_fast()
    amp = picked.get("amp", cfg.amp)
    if cfg.batch is None:
        if cuda:
            mem = torch.cuda.get_device_properties(device).total_memory / 2**30
            per = (cfg.crop or cfg.size) ** 2 / 256**2  # memory ~ pixels
            picked["batch"] = int(max(2, min(32, 2 ** int(math.log2(max(1, mem / 1.5 / per))))))
        else:
            picked["batch"] = 8
        picked["batch"] = max(1, min(picked["batch"], n_train // max(1, d.world)))
    batch = picked.get("batch", cfg.batch)
    if cfg.lr is None:
        # CPU: a short run (minutes), so a high peak rate; measured on the synthetic defects
        base_lr = 2e-3 if cuda else 1e-2
        picked["lr"] = round(base_lr * math.sqrt(batch * d.world / 8), 6)
    if cfg.time_limit is None and cfg.epochs is None:
        picked["time_limit"] = DEFAULT_MINUTES
    clock = cfg.epochs is None
    if cfg.epochs is None:
        steps = max(1, n_train // (batch * d.world))
        target = 6000 if cuda else 1200  # optimizer steps over the run
        # under --time-limit the clock ends the run and drives the cosine: epochs only cap it
        picked["epochs"] = 1000 if clock else int(min(300, max(10, math.ceil(target / steps))))
    if cfg.patience is None:
        # epoch-count patience would cut a clock-driven schedule while the learning rate is
        # high: under the clock the plateau stop (a share of the time) takes its place
        picked["patience"] = 0 if clock else 15
    if cfg.plateau is None:
        picked["plateau"] = 0.3 if clock else 0.0
    if cfg.crop is None:
        # CPU: half-size crops at deployment scale (4x the steps per minute); GPU: full size
        picked["crop"] = cfg.size if cuda else max(32, cfg.size // 2 // 32 * 32)
    if cfg.zoom is None:
        picked["zoom"] = ZOOM_DEFAULT
    if cfg.model == "unet" and "width" not in cfg.model_kwargs:
        # CPU with native bfloat16 (AMX): half width capped at 128 channels, two 3x3 convs
        # per block (16-32-64-128-128, 3.2 GMAC at 256²; the second full-resolution conv is
        # what thin scratches need). Elsewhere the float32 quarter width capped at 96 with one
        # conv per full-resolution block (8-16-32-64-96, 0.77 GMAC): a step costs about the same
        if cuda:
            kw = {"width": 0.5}
        elif amp:
            kw = {"width": 0.5, "max_channels": 128}
        else:
            kw = {"width": 0.25, "max_channels": 96, "full_res_convs": 1}
        picked["model_kwargs"] = {**kw, **cfg.model_kwargs}
    if cfg.workers is None:
        cpus = max(1, usable_cpus() // d.world)
        picked["workers"] = min(8, cpus - 1) if cuda else (0 if cpus <= 2 else min(4, cpus // 2))
    return picked
