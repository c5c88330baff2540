"""``edgeseg train``: train a segmentation model on a dataset.

Settings come from, lowest first: built-in defaults (several picked from the dataset size
and the device), ``--config train.yaml`` (any :class:`TrainConfig` key), the flags given.
``--resume`` continues RUN_DIR/last.pt with the run's own config.yaml. Under ``torchrun
--nproc_per_node N`` the same command trains with DistributedDataParallel.

Exit codes: 0 done, 2 bad data/arguments (message on stderr), 130 interrupted (Ctrl-C;
checkpoints kept). ``--model`` is the older spelling of ``--arch``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from edgeseg._cli import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    HELP_FORMATTER,
    add_json,
    add_no_progress,
    deprecated,
    epilog,
    error,
    install_hint,
    show_progress,
    write_json,
)
from edgeseg._text import short
from edgeseg._yaml import load_yaml_file
from edgeseg.errors import DatasetError, EdgesegError, TrainingError

PROG = "edgeseg train"


def build_parser() -> argparse.ArgumentParser:
    from edgeseg.train.defaults import DEFAULT_MINUTES, PLATEAU_MIN_GAIN, PLATEAU_MIN_VALIDATIONS
    from edgeseg.train.models import model_names

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train a segmentation model. Writes best.pt, last.pt, metrics.json, "
        "classes.yaml and config.yaml to RUN_DIR. Flags left out are picked from the dataset "
        "size and the device.",
        epilog=epilog(
            "edgeseg train --data data/defects --out runs/defects",
            "edgeseg train --data data/defects --out runs/mb --arch mbv3_lraspp --time-limit 10",
            "torchrun --nproc_per_node 4 -m edgeseg.cli train --data data/defects --out runs/ddp",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("--data", help="dataset folder or .zip (needs train and val splits)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--arch", dest="model", choices=model_names(), help="architecture (unet)")
    p.add_argument(
        "--model",
        dest="model",
        choices=model_names(),
        action=deprecated(PROG, "--model", "--arch"),
        help=argparse.SUPPRESS,
    )
    p.add_argument("--width", type=float, help="channel width multiplier of the model")
    p.add_argument("--size", type=int, help="model input size in px, multiple of 32 (256)")
    p.add_argument("--crop", type=int, help="training crop in px (default --size)")
    p.add_argument(
        "--zoom",
        help="scale jitter of the training crops, LO,HI (1 = deployment scale; e.g. 0.5,1 "
        "also shows the whole image shrunk to the crop; 1,1 turns it off)",
    )
    p.add_argument("--epochs", type=int, help="epochs (default from dataset size, device)")
    p.add_argument("--batch", type=int, help="batch size per process (default from memory)")
    p.add_argument("--lr", type=float, help="peak AdamW learning rate (default from batch)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (1e-4)")
    p.add_argument("--dropout", type=float, help="dropout before the classifier (0.1)")
    p.add_argument("--loss", choices=["ce", "dice", "ce+dice"], help="loss (ce+dice)")
    p.add_argument(
        "--class-weights",
        help="auto (inverse-sqrt frequency), median (median-frequency), none, or w0,w1,...",
    )
    p.add_argument("--workers", type=int, help="data loader processes (default from cores)")
    p.add_argument("--seed", type=int, help="random seed (0); runs are repeatable")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (auto)")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        help="mixed precision: float16 on CUDA, bfloat16 on the CPU (default: on for CPUs "
        "with AMX, where bfloat16 convolutions run about 1.5-2x faster; off elsewhere)",
    )
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.pt")
    p.add_argument(
        "--patience",
        type=int,
        help="early stopping with --epochs: epochs without val mIoU gain (15)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        help="finish within this many minutes, calibration included (default "
        f"{DEFAULT_MINUTES:g} when --epochs is not given; with --epochs, no limit). Without "
        "--epochs the learning-rate schedule follows the clock",
    )
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        help="what --time-limit counts: wall seconds (default), or this process's CPU seconds "
        "per torch thread (the same work whatever else loads a shared machine)",
    )
    p.add_argument(
        "--plateau",
        type=float,
        help="under the clock: stop once val mIoU gained less than "
        f"{PLATEAU_MIN_GAIN} over this share of the time budget and {PLATEAU_MIN_VALIDATIONS} "
        "validations, checked from half of it on (0.3; 0 turns it off): a converged run ends "
        "early, an improving one uses the budget",
    )
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        help="after training, fit per-class logit offsets on the training images and fold "
        "them into the model when val mIoU does not drop (default on)",
    )
    p.add_argument("--max-steps", type=int, help="at most this many steps per epoch")
    p.add_argument(
        "--val-every",
        type=int,
        help="validate every N epochs (default: as often as keeps validation near 10 %% of "
        "the time; always after the last epoch)",
    )
    p.add_argument(
        "--allow-upscale",
        action="store_true",
        default=None,
        help="train on images smaller than the crop (enlarged)",
    )
    ft = p.add_argument_group("fine-tuning")
    ft.add_argument(
        "--init",
        metavar="RUN|CKPT|starter:NAME",
        help="start from trained weights: a run directory, a best.pt/last.pt/weights.pt, or "
        "a shipped starter model (starter:defects, starter:objects). The architecture is the "
        "checkpoint's; classes are matched by name (new classes get fresh classifier rows)",
    )
    ft.add_argument(
        "--encoder-weights",
        metavar="imagenet|PATH",
        help="timm_unet: pretrained encoder weights, 'imagenet' (timm's default pretrained "
        "tag through the Hugging Face hub cache; honours HF_HUB_OFFLINE and HF_ENDPOINT) or a "
        "local .pth/.safetensors file",
    )
    ft.add_argument(
        "--encoder-lr-mult",
        type=float,
        help="learning-rate factor of the encoder (1; e.g. 0.1 keeps pretrained features "
        "closer to their start; 0 freezes the encoder)",
    )
    ft.add_argument(
        "--freeze-bn",
        choices=["none", "encoder", "all"],
        help="keep the BatchNorm running statistics of these layers as loaded (none)",
    )
    ft.add_argument(
        "--compare-val",
        metavar="DIR",
        help="with --init: after training, score the init model and the new best.pt on this "
        "dataset's val split (default: the init run's own dataset, when it still exists) and "
        "name the classes whose IoU fell: RUN_DIR/compare_val.json",
    )
    p.add_argument("--config", help="YAML file with any of these settings (underscored keys)")
    add_json(p, "the final metrics")
    add_no_progress(p)
    return p


_FLAG_KEYS = (
    "data model size crop epochs batch lr weight_decay dropout loss class_weights workers seed "
    "device amp patience plateau time_limit clock max_steps allow_upscale calibrate val_every "
    "init encoder_weights encoder_lr_mult freeze_bn"
).split()


def config_from_args(args: argparse.Namespace):
    from edgeseg.train.config import TrainConfig

    base: dict = {}
    run_conf = Path(args.out) / "config.yaml"
    for src in ([run_conf] if args.resume and run_conf.is_file() else []) + (
        [Path(args.config)] if args.config else []
    ):
        loaded = load_yaml_file(src, TrainingError, "training config") or {}
        if not isinstance(loaded, dict):
            raise TrainingError(f"{src}: a config is a mapping of settings, got {type(loaded)}")
        loaded.pop("meta", None)
        bad = [k for k in loaded if not isinstance(k, str)]
        if bad:
            raise TrainingError(
                f"{src}: setting names are words such as 'epochs', got {short(bad[0])}"
            )
        base.update({k.replace("-", "_"): v for k, v in loaded.items()})
    for k in _FLAG_KEYS:
        v = getattr(args, k)
        if v is not None:
            base[k] = v
    if args.zoom is not None:
        try:
            base["zoom"] = [float(v) for v in args.zoom.split(",")]
        except ValueError:
            raise TrainingError(f"--zoom {args.zoom!r}: use LO,HI, e.g. 0.5,1") from None
    if args.width is not None:
        base.setdefault("model_kwargs", {})
        base["model_kwargs"] = {**base["model_kwargs"], "width": args.width}
    base["out"] = args.out
    base["resume"] = bool(args.resume)
    base["progress"] = show_progress(args)
    for k in ("mean", "std"):
        if k in base:
            base[k] = tuple(base[k])
    if not base.get("data"):
        raise TrainingError("--data is required (a dataset folder or .zip)")
    return TrainConfig.from_dict(base, source=str(args.config or "flags"))


def _compare(args, cfg, summary: dict) -> dict:
    """--compare-val: the init model and the new one on the old val split."""
    import json

    from edgeseg.train import finetune

    data = args.compare_val or finetune.init_val_data(cfg.init)
    if not data:
        if args.compare_val is None:
            print(
                f"{PROG}: the val split of --init {cfg.init} is not known; pass --compare-val "
                "DIR to score the old and the new model on it",
                file=sys.stderr,
            )
        return summary
    rep = finetune.compare_val(cfg.init, Path(args.out), data)
    (Path(args.out) / "compare_val.json").write_text(json.dumps(rep, indent=2) + "\n")
    print(finetune.compare_note(rep), file=sys.stderr)
    return {**summary, "compare_val": rep}


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        parser = build_parser()  # the architecture names need torch
    except ImportError as e:
        error(PROG, f"{e}; {install_hint('train')}")
        return EXIT_ERROR
    args = parser.parse_args(argv)
    try:
        from edgeseg.train.trainer import train

        cfg = config_from_args(args)
        summary = train(cfg, log=lambda *a: print(*a, file=sys.stderr, flush=True))
    except (TrainingError, DatasetError, EdgesegError) as e:
        error(PROG, e)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    if cfg.init and not cfg.resume:
        try:
            summary = _compare(args, cfg, summary)
        except (TrainingError, DatasetError, EdgesegError) as e:
            error(PROG, f"the run is in {args.out}, but the old val split was not scored: {e}")
            return EXIT_ERROR
    write_json(args.json, {k: v for k, v in summary.items() if k != "history"})
    if args.json != "-":
        best = summary["best_val_miou"]
        print(
            f"best val mIoU {best:.4f} at epoch {summary['best_epoch']} "
            f"({summary['stopped']}); run in {args.out}"
        )
    return 0
