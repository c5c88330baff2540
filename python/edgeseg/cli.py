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


def _model_info(spec: str, as_json: bool) -> int:
    """``edgeseg info MODEL``: what a model file (or ``starter:NAME``) is and how it was made."""
    from edgeseg.errors import EdgesegError
    from edgeseg.runtime.model_info import load_model_info
    from edgeseg.starters import is_starter, starter_card

    try:
        mi = load_model_info(spec)
        card = starter_card(spec, verify=True) if is_starter(spec) else None
    except EdgesegError as e:
        _cli.error("edgeseg info", e)
        return _cli.EXIT_ERROR
    out = {
        "model": spec,
        "path": str(mi.path),
        "kind": mi.kind,
        "architecture": mi.model,
        "classes": mi.class_names,
        "input_size": list(mi.input_size),
        "mean": list(mi.mean),
        "std": list(mi.std),
        "channel_order": mi.channel_order,
    }
    if card is not None:
        out["starter"] = card
    _cli.write_json(as_json, out)
    if as_json == "-":
        return 0
    print(f"{spec}: {mi.kind} model {mi.model or '?'} at {mi.path}")
    print(f"  classes:      {', '.join(mi.class_names)}")
    print(f"  input:        {mi.input_size[0]}x{mi.input_size[1]} {mi.channel_order}")
    if card is not None:
        d, m = card["data"], card["metrics"]
        print(f"  description:  {card['description']}")
        count = d.get("train_images") or d.get("n") or d.get("n_train")
        print(
            f"  trained on:   {count} images ({d.get('size')}px, seed {d.get('seed')}; "
            f"{d.get('generator')}), data hash {d.get('data_hash')}"
        )
        print(f"  metrics:      val mIoU {m['val_miou']:.3f}, test mIoU {m['test_miou']:.3f}")
        print(f"  fine-tune:    edgeseg train --init {spec} --data YOUR_DATA --out RUN")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    if args.model:
        return _model_info(args.model, args.json)
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
    "station": (
        "edgeseg.station.cli",
        "run a station file: several cameras, one HTTP server (live view, REST), reload",
    ),
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
        help="what this build contains and which devices it sees; with MODEL, what a model is",
        epilog=_cli.epilog(
            "edgeseg info", "edgeseg info starter:defects", "edgeseg info model.onnx --json"
        ),
        formatter_class=_cli.HELP_FORMATTER,
    )
    p_info.add_argument(
        "model",
        nargs="?",
        help="a model (.onnx, .engine or starter:NAME) to describe instead of the build",
    )
    _cli.add_json(p_info, "the build or model information")
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
