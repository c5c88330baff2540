#!/usr/bin/env python3
"""Benchmark edgeseg's fused kernels against numpy+OpenCV and torch in one process.

Same as ``edgeseg bench``; see ``--help``. Example: ``python tools/bench_kernels.py --json``.
"""

import sys

from edgeseg.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
