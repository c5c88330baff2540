"""``edgeseg demo``: the main job on an embedded default (CPU, synthetic data).

For now it synthesizes a labelled inspection dataset and checks its labels (the data layer), then
shows the fused kernels end to end on a synthetic inspection frame: a metal part on a conveyor
with a scratch and a dent. Logits are simulated at 1/8 resolution from the known
ground truth (no model is trained yet); the fused postprocess turns them into a class map,
per-pixel confidence, an overlay and class counts. Then the kernel benchmark table is printed.
Later stages (dataset, training, export, quantization, camera loop) extend this command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg import kernels
from edgeseg.errors import EdgesegError

CLASSES = [
    ("background", (40, 40, 40)),
    ("part", (200, 160, 60)),
    ("scratch", (0, 0, 255)),
    ("dent", (255, 0, 255)),
]


def synth_scene(height: int = 720, width: int = 1280, seed: int = 7):
    """A BGR frame and its ground-truth class map (0 bg, 1 part, 2 scratch, 3 dent)."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    belt = 60 + 25 * np.sin(xx / 9.0) * (np.sin(yy / 37.0) > 0.6)
    frame = np.repeat(belt[..., None], 3, axis=2)
    gt = np.zeros((height, width), np.uint8)

    part = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = int(width * 0.22), int(height * 0.2), int(width * 0.78), int(height * 0.8)
    cv2.rectangle(part, (x0, y0), (x1, y1), 1, -1)
    cv2.circle(part, (int(width * 0.5), int(height * 0.5)), int(height * 0.12), 0, -1)  # bore
    metal = 150 + 60 * (xx - x0) / max(1, x1 - x0) + 10 * np.sin(yy / 3.0)
    frame[part == 1] = np.stack([metal, metal * 0.97, metal * 0.92], axis=-1)[part == 1]
    gt[part == 1] = 1

    scratch = np.zeros_like(part)
    cv2.line(
        scratch, (int(width * 0.3), int(height * 0.3)), (int(width * 0.45), int(height * 0.7)), 1, 5
    )
    scratch &= part
    frame[scratch == 1] = (70, 70, 75)
    gt[scratch == 1] = 2

    dent = np.zeros_like(part)
    cv2.ellipse(dent, (int(width * 0.66), int(height * 0.62)), (38, 22), 30, 0, 360, 1, -1)
    dent &= part
    frame[dent == 1] = frame[dent == 1] * 0.55
    gt[dent == 1] = 3

    frame += rng.normal(0, 6, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8), gt


def simulated_logits(gt: np.ndarray, num_classes: int, stride: int = 8, seed: int = 3):
    """Logits a segmentation network might emit at 1/stride resolution: a blurred one-hot of
    the ground truth scaled to logit range, plus noise."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = gt.shape[0] // stride, gt.shape[1] // stride
    onehot = (gt[None] == np.arange(num_classes)[:, None, None]).astype(np.float32)
    small = np.stack([cv2.resize(ch, (w, h), interpolation=cv2.INTER_AREA) for ch in onehot])
    return (8.0 * small - 4.0 + rng.normal(0, 0.8, small.shape)).astype(np.float32)


def confidence_heatmap(confidence: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.applyColorMap((confidence * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)


def run_dataset_step(out_dir: Path, n: int) -> dict:
    """Synthesizes a defect dataset under out_dir/dataset and runs label QA on it."""
    from edgeseg import data

    ds_dir = data.synth(out_dir / "dataset", task="defects", n=n, size=256, seed=0, overwrite=True)
    report = data.check(ds_dir, workers=1, progress=False)
    (out_dir / "qa.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"      {report['num_images']} images, classes "
        f"{', '.join(c['name'] for c in report['classes'])}; "
        f"QA: {len(report['errors'])} errors, {len(report['warnings'])} warnings",
        flush=True,
    )
    return report


def run_demo(
    out_dir: Path, bench: bool = True, quick: bool = False, dataset_size: int = 40
) -> dict:
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - cv2 is in the dev extra
        raise EdgesegError(
            "edgeseg demo needs OpenCV for image files: pip install opencv-python-headless "
            "(on a Jetson, use JetPack's python3-opencv)"
        ) from e

    out_dir.mkdir(parents=True, exist_ok=True)
    steps = 5 if bench else 4
    print(
        f"[1/{steps}] synthesizing a labelled defect dataset ({dataset_size} images) and "
        "checking its labels ...",
        flush=True,
    )
    qa = run_dataset_step(out_dir, dataset_size)
    print(f"[2/{steps}] synthesizing an inspection frame (part, scratch, dent) ...", flush=True)
    frame, gt = synth_scene()
    palette = np.array([c for _, c in CLASSES], np.uint8)  # BGR, like the frame
    names = [n for n, _ in CLASSES]

    print(
        f"[3/{steps}] fused preprocess (1280x720 BGR -> 1x3x512x512 RGB, letterbox) ...", flush=True
    )
    t0 = time.perf_counter()
    blob = kernels.preprocess(frame, (512, 512), letterbox=True)
    pre_ms = (time.perf_counter() - t0) * 1e3

    print(
        f"[4/{steps}] fused postprocess (logits 4x90x160 -> 720x1280 class map, confidence, "
        "overlay, counts) ...",
        flush=True,
    )
    logits = simulated_logits(gt, len(CLASSES))
    kernels.postprocess(logits, frame=frame, palette=palette)  # warm-up
    t0 = time.perf_counter()
    res = kernels.postprocess(logits, frame=frame, palette=palette, alpha=0.5, ignore=[0])
    post_ms = (time.perf_counter() - t0) * 1e3
    accuracy = float((res.class_map == gt).mean())

    cv2.imwrite(str(out_dir / "frame.png"), frame)
    cv2.imwrite(str(out_dir / "overlay.png"), res.overlay)
    cv2.imwrite(str(out_dir / "confidence.png"), confidence_heatmap(res.confidence))
    total = int(res.counts.sum())
    summary = {
        "frame": list(frame.shape),
        "blob": list(blob.shape),
        "letterbox": repr(blob.letterbox),
        "preprocess_ms": round(pre_ms, 3),
        "postprocess_ms": round(post_ms, 3),
        "pixel_accuracy_vs_ground_truth": round(accuracy, 4),
        "mean_confidence": round(float(res.confidence.mean()), 4),
        "classes": {
            n: {"pixels": int(c), "area_fraction": round(int(c) / total, 5)}
            for n, c in zip(names, res.counts)
        },
        "dataset": {
            "path": "dataset",
            "num_images": qa["num_images"],
            "qa_errors": len(qa["errors"]),
            "qa_warnings": len(qa["warnings"]),
        },
        "files": ["dataset/", "qa.json", "frame.png", "overlay.png", "confidence.png"],
    }
    for n, v in summary["classes"].items():
        print(f"      {n:<11} {v['pixels']:>8} px  {100 * v['area_fraction']:6.2f} %")
    print(
        f"      pixel accuracy vs ground truth {accuracy:.4f}; preprocess {pre_ms:.2f} ms, "
        f"postprocess {post_ms:.2f} ms",
        flush=True,
    )

    if bench:
        from edgeseg import bench as bench_mod

        print(
            f"[5/{steps}] benchmarking the fused kernels against numpy+OpenCV and torch ...",
            flush=True,
        )
        report, _ = bench_mod.run(["--quick"] if quick else [])
        table = bench_mod.format_table(report)
        (out_dir / "bench.md").write_text(table + "\n")
        summary["files"].append("bench.md")
        print(table)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {', '.join(summary['files'])} and summary.json to {out_dir}/")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="edgeseg demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--no-bench", action="store_true", help="skip the benchmark table")
    parser.add_argument("--quick", action="store_true", help="fewer benchmark repeats")
    args = parser.parse_args(argv)
    try:
        run_demo(Path(args.out), bench=not args.no_bench, quick=args.quick)
    except EdgesegError as e:
        print(f"edgeseg demo: {e}", file=sys.stderr)
        return 1
    return 0
