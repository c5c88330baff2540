"""``edgeseg train``: train a segmentation model on a dataset.

Settings come from, lowest first: built-in defaults (several picked from the dataset size
and the device), ``--config train.yaml`` (any :class:`TrainConfig` key), the flags given.
``--resume`` continues RUN_DIR/last.pt with the run's own config.yaml. Under ``torchrun
--nproc_per_node N`` the same command trains with DistributedDataParallel.

Exit codes: 0 done, 2 bad data/arguments (message on stderr), 130 interrupted (Ctrl-C;
checkpoints kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from edgeseg.errors import DatasetError, EdgesegError, TrainingError


def build_parser() -> argparse.ArgumentParser:
    from edgeseg.train.models import model_names

    p = argparse.ArgumentParser(
        prog="edgeseg train",
        description="Train a segmentation model. Writes best.pt, last.pt, metrics.json, "
        "classes.yaml and config.yaml to RUN_DIR. Flags left out are picked from the dataset "
        "size and the device.",
    )
    p.add_argument("--data", help="dataset folder or .zip (needs train and val splits)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--model", choices=model_names(), help="architecture (default unet)")
    p.add_argument("--width", type=float, help="channel width multiplier of the model")
    p.add_argument("--size", type=int, help="model input size in px, multiple of 32 (256)")
    p.add_argument("--crop", type=int, help="training crop in px (default --size)")
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
        help="early stopping: epochs without gain (15; off under --time-limit with the "
        "epochs left to the clock)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        help="finish within this many minutes, calibration included; without --epochs the "
        "learning-rate schedule follows the clock",
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
    p.add_argument("--config", help="YAML file with any of these settings (underscored keys)")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


_FLAG_KEYS = (
    "data model size crop epochs batch lr weight_decay dropout loss class_weights workers seed "
    "device amp patience time_limit max_steps allow_upscale calibrate val_every init "
    "encoder_weights encoder_lr_mult freeze_bn"
).split()


def config_from_args(args: argparse.Namespace):
    import yaml

    from edgeseg.train.trainer import TrainConfig

    base: dict = {}
    run_conf = Path(args.out) / "config.yaml"
    for src in ([run_conf] if args.resume and run_conf.is_file() else []) + (
        [Path(args.config)] if args.config else []
    ):
        try:
            loaded = yaml.safe_load(src.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise TrainingError(f"{src}: cannot read the config ({e})") from None
        if not isinstance(loaded, dict):
            raise TrainingError(f"{src}: a config is a mapping of settings, got {type(loaded)}")
        loaded.pop("meta", None)
        base.update({k.replace("-", "_"): v for k, v in loaded.items()})
    for k in _FLAG_KEYS:
        v = getattr(args, k)
        if v is not None:
            base[k] = v
    if args.width is not None:
        base.setdefault("model_kwargs", {})
        base["model_kwargs"] = {**base["model_kwargs"], "width": args.width}
    base["out"] = args.out
    base["resume"] = bool(args.resume)
    base["progress"] = not args.no_progress
    for k in ("mean", "std"):
        if k in base:
            base[k] = tuple(base[k])
    if not base.get("data"):
        raise TrainingError("--data is required (a dataset folder or .zip)")
    return TrainConfig.from_dict(base, source=str(args.config or "flags"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from edgeseg.train.trainer import train

        cfg = config_from_args(args)
        summary = train(cfg, log=lambda *a: print(*a, file=sys.stderr, flush=True))
    except (TrainingError, DatasetError, EdgesegError) as e:
        print(f"edgeseg train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    else:
        best = summary["best_val_miou"]
        print(
            f"best val mIoU {best:.4f} at epoch {summary['best_epoch']} "
            f"({summary['stopped']}); run in {args.out}"
        )
    return 0
