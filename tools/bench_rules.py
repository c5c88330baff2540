"""Benchmark of ``Rules.evaluate`` on 1280×720 frames with three zones, against a naive per-rule
numpy baseline (full-frame masks per rule) run in the same process on the same frames.

    python tools/bench_rules.py [--frames 60] [--repeat 5] [--size 1280x720] [--threads 1] [--json]

Frames carry realistic defect masks: a large "label" region, thin scratches, round dents and
speckle noise, with a confidence map that is low at defect borders. The script checks that both
paths measure the same areas and blob counts, then prints milliseconds per frame: the median
and 90th percentile of the wall time and the median CPU time (the cost on an idle core).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import cv2
import numpy as np

from edgeseg.bench import machine_info, warm_allocator
from edgeseg.rules import Rules
from edgeseg.runtime.result import ClassInfo, SegResult

NAMES = ["background", "scratch", "dent", "label"]
COLORS = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
CLASSES = [ClassInfo(i, n, c, index=i) for i, (n, c) in enumerate(zip(NAMES, COLORS))]

RULES = {
    "px_per_mm": 8.0,
    "zones": {
        "seal": {"polygon": [[0.3, 0.2], [0.7, 0.2], [0.75, 0.5], [0.25, 0.5]], "normalized": True},
        "label": {
            "polygon": [[0.05, 0.55], [0.45, 0.55], [0.45, 0.95], [0.05, 0.95]],
            "normalized": True,
        },
        "cap": {
            "polygon": [[0.6, 0.6], [0.9, 0.55], [0.95, 0.9], [0.65, 0.95]],
            "normalized": True,
        },
    },
    "rules": [
        {
            "class": "scratch",
            "zone": "seal",
            "max_area_mm2": 0.5,
            "min_confidence": 0.6,
            "min_blob_area_px": 20,
        },
        {"class": "dent", "zone": "frame", "max_blobs": 0, "min_blob_area_px": 30},
        {"class": "label", "zone": "label", "min_area_px": 20000},
        {"class": "scratch", "zone": "cap", "max_area_px": 100},
        {"class": "dent", "zone": ["seal", "cap"], "max_area_mm2": 2.0},
    ],
}


def make_frames(n: int, height: int, width: int, seed: int = 0) -> list[SegResult]:
    """``n`` SegResults with a label region, scratches, dents, speckles and a confidence map."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        cm = np.zeros((height, width), np.uint8)
        x0, y0 = int(width * rng.uniform(0.06, 0.12)), int(height * rng.uniform(0.58, 0.65))
        cm[y0 : y0 + int(height * 0.28), x0 : x0 + int(width * 0.3)] = 3
        for _ in range(rng.integers(0, 4)):
            p = rng.uniform([0, 0], [width, height], size=(2, 2)).astype(np.int32)
            cv2.line(cm, tuple(map(int, p[0])), tuple(map(int, p[1])), 1, int(rng.integers(1, 4)))
        for _ in range(rng.integers(0, 3)):
            c = tuple(int(v) for v in rng.uniform([0, 0], [width, height]))
            cv2.circle(cm, c, int(rng.integers(3, 25)), 2, -1)
        speck = rng.random((height, width)) < 0.0005
        cm[speck] = rng.integers(1, 3, size=int(speck.sum()), dtype=np.uint8)
        conf = np.full((height, width), 0.95, np.float32)
        edges = cv2.morphologyEx(cm, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        conf[edges] = rng.uniform(0.3, 0.9, size=int(edges.sum())).astype(np.float32)
        counts = np.bincount(cm.reshape(-1), minlength=len(CLASSES))
        out.append(SegResult(cm, conf, CLASSES, counts))
    return out


class NaiveRules:
    """The baseline: every rule builds full-frame boolean masks with numpy and runs connected
    components on the whole frame (zone masks are rasterized once, like ours)."""

    def __init__(self, rules: Rules, height: int, width: int) -> None:
        self.rules = rules
        masks = rules.zone_masks(height, width)
        self.zone = {}
        for name, zm in masks.items():
            full = np.zeros((height, width), bool)
            full[zm.y0 : zm.y1, zm.x0 : zm.x1] = True if zm.mask is None else zm.mask.view(bool)
            self.zone[name] = full

    def measure(self, result: SegResult) -> list[tuple[int, int]]:
        out = []
        for chk in self.rules._checks:
            m = result.class_map == chk.indices[0]
            for i in chk.indices[1:]:
                m |= result.class_map == i
            m &= self.zone[chk.rule.zone]
            if chk.thr is not None:
                m &= result.confidence >= chk.thr
            blobs = None
            area = int(m.sum())
            if chk.blobs:
                _, _, stats, _ = cv2.connectedComponentsWithStats(
                    m.astype(np.uint8), connectivity=8
                )
                areas = stats[1:, cv2.CC_STAT_AREA]
                if chk.min_blob_px is not None:
                    areas = areas[areas >= chk.min_blob_px]
                area, blobs = int(areas.sum()), len(areas)
            out.append((area, blobs))
        return out


def _times_ms(fn, frames, repeat: int) -> dict:
    """Median and 90th percentile of the wall time, and median CPU time of the process, in ms
    per frame over every frame, ``repeat`` times. On a shared machine the CPU time is what a
    frame costs on an idle core; the wall time adds waiting for a core."""
    wall, cpu = [], []
    for _ in range(repeat):
        for f in frames:
            t, c = time.perf_counter(), time.process_time()
            fn(f)
            cpu.append((time.process_time() - c) * 1000.0)
            wall.append((time.perf_counter() - t) * 1000.0)
    return {
        "median": statistics.median(wall),
        "p90": statistics.quantiles(wall, n=10)[-1],
        "cpu": statistics.median(cpu),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (default 1)")
    ap.add_argument(
        "--cold-allocator",
        action="store_true",
        help="leave glibc's allocator as a fresh process has it (default: warm, as in a loop)",
    )
    args = ap.parse_args()
    allocator = "default" if args.cold_allocator else warm_allocator()
    cv2.setNumThreads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))

    frames = make_frames(args.frames, height, width)
    rules = Rules.from_dict(RULES, classes=CLASSES, source="bench")
    naive = NaiveRules(rules, height, width)
    ng = 0
    for f in frames:
        v = rules.evaluate(f)
        ng += not v.ok
        ours = [(d["area_px"], d["blobs"]) for d in v.details]
        if ours != naive.measure(f):
            raise SystemExit(f"mismatch: ours {ours} vs naive {naive.measure(f)}")

    time.sleep(0.5)  # let no thread pool spin from the check above
    ours = _times_ms(rules.evaluate, frames, args.repeat)
    time.sleep(0.5)
    base = _times_ms(naive.measure, frames, args.repeat)
    fresh = Rules.from_dict(RULES, classes=CLASSES, source="bench")
    t = time.perf_counter()
    fresh.evaluate(frames[0])
    t_first = (time.perf_counter() - t) * 1000.0
    info = {
        "size": f"{width}x{height}",
        "zones": len(rules.zones) - 1,
        "rules": len(rules),
        "frames": len(frames),
        "ng_frames": ng,
        "ours_ms": round(ours["median"], 3),
        "ours_p90_ms": round(ours["p90"], 3),
        "ours_cpu_ms": round(ours["cpu"], 3),
        "naive_ms": round(base["median"], 3),
        "naive_p90_ms": round(base["p90"], 3),
        "naive_cpu_ms": round(base["cpu"], 3),
        "speedup": round(base["median"] / ours["median"], 2),
        "speedup_cpu": round(base["cpu"] / ours["cpu"], 2),
        "first_call_ms": round(t_first, 3),
        "machine": machine_info(cv2.getNumThreads()),
        "opencv": cv2.__version__,
        "allocator": allocator,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(info))
        return
    print(
        f"{info['size']}, {info['zones']} zones + frame, {info['rules']} rules, "
        f"{len(frames)} frames ({ng} NG); areas and blobs agree with the baseline"
    )
    print(f"{'path':<32}{'median ms':>11}{'p90 ms':>9}{'CPU ms':>9}")
    for label, r in (("Rules.evaluate (edgeseg)", ours), ("naive per-rule numpy + cv2 CC", base)):
        print(f"{label:<32}{r['median']:>11.3f}{r['p90']:>9.3f}{r['cpu']:>9.3f}")
    m = info["machine"]
    print(
        f"speed-up {info['speedup']}x (CPU time {info['speedup_cpu']}x); "
        f"first call (rasterizes the zones) {t_first:.3f} ms\n"
        f"machine: {m['cpu']}, {m['cores']} cores, cv2 threads {m['threads']}, OpenCV "
        f"{info['opencv']}, numpy {m['numpy']}, allocator {allocator}, "
        f"load average {info['loadavg_1m']}"
    )


if __name__ == "__main__":
    main()
