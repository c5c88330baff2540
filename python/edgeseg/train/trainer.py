"""The training loop behind ``edgeseg train``: AdamW, cosine schedule with warm-up (or on the
clock under ``--time-limit``), gradient clipping, mixed precision (float16 on CUDA, bfloat16
on AMX CPUs), validation mIoU (every epoch or every few), early stopping, checkpoints, a
class-prior calibration of the best model at the end (:mod:`edgeseg.train.calibrate`), DDP
under torchrun (NCCL on GPUs, gloo on CPU; only rank 0 writes).

RUN_DIR holds ``best.pt`` (``{"state_dict", "meta"}``, loads with
``torch.load(weights_only=True)``), ``last.pt`` (adds optimizer state, epoch, history: what
``--resume`` needs), ``metrics.json``, ``classes.yaml`` and ``config.yaml``. ``meta`` carries
what export and the runtime need: model name and kwargs, classes (id, name, colour), input
size, mean/std, channel order.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from edgeseg._platform import usable_cpus
from edgeseg.data import VOID, ClassMap, SegDataset, open_dataset
from edgeseg.errors import DatasetError, TrainingError
from edgeseg.metrics import ConfusionMatrix
from edgeseg.train import data as tdata
from edgeseg.train import finetune
from edgeseg.train.calibrate import calibrate_checkpoint, calibration_seconds
from edgeseg.train.losses import LOSSES, WEIGHT_METHODS, class_weights, create_loss
from edgeseg.train.models import arch_kwargs, create_model, model_names

__all__ = ["TrainConfig", "train", "load_checkpoint", "WEIGHTS_FORMAT"]

WEIGHTS_FORMAT = "edgeseg-weights/1"
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


@dataclass
class TrainConfig:
    """Every knob of a run; ``None`` means "pick from the dataset size and device"."""

    data: str = ""
    out: str = ""
    model: str = "unet"
    model_kwargs: dict = field(default_factory=dict)
    size: int = 256
    crop: Optional[int] = None
    crop_focus: float = 0.8  # share of crops placed on labelled foreground (rare defects)
    # scale jitter of the training crops [lo, hi] (1 = deployment scale; [1, 1]: off);
    # None: picked (see _auto_settings)
    zoom: Optional[list] = None
    epochs: Optional[int] = None
    batch: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: float = 1e-4
    dropout: float = 0.1
    loss: str = "ce+dice"
    class_weights: str = "auto"
    workers: Optional[int] = None
    seed: int = 0
    device: str = "auto"
    amp: Optional[bool] = None  # None: bfloat16 on CPUs with AMX, off elsewhere
    resume: bool = False
    patience: Optional[int] = None  # None: 15 with --epochs, off when the clock sets the schedule
    # under the clock: stop once val mIoU gained < PLATEAU_MIN_GAIN over this share of the
    # time budget (checked from half the budget on); None: 0.3 under the clock; 0: off
    plateau: Optional[float] = None
    warmup_epochs: float = 1.0
    clip_grad: float = 1.0
    ema: float = 0.99  # decay of the weight average validated and saved as best.pt; 0: off
    time_limit: Optional[float] = None  # minutes; None: DEFAULT_MINUTES unless epochs is given
    # what the time limit counts: "wall" seconds, or "cpu": this process's CPU seconds per
    # torch thread (the same amount of work whatever the load of a shared machine)
    clock: str = "wall"
    max_steps: Optional[int] = None  # per epoch (tests, smoke runs)
    allow_upscale: bool = False
    calibrate: bool = True  # per-class logit offsets fitted on the train images afterwards
    val_every: Optional[int] = None  # epochs between validations; None: ~10 % of the time
    mean: tuple = tdata.IMAGENET_MEAN
    std: tuple = tdata.IMAGENET_STD
    progress: bool = True
    #: fine-tuning (edgeseg.train.finetune): a run dir, checkpoint or starter:NAME to start
    #: from; timm encoder weights (imagenet or a file); encoder lr factor; BatchNorm stats
    init: Optional[str] = None
    encoder_weights: Optional[str] = None
    encoder_lr_mult: float = 1.0
    freeze_bn: str = "none"

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TrainingError(
                f"{source}: unknown setting(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(names))}"
            )
        return cls(**d)

    def validate(self) -> None:
        if self.model not in model_names():
            raise TrainingError(
                f"unknown model {self.model!r}; available models: {', '.join(model_names())}"
            )
        if self.loss not in LOSSES:
            raise TrainingError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        cw = self.class_weights
        if cw not in WEIGHT_METHODS and not _parse_weights(cw):
            raise TrainingError(
                f"--class-weights {cw!r}: use {'|'.join(WEIGHT_METHODS)} or a comma list of "
                "numbers, one per class"
            )
        if self.size < 32 or self.size % 32:
            raise TrainingError(f"--size {self.size}: use a multiple of 32 (e.g. 256 or 512)")
        if self.crop is not None and (self.crop < 32 or self.crop % 32):
            raise TrainingError(f"--crop {self.crop}: use a multiple of 32, at least 32")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise TrainingError(f"--device {self.device!r}: use auto, cpu or cuda")
        if not 0 <= self.ema < 1:
            raise TrainingError(f"ema {self.ema}: use a decay in [0, 1) (0 turns it off)")
        if self.zoom is not None and not (
            len(self.zoom) == 2 and 0 < float(self.zoom[0]) <= float(self.zoom[1]) <= 4
        ):
            raise TrainingError(f"--zoom {self.zoom}: use LO,HI with 0 < LO <= HI <= 4")
        if not 0 <= self.crop_focus <= 1:
            raise TrainingError(f"crop_focus {self.crop_focus}: use a value in [0, 1]")
        if not 0 <= self.dropout < 1:
            raise TrainingError(f"--dropout {self.dropout}: use a value in [0, 1)")
        if self.plateau is not None and not 0 <= self.plateau < 1:
            raise TrainingError(f"plateau {self.plateau}: use a share of the time in [0, 1)")
        if self.clock not in ("wall", "cpu"):
            raise TrainingError(f"clock {self.clock!r}: use wall or cpu")
        if self.time_limit is not None and self.time_limit <= 0:
            raise TrainingError(f"--time-limit {self.time_limit}: use minutes > 0")
        if not 0 <= self.encoder_lr_mult <= 10:
            raise TrainingError(
                f"--encoder-lr-mult {self.encoder_lr_mult}: use a factor in [0, 10] (0 freezes "
                "the encoder)"
            )
        if self.freeze_bn not in ("none", "encoder", "all"):
            raise TrainingError(f"--freeze-bn {self.freeze_bn!r}: use none, encoder or all")
        if self.encoder_weights is not None and self.model != "timm_unet":
            raise TrainingError(
                f"--encoder-weights is for timm encoders (--model timm_unet), not {self.model!r}"
            )


def _parse_weights(text) -> Optional[list[float]]:
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        return None
    return vals if len(vals) > 1 else None


# -- distributed --------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def on(self) -> bool:
        return self.world > 1


def _init_dist(device_kind: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(rank, world, local)


def _all_reduce(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.on:
        dist.all_reduce(t)
    return t


def _agree_max(value: int, d: Dist, device: torch.device) -> int:
    """The largest ``value`` over the ranks (a decision every rank must share)."""
    if not d.on:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


# -- device --------------------------------------------------------------------------------
def resolve_device(name: str, d: Optional[Dist] = None) -> torch.device:
    d = d or Dist()
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda") or name == "auto":
        if not torch.cuda.is_available():
            if name == "auto":
                return torch.device("cpu")
            built = torch.version.cuda
            why = (
                "this torch build has no CUDA (CPU wheel)"
                if not built
                else f"torch {torch.__version__} (CUDA {built}) sees no GPU"
            )
            raise TrainingError(f"--device {name}: {why}; use --device cpu or auto")
        if name.startswith("cuda:"):
            return torch.device(name)
        return torch.device("cuda", d.local_rank % torch.cuda.device_count())
    raise TrainingError(f"--device {name!r}: use auto, cpu or cuda")


def cpu_bf16_fast() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AMX tiles: Xeon Sapphire
    Rapids and later), where autocast to bfloat16 makes a training step 1.5-2x faster.
    Elsewhere bfloat16 is emulated or converted and brings nothing."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # a private probe: never let it break training
        return False


def _auto_settings(cfg: TrainConfig, n_train: int, device: torch.device, d: Dist) -> dict:
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


# -- checkpoints ---------------------------------------------------------------------------
def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


class _EMA:
    """Exponential moving average of the weights and BatchNorm statistics (decay warmed up
    as ``min(decay, (1 + n) / (10 + n))``). A short, high-learning-rate CPU run ends with
    val mIoU swinging from epoch to epoch; the average is what gets validated and saved."""

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, v in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.lerp_(v.detach(), 1 - d)
            else:
                e.copy_(v)


def load_checkpoint(path) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a ``best.pt``/``last.pt`` (weights only, no pickled code)."""
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
    return ck["state_dict"], ck["meta"]


def build_model_from_meta(meta: dict):
    kw = arch_kwargs(meta.get("model_kwargs", {}))  # the checkpoint holds the trained weights
    model = create_model(meta["model"], meta["num_classes"], **kw)
    return model


# -- evaluation ----------------------------------------------------------------------------
def _normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC RGB -> float NCHW normalized."""
    x = (x.permute(0, 3, 1, 2).float().div_(255) - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, shapes, mean, std, device, amp=False):
    """Logits at the model size upsampled to each label's size -> list of (1, C, H, W)."""
    x = _normalize(images.to(device, non_blocking=True), mean, std)
    with _autocast(device, amp):
        logits = model(x)
    out = []
    for k, (h, w) in enumerate(shapes):
        lg = logits[k : k + 1].float()
        if lg.shape[-2:] != (h, w):
            lg = torch.nn.functional.interpolate(lg, (h, w), mode="bilinear", align_corners=False)
        out.append(lg)
    return out


def predict_batch(model, images: torch.Tensor, shapes, mean, std, device, amp=False):
    """Logits at the model size upsampled to each label's size -> list of HW index arrays."""
    return [
        lg.argmax(1)[0].to(torch.uint8).cpu().numpy()
        for lg in predict_logits(model, images, shapes, mean, std, device, amp)
    ]


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if amp and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def validate(model, loader, num_classes, mean, std, device, d: Dist, amp=False) -> ConfusionMatrix:
    model.eval()
    cm = ConfusionMatrix(num_classes)
    for images, masks in loader:
        preds = predict_batch(model, images, [m.shape for m in masks], mean, std, device, amp)
        for p, m in zip(preds, masks):
            cm.update(p, m.numpy())
    t = _all_reduce(torch.from_numpy(cm.matrix.copy()), d)
    cm.matrix = t.numpy()
    return cm


# -- the run -------------------------------------------------------------------------------
def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))  # noqa: NPY002 (third-party code may draw from it)
    torch.manual_seed(seed)


def _lr_at(step: int, total: int, warmup: int, base: float, frac: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine to 1 % of ``base`` at ``total``
    steps or at ``frac`` = 1 (the share of a time budget spent), whichever comes first."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = max((step - warmup) / max(1, total - warmup), frac)
    return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _oom_error(cfg: TrainConfig, batch: int, where: str) -> TrainingError:
    return TrainingError(
        f"out of memory during {where} (batch {batch}, crop {cfg.crop or cfg.size}px, model "
        f"{cfg.model}): lower --batch (e.g. {max(1, batch // 2)}), or --size/--crop, "
        "or add --amp on CUDA; the last checkpoint is kept"
    )


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, RuntimeError)
        and ("out of memory" in str(e) or "can't allocate memory" in str(e))
    )


def _open(path: str) -> SegDataset:
    try:
        return open_dataset(path)
    except DatasetError:
        raise
    except FileNotFoundError as e:
        raise TrainingError(f"--data {path}: {e}") from None


def train(cfg: TrainConfig, transform=None, log=print) -> dict:
    """Train per ``cfg``; returns the summary written to ``metrics.json``.

    Args:
        cfg: The settings (:class:`TrainConfig`; ``edgeseg train`` builds it from its flags).
        transform: An albumentations ``Compose`` (or any ``f(image=, mask=) -> dict``) that
            replaces the default pipeline; it must output ``crop``-sized uint8 HWC images.
        log: Where progress lines go (``print`` by default).

    Returns:
        The run summary: ``best_val_miou``, ``best_epoch``, ``stopped``, ``history`` (per
        validation) and the calibration record, as written to ``RUN/metrics.json``.

    Raises:
        TrainingError: Invalid settings, a diverging loss, a device that cannot be used.
        DatasetError: The dataset cannot be opened or lacks the train/val splits.
        KeyboardInterrupt: Ctrl-C; the checkpoints written so far are kept.
    """
    cfg.validate()
    device = resolve_device(cfg.device, Dist(local_rank=int(os.environ.get("LOCAL_RANK", "0"))))
    d = _init_dist(device.type)
    try:
        return _train(cfg, transform, log, device, d)
    finally:
        if d.on and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, transform, log, device, d: Dist) -> dict:
    out = Path(cfg.out)
    say = log if d.main else (lambda *a, **k: None)
    ds = _open(cfg.data)
    classes: ClassMap = ds.classes
    train_ds, val_ds = ds.split("train"), ds.split("val")
    scan = tdata.scan(train_ds, "train", progress=cfg.progress and d.main)
    if len(val_ds) == 0:
        raise TrainingError(
            f"{ds.display_root}: the val split is empty; validation mIoU drives the best "
            "checkpoint and early stopping. Add splits/val.txt or remove splits/ for a "
            "seeded 80/10/10 split"
        )
    tdata.scan(val_ds, "val", progress=False)
    if len(val_ds) < MIN_VAL_IMAGES:
        warnings.warn(
            f"{ds.display_root}: the val split has only {len(val_ds)} image(s) (train "
            f"{len(train_ds)}); validation mIoU picks best.pt and stops early, and on fewer than "
            f"{MIN_VAL_IMAGES} images it is mostly noise. Add images or list more in "
            "splits/val.txt",
            UserWarning,
            stacklevel=3,
        )
    init = None
    if cfg.init and not cfg.resume:
        init = finetune.read_init(cfg.init)
        finetune.adopt_architecture(cfg, init[2], cfg.init, model_given=cfg.model != "unet")
    if cfg.encoder_weights is not None:
        cfg.model_kwargs = {**cfg.model_kwargs, "weights": cfg.encoder_weights}
    picked = _auto_settings(cfg, len(train_ds), device, d)
    for k, v in picked.items():
        setattr(cfg, k, v)
    crop = cfg.crop or cfg.size
    if scan.min_side < crop and not cfg.allow_upscale and transform is None:
        raise TrainingError(
            f"{scan.min_side_file}: the image's short side is {scan.min_side}px, smaller than "
            f"the {crop}px training crop; pass --size/--crop {scan.min_side // 32 * 32 or 32} "
            "or lower, or --allow-upscale to enlarge small images"
        )
    num_classes = len(classes)
    if cfg.class_weights == "none":
        weights = None
    elif cfg.class_weights in WEIGHT_METHODS:
        weights = class_weights(
            scan.class_pixels, "invsqrt" if cfg.class_weights == "auto" else cfg.class_weights
        )
    else:
        weights = np.asarray(_parse_weights(cfg.class_weights), np.float64)
        if weights.size != num_classes:
            raise TrainingError(
                f"--class-weights has {weights.size} values for {num_classes} classes "
                f"({', '.join(classes.names)})"
            )
    kw = dict(cfg.model_kwargs)
    kw.setdefault("dropout", cfg.dropout)
    meta = {
        "format": WEIGHTS_FORMAT,
        "model": cfg.model,
        # without init-only arguments (a pretrained-weights file): export/eval rebuild the
        # architecture from meta and load the trained state dict, never the file
        "model_kwargs": arch_kwargs(kw),
        "num_classes": num_classes,
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

    # -- state ---------------------------------------------------------------------------
    _seed_all(cfg.seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = False
    # --resume restores every tensor from last.pt: the initial weights file is not read again
    model = create_model(cfg.model, num_classes, **(arch_kwargs(kw) if cfg.resume else kw))
    if getattr(model, "init_note", None):
        say(model.init_note)
    if init is not None:
        report = finetune.load_init(
            model, cfg.model, kw, meta["classes"], init[1], init[2], cfg.init
        )
        meta["init"] = {k: report[k] for k in ("source", "matched", "new", "dropped")}
        say(finetune.init_note(report))
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
    opt = torch.optim.AdamW(
        finetune.param_groups(model, cfg.model, cfg.weight_decay, cfg.encoder_lr_mult),
        lr=cfg.lr,
    )
    loss_fn = create_loss(cfg.loss, weights).to(device)
    scaler = torch.amp.GradScaler("cuda", enabled=bool(cfg.amp) and device.type == "cuda")
    history: list[dict] = []
    start_epoch, best_miou, best_epoch = 0, -1.0, -1
    if cfg.resume:
        last = out / "last.pt"
        if not last.is_file():
            raise TrainingError(f"--resume: {last} does not exist; start without --resume")
        ck = torch.load(last, map_location="cpu", weights_only=True)
        if ck["meta"]["classes"] != meta["classes"] or ck["meta"]["model"] != cfg.model:
            raise TrainingError(
                f"--resume: {last} was trained with model {ck['meta']['model']} on classes "
                f"{[c['name'] for c in ck['meta']['classes']]}; use a new --out for this run"
            )
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch = int(ck["epoch"])
        best_miou, best_epoch = float(ck["best_miou"]), int(ck["best_epoch"])
        history = json.loads(ck["history"])
        say(f"resuming {last} after epoch {start_epoch} (best val mIoU {best_miou:.4f})")
    ema = _EMA(model, cfg.ema) if cfg.ema > 0 else None
    if ema is not None and cfg.resume and "ema_state_dict" in ck:
        ema.model.load_state_dict(ck["ema_state_dict"])
        ema.updates = int(ck.get("ema_updates", 0))
    if d.on:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    tf = (
        transform
        if transform is not None
        else tdata.train_transform(cfg.size, cfg.crop, zoom=cfg.zoom, focus=cfg.crop_focus)
    )
    # decoded samples stay in RAM when they fit (PNG decoding is a tenth of a CPU step)
    cache = (len(train_ds) + len(val_ds)) * cfg.size**2 * 4 * max(1, cfg.workers) < 2 << 30
    tsampler = tdata.SeededSampler(len(train_ds), cfg.seed, True, d.rank, d.world)
    batch = max(1, min(cfg.batch, len(tsampler)))
    pin = device.type == "cuda"
    tloader = DataLoader(
        tdata.TrainSet(train_ds, tf, size=cfg.size if transform is None else None, cache=cache),
        batch_size=batch,
        sampler=tsampler,
        num_workers=cfg.workers,
        drop_last=len(tsampler) >= 2 * batch,
        pin_memory=pin,
        persistent_workers=cfg.workers > 0,
    )
    vsampler = tdata.SeededSampler(len(val_ds), cfg.seed, False, d.rank, d.world, pad=False)
    vloader = DataLoader(
        tdata.ValSet(val_ds, cfg.size, cache=cache),
        batch_size=batch,
        sampler=vsampler,
        num_workers=cfg.workers,
        collate_fn=tdata.collate_val,
        pin_memory=pin,
    )
    mean = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=device).view(1, 3, 1, 1)
    steps_per_epoch = len(tloader) if cfg.max_steps is None else min(len(tloader), cfg.max_steps)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(min(cfg.warmup_epochs * steps_per_epoch, total_steps // 4)) or 1

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        classes.save(out / "classes.yaml")
        import yaml

        conf = asdict(cfg)
        conf["mean"], conf["std"] = list(cfg.mean), list(cfg.std)
        conf["resume"] = False
        with open(out / "config.yaml", "w") as f:
            yaml.safe_dump({**conf, "meta": meta}, f, sort_keys=False)
    say(
        f"train {len(train_ds)} / val {len(val_ds)} images, {num_classes} classes, model "
        f"{cfg.model}, {device}{f' x{d.world}' if d.on else ''}, batch {batch}, lr {cfg.lr:g}, "
        f"{cfg.epochs} epochs x {steps_per_epoch} steps"
        + (f" or {cfg.time_limit:g} min, whichever ends first" if cfg.time_limit else "")
        + (f", class weights {np.round(weights, 2).tolist()}" if weights is not None else "")
    )

    def save_last(epoch_done: int) -> None:
        if not d.main:
            return
        _atomic_save(
            {
                "state_dict": _unwrap(model).state_dict(),
                **(
                    {"ema_state_dict": ema.model.state_dict(), "ema_updates": ema.updates}
                    if ema is not None
                    else {}
                ),
                "optimizer": opt.state_dict(),
                "epoch": epoch_done,
                "best_miou": best_miou,
                "best_epoch": best_epoch,
                "history": json.dumps(history),
                "meta": meta,
            },
            out / "last.pt",
        )

    def write_metrics(stopped: str, calibration: Optional[dict] = None) -> dict:
        summary = {
            "stopped": stopped,
            "best_epoch": best_epoch,
            "best_val_miou": best_miou if best_miou >= 0 else None,
            **({"calibration": calibration} if calibration else {}),
            "epochs_run": history[-1]["epoch"] if history else 0,
            "validations": len(history),
            "history": history,
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("mean", "std")},
            "class_names": classes.names,
        }
        if d.main:
            (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        return summary

    from tqdm import tqdm

    threads = max(1, torch.get_num_threads())

    def now() -> float:
        if cfg.clock == "cpu":
            return time.process_time() / threads
        return time.monotonic()

    t0, c0, w0 = now(), time.process_time(), time.monotonic()
    seen = n_steps = 0  # training images (crops) and optimizer steps of this process

    # seconds of the time limit kept for the calibration after the loop, sized from the
    # first validation's time per image
    reserve = 0.0

    def budget_s() -> float:
        return max(1e-3, cfg.time_limit * 60 - reserve)

    def time_frac() -> float:
        return (now() - t0) / budget_s()

    stopped = "completed"
    cuda_amp = bool(cfg.amp) and device.type == "cuda"
    epoch = start_epoch
    bad_epochs = 0
    if history:
        bad_epochs = (
            len(history)
            - 1
            - max(
                (i for i, h in enumerate(history) if h["epoch"] == best_epoch),
                default=len(history) - 1,
            )
        )
    max_epochs = cfg.epochs
    # the share of the time budget spent, agreed by all ranks at every step (their learning
    # rates and their decision to stop must not differ)
    sync_frac = 0.0
    out_of_time = False
    val_every, last_val, measured = cfg.val_every or 1, start_epoch, False
    # the plateau stop: the val mIoU of the last gain of at least PLATEAU_MIN_GAIN and the
    # share of the time budget spent when it came
    progress_miou, progress_frac, flat_vals = -1.0, 0.0, 0
    try:
        for epoch in range(start_epoch, max_epochs):
            torch.manual_seed(cfg.seed + 7919 * (epoch + 1))
            te = now()
            tsampler.set_epoch(epoch)
            model.train()
            finetune.freeze_bn_stats(_unwrap(model), cfg.model, cfg.freeze_bn)
            bar = tqdm(
                total=steps_per_epoch,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                unit="it",
                disable=not (cfg.progress and d.main),
                leave=False,
            )
            loss_sum, n_loss = 0.0, 0
            for step, (images, targets) in enumerate(tloader):
                if step >= steps_per_epoch:
                    break
                gstep = epoch * steps_per_epoch + step
                # under --time-limit the cosine runs on the larger of the step and the time
                # fraction: a load spike on a shared CPU cannot leave the run cut off at a
                # high learning rate, and a quiet machine still gets its full step budget
                lr = _lr_at(gstep, total_steps, warmup, cfg.lr, sync_frac)
                for g in opt.param_groups:
                    g["lr"] = lr * g.get("lr_mult", 1.0)
                try:
                    x = _normalize(images.to(device, non_blocking=True), mean, std)
                    y = targets.to(device, non_blocking=True)
                    with _autocast(device, cfg.amp):
                        logits = model(x)
                    loss = loss_fn(logits.float(), y)
                    flags = torch.tensor(
                        [
                            0.0 if torch.isfinite(loss) else 1.0,
                            time_frac() if cfg.time_limit else 0.0,
                        ],
                        dtype=torch.float64,
                        device=device,
                    )
                    bad, frac_sum = _all_reduce(flags, d).tolist()
                    sync_frac = frac_sum / d.world
                    if bad > 0:
                        raise TrainingError(
                            f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}"
                            f" (lr {lr:.3g}); training stopped. The last good checkpoint is "
                            f"{out / 'last.pt'} (epoch {epoch}); lower --lr (now {cfg.lr:g}), "
                            "drop --amp, or check the images for NaN/corrupt values"
                        )
                    opt.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if cfg.clip_grad:
                        scaler.unscale_(opt)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                    scaler.step(opt)
                    scaler.update()
                    if ema is not None:
                        ema.update(_unwrap(model))
                except RuntimeError as e:
                    if _is_oom(e):
                        raise _oom_error(cfg, batch, "training") from None
                    raise
                loss_sum += float(loss.item())
                n_loss += 1
                seen += images.shape[0]
                n_steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / n_loss:.4f}", lr=f"{lr:.2e}")
                if cfg.time_limit and sync_frac >= 1.0:
                    out_of_time = True
                    break
            bar.close()
            te = now() - te
            if not (epoch + 1 - last_val >= val_every or out_of_time or epoch + 1 == max_epochs):
                save_last(epoch + 1)
                continue
            try:
                judged = ema.model if ema is not None else _unwrap(model)
                tv = now()
                # bfloat16 is for training speed on the CPU; validation scores what export runs
                cm = validate(judged, vloader, num_classes, mean, std, device, d, cuda_amp)
                tv = now() - tv
                if not measured:  # the first validation of this process sizes the rest
                    measured = True
                    if cfg.calibrate and cfg.time_limit:
                        per_image = tv / max(1, len(vsampler))
                        reserve = calibration_seconds(per_image, len(train_ds), num_classes)
                    if cfg.val_every is None:
                        # validation takes at most ~10 % of the time (tiny epochs of a small
                        # dataset on a CPU would otherwise spend a third of it validating)
                        every = min(10, max(1, math.ceil(tv / (0.1 * te))))
                        val_every = _agree_max(every, d, device)
            except RuntimeError as e:
                if _is_oom(e):
                    raise _oom_error(cfg, batch, "validation") from None
                raise
            tl = torch.tensor([loss_sum, n_loss], dtype=torch.float64)
            _all_reduce(tl, d)
            miou = cm.miou()
            row = {
                "epoch": epoch + 1,
                "train_loss": float(tl[0] / max(1.0, float(tl[1]))),
                "val_miou": miou,
                "val_pixel_accuracy": cm.pixel_accuracy(),
                "per_class_iou": {
                    n: (None if math.isnan(v) else v) for n, v in zip(classes.names, cm.iou())
                },
                "lr": lr,
                "time_s": round(time.monotonic() - w0, 1),
                # CPU seconds of this process: on a shared machine, time_s / cpu_s shows
                # how much of the cores the run actually had
                "cpu_s": round(time.process_time() - c0, 1),
                "steps": n_steps,
                "images": seen,
            }
            history.append(row)
            frac = time_frac() if cfg.time_limit else 0.0
            if cfg.time_limit and not out_of_time:
                # the budget may have run out while validating: stop now, not after a step
                out_of_time = bool(_agree_max(int(frac >= 1.0), d, device))
            improved = miou > best_miou
            since, last_val = epoch + 1 - last_val, epoch + 1
            if improved:
                best_miou, best_epoch, bad_epochs = miou, epoch + 1, 0
                if d.main:
                    _atomic_save(
                        {
                            "state_dict": judged.state_dict(),
                            "meta": {**meta, "epoch": epoch + 1, "val_miou": miou},
                        },
                        out / "best.pt",
                    )
            else:
                bad_epochs += since
            save_last(epoch + 1)
            write_metrics("running")
            pcs = " ".join(f"{n}={v:.3f}" for n, v in zip(classes.names, cm.iou()))
            say(
                f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f} val mIoU "
                f"{miou:.4f}{' *' if improved else ''} ({pcs}) {row['time_s']:.0f}s"
            )
            if cfg.patience and bad_epochs >= cfg.patience:
                stopped = "early_stopping"
                say(f"early stopping: no val mIoU gain in {cfg.patience} epochs")
                break
            if cfg.time_limit and cfg.plateau:
                if miou >= progress_miou + PLATEAU_MIN_GAIN:
                    progress_miou, progress_frac, flat_vals = miou, frac, 0
                else:
                    flat_vals += 1
                # a few validations without gain, not one noisy one, and not before half
                # of the budget
                flat = (
                    frac >= 0.5
                    and frac - progress_frac >= cfg.plateau
                    and flat_vals >= PLATEAU_MIN_VALIDATIONS
                )
                if _agree_max(int(flat), d, device) and not out_of_time:
                    stopped = "converged"
                    say(
                        f"converged: val mIoU gained less than {PLATEAU_MIN_GAIN} in the last "
                        f"{frac - progress_frac:.0%} of the {cfg.time_limit:g} min budget"
                    )
                    break
            if out_of_time:
                stopped = "time_limit"
                say(f"time limit of {cfg.time_limit:g} min reached")
                break
    except KeyboardInterrupt:
        say(
            f"interrupted in epoch {epoch + 1}; {out / 'last.pt'} holds the last finished epoch"
            f", {out / 'best.pt'} the best; continue with --resume"
        )
        write_metrics("interrupted")
        raise
    calibration = None
    if cfg.calibrate and best_epoch > 0 and d.main:
        calibration = calibrate_checkpoint(
            out / "best.pt",
            train_ds,
            val_ds,
            cfg.size,
            device,
            batch=batch,
            seed=cfg.seed,
            progress=cfg.progress,
            log=say,
        )
        if calibration["applied"]:
            best_miou = calibration["val_miou_after"]
    if d.on:
        dist.barrier()  # the other ranks wait for rank 0's calibration
    summary = write_metrics(stopped, calibration)
    return summary
