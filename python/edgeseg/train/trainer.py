"""The training loop behind ``edgeseg train``: AdamW, cosine schedule with warm-up (or on the
clock under ``--time-limit``), gradient clipping, mixed precision (float16 on CUDA, bfloat16
on AMX CPUs), validation mIoU (every epoch or every few), early stopping, checkpoints, a
class-prior calibration of the best model at the end (:mod:`edgeseg.train.calibrate`), DDP
under torchrun (:mod:`edgeseg.train.distributed`; only rank 0 writes).

RUN_DIR holds ``best.pt`` and ``last.pt`` (:mod:`edgeseg.train.checkpoint`), ``metrics.json``,
``classes.yaml`` and ``config.yaml``. The settings are a :class:`TrainConfig`
(:mod:`edgeseg.train.config`); what is left at ``None`` is picked by
:func:`edgeseg.train.defaults.auto_settings`.

One room past 450 lines: :class:`Trainer`'s set-up, steps and stopping rules share one run's
state (model, optimizer, EMA, history, clocks); settings, checkpoints, ranks, the forward pass
and the loaders live in their own modules.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from edgeseg.data import ClassMap, SegDataset, open_dataset
from edgeseg.errors import DatasetError, TrainingError
from edgeseg.metrics import ConfusionMatrix
from edgeseg.train import data as tdata
from edgeseg.train import finetune
from edgeseg.train.calibrate import calibrate_checkpoint, calibration_seconds
from edgeseg.train.checkpoint import (
    WEIGHTS_FORMAT,
    atomic_save,
    load_checkpoint,
    make_meta,
    read_checkpoint,
)
from edgeseg.train.config import TrainConfig
from edgeseg.train.defaults import (
    MIN_VAL_IMAGES,
    PLATEAU_MIN_GAIN,
    PLATEAU_MIN_VALIDATIONS,
    auto_settings,
)
from edgeseg.train.distributed import Dist, agree_max, all_reduce, init_dist, resolve_device
from edgeseg.train.losses import create_loss, weights_for_setting
from edgeseg.train.models import arch_kwargs, create_model
from edgeseg.train.predict import autocast, normalize, validate

__all__ = ["TrainConfig", "Trainer", "train", "load_checkpoint", "WEIGHTS_FORMAT"]


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


class _EMA:
    """Exponential moving average of the weights and BatchNorm statistics (decay warmed up
    as ``min(decay, (1 + n) / (10 + n))``). A short, high-learning-rate CPU run ends with
    val mIoU swinging from epoch to epoch; the average is what gets validated and saved."""

    def __init__(self, model: torch.nn.Module, decay: float):
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
    d = init_dist(device.type)
    try:
        return Trainer(cfg, device, d, transform=transform, log=log).run()
    finally:
        if d.on and dist.is_initialized():
            dist.destroy_process_group()


class Trainer:
    """One run of :func:`train` on one rank: the constructor opens the data, picks the
    settings left open, builds model, optimizer and loaders (or resumes them from
    ``last.pt``) and writes the run files; :meth:`run` trains epoch by epoch
    (:meth:`train_epoch`), validates when due (:meth:`validate`), saves (:meth:`save_best`,
    :meth:`save_last`, :meth:`write_metrics`), decides when to stop (:meth:`should_stop`)
    and calibrates the best checkpoint at the end."""

    def __init__(self, cfg: TrainConfig, device: torch.device, d: Dist, transform=None, log=print):
        self.cfg, self.device, self.d = cfg, device, d
        self.out = Path(cfg.out)
        self.say = log if d.main else (lambda *a, **k: None)
        self._open_data(transform)
        self._build_model()
        self._build_loaders(transform)
        self._write_run_files()
        self._init_clock()

    # -- set-up ------------------------------------------------------------------------------
    def _open_data(self, transform) -> None:
        """Dataset and splits, the settings picked for it, class weights and ``meta``."""
        cfg, d = self.cfg, self.d
        ds = _open(cfg.data)
        self.classes: ClassMap = ds.classes
        self.train_ds, self.val_ds = ds.split("train"), ds.split("val")
        scan = tdata.scan(self.train_ds, "train", progress=cfg.progress and d.main)
        if len(self.val_ds) == 0:
            raise TrainingError(
                f"{ds.display_root}: the val split is empty; validation mIoU drives the best "
                "checkpoint and early stopping. Add splits/val.txt or remove splits/ for a "
                "seeded 80/10/10 split"
            )
        tdata.scan(self.val_ds, "val", progress=False)
        if len(self.val_ds) < MIN_VAL_IMAGES:
            warnings.warn(
                f"{ds.display_root}: the val split has only {len(self.val_ds)} image(s) (train "
                f"{len(self.train_ds)}); validation mIoU picks best.pt and stops early, and on "
                f"fewer than {MIN_VAL_IMAGES} images it is mostly noise. Add images or list "
                "more in splits/val.txt",
                UserWarning,
                stacklevel=4,  # the caller of train()
            )
        self.init = None
        if cfg.init and not cfg.resume:
            self.init = finetune.read_init(cfg.init)
            finetune.adopt_architecture(
                cfg, self.init[2], cfg.init, model_given=cfg.model != "unet"
            )
        if cfg.encoder_weights is not None:
            cfg.model_kwargs = {**cfg.model_kwargs, "weights": cfg.encoder_weights}
        for k, v in auto_settings(cfg, len(self.train_ds), self.device, d).items():
            setattr(cfg, k, v)
        crop = cfg.crop or cfg.size
        if scan.min_side < crop and not cfg.allow_upscale and transform is None:
            raise TrainingError(
                f"{scan.min_side_file}: the image's short side is {scan.min_side}px, smaller "
                f"than the {crop}px training crop; pass --size/--crop "
                f"{scan.min_side // 32 * 32 or 32} or lower, or --allow-upscale to enlarge "
                "small images"
            )
        self.num_classes = len(self.classes)
        self.weights = weights_for_setting(cfg.class_weights, scan.class_pixels, self.classes.names)
        self.model_kwargs = dict(cfg.model_kwargs)
        self.model_kwargs.setdefault("dropout", cfg.dropout)
        self.meta = make_meta(cfg, self.classes, scan, self.model_kwargs)

    def _build_model(self) -> None:
        """Model (fresh, fine-tuned from ``--init`` or resumed), optimizer, loss, EMA, DDP."""
        cfg, device, kw = self.cfg, self.device, self.model_kwargs
        _seed_all(cfg.seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = False
        # --resume restores every tensor from last.pt: the initial weights file is not read again
        model = create_model(cfg.model, self.num_classes, **(arch_kwargs(kw) if cfg.resume else kw))
        if getattr(model, "init_note", None):
            self.say(model.init_note)
        if self.init is not None:
            report = finetune.load_init(
                model, cfg.model, kw, self.meta["classes"], self.init[1], self.init[2], cfg.init
            )
            self.meta["init"] = {k: report[k] for k in ("source", "matched", "new", "dropped")}
            self.say(finetune.init_note(report))
        model = model.to(device)
        model = model.to(memory_format=torch.channels_last)  # faster convolutions on CPU and GPU
        self.opt = torch.optim.AdamW(
            finetune.param_groups(model, cfg.model, cfg.weight_decay, cfg.encoder_lr_mult),
            lr=cfg.lr,
        )
        self.loss_fn = create_loss(cfg.loss, self.weights).to(device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=bool(cfg.amp) and device.type == "cuda")
        self.history: list[dict] = []
        self.start_epoch, self.best_miou, self.best_epoch = 0, -1.0, -1
        ck = self._resume(model) if cfg.resume else {}
        self.ema = _EMA(model, cfg.ema) if cfg.ema > 0 else None
        if self.ema is not None and cfg.resume and "ema_state_dict" in ck:
            self.ema.model.load_state_dict(ck["ema_state_dict"])
            self.ema.updates = int(ck.get("ema_updates", 0))
        if self.d.on:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.model = model

    def _resume(self, model) -> dict:
        """Restore model, optimizer, epoch, best score and history from ``last.pt``."""
        last = self.out / "last.pt"
        if not last.is_file():
            raise TrainingError(f"--resume: {last} does not exist; start without --resume")
        ck = read_checkpoint(last)
        meta = ck["meta"]
        if meta["classes"] != self.meta["classes"] or meta["model"] != self.cfg.model:
            raise TrainingError(
                f"--resume: {last} was trained with model {meta['model']} on classes "
                f"{[c['name'] for c in meta['classes']]}; use a new --out for this run"
            )
        model.load_state_dict(ck["state_dict"])
        self.opt.load_state_dict(ck["optimizer"])
        self.start_epoch = int(ck["epoch"])
        self.best_miou, self.best_epoch = float(ck["best_miou"]), int(ck["best_epoch"])
        self.history = json.loads(ck["history"])
        self.say(
            f"resuming {last} after epoch {self.start_epoch} (best val mIoU {self.best_miou:.4f})"
        )
        return ck

    def _build_loaders(self, transform) -> None:
        cfg, d, device = self.cfg, self.d, self.device
        loaders = tdata.make_loaders(cfg, self.train_ds, self.val_ds, transform, d, device)
        self.tsampler, self.tloader = loaders.train_sampler, loaders.train
        self.vsampler, self.vloader = loaders.val_sampler, loaders.val
        self.batch = loaders.batch
        self.mean = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.std, device=device).view(1, 3, 1, 1)
        n = len(self.tloader)
        self.steps_per_epoch = n if cfg.max_steps is None else min(n, cfg.max_steps)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup = int(min(cfg.warmup_epochs * self.steps_per_epoch, self.total_steps // 4)) or 1

    def _write_run_files(self) -> None:
        """``classes.yaml`` and ``config.yaml`` (rank 0) and the run's opening line."""
        cfg, d = self.cfg, self.d
        if d.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.classes.save(self.out / "classes.yaml")
            import yaml

            conf = asdict(cfg)
            conf["mean"], conf["std"] = list(cfg.mean), list(cfg.std)
            conf["resume"] = False
            with open(self.out / "config.yaml", "w") as f:
                yaml.safe_dump({**conf, "meta": self.meta}, f, sort_keys=False)
        self.say(
            f"train {len(self.train_ds)} / val {len(self.val_ds)} images, {self.num_classes} "
            f"classes, model {cfg.model}, {self.device}{f' x{d.world}' if d.on else ''}, batch "
            f"{self.batch}, crop {cfg.crop or cfg.size}px, zoom {cfg.zoom[0]:g},{cfg.zoom[1]:g}, "
            f"lr {cfg.lr:g}, {cfg.epochs} epochs x {self.steps_per_epoch} steps"
            + (f" or {cfg.time_limit:g} min, whichever ends first" if cfg.time_limit else "")
            + (
                f", class weights {np.round(self.weights, 2).tolist()}"
                if self.weights is not None
                else ""
            )
        )

    def _init_clock(self) -> None:
        """The clocks and counters of the loop and the state of its stopping rules."""
        cfg = self.cfg
        self.threads = max(1, torch.get_num_threads())
        self.t0, self.c0, self.w0 = self.now(), time.process_time(), time.monotonic()
        self.seen = self.n_steps = 0  # training images (crops) and optimizer steps of this process
        # seconds of the time limit kept for the calibration after the loop, sized from the
        # first validation's time per image
        self.reserve = 0.0
        self.stopped = "completed"
        self.cuda_amp = bool(cfg.amp) and self.device.type == "cuda"
        self.bad_epochs = 0
        if self.history:
            best_at = max(
                (i for i, h in enumerate(self.history) if h["epoch"] == self.best_epoch),
                default=len(self.history) - 1,
            )
            self.bad_epochs = len(self.history) - 1 - best_at
        # the share of the time budget spent, agreed by all ranks at every step (their learning
        # rates and their decision to stop must not differ)
        self.sync_frac = 0.0
        self.out_of_time = False
        self.val_every, self.last_val, self.measured = cfg.val_every or 1, self.start_epoch, False
        # the plateau stop: the val mIoU of the last gain of at least PLATEAU_MIN_GAIN and the
        # share of the time budget spent when it came
        self.progress_miou, self.progress_frac, self.flat_vals = -1.0, 0.0, 0
        self.lr = cfg.lr

    # -- clock -------------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds on the run's clock: wall time, or CPU time per torch thread (``clock:
        cpu``)."""
        if self.cfg.clock == "cpu":
            return time.process_time() / self.threads
        return time.monotonic()

    def budget_s(self) -> float:
        return max(1e-3, self.cfg.time_limit * 60 - self.reserve)

    def time_frac(self) -> float:
        """The share of the time budget spent."""
        return (self.now() - self.t0) / self.budget_s()

    # -- saving ------------------------------------------------------------------------------
    def save_last(self, epoch_done: int) -> None:
        """``last.pt``: everything ``--resume`` needs (rank 0)."""
        if not self.d.main:
            return
        ema = self.ema
        atomic_save(
            {
                "state_dict": _unwrap(self.model).state_dict(),
                **(
                    {"ema_state_dict": ema.model.state_dict(), "ema_updates": ema.updates}
                    if ema is not None
                    else {}
                ),
                "optimizer": self.opt.state_dict(),
                "epoch": epoch_done,
                "best_miou": self.best_miou,
                "best_epoch": self.best_epoch,
                "history": json.dumps(self.history),
                "meta": self.meta,
            },
            self.out / "last.pt",
        )

    def save_best(self, judged: torch.nn.Module, epoch_done: int, miou: float) -> None:
        """``best.pt``: the validated weights and ``meta`` (rank 0)."""
        if self.d.main:
            atomic_save(
                {
                    "state_dict": judged.state_dict(),
                    "meta": {**self.meta, "epoch": epoch_done, "val_miou": miou},
                },
                self.out / "best.pt",
            )

    def write_metrics(self, stopped: str, calibration: Optional[dict] = None) -> dict:
        """The run summary, written to ``metrics.json`` by rank 0."""
        history = self.history
        summary = {
            "stopped": stopped,
            "best_epoch": self.best_epoch,
            "best_val_miou": self.best_miou if self.best_miou >= 0 else None,
            **({"calibration": calibration} if calibration else {}),
            "epochs_run": history[-1]["epoch"] if history else 0,
            "validations": len(history),
            "history": history,
            "config": {k: v for k, v in asdict(self.cfg).items() if k not in ("mean", "std")},
            "class_names": self.classes.names,
        }
        if self.d.main:
            (self.out / "metrics.json").write_text(json.dumps(summary, indent=2))
        return summary

    # -- steps -------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[float, int]:
        """One pass over the training loader (at most ``max_steps``, or until the time budget
        is spent); returns ``(sum of the step losses, steps)``."""
        from tqdm import tqdm

        cfg, d, device, model, opt = self.cfg, self.d, self.device, self.model, self.opt
        torch.manual_seed(cfg.seed + 7919 * (epoch + 1))
        self.tsampler.set_epoch(epoch)
        model.train()
        finetune.freeze_bn_stats(_unwrap(model), cfg.model, cfg.freeze_bn)
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="it",
            disable=not (cfg.progress and d.main),
            leave=False,
        )
        loss_sum, n_loss = 0.0, 0
        for step, (images, targets) in enumerate(self.tloader):
            if step >= self.steps_per_epoch:
                break
            gstep = epoch * self.steps_per_epoch + step
            # under --time-limit the cosine runs on the larger of the step and the time
            # fraction: a load spike on a shared CPU cannot leave the run cut off at a
            # high learning rate, and a quiet machine still gets its full step budget
            lr = _lr_at(gstep, self.total_steps, self.warmup, cfg.lr, self.sync_frac)
            self.lr = lr
            for g in opt.param_groups:
                g["lr"] = lr * g.get("lr_mult", 1.0)
            try:
                x = normalize(images.to(device, non_blocking=True), self.mean, self.std)
                y = targets.to(device, non_blocking=True)
                with autocast(device, cfg.amp):
                    logits = model(x)
                loss = self.loss_fn(logits.float(), y)
                flags = torch.tensor(
                    [
                        0.0 if torch.isfinite(loss) else 1.0,
                        self.time_frac() if cfg.time_limit else 0.0,
                    ],
                    dtype=torch.float64,
                    device=device,
                )
                bad, frac_sum = all_reduce(flags, d).tolist()
                self.sync_frac = frac_sum / d.world
                if bad > 0:
                    raise TrainingError(
                        f"the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}"
                        f" (lr {lr:.3g}); training stopped. The last good checkpoint is "
                        f"{self.out / 'last.pt'} (epoch {epoch}); lower --lr (now "
                        f"{cfg.lr:g}), drop --amp, or check the images for NaN/corrupt values"
                    )
                opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if cfg.clip_grad:
                    self.scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                self.scaler.step(opt)
                self.scaler.update()
                if self.ema is not None:
                    self.ema.update(_unwrap(model))
            except RuntimeError as e:
                if _is_oom(e):
                    raise _oom_error(cfg, self.batch, "training") from None
                raise
            loss_sum += float(loss.item())
            n_loss += 1
            self.seen += images.shape[0]
            self.n_steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / n_loss:.4f}", lr=f"{lr:.2e}")
            if cfg.time_limit and self.sync_frac >= 1.0:
                self.out_of_time = True
                break
        bar.close()
        return loss_sum, n_loss

    def validate(self, epoch_s: float) -> tuple[torch.nn.Module, ConfusionMatrix]:
        """``(the model validated: the EMA when on, its confusion matrix)``. The first
        validation of this process sizes the calibration reserve and, unless ``val_every``
        is set, how many epochs pass between validations (``epoch_s``: the epoch's time)."""
        cfg = self.cfg
        try:
            judged = self.ema.model if self.ema is not None else _unwrap(self.model)
            tv = self.now()
            # bfloat16 is for training speed on the CPU; validation scores what export runs
            cm = validate(
                judged,
                self.vloader,
                self.num_classes,
                self.mean,
                self.std,
                self.device,
                self.d,
                self.cuda_amp,
            )
            tv = self.now() - tv
            if not self.measured:  # the first validation of this process sizes the rest
                self.measured = True
                if cfg.calibrate and cfg.time_limit:
                    per_image = tv / max(1, len(self.vsampler))
                    self.reserve = calibration_seconds(
                        per_image, len(self.train_ds), self.num_classes
                    )
                if cfg.val_every is None:
                    # validation takes at most ~10 % of the time (tiny epochs of a small
                    # dataset on a CPU would otherwise spend a third of it validating)
                    every = min(10, max(1, math.ceil(tv / (0.1 * epoch_s))))
                    self.val_every = agree_max(every, self.d, self.device)
        except RuntimeError as e:
            if _is_oom(e):
                raise _oom_error(cfg, self.batch, "validation") from None
            raise
        return judged, cm

    def record(self, epoch: int, loss_sum: float, n_loss: int, cm: ConfusionMatrix) -> dict:
        """The history row of a validation after ``epoch`` (0-based)."""
        tl = torch.tensor([loss_sum, n_loss], dtype=torch.float64)
        all_reduce(tl, self.d)
        row = {
            "epoch": epoch + 1,
            "train_loss": float(tl[0] / max(1.0, float(tl[1]))),
            "val_miou": cm.miou(),
            "val_pixel_accuracy": cm.pixel_accuracy(),
            "per_class_iou": {
                n: (None if math.isnan(v) else v) for n, v in zip(self.classes.names, cm.iou())
            },
            "lr": self.lr,
            "time_s": round(time.monotonic() - self.w0, 1),
            # CPU seconds of this process: on a shared machine, time_s / cpu_s shows
            # how much of the cores the run actually had
            "cpu_s": round(time.process_time() - self.c0, 1),
            "steps": self.n_steps,
            "images": self.seen,
        }
        self.history.append(row)
        return row

    def should_stop(self, miou: float, frac: float) -> Optional[str]:
        """Why the run ends after this validation (``early_stopping``, ``converged``,
        ``time_limit``), or None to go on."""
        cfg, d = self.cfg, self.d
        if cfg.patience and self.bad_epochs >= cfg.patience:
            self.say(f"early stopping: no val mIoU gain in {cfg.patience} epochs")
            return "early_stopping"
        if cfg.time_limit and cfg.plateau:
            if miou >= self.progress_miou + PLATEAU_MIN_GAIN:
                self.progress_miou, self.progress_frac, self.flat_vals = miou, frac, 0
            else:
                self.flat_vals += 1
            # a few validations without gain, not one noisy one, and not before half
            # of the budget
            flat = (
                frac >= 0.5
                and frac - self.progress_frac >= cfg.plateau
                and self.flat_vals >= PLATEAU_MIN_VALIDATIONS
            )
            if agree_max(int(flat), d, self.device) and not self.out_of_time:
                self.say(
                    f"converged: val mIoU gained less than {PLATEAU_MIN_GAIN} in the last "
                    f"{frac - self.progress_frac:.0%} of the {cfg.time_limit:g} min budget"
                )
                return "converged"
        if self.out_of_time:
            self.say(f"time limit of {cfg.time_limit:g} min reached")
            return "time_limit"
        return None

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> dict:
        """Train until the epochs, the time budget, the patience or the plateau ends the run;
        then calibrate ``best.pt`` and write ``metrics.json``. Returns the summary."""
        cfg = self.cfg
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                if self._epoch(epoch):
                    break
        except KeyboardInterrupt:
            self.say(
                f"interrupted in epoch {epoch + 1}; {self.out / 'last.pt'} holds the last "
                f"finished epoch, {self.out / 'best.pt'} the best; continue with --resume"
            )
            self.write_metrics("interrupted")
            raise
        calibration = None
        if cfg.calibrate and self.best_epoch > 0 and self.d.main:
            calibration = calibrate_checkpoint(
                self.out / "best.pt",
                self.train_ds,
                self.val_ds,
                cfg.size,
                self.device,
                batch=self.batch,
                seed=cfg.seed,
                progress=cfg.progress,
                log=self.say,
            )
            if calibration["applied"]:
                self.best_miou = calibration["val_miou_after"]
        if self.d.on:
            dist.barrier()  # the other ranks wait for rank 0's calibration
        return self.write_metrics(self.stopped, calibration)

    def _epoch(self, epoch: int) -> bool:
        """Train ``epoch``, validate and save when due; True when the run ends."""
        cfg = self.cfg
        te = self.now()
        loss_sum, n_loss = self.train_epoch(epoch)
        te = self.now() - te
        due = epoch + 1 - self.last_val >= self.val_every or epoch + 1 == cfg.epochs
        if not (due or self.out_of_time):
            self.save_last(epoch + 1)
            return False
        judged, cm = self.validate(te)
        row = self.record(epoch, loss_sum, n_loss, cm)
        miou = row["val_miou"]
        frac = self.time_frac() if cfg.time_limit else 0.0
        if cfg.time_limit and not self.out_of_time:
            # the budget may have run out while validating: stop now, not after a step
            self.out_of_time = bool(agree_max(int(frac >= 1.0), self.d, self.device))
        improved = miou > self.best_miou
        since, self.last_val = epoch + 1 - self.last_val, epoch + 1
        if improved:
            self.best_miou, self.best_epoch, self.bad_epochs = miou, epoch + 1, 0
            self.save_best(judged, epoch + 1, miou)
        else:
            self.bad_epochs += since
        self.save_last(epoch + 1)
        self.write_metrics("running")
        pcs = " ".join(f"{n}={v:.3f}" for n, v in zip(self.classes.names, cm.iou()))
        self.say(
            f"epoch {epoch + 1}/{cfg.epochs} loss {row['train_loss']:.4f} val mIoU "
            f"{miou:.4f}{' *' if improved else ''} ({pcs}) {row['time_s']:.0f}s"
        )
        stop = self.should_stop(miou, frac)
        if stop is not None:
            self.stopped = stop
            return True
        return False
