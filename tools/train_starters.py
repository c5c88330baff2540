"""Train the starter models shipped in ``python/edgeseg/starters/`` (seeded, reproducible).

Each starter is trained by the product's own path on the product's own data: a dataset
from ``edgeseg.data.synth`` (the generator behind ``edgeseg data synth``) or from the
accuracy suite ``edgeseg.data.suite`` (photographed patterns from Debian packages),
``edgeseg.train.train`` trains a fixed number of epochs (no clock: the same seed gives the
same weights on the same torch and CPU kernel family), ``edgeseg.export.export_onnx``
exports it, and a held-out test set is scored on the ONNX model (synth: the dataset's test
split; suite: the val split of the same recipe built with the next seed, images never used
to pick the best epoch). Written per starter: ``model.onnx``, ``weights.pt``
(``{"state_dict", "meta"}``) and ``card.json`` (data recipe and hash, training settings,
metrics, file hashes).

    .venv/bin/python tools/train_starters.py                 # every starter
    .venv/bin/python tools/train_starters.py defects --work /tmp/starters
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_ROOT = ROOT / "python" / "edgeseg" / "starters"

#: the quarter-width float32 UNet the trainer picks on CPUs without AMX: fast on every x86
#: CPU (0.77 GMAC at 256²), 1.6 MB as ONNX
SMALL_UNET = {"width": 0.25, "max_channels": 96, "full_res_convs": 1}
#: an eighth of the width for the two-class product mask (a quarter of the parameters)
TINY_UNET = {"width": 0.125, "max_channels": 48, "full_res_convs": 1}

STARTERS = {
    "defects": {
        "description": "surface defects (scratch, stain, crack) on textured surfaces seen by a "
        "line camera (windows over two neighbouring panels, the seam between parts included), "
        "256x256; the model `edgeseg demo` fine-tunes",
        # camera frames of a line of panels (edgeseg.data.video.synth_line_dataset): each
        # panel is a `defects` image, so the frames hold everything that set holds plus the
        # seams between parts; seed 101 shares no frame with the demo (seed 0) or its video
        # half the panels defect-free, as on a line that mostly makes good parts, and half the
        # crops placed on defects: false alarms on clean textures cost a line as much as misses
        "data": {"line": True, "n": 1600, "size": 256, "seed": 101, "clean_fraction": 0.5},
        "train": {
            "model": "unet",
            "model_kwargs": SMALL_UNET,
            "epochs": 40,
            "seed": 0,
            "crop_focus": 0.5,
        },
    },
    "objects": {
        "description": "product vs background (background removal of parts on a surface), 256x256",
        "data": {"task": "objects", "n": 300, "size": 256, "seed": 102},
        "train": {"model": "unet", "model_kwargs": TINY_UNET, "epochs": 40, "seed": 0},
    },
    "zones": {
        "description": "zone identification: which material (wood, stone, plant: foliage) covers "
        "each pixel, on photographed patterns, 256x256",
        "data": {"suite": "zones", "n_train": 480, "n_val": 80, "size": 256, "seed": 0},
        "train": {"model": "unet", "model_kwargs": SMALL_UNET, "epochs": 10, "seed": 0},
    },
}


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _datasets(name: str, spec: dict, work: Path) -> tuple[Path, Path, str, dict]:
    """(training dataset, test dataset, test split, the card's data fields) of a starter."""
    from edgeseg import data
    from edgeseg.data import suite

    d = dict(spec)
    if d.pop("line", False):
        from edgeseg.data.video import synth_line_dataset

        ds = synth_line_dataset(work / f"{name}_line_data", overwrite=True, **d)
        return (
            ds,
            ds,
            "test",
            {"generator": "edgeseg.data.video.synth_line_dataset (line camera frames)"},
        )
    if "suite" in d:
        which = d.pop("suite")
        ds = suite.build(which, work, **d)
        # the val split of the next seed: the same unseen patterns, other images
        test = suite.build(which, work, **{**d, "n_train": 1, "seed": d["seed"] + 1})
        return (
            ds,
            test,
            "val",
            {
                "generator": f"edgeseg.data.suite ({which}: photographed GIMP patterns from "
                "gimp-data and gimp-data-extras)",
                "test_set": f"the val split of {test.name} (seed {d['seed'] + 1})",
            },
        )
    ds = data.synth(work / f"{name}_data", overwrite=True, progress=False, **d)
    return ds, ds, "test", {"generator": "edgeseg.data.synth (edgeseg data synth)"}


def train_starter(name: str, work: Path, out_root: Path = OUT_ROOT, log=print, epochs=None) -> dict:
    import torch

    from edgeseg import __version__
    from edgeseg.export import export_onnx
    from edgeseg.train import TrainConfig, evaluate, train

    spec = STARTERS[name]
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ds, test_ds, test_split, data_fields = _datasets(name, spec["data"], work)
    run = work / f"{name}_run"
    shutil.rmtree(run, ignore_errors=True)
    tr = {**spec["train"], **({"epochs": epochs} if epochs else {})}
    # recipe settings past the four every starter has (crop_focus...): TrainConfig fields
    extra = {k: v for k, v in tr.items() if k not in ("model", "model_kwargs", "epochs", "seed")}
    cfg = TrainConfig(
        data=str(ds),
        out=str(run),
        model=tr["model"],
        model_kwargs=dict(tr["model_kwargs"]),
        size=spec["data"]["size"],
        epochs=tr["epochs"],
        seed=tr["seed"],
        workers=0,
        amp=False,
        progress=False,
        **extra,
    )
    metrics = train(cfg, log=log)
    dest = out_root / name
    dest.mkdir(parents=True, exist_ok=True)
    onnx_path = dest / "model.onnx"
    exp = export_onnx(run, onnx_path, log=None)
    ck = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    # float16 on disk halves the file; --init loads it into the float32 model (the ONNX keeps
    # the float32 weights the metrics were measured on)
    half = {k: v.half() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    torch.save({"state_dict": half, "meta": ck["meta"]}, dest / "weights.pt")
    test = evaluate(onnx_path, test_ds, split=test_split)
    card = {
        "name": name,
        "description": spec["description"],
        "edgeseg_version": __version__,
        "model": tr["model"],
        "model_kwargs": ck["meta"]["model_kwargs"],
        "classes": ck["meta"]["classes"],
        "input_size": ck["meta"]["input_size"],
        "data": {
            "generator": data_fields["generator"],
            **spec["data"],
            **{k: v for k, v in data_fields.items() if k != "generator"},
            "train_images": metrics.get("train_images", ck["meta"].get("data_images")),
            "data_hash": ck["meta"].get("data_hash"),
        },
        "training": {
            "epochs": tr["epochs"],
            "seed": tr["seed"],
            **extra,
            "amp": False,
            "best_epoch": metrics.get("best_epoch"),
            "seconds": round(time.time() - t0),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "command": f"python tools/train_starters.py {name}"
            + (f" --epochs {epochs}" if epochs else ""),
        },
        "metrics": {
            "val_miou": metrics.get("best_val_miou"),
            "test_miou": test["miou"],
            "test_per_class_iou": test["per_class_iou"],
            "test_images": test.get("num_images"),
        },
        "onnx_parity_max_abs_diff": exp["parity"]["max_abs_diff"],
        "bytes": {
            "onnx": onnx_path.stat().st_size,
            "weights": (dest / "weights.pt").stat().st_size,
        },
        "sha256": {"onnx": _sha256(onnx_path), "weights": _sha256(dest / "weights.pt")},
    }
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    log(
        f"starter:{name}: val mIoU {card['metrics']['val_miou']:.3f}, test mIoU "
        f"{test['miou']:.3f}, {sum(card['bytes'].values()) / 1e6:.2f} MB in {dest}"
    )
    return card


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"starters to train (default all: {list(STARTERS)})")
    ap.add_argument("--work", default="build/starters", help="datasets and runs (build/starters)")
    ap.add_argument("--out", default=str(OUT_ROOT), help="where the starter folders go")
    ap.add_argument(
        "--epochs", type=int, help="override the recipe's epochs (a shorter run; the card says so)"
    )
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in STARTERS]
    if unknown:
        print(f"unknown starter(s) {unknown}; choose from {list(STARTERS)}", file=sys.stderr)
        return 2
    for name in args.names or list(STARTERS):
        train_starter(
            name, Path(args.work), Path(args.out), lambda *a: print(*a, flush=True), args.epochs
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
