"""Per-frame overhead of the runtime: everything but the backend's own inference.

    python tools/bench_runtime.py [--run RUN_DIR] [--sizes 256 512] [--frame 1280x720]

Exports the default model (``--run``, or the default architecture trained for one epoch on 16
synthetic ``defects`` images: weights do not change the timings) at each size, then runs
in one process, on the same 1280×720 BGR frames, with ONNX Runtime on the CPU (``--threads``):

- ``inference``: ``session.run`` on a ready blob (the backend's own time);
- ``edgeseg``: ``Segmenter.predict`` — fused C++ preprocess, ORT with I/O binding, fused
  postprocess (class map + confidence + counts at frame size);
- ``numpy+OpenCV``: the usual Python pipeline (cvtColor, cv2.resize, normalize, transpose,
  ``session.run``, per-channel cv2.resize of the logits, argmax, softmax max, bincount).

Overhead = pipeline − inference, as a share of inference (target: ≤ 15 % at 256²); also
against ``session.run`` alone on a ready blob with ONNX Runtime's default options, so an
inference slowed by our session settings cannot hide overhead.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _overhead(fn, runs: int) -> tuple[float, float]:
    """Median (wall ms, inference ms) of ``fn() -> inference ms`` over ``runs`` calls."""
    for _ in range(3):
        fn()
    walls, infs = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        inf = fn()
        walls.append((time.perf_counter() - t0) * 1000.0)
        infs.append(inf)
    return statistics.median(walls), statistics.median(infs)


def _default_run(out: Path) -> Path:
    from edgeseg import data
    from edgeseg.train import TrainConfig, train

    ds = data.synth(out / "ds", task="defects", n=16, size=256, seed=0)
    run = out / "run"
    train(
        TrainConfig(data=str(ds), out=str(run), epochs=1, workers=0, progress=False),
        log=lambda *a: None,
    )
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--run", help="a trained run directory (default: train the default model briefly)"
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--frame", default="1280x720", help="camera frame WxH")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=120, help="timed calls per path (all rounds)")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds per path")
    args = ap.parse_args(argv)
    import cv2
    import onnxruntime as ort

    from edgeseg import kernels
    from edgeseg.export import export_onnx
    from edgeseg.runtime import Segmenter

    fw, fh = (int(v) for v in args.frame.lower().split("x"))
    kernels.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="edgeseg_bench_runtime_"))
    run = Path(args.run) if args.run else _default_run(tmp)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (fh // 8, fw // 8, 3), dtype=np.uint8)
    frame = cv2.resize(base, (fw, fh), interpolation=cv2.INTER_CUBIC)
    rows = []
    for s in args.sizes:
        path = tmp / f"model{s}.onnx"
        export_onnx(run, path, size=(s, s), log=None)
        seg = Segmenter(path, threads=args.threads)
        info = seg.info
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        mean = np.array(info.mean, np.float32)
        std = np.array(info.std, np.float32)

        def peer(s=s, mean=mean, std=std, sess=sess, name=name) -> float:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            x = cv2.resize(rgb, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            x = (x / 255.0 - mean) / std
            b = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
            t0 = time.perf_counter()
            lg = sess.run(None, {name: b})[0][0]
            inf = (time.perf_counter() - t0) * 1000.0
            up = np.stack([cv2.resize(c, (fw, fh), interpolation=cv2.INTER_LINEAR) for c in lg])
            cm = up.argmax(0).astype(np.uint8)
            e = np.exp(up - up.max(0, keepdims=True))
            (e / e.sum(0, keepdims=True)).max(0)
            np.bincount(cm.ravel(), minlength=lg.shape[0])
            return inf

        def ours(seg=seg) -> float:
            return seg.predict(frame).timings["inference"]

        blob = np.zeros((1, 3, s, s), np.float32)

        def alone(sess=sess, name=name, blob=blob) -> float:
            t0 = time.perf_counter()
            sess.run(None, {name: blob})
            return (time.perf_counter() - t0) * 1000.0

        # Interleaved rounds so that machine noise hits both alike; the overhead of each is
        # its wall time minus its own inference time in the same calls.
        o_rounds, p_rounds, a_rounds = [], [], []
        per_round = max(1, args.runs // args.rounds)
        for _ in range(args.rounds):
            o_rounds.append(_overhead(ours, per_round))
            p_rounds.append(_overhead(peer, per_round))
            a_rounds.append(_overhead(alone, per_round))
        o_wall, o_inf = (statistics.median(r[i] for r in o_rounds) for i in (0, 1))
        p_wall, p_inf = (statistics.median(r[i] for r in p_rounds) for i in (0, 1))
        a_inf = statistics.median(r[0] for r in a_rounds)
        rows.append((s, o_wall, o_inf, p_wall, p_inf, a_inf))
    cpu = platform.processor() or platform.machine()
    load = Path("/proc/loadavg").read_text().split()[0]
    print(
        f"runtime overhead, ONNX Runtime CPU {args.threads} threads, {fw}x{fh} BGR frame -> "
        f"class map + confidence + counts; median ms; {cpu}; load average {load}"
    )
    print(
        "| input | edgeseg total | its inference | overhead | vs ORT alone | numpy+OpenCV "
        "total | its inference | overhead | edgeseg overhead vs peer |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s, ow, oi, pw, pi, ai in rows:
        o, p, a = ow - oi, pw - pi, ow - ai
        print(
            f"| {s}² | {ow:.2f} | {oi:.2f} | {o:.2f} ({100 * o / oi:.1f} %) | {ai:.2f}: "
            f"{a:.2f} ({100 * a / ai:.1f} %) | {pw:.2f} | {pi:.2f} | {p:.2f} "
            f"({100 * p / pi:.1f} %) | {p / max(o, 1e-6):.1f}× smaller |"
        )
    print(
        "vs ORT alone: edgeseg total minus session.run on a ready blob with ONNX Runtime's "
        "default session options (catches inference slowed by our session settings)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
