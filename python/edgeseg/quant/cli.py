"""``edgeseg quantize model.onnx --data DATASET --precision fp16|int8 -o out.onnx``.

Exit codes: 0 quantized and within ``--max-drop``; 1 the gate failed (the model is not
written; ``quant_report.json`` says why); 2 the model, dataset or arguments could not be used.
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
        prog="edgeseg quantize",
        description="Quantize an exported model (edgeseg export) to FP16 or INT8 (explicit QDQ, "
        "per-channel weights, calibrated on the dataset's train split), then compare its mIoU "
        "with the float32 model on the val split. Nodes that lose the most accuracy are kept in "
        "float until the drop is within --max-drop; quant_report.json is written next to -o.",
        epilog=epilog(
            "edgeseg quantize model.onnx --data data/defects --precision int8 --target cpu "
            "-o model.int8.onnx",
            "edgeseg quantize model.onnx --data data/defects --target tensorrt -o model.trt8.onnx",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("model", help="float32 .onnx from edgeseg export")
    p.add_argument(
        "--data", required=True, help="dataset folder or .zip (train: calibration, val: gate)"
    )
    p.add_argument("-o", "--output", required=True, help="the quantized .onnx to write")
    p.add_argument("--precision", choices=("fp16", "int8"), default="int8")
    p.add_argument(
        "--target",
        choices=("cpu", "tensorrt"),
        default="cpu",
        help="int8 flavour: cpu = U8S8 for ONNX Runtime (x86, ARM); tensorrt = symmetric int8, "
        "float bias (default cpu)",
    )
    p.add_argument(
        "--all-int8",
        action="store_true",
        help="with --target cpu: quantize every node ONNX Runtime can run in int8, also the "
        "convolutions its CPU kernels run slower in int8 than in float32 (by default those, "
        "e.g. fewer than 16 output channels, stay float32; the report lists them)",
    )
    p.add_argument(
        "--cpu-isa",
        choices=["auto", "vnni", "no-vnni"],
        default="auto",
        help="with --target cpu: the CPU that will run the model. vnni (x86 with AVX512-VNNI "
        "or AVX-VNNI) runs every dense convolution faster in int8; without VNNI the small "
        "ones stay float32. auto (default): this machine's",
    )
    p.add_argument("--calib-images", type=int, default=200, help="calibration images (200)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax")
    p.add_argument(
        "--max-drop", type=float, default=1.0, help="largest mIoU loss accepted, in points (1.0)"
    )
    p.add_argument(
        "--max-float-nodes",
        type=int,
        default=8,
        help="most nodes the gate may keep in float before giving up (8)",
    )
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for eval/latency")
    add_json(p, "the report")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def run():
        from edgeseg.quant.quantize import quantize

        return quantize(
            args.model,
            args.data,
            args.output,
            precision=args.precision,
            target=args.target,
            calib_images=args.calib_images,
            calib_method=args.calib_method,
            max_drop=args.max_drop,
            max_float_nodes=args.max_float_nodes,
            threads=args.threads,
            all_int8=args.all_int8,
            cpu_isa=args.cpu_isa,
            log=None if args.json == "-" else print,
        )

    ok, report = guarded("edgeseg quantize", run, extra="quant")
    if not ok:
        return EXIT_ERROR
    write_json(args.json, report)
    if not report["passed"]:
        error("edgeseg quantize", report["reason"])
        return EXIT_FINDINGS
    return 0
