"""The ``edgeseg`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Optional

from edgeseg import _cli, _core


def _version_text() -> str:
    info = _core.build_info()
    trt = info["tensorrt"] or "no"
    cuda = f"yes (sm {', '.join(str(a) for a in info['cuda_archs'])})" if info["cuda"] else "no"
    return (
        f"edgeseg {info['version']}\n"
        f"  cuda kernels: {cuda}\n"
        f"  tensorrt:     {trt}\n"
        f"  cpu simd:     {info['simd']}\n"
        f"  threads:      {info['threads']}\n"
        f"  compiler:     {info['compiler']}\n"
        f"  build_info:   {json.dumps(info)}"
    )


class _VersionAction(argparse.Action):
    """Prints the multi-line build summary verbatim (argparse's version action rewraps it)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit(0)


def _cmd_info(args: argparse.Namespace) -> int:
    info = dict(_core.build_info())
    ok, reason = _core.cuda_available()
    info["cuda_device"] = reason if ok else None
    info["cuda_unavailable_reason"] = None if ok else reason
    from edgeseg.runtime.backends import auto_choice
    from edgeseg.runtime.openvino_backend import openvino_version

    name, why = auto_choice("onnx", 0)
    info["openvino"] = openvino_version()
    info["onnx_backend"] = {"backend": name, "reason": why}
    _cli.write_json(args.json, info)
    if args.json != "-":
        print(_version_text())
        print(f"  cuda device:  {reason}")
        print(f"  openvino:     {info['openvino'] or 'not installed'}")
        print(f"  .onnx models: {name} ({why})")
    return 0


# Subcommands with their own argument parsers: `edgeseg NAME ARGS...` calls MODULE.main(ARGS).
# (argparse's REMAINDER cannot forward arguments that start with "--", so they bypass it.)
DELEGATED = {
    "bench": ("edgeseg.bench", "benchmark the fused kernels against numpy+OpenCV and torch"),
    "demo": ("edgeseg.demo", "run the main job on synthetic data"),
    "data": ("edgeseg.data.cli", "datasets: label QA, synthetic data, conversion"),
    "train": ("edgeseg.train.cli", "train a segmentation model on a dataset (torch)"),
    "eval": ("edgeseg.eval_cli", "mIoU, per-class IoU, boundary F1 of a trained model"),
    "export": ("edgeseg.export.cli", "export a trained model to ONNX with its metadata (torch)"),
    "quantize": (
        "edgeseg.quant.cli",
        "FP16 / INT8 quantization of an ONNX model with an mIoU gate",
    ),
    "build": ("edgeseg.engine.cli", "build a TensorRT engine (+ manifest) from an ONNX model"),
    "cameras": ("edgeseg.camera.cameras_cli", "list GenICam (GigE/USB3 Vision) cameras, features"),
    "predict": ("edgeseg.runtime.cli", "segment image files: masks, overlays, confidence, JSON"),
    "run": ("edgeseg.camera.cli", "run a model on a camera/stream/video, results to sinks"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeseg",
        description="Semantic segmentation from labelled pixels to a live OK/NG verdict.",
        epilog=_cli.epilog(
            "edgeseg data synth data/defects && edgeseg train --data data/defects --out runs/d",
            "edgeseg export runs/d -o model.onnx && edgeseg predict model.onnx images/ --out preds",
            "edgeseg run model.onnx --source rtsp://cam/stream --rules rules.yaml --sink jsonl:-",
            extra="The model is the first argument of every command that takes one; -o/--output "
            "names a file,\n--out a folder; --json [FILE] and --no-progress mean the same "
            "everywhere.",
        ),
        formatter_class=_cli.HELP_FORMATTER,
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="print version and build info"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_info = sub.add_parser(
        "info",
        help="what this build contains and which devices it sees",
        epilog=_cli.epilog("edgeseg info", "edgeseg info --json"),
        formatter_class=_cli.HELP_FORMATTER,
    )
    _cli.add_json(p_info, "the build information")
    p_info.set_defaults(func=_cmd_info)

    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=f"{text} (edgeseg {name} --help)", add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        module = importlib.import_module(DELEGATED[argv[0]][0])
        try:
            return int(module.main(argv[1:]) or 0)
        except KeyboardInterrupt:
            _cli.error(f"edgeseg {argv[0]}", "interrupted")
            return _cli.EXIT_INTERRUPTED
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _cli.error("edgeseg", "interrupted")
        return _cli.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
