"""What feeding the Prometheus metrics costs the camera loop: the same run with and without
``telemetry=``, interleaved rounds in one process; prints medians and the ratio.

The segmenter is a stand-in that returns a ready result (a few microseconds), so the loop's
own work is all that is measured and the metrics' share is as large as it can be; with
``--model`` a real model runs instead (the share a station sees).

    .venv/bin/python tools/bench_telemetry.py --frames 2000 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid

import numpy as np

from edgeseg.camera import CameraLoop
from edgeseg.camera.frame import Frame, Source
from edgeseg.rules.verdict import Verdict
from edgeseg.runtime.result import ClassInfo, SegResult

CLASSES = [ClassInfo(0, 0, "background", (0, 0, 0)), ClassInfo(1, 1, "product", (0, 200, 0))]


class ReadySegmenter:
    """Returns one precomputed result with the timings a real segmenter reports."""

    classes = CLASSES

    def __init__(self, h: int, w: int) -> None:
        cm = np.zeros((h, w), np.uint8)
        cm[h // 4 : h // 2, w // 4 : w // 2] = 1
        counts = np.bincount(cm.reshape(-1), minlength=2).astype(np.int64)
        self._result = SegResult(
            cm,
            None,
            list(CLASSES),
            counts,
            timings={"preprocess": 0.4, "inference": 2.0, "postprocess": 0.3},
        )

    def predict(self, frame, rgb: bool = False) -> SegResult:
        return self._result


class RepeatSource(Source):
    """One ready image ``n`` times (a file-like source: capture never waits or drops)."""

    live = False

    def __init__(self, image: np.ndarray, n: int) -> None:
        self.uri, self.image, self.n, self.i = "bench://", image, n, 0

    def read(self, timeout=None):
        if self.i >= self.n:
            return None
        self.i += 1
        return Frame(self.image, self.i - 1, source=self.uri)


class Rules:
    """NG on every third frame (a verdict and a reason for the metrics to count)."""

    def __init__(self) -> None:
        self.n = 0

    def evaluate(self, result) -> Verdict:
        self.n += 1
        if self.n % 3:
            return Verdict(ok=True)
        detail = {"rule": "product", "class": "product", "ok": False}
        return Verdict(ok=False, reasons=["product: too large"], details=[detail])


def one_run(segmenter, frames: int, telemetry) -> tuple[float, float]:
    """Wall and CPU (all threads) seconds per frame of one run (open to close)."""
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    source = RepeatSource(image, frames)
    loop = CameraLoop(source, segmenter, rules=Rules(), telemetry=telemetry, drop="none")
    t0, c0 = time.perf_counter(), time.process_time()
    final = loop.run()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if final["frames"] != frames:
        raise RuntimeError(f"expected {frames} frames, got {final['frames']}")
    return dt / frames, dc / frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--model", help="a real model (.onnx) instead of the stand-in")
    args = ap.parse_args()
    from edgeseg.telemetry import Telemetry

    if args.model:
        from edgeseg.runtime import Segmenter

        segmenter = Segmenter(args.model)
    else:
        segmenter = ReadySegmenter(48, 64)
    one_run(segmenter, 50, None)  # warm-up: imports, first frames
    plain, fed = [], []
    for r in range(args.rounds):
        order = [(plain, None), (fed, Telemetry(f"bench-{uuid.uuid4().hex[:6]}"))]
        if r % 2:
            order.reverse()
        for out, tele in order:
            out.append(one_run(segmenter, args.frames, tele))
    print(
        f"camera loop, {args.frames} frames x {args.rounds} interleaved rounds, "
        f"{'model ' + args.model if args.model else 'stand-in segmenter'} (medians):"
    )
    for i, what in ((0, "wall"), (1, "CPU, all threads")):
        p = statistics.median(x[i] for x in plain)
        f = statistics.median(x[i] for x in fed)
        print(
            f"  {what:17s} without {p * 1e6:7.1f} us/frame, with telemetry {f * 1e6:7.1f} "
            f"us/frame: ratio {f / p:.3f} ({(f - p) * 1e6:+.1f} us/frame)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
