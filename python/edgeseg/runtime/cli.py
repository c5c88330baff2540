"""``edgeseg predict MODEL INPUTS... --out DIR``: segment image files, folders and globs."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg.errors import EdgesegError

__all__ = ["collect_inputs", "main"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SAVE_KINDS = ("mask", "overlay", "confidence", "json")


def collect_inputs(inputs: Sequence[str]) -> list[Path]:
    """Image files from files, folders (recursively, sorted) and glob patterns, in order,
    without duplicates. Raises EdgesegError naming an input that matches nothing."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()
            )
            if not found:
                raise EdgesegError(f"{p}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif p.is_file():
            out.append(p)
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not found:
                raise EdgesegError(f"{item}: the pattern matches no files")
            out += found
        else:
            raise EdgesegError(f"{item}: no such file, folder or glob match")
    seen: set = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def _parse_save(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in SAVE_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(
            f"--save: unknown {bad or 'empty list'}; choose from {','.join(SAVE_KINDS)}"
        )
    return kinds


def _stem_names(paths: list[Path]) -> list[str]:
    """Output base names: the file stem, made unique with a counter on collisions."""
    names, used = [], {}
    for p in paths:
        n = used.get(p.stem, 0)
        used[p.stem] = n + 1
        names.append(p.stem if n == 0 else f"{p.stem}_{n}")
    return names


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edgeseg predict",
        description="Segment images with an exported model (.onnx) or a TensorRT engine. "
        "Writes per image NAME_mask.png (palette PNG of class indices), NAME_overlay.jpg, "
        "NAME_confidence.png (0..255 = 0..1) and NAME.json into --out, plus summary.json.",
    )
    ap.add_argument(
        "model",
        help="model.onnx, model.engine, or a starter model shipped with edgeseg "
        "(starter:defects, starter:objects; edgeseg info starter:NAME describes it)",
    )
    ap.add_argument("inputs", nargs="+", help="image files, folders (recursive) or globs")
    ap.add_argument("--out", "-o", required=True, help="output folder")
    ap.add_argument(
        "--save",
        type=_parse_save,
        default=["mask", "overlay", "json"],
        help=f"what to write per image, comma-separated from {','.join(SAVE_KINDS)} "
        "(default: mask,overlay,json)",
    )
    ap.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt"))
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads")
    ap.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    ap.add_argument(
        "--show-confidence",
        choices=("off", "alpha", "heatmap"),
        default="off",
        help="draw the confidence in the overlay as transparency or as a heat map",
    )
    ap.add_argument("--tile", type=int, nargs=2, metavar=("H", "W"), help="tiled inference")
    ap.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import cv2
    from tqdm import tqdm

    from edgeseg.runtime.segmenter import Segmenter

    try:
        paths = collect_inputs(args.inputs)
        seg = Segmenter(
            args.model,
            backend=args.backend,
            threads=args.threads,
            confidence="confidence" in args.save or args.show_confidence != "off",
            tile=args.tile,
            overlap=args.overlap,
        )
    except EdgesegError as e:
        print(f"edgeseg predict: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"edgeseg predict: cannot create --out {out}: {e}", file=sys.stderr)
        return 2
    show = {"off": False, "alpha": "alpha", "heatmap": "heatmap"}[args.show_confidence]
    failures, totals = [], np.zeros(len(seg.classes), np.int64)
    names = _stem_names(paths)
    bar = tqdm(list(zip(paths, names)), desc="predict", unit="img", disable=args.no_progress)
    for path, name in bar:
        try:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise EdgesegError(f"{path}: not a readable image (corrupt or unsupported)")
            res = seg.predict(frame)
            totals += res.counts_array
            if "mask" in args.save:
                res.save_png(out / f"{name}_mask.png")
            if "overlay" in args.save:
                ov = res.overlay(args.alpha, show_confidence=show)
                if not cv2.imwrite(str(out / f"{name}_overlay.jpg"), ov):
                    raise EdgesegError(f"{out / name}_overlay.jpg: cannot be written")
            if "confidence" in args.save:
                conf8 = np.clip(res.confidence * 255.0 + 0.5, 0, 255).astype(np.uint8)
                cv2.imwrite(str(out / f"{name}_confidence.png"), conf8)
            if "json" in args.save:
                rec = {"image": str(path), **res.to_dict()}
                (out / f"{name}.json").write_text(json.dumps(rec, indent=2) + "\n")
        except (EdgesegError, OSError) as e:
            failures.append({"image": str(path), "error": str(e)})
            tqdm.write(f"edgeseg predict: {e}", file=sys.stderr)
    summary = {
        "model": str(args.model),
        "backend": seg.backend.describe(),
        "images": len(paths),
        "failed": failures,
        "counts": {c.name: int(n) for c, n in zip(seg.classes, totals)},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"segmented {len(paths) - len(failures)}/{len(paths)} images into {out}")
    return 1 if failures else 0
