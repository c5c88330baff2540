"""``edgeseg eval MODEL --data DATASET``: segmentation metrics of a trained model.

Exit codes: 0 done, 2 the model, dataset or arguments could not be used, 130 interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Optional

from edgeseg._cli import (
    EXIT_ERROR,
    HELP_FORMATTER,
    add_json,
    add_no_progress,
    epilog,
    guarded,
    show_progress,
    write_json,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeseg eval",
        description="Evaluate a trained model: mIoU, per-class IoU, pixel accuracy, Dice and "
        "boundary F1 on a dataset split.",
        epilog=epilog(
            "edgeseg eval runs/defects --data data/defects --split val",
            "edgeseg eval model.int8.onnx --data data/defects --json report.json",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument(
        "model",
        help="run directory of edgeseg train, its best.pt, or an exported .onnx (ONNX Runtime, "
        "CPU)",
    )
    p.add_argument("--data", required=True, help="dataset folder or .zip")
    p.add_argument("--split", default="val", help="train, val, test or all (default val)")
    add_json(p, "the report")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (.pt only)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "onnxruntime", "openvino"),
        help=".onnx only: the runtime (auto: OpenVINO on an x86 CPU where installed, else "
        "ONNX Runtime)",
    )
    p.add_argument("--threads", type=int, default=2, help=".onnx only: CPU threads (2)")
    p.add_argument("--batch", type=int, default=4, help="images per forward pass (4)")
    p.add_argument("--tolerance", type=int, default=2, help="boundary F1 tolerance in px (2)")
    add_no_progress(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def run():
        if args.model.lower().endswith(".onnx"):  # ONNX Runtime on the CPU, no torch needed
            from edgeseg.export.onnx_eval import evaluate_onnx as evaluate

            kw = {"backend": args.backend, "threads": args.threads}
        else:
            from edgeseg.train.evaluate import evaluate

            kw = {"device": args.device}
        return evaluate(
            args.model,
            args.data,
            None if args.split == "all" else args.split,
            batch=args.batch,
            tolerance=args.tolerance,
            progress=show_progress(args),
            **kw,
        )

    extra = "export" if args.model.lower().endswith(".onnx") else "train"
    ok, report = guarded("edgeseg eval", run, extra=extra)
    if not ok:
        return EXIT_ERROR
    write_json(args.json, report)
    if args.json == "-":
        return 0

    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"

    print(f"{report['model']} on {args.data} ({args.split}, {report['num_images']} images)")
    print(f"  mIoU            {fmt(report['miou'])}")
    print(f"  pixel accuracy  {fmt(report['pixel_accuracy'])}")
    print(f"  boundary F1     {fmt(report['boundary_f1'])} (±{args.tolerance} px)")
    for name, v in report["per_class_iou"].items():
        bf = report["per_class_boundary_f1"][name]
        print(f"  {name:<15} IoU {fmt(v)}  boundary F1 {fmt(bf)}")
    return 0
