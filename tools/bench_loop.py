"""Camera-loop throughput against its slowest stage, and latency on a live source.

    python tools/bench_loop.py --model model.onnx [--size 640x480] [--frames 300] [--threads 2]
    python tools/bench_loop.py                     # trains + exports a small UNet first (torch)

Measures, on the same synthetic frames (``synthetic://``) in one process:

1. each stage alone: capture (source.read), inference (Segmenter.predict), sinks (JSON lines
   + every-10th-frame overlay PNG), as frames per second;
2. the peers' way: one thread doing read → predict → write in turn;
3. ``CameraLoop`` (drop="none", every frame): frames per second and the ratio to the slowest
   stage alone (target >= 0.95); then the same with inference replaced by the model's result
   at a fixed cost (``--fixed-ms``, sleeping like a GPU wait): the loop's own overhead, apart
   from the CPU the stages take from each other;
4. a live source paced at 90 % of the model's rate with ``drop="latest"``: capture-to-result
   latency p50/p99 and dropped frames.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeseg._platform import cpu_name
from edgeseg.camera import CameraLoop, open_source
from edgeseg.sinks import LoopItem, make_record, open_sink


def _small_model(out: Path, size: int) -> Path:
    """A small UNet trained for one epoch on 4 synthetic images and exported to ONNX (speed
    does not depend on how well it is trained)."""
    from edgeseg import data
    from edgeseg.export import export_onnx
    from edgeseg.train import TrainConfig, train

    ds = data.synth(out / "ds", "objects", n=4, size=size)
    cfg = TrainConfig(
        data=str(ds), out=str(out / "run"), size=size, crop=size, epochs=1, batch=2,
        workers=0, progress=False, model_kwargs={"width": 0.5},
    )  # fmt: skip
    train(cfg, log=lambda *a: None)
    path = out / "bench.onnx"
    export_onnx(out / "run", path, log=None)
    return path


STAGES = ("capture", "inference", "sinks")


def _round(seg, scene: str, n: int, tmp: Path) -> dict:
    """Frames per second of each stage alone, of one thread doing all, and of the loop."""
    src = open_source(f"{scene}&frames={n}")
    src.open()
    t = time.perf_counter()
    frames = [src.read() for _ in range(n)]
    out = {"capture": _rate(n, time.perf_counter() - t)}
    t = time.perf_counter()
    results = [seg.predict(f.image) for f in frames]
    out["inference"] = _rate(n, time.perf_counter() - t)
    items = [
        LoopItem(f, r, None, make_record(f, r, None, time.time())) for f, r in zip(frames, results)
    ]
    del frames, results
    sinks = _sinks(tmp, "alone")
    for s in sinks:
        s.open()
    t = time.perf_counter()
    for it in items:
        for s in sinks:
            s.write(it)
    for s in sinks:
        s.close()
    out["sinks"] = _rate(n, time.perf_counter() - t)
    del items

    src = open_source(f"{scene}&frames={n}")
    sinks = _sinks(tmp, "serial")
    src.open()
    for s in sinks:
        s.open()
    t = time.perf_counter()
    while (f := src.read()) is not None:
        r = seg.predict(f.image)
        it = LoopItem(f, r, None, make_record(f, r, None, time.time()))
        for s in sinks:
            s.write(it)
    for s in sinks:
        s.close()
    out["serial"] = _rate(n, time.perf_counter() - t)

    loop = CameraLoop(f"{scene}&frames={n}", seg, sinks=_sinks(tmp, "loop"), drop="none")
    st = loop.run()
    out["loop"] = st["frames"] / st["elapsed_s"]
    return out


def _machine() -> str:
    name = cpu_name(fallback=platform.processor() or "")
    return f"{platform.machine()} {name}, {os.cpu_count()} cpus".strip()


class _FixedCost:
    """The model's results at a fixed cost of ``ms`` per frame (sleeping, as a GPU or NPU
    inference would wait): measures the loop's own overhead apart from CPU contention."""

    def __init__(self, seg, ms: float) -> None:
        self.seg, self.s, self._cache = seg, ms / 1000.0, {}
        self.classes = seg.classes

    def predict(self, frame, rgb: bool = False):
        r = self._cache.get(frame.shape)
        if r is None:
            r = self._cache[frame.shape] = self.seg.predict(frame, rgb=rgb)
        time.sleep(self.s)
        return r


def _rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def _sinks(tmp: Path, tag: str) -> list:
    return [open_sink(f"jsonl:{tmp / f'{tag}.jsonl'}"), open_sink(f"images:{tmp / tag}?every=10")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", help="ONNX model (default: train + export a small UNet)")
    ap.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    ap.add_argument("--model-size", type=int, default=128, help="input size of the default model")
    ap.add_argument("--frames", type=int, default=150, help="frames per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="measurement rounds (medians)")
    ap.add_argument("--threads", type=int, default=None, help="inference threads")
    ap.add_argument("--fixed-ms", type=float, default=20.0, help="fixed-cost stand-in (ms)")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    from edgeseg.runtime import Segmenter

    tmp = Path(tempfile.mkdtemp(prefix="bench_loop_"))
    model = Path(args.model) if args.model else _small_model(tmp, args.model_size)
    seg = Segmenter(str(model), threads=args.threads)
    n = args.frames
    scene = f"synthetic://?size={args.size}&seed=0"
    src = open_source(f"{scene}&frames=8")
    src.open()
    for _ in range(8):
        seg.predict(src.read().image)  # warm-up

    # rounds of (stages alone, serial, loop) back to back; medians damp a busy machine
    rounds = [_round(seg, scene, n, tmp) for _ in range(args.rounds)]
    med = {k: float(np.median([r[k] for r in rounds])) for k in rounds[0]}
    ratios = [r["loop"] / min(r[s] for s in STAGES) for r in rounds]
    ratio = float(np.median(ratios))
    stages = {k: med[k] for k in STAGES}
    slowest = min(stages, key=stages.get)
    serial_fps, loop_fps = med["serial"], med["loop"]

    # the loop's own overhead: the same stages with inference at a fixed 20 ms (no CPU use)
    fixed = _FixedCost(seg, args.fixed_ms)
    frounds = [_round(fixed, scene, n, tmp) for _ in range(args.rounds)]
    fixed_ratios = [r["loop"] / min(r[s] for s in STAGES) for r in frounds]
    fmed = {k: float(np.median([r[k] for r in frounds])) for k in frounds[0]}

    # latency on a live source at 90 % of the slowest stage's rate
    pace = 0.9 * stages[slowest]
    m = max(40, int(pace * 5))
    live = CameraLoop(f"{scene}&frames={m}&fps={pace:.2f}", seg, sinks=_sinks(tmp, "live"))
    lst = live.run()

    out = {
        "machine": _machine(),
        "frame_size": args.size,
        "model": str(model) if args.model else f"small unet (width 0.5) {args.model_size}²",
        "frames": n,
        "stage_fps": {k: round(v, 1) for k, v in stages.items()},
        "slowest_stage": slowest,
        "serial_fps": round(serial_fps, 1),
        "loop_fps": round(loop_fps, 1),
        "rounds": args.rounds,
        "loop_vs_slowest_per_round": [round(x, 3) for x in ratios],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "inference_threads": args.threads,
        "loop_vs_slowest": round(ratio, 3),
        "loop_vs_serial": round(loop_fps / serial_fps, 3),
        "fixed_cost": {
            "inference_ms": args.fixed_ms,
            "stage_fps": {k: round(fmed[k], 1) for k in STAGES},
            "loop_fps": round(fmed["loop"], 1),
            "loop_vs_slowest": round(float(np.median(fixed_ratios)), 3),
            "loop_vs_slowest_per_round": [round(x, 3) for x in fixed_ratios],
        },
        "live": {
            "source_fps": round(pace, 1),
            "processed_fps": lst["fps_mean"],
            "latency_ms": lst["latency_ms"].get("total"),
            "dropped": lst["dropped"],
            "captured": lst["captured"],
        },
    }
    print(f"{out['machine']}; {args.size} frames, {out['model']}, {n} x {args.rounds} rounds")
    for k, v in stages.items():
        print(f"  {k:<10} alone {v:8.1f} fps{'   <- slowest' if k == slowest else ''}")
    print(f"  serial (one thread)  {serial_fps:8.1f} fps")
    print(
        f"  CameraLoop           {loop_fps:8.1f} fps = {ratio:.3f} x slowest stage "
        f"(median of {args.rounds} rounds), {out['loop_vs_serial']:.2f} x serial"
    )
    print(f"  per round: {out['loop_vs_slowest_per_round']}; load average {out['load_average']}")
    fc = out["fixed_cost"]
    print(
        f"  loop overhead, inference at a fixed {args.fixed_ms:g} ms: alone "
        f"{fc['stage_fps']['inference']:.1f} fps, CameraLoop {fc['loop_fps']:.1f} fps = "
        f"{fc['loop_vs_slowest']:.3f} x (per round {fc['loop_vs_slowest_per_round']})"
    )
    lat = out["live"]["latency_ms"] or {}
    print(
        f"  live {pace:.1f} fps, drop=latest: capture->result p50 {lat.get('p50')} ms, "
        f"p99 {lat.get('p99')} ms, processed {lst['fps_mean']:.1f} fps, "
        f"dropped {lst['dropped']}/{lst['captured']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
