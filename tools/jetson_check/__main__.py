"""Command line of the Jetson portability check: ``python tools/jetson_check [--only NAME]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

if __package__ in (None, ""):
    # Run as `python tools/jetson_check`: make the package importable by its name.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jetson_check import __doc__ as PACKAGE_DOC  # noqa: E402
from jetson_check.aarch64 import check_aarch64  # noqa: E402
from jetson_check.common import ROOT, CheckError, log  # noqa: E402
from jetson_check.cuda import check_cuda12, check_cuda13  # noqa: E402

CHECKS = {"aarch64": check_aarch64, "cuda12": check_cuda12, "cuda13": check_cuda13}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/jetson_check", description=PACKAGE_DOC.split("\n\n")[0]
    )
    parser.add_argument(
        "--only",
        choices=sorted(CHECKS),
        action="append",
        help="run only this check (repeatable); default: all",
    )
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=ROOT / "build",
        help="where builds and caches live (default: build/)",
    )
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    failed = []
    for name in args.only or list(CHECKS):
        try:
            CHECKS[name](args.build_dir.resolve())
        except CheckError as e:
            log(f"[{name}] FAILED: {e}")
            failed.append(name)
    elapsed = time.monotonic() - t0
    if failed:
        log(f"jetson-check: FAILED ({', '.join(failed)}) in {elapsed:.0f}s")
        return 1
    log(f"jetson-check: all passed in {elapsed:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
