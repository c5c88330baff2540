"""``edgeseg predict MODEL INPUTS... --out DIR``: segment image files, folders and globs.

An NG archive folder (``archive:DIR`` of the camera loop) as input gives the original frame of
each entry, named after the entry. ``--save cvat`` / ``--save labelstudio`` also write the
predictions as pre-annotations (``OUT/cvat.zip``, ``OUT/labelstudio/``; see
:mod:`edgeseg.data.preannotate`).

Exit codes: 0 every image segmented, 1 some images could not be read or written (listed in
summary.json; the others are written), 2 bad arguments or a model that cannot be loaded,
130 interrupted. ``-o`` is the older spelling of ``--out``."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg._cli import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    HELP_FORMATTER,
    add_json,
    add_no_progress,
    deprecated,
    epilog,
    error,
    error_line,
    install_hint,
    show_progress,
    write_json,
)
from edgeseg.errors import EdgesegError
from edgeseg.runtime.backends import BACKENDS

PROG = "edgeseg predict"

__all__ = ["collect_inputs", "input_names", "main"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SAVE_KINDS = ("mask", "overlay", "confidence", "json", "cvat", "labelstudio")
_PREANNOTATIONS = {"cvat": "cvat.zip", "labelstudio": "labelstudio"}
#: the file that marks an NG archive entry and the frame it holds (sinks/archive.py)
_ENTRY_RECORD = "record.json"
_ENTRY_ORIGINALS = ("original.jpg", "original.png")


def _archive_originals(folder: Path) -> list[Path]:
    """The original frames of the NG archive entries under ``folder`` (none: not an archive)."""
    out = []
    for rec in sorted(folder.rglob(_ENTRY_RECORD)):
        for name in _ENTRY_ORIGINALS:
            if (rec.parent / name).is_file():
                out.append(rec.parent / name)
                break
    return out


def collect_inputs(inputs: Sequence[str]) -> list[Path]:
    """Image files from files, folders (recursively, sorted) and glob patterns, in order,
    without duplicates. Raises EdgesegError naming an input that matches nothing."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = _archive_originals(p) or sorted(
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


def input_names(paths: list[Path]) -> list[str]:
    """Output base names: the file stem (an NG archive entry's folder name for its original
    frame), made unique with a counter on collisions."""
    names, used = [], {}
    for p in paths:
        stem = p.stem
        if p.name in _ENTRY_ORIGINALS and (p.parent / _ENTRY_RECORD).is_file():
            stem = p.parent.name
        n = used.get(stem, 0)
        used[stem] = n + 1
        names.append(stem if n == 0 else f"{stem}_{n}")
    return names


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Segment images with an exported model (.onnx) or a TensorRT engine. "
        "Writes per image NAME_mask.png (palette PNG of class indices), NAME_overlay.jpg, "
        "NAME_confidence.png (0..255 = 0..1) and NAME.json into --out, plus summary.json; "
        "cvat / labelstudio write the predictions as pre-annotations to correct in CVAT "
        "(OUT/cvat.zip, 'Segmentation mask 1.1') or Label Studio (OUT/labelstudio/). An NG "
        "archive folder as input gives the original frame of each entry.",
        epilog=epilog(
            "edgeseg predict model.onnx images/ --out preds",
            "edgeseg predict model.onnx 'shots/*.png' --out preds --save mask,confidence --json",
            "edgeseg predict model.onnx ng_archive/ --out pre --save cvat,labelstudio",
        ),
        formatter_class=HELP_FORMATTER,
    )
    ap.add_argument(
        "model",
        help="model.onnx, model.engine, or a starter model shipped with edgeseg "
        "(starter:defects, starter:objects; edgeseg info starter:NAME describes it)",
    )
    ap.add_argument("inputs", nargs="+", help="image files, folders (recursive) or globs")
    ap.add_argument("--out", help="output folder (required)")
    ap.add_argument(
        "-o",
        dest="out",
        metavar="DIR",
        action=deprecated(PROG, "-o", "--out DIR (-o/--output names a file)"),
        help=argparse.SUPPRESS,
    )
    ap.add_argument(
        "--save",
        type=_parse_save,
        default=["mask", "overlay", "json"],
        help=f"what to write per image, comma-separated from {','.join(SAVE_KINDS)} "
        "(default: mask,overlay,json)",
    )
    ap.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="inference backend (auto: TensorRT for .engine; for .onnx OpenVINO on an x86 CPU "
        "where installed, else ONNX Runtime)",
    )
    ap.add_argument("--threads", type=int, default=None, help="CPU inference threads")
    ap.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    ap.add_argument(
        "--show-confidence",
        choices=("off", "alpha", "heatmap"),
        default="off",
        help="draw the confidence in the overlay as transparency or as a heat map",
    )
    ap.add_argument("--tile", type=int, nargs=2, metavar=("H", "W"), help="tiled inference")
    ap.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels")
    add_no_progress(ap)
    add_json(ap, "the summary")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("the output folder is required: --out DIR")
    # checked before any image is read: a bad value would otherwise fail once per image
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha {args.alpha:g}: the overlay opacity must be within 0..1")
    try:
        import cv2
    except ImportError as e:
        error(PROG, f"{e}; {install_hint('camera')}")
        return EXIT_ERROR
    from tqdm import tqdm

    from edgeseg._limits import check_image_file
    from edgeseg.runtime.segmenter import Segmenter

    try:
        paths = collect_inputs(args.inputs)
        seg = Segmenter(
            args.model,
            backend=args.backend,
            threads=args.threads,
            confidence="confidence" in args.save
            or "labelstudio" in args.save
            or args.show_confidence != "off",
            tile=args.tile,
            overlap=args.overlap,
        )
    except EdgesegError as e:
        error(PROG, e)
        return EXIT_ERROR
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        error(PROG, f"cannot create --out {out}: {e}")
        return EXIT_ERROR
    writers = {}
    try:
        if any(k in _PREANNOTATIONS for k in args.save):
            from edgeseg.data.preannotate import open_writer

            for kind in (k for k in args.save if k in _PREANNOTATIONS):
                writers[kind] = open_writer(
                    kind, out / _PREANNOTATIONS[kind], seg.classes, Path(str(args.model)).name
                )
    except (EdgesegError, OSError) as e:
        error(PROG, f"cannot write pre-annotations into {out}: {e}")
        return EXIT_ERROR
    show = {"off": False, "alpha": "alpha", "heatmap": "heatmap"}[args.show_confidence]
    failures, totals = [], np.zeros(len(seg.classes), np.int64)
    names = input_names(paths)
    bar = tqdm(list(zip(paths, names)), desc="predict", unit="img", disable=not show_progress(args))
    for path, name in bar:
        try:
            check_image_file(path)  # the pixel budget, from the header
            try:
                frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            except cv2.error as e:  # OpenCV's own pixel limit (OpenCV 5 raises)
                raise EdgesegError(f"{path}: OpenCV cannot read it ({str(e).strip()})") from None
            if frame is None:
                raise EdgesegError(f"{path}: not a readable image (corrupt or unsupported)")
            res = seg.predict(frame)
            if not getattr(res, "valid", True):
                raise EdgesegError(
                    f"{path}: {res.invalid_reason}: the model's output for this image is "
                    "invalid, its mask cannot be trusted and was not written; the model "
                    "overflows or is broken (rebuild the engine in FP32 or re-export it)"
                )
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
            for w in writers.values():
                w.add(name, path, res.class_map, res.confidence)
        except (EdgesegError, OSError) as e:
            failures.append({"image": str(path), "error": str(e)})
            tqdm.write(error_line(PROG, e), file=sys.stderr)
    saved = {}
    for kind, w in writers.items():
        try:
            saved[kind] = str(w.close())
        except (EdgesegError, OSError) as e:
            failures.append({"image": str(out / _PREANNOTATIONS[kind]), "error": str(e)})
            error(PROG, f"cannot write {kind} pre-annotations: {e}")
    summary = {
        "model": str(args.model),
        "backend": seg.backend.describe(),
        "images": len(paths),
        "failed": failures,
        "counts": {c.name: int(n) for c, n in zip(seg.classes, totals)},
        **({"preannotations": saved} if saved else {}),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_json(args.json, summary)
    if args.json != "-":
        print(f"segmented {len(paths) - len(failures)}/{len(paths)} images into {out}")
    return EXIT_FINDINGS if failures else 0
