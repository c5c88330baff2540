"""``edgeseg export RUN_DIR_OR_CKPT -o model.onnx``: a trained model to one ONNX file.

Exit codes: 0 exported and torch↔ONNX Runtime parity within 1e-3; 1 exported but the parity
check failed; 2 the run, checkpoint or arguments could not be used.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Optional

from edgeseg._cli import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    HELP_FORMATTER,
    add_json,
    epilog,
    error,
    guarded,
    write_json,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeseg export",
        description="Export a trained model to one self-contained ONNX file (BatchNorm folded, "
        "input 'images' Nx3xHxW float32, output 'logits' NxCxHxW) with classes, colours, "
        "mean/std and input size embedded, then check it against torch with ONNX Runtime on "
        "validation images of the run's dataset.",
        epilog=epilog(
            "edgeseg export runs/defects -o model.onnx",
            "edgeseg export runs/defects/best.pt -o model.onnx --size 512 512 --dynamic-batch",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("model", help="run directory of edgeseg train, or its best.pt / last.pt")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size of the graph (default: the training size)",
    )
    p.add_argument(
        "--dynamic-batch", action="store_true", help="variable batch dimension (default: 1)"
    )
    p.add_argument(
        "--opset",
        type=int,
        default=17,
        help="ONNX opset (17: parsed by TensorRT 8.5/8.6 on JetPack 5 and TensorRT 10 on 6)",
    )
    p.add_argument(
        "--images",
        nargs="+",
        metavar="IMG",
        help="images for the parity check (default: the run's validation images)",
    )
    add_json(p, "the report")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.json == "-"

    def run():
        from edgeseg.export.onnx_export import export_onnx

        return export_onnx(
            args.model,
            args.output,
            size=args.size,
            dynamic_batch=args.dynamic_batch,
            opset=args.opset,
            images=args.images,
            log=None if quiet else print,
        )

    ok, report = guarded("edgeseg export", run, extra="train,export")
    if not ok:
        return EXIT_ERROR
    write_json(args.json, report)
    if not report["parity"]["within_tolerance"]:
        error(
            "edgeseg export",
            f"torch and ONNX Runtime disagree (max |dlogit| "
            f"{report['parity']['max_abs_diff']:.3g} >= 1e-3); the file was written but should "
            "not be deployed",
        )
        return EXIT_FINDINGS
    return 0
