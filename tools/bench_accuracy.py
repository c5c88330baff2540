"""Accuracy suite: ``edgeseg train`` defaults vs a plain reference UNet, same wall time.

    python tools/bench_accuracy.py [--minutes 3] [--clock cpu|wall] [--threads N]
                                   [--datasets defects,cutouts,...]
                                   [--variant 'zoom=[0.5, 1]' ...]
                                   [--root /tmp/edgeseg_suite] [--json results.json]

For each dataset of :mod:`edgeseg.data.suite` (built on first use from Debian packages, then
cached under ``--root``) both recipes train for the same ``--minutes`` in this one process, one
after the other (which one goes first alternates between datasets), then the best checkpoint
of each is scored on the val split (objects/surfaces never seen in training): mIoU, per-class
IoU, boundary F1 (2 px tolerance). Prints a Markdown table with the CPU, torch's kernel level
(``ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2`` make torch and oneDNN use their AVX2
kernels: what an AVX2-only machine runs) and the load average during each run.

The reference: a 4-level UNet with BatchNorm at full width (32-64-128-256-512 channels), AdamW
at 1e-3 on a cosine schedule that follows the clock, CE + Dice, flips, 90° rotations and
colour jitter on full-size images; no weight average, no calibration, no class weights.

``--variant KEY=VALUE`` adds a recipe: the defaults with one ``TrainConfig`` setting changed
(VALUE is YAML: ``zoom=[0.5, 1]``, ``crop=192``, ``lr=0.005``), trained and scored like the others
in the same process, so a proposed change of a default is measured against the default itself.

``--clock cpu`` (the default) gives each recipe the same CPU time instead of the same wall
time: ``--minutes`` of this process's CPU seconds per torch thread, so a shared machine's load
does not decide the result; on an idle machine the two clocks agree. ``--clock wall`` counts
wall seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

# torch's OpenMP threads sleep instead of spinning while they wait: on a loaded machine
# spinning would burn (and, under --clock cpu, charge) CPU time for no work
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import threading
import time
from pathlib import Path
from typing import Optional

from edgeseg._platform import cpu_name, usable_cpus
from edgeseg.data import suite

RECIPES = ("default", "plain")


class LoadSampler(threading.Thread):
    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            with open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))


def plain_transform():
    """Flips, 90° rotations, colour jitter: the textbook augmentation."""
    import albumentations as A

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    )


def parse_variant(text: str) -> tuple[str, dict]:
    """``KEY=VALUE`` (VALUE in YAML) -> (recipe name, TrainConfig overrides)."""
    import yaml

    from edgeseg.train.trainer import TrainConfig

    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {
        "data",
        "out",
        "progress",
        "size",
        "time_limit",
        "clock",
    }  # set by the bench itself
    if not sep or key not in names:
        raise SystemExit(
            f"--variant {text!r}: use KEY=VALUE with KEY a TrainConfig setting "
            f"({', '.join(sorted(names))})"
        )
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise SystemExit(f"--variant {text!r}: VALUE is not YAML ({e})") from None
    return f"default {key}={value.strip()}", {key: parsed}


def run_recipe(
    recipe: str,
    data: Path,
    out: Path,
    size: int,
    minutes: float,
    clock: str = "cpu",
    overrides: Optional[dict] = None,
) -> dict:
    from edgeseg.train import TrainConfig, train
    from edgeseg.train.evaluate import evaluate

    common = dict(
        data=str(data), out=str(out), size=size, time_limit=minutes, clock=clock, progress=False
    )
    if recipe != "plain":
        cfg, transform = TrainConfig(**common, **(overrides or {})), None
    else:
        cfg = TrainConfig(
            **common,
            model="unet",
            model_kwargs={"width": 1.0, "depth": 4, "full_res_convs": 2},
            dropout=0.0,
            batch=8,
            lr=1e-3,
            crop=size,
            class_weights="none",
            loss="ce+dice",
            ema=0.0,
            calibrate=False,
            clip_grad=0.0,
            patience=0,
        )
        transform = plain_transform()
    sampler = LoadSampler()
    sampler.start()
    t0, c0 = time.monotonic(), time.process_time()
    summary = train(cfg, transform=transform, log=lambda *a: None)
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    sampler.stop.set()
    rep = evaluate(out, data, "val", device="cpu", tolerance=2)
    hist = summary["history"]
    return {
        "recipe": recipe,
        "miou": rep["miou"],
        "per_class_iou": rep["per_class_iou"],
        "boundary_f1": rep["boundary_f1"],
        "train_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "epochs": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "stopped": summary["stopped"],
        "steps": hist[-1]["steps"] if hist else 0,
        "load": round(sum(sampler.samples) / max(1, len(sampler.samples)), 2),
        "config": {
            k: summary["config"][k] for k in ("model_kwargs", "crop", "zoom", "batch", "lr", "amp")
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="training time per recipe")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what --minutes counts")
    ap.add_argument("--threads", type=int, help="torch threads (default: the usable cores)")
    ap.add_argument("--datasets", default=",".join(suite.DATASETS))
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also train the defaults with one setting changed (VALUE in YAML), e.g. "
        "'zoom=[0.5, 1]'; repeatable",
    )
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--root", default="/tmp/edgeseg_suite", help="dataset cache and runs")
    ap.add_argument("--json", help="write the results here too (after every run)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.datasets.split(",") if n]
    recipes = [r for r in args.recipes.split(",") if r]
    bad = [n for n in names if n not in suite.DATASETS] + [r for r in recipes if r not in RECIPES]
    if bad:
        print(f"unknown dataset/recipe {bad}; datasets {list(suite.DATASETS)}, recipes {RECIPES}")
        return 2
    variants = dict(parse_variant(v) for v in args.variant)
    recipes += list(variants)
    root = Path(args.root)
    cap = torch.backends.cpu.get_cpu_capability()
    forced = "".join(
        f", {k}={os.environ[k]}"
        for k in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA")
        if k in os.environ
    )
    machine = (
        f"{cpu_name()}, {usable_cpus()} cores, torch {torch.__version__} ({cap} kernels"
        f"{forced}), "
        f"{torch.get_num_threads()} torch threads"
    )
    budget = f"{args.minutes:g} min per recipe ({args.clock} clock)"
    print(f"# {machine}; {budget}", flush=True)
    results = []
    for k, name in enumerate(names):
        data = suite.build(name, root / "data", size=args.size)
        order = recipes if k % 2 == 0 else recipes[::-1]
        for recipe in order:
            tag = recipe.replace(" ", "_").replace("=", "-")
            run = root / "runs" / "".join(c for c in f"{name}_{tag}" if c.isalnum() or c in "_-.")
            r = run_recipe(
                recipe, data, run, args.size, args.minutes, args.clock, variants.get(recipe)
            )
            r["dataset"] = name
            results.append(r)
            if args.json:  # after every run: a long suite stopped halfway keeps what it did
                Path(args.json).write_text(
                    json.dumps(
                        {
                            "machine": machine,
                            "budget": budget,
                            "minutes": args.minutes,
                            "results": results,
                        },
                        indent=1,
                    )
                )
            pc = " ".join(f"{c}={v:.3f}" for c, v in r["per_class_iou"].items() if v is not None)
            print(
                f"{name:14s} {recipe:12s} mIoU {r['miou']:.4f} BF1 {r['boundary_f1']:.4f} "
                f"({pc}) {r['train_s']:.0f}s cpu {r['cpu_s']:.0f}s steps {r['steps']} "
                f"epochs {r['epochs']} ({r['stopped']}) load {r['load']}",
                flush=True,
            )
    print(
        "\n| dataset | use case | recipe | val mIoU | per-class IoU | boundary F1 | steps | "
        "cpu s | wall s | load | stopped by |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        pc = ", ".join(f"{c} {v:.2f}" for c, v in r["per_class_iou"].items() if v is not None)
        print(
            f"| {r['dataset']} | {suite.DATASETS[r['dataset']][0]} | {r['recipe']} | "
            f"{r['miou']:.3f} | {pc} | {r['boundary_f1']:.3f} | {r['steps']} | "
            f"{r['cpu_s']:.0f} | {r['train_s']:.0f} | {r['load']} | {r['stopped']} |"
        )
    by = {(r["dataset"], r["recipe"]): r["miou"] for r in results}
    for name in names:
        if (name, "default") in by and (name, "plain") in by:
            print(f"{name}: default - plain = {by[name, 'default'] - by[name, 'plain']:+.3f} mIoU")
        for v in variants:
            if (name, "default") in by and (name, v) in by:
                print(f"{name}: {v} - default = {by[name, v] - by[name, 'default']:+.3f} mIoU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
