"""``edgeseg build model.onnx --precision fp16|int8|best [--dla CORE] [--workspace MB]
[--timing-cache FILE] -o model.engine``.

Exit codes: 0 built (engine and ``model.engine.json`` written); 2 the model, the arguments or
the TensorRT install could not be used (the message says what to change or install).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Optional

from edgeseg._cli import EXIT_ERROR, HELP_FORMATTER, add_json, epilog, guarded, write_json


def build_parser() -> argparse.ArgumentParser:
    from edgeseg.engine.builder import PRECISIONS

    p = argparse.ArgumentParser(
        prog="edgeseg build",
        description="Build a TensorRT engine from an exported (or quantized) ONNX model with the "
        "TensorRT Python API, and write a manifest (-o + .json) with the TensorRT version, GPU, "
        "compute capability, precision, I/O, the ONNX's sha256, classes and preprocessing. "
        "INT8 is built from the Q/DQ model of `edgeseg quantize --target tensorrt`.",
        epilog=epilog(
            "edgeseg build model.onnx --precision fp16 -o model.engine",
            "edgeseg build model.int8.onnx --precision int8 --dla 0 -o model.dla.engine",
        ),
        formatter_class=HELP_FORMATTER,
    )
    p.add_argument("model", help=".onnx from edgeseg export or edgeseg quantize")
    p.add_argument("-o", "--output", required=True, help="the engine file to write")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16", help="(default fp16)")
    p.add_argument("--dla", type=int, default=None, metavar="CORE", help="DLA core (GPU fallback)")
    p.add_argument("--workspace", type=int, default=None, metavar="MB", help="workspace limit")
    p.add_argument("--timing-cache", default=None, metavar="FILE", help="read and written")
    p.add_argument(
        "--max-batch", type=int, default=1, help="profile max batch of a dynamic-batch ONNX (1)"
    )
    add_json(p, "the manifest")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    def run():
        from edgeseg.engine.builder import build_engine

        return build_engine(
            args.model,
            args.output,
            precision=args.precision,
            dla=args.dla,
            workspace_mb=args.workspace,
            timing_cache=args.timing_cache,
            max_batch=args.max_batch,
            log=None if args.json == "-" else print,
        )

    ok, manifest = guarded("edgeseg build", run)
    if not ok:
        return EXIT_ERROR
    write_json(args.json, manifest)
    return 0
