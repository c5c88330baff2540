"""The ``edgeseg`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Optional

from edgeseg import _core


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
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(_version_text())
        print(f"  cuda device:  {reason}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from edgeseg import bench

    return bench.main(args.bench_args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgeseg import demo

    return demo.main(args.demo_args)


def _cmd_data(args: argparse.Namespace) -> int:
    from edgeseg.data import cli as data_cli

    return data_cli.main(args.data_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeseg",
        description="Semantic segmentation from labelled pixels to a live OK/NG verdict.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="print version and build info"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_info = sub.add_parser("info", help="what this build contains and which devices it sees")
    p_info.add_argument("--json", action="store_true", help="machine-readable output")
    p_info.set_defaults(func=_cmd_info)

    p_bench = sub.add_parser(
        "bench",
        help="benchmark the fused kernels against numpy+OpenCV and torch (see --help)",
        add_help=False,
    )
    p_bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    p_bench.set_defaults(func=_cmd_bench)

    p_demo = sub.add_parser(
        "demo", help="run the main job on synthetic data (see edgeseg demo --help)", add_help=False
    )
    p_demo.add_argument("demo_args", nargs=argparse.REMAINDER)
    p_demo.set_defaults(func=_cmd_demo)

    p_data = sub.add_parser(
        "data",
        help="datasets: label QA, synthetic data, conversion (see edgeseg data --help)",
        add_help=False,
    )
    p_data.add_argument("data_args", nargs=argparse.REMAINDER)
    p_data.set_defaults(func=_cmd_data)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse.REMAINDER leaves a leading option (`edgeseg data --help`) unparsed: hand it on.
    delegated = [k for k in ("bench_args", "demo_args", "data_args") if hasattr(args, k)]
    if extra and delegated:
        setattr(args, delegated[0], extra + getattr(args, delegated[0]))
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
