"""ONNX Runtime vs OpenVINO (vs ONNX Runtime's OpenVINO execution provider where installed) on
the default model, FP32 and INT8 QDQ, at 256² and 512², quiet and beside a CPU hog; then the
camera loop's frames per second on each engine.

    python tools/bench_engines.py [--run RUN_DIR] [--data DATASET] [--out DIR]
        [--threads 2] [--rounds 6] [--runs 15] [--ep-python /path/to/venv/bin/python]

Without ``--run`` the default model is trained on the synthetic ``defects`` set at 256² for
``--minutes`` (speed does not depend on how well it is trained; the mIoU columns do). Each size
is exported (batch 1) and quantized with ``edgeseg quantize --target cpu`` (QDQ, the plan for
this CPU). The engines run the same preprocessed blob, ``threads`` threads, in interleaved
rounds in one process: every round times each (model, engine) pair for ``--runs`` runs, and
rounds alternate between quiet and with a CPU hog (a second process spinning on one core),
so load from other processes falls on all alike. Medians are printed with the ratios, the
CPU and the load average. ONNX Runtime's OpenVINO execution provider (the
``onnxruntime-openvino`` wheel replaces ``onnxruntime``, so it lives in a venv of its own)
runs in a worker process started with ``--ep-python`` and takes its turn in the same rounds.

The loop part runs :class:`edgeseg.camera.CameraLoop` on synthetic 256² frames (the demo's
frame size) with the overlay and the JSON-lines + image sinks of ``tools/bench_loop.py``,
per engine: the loop's frames per second, ``Segmenter.predict`` alone, and the ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeseg import data
from edgeseg._platform import cpu_name

_WORKER = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
threads = int(sys.argv[1])
sessions = {}
print(json.dumps({"version": ort.__version__, "providers": ort.get_available_providers()}),
      flush=True)
for line in sys.stdin:
    req = json.loads(line)
    path = req["model"]
    if path not in sessions:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        s = ort.InferenceSession(path, so, providers=[
            ("OpenVINOExecutionProvider", {"device_type": "CPU", "num_of_threads": threads}),
            "CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal(
            [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape]).astype(np.float32)
        sessions[path] = (s, s.get_inputs()[0].name, x)
        s.run(None, {sessions[path][1]: x})
    s, name, x = sessions[path]
    times = []
    for _ in range(req["runs"]):
        t = time.perf_counter(); s.run(None, {name: x}); times.append(time.perf_counter() - t)
    print(json.dumps(times), flush=True)
"""


class _EpWorker:
    """ONNX Runtime with the OpenVINO EP in another interpreter, driven over stdin/stdout."""

    def __init__(self, python: str, threads: int) -> None:
        self.p = subprocess.Popen(
            [python, "-c", _WORKER, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = json.loads(self.p.stdout.readline())
        if "OpenVINOExecutionProvider" not in hello["providers"]:
            self.close()
            raise RuntimeError(f"{python}: onnxruntime there has no OpenVINO EP: {hello}")
        self.version = hello["version"]

    def times(self, model: Path, runs: int) -> list:
        self.p.stdin.write(json.dumps({"model": str(model), "runs": runs}) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(10)


def _hog() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _stop(p: subprocess.Popen) -> None:
    p.terminate()
    p.wait(10)


def _models(args, out: Path) -> tuple[dict, dict]:
    """{(size, precision): path}, {(size, precision): val mIoU by ONNX Runtime}."""
    ds = args.data
    run = args.run
    if run and not ds:
        import yaml

        ds = (yaml.safe_load((Path(run) / "config.yaml").read_text()) or {}).get("data")
    if not ds:
        ds = out / "defects256"
        if not (ds / "images").exists():
            data.synth(ds, task="defects", n=120, size=256, seed=0)
    if not run:
        from edgeseg.train import cli as train_cli

        run = out / "run"
        if not (run / "best.pt").exists():
            rc = train_cli.main(
                ["--data", str(ds), "--out", str(run), "--time-limit", str(args.minutes)]
                + ["--no-progress"]
            )
            if rc:
                raise SystemExit(rc)
    from edgeseg.export import export_onnx
    from edgeseg.quant import quantize

    paths, miou = {}, {}
    for s in args.sizes:
        fp32 = out / f"{s}" / "model.onnx"
        if not fp32.exists():
            export_onnx(run, fp32, size=(s, s), log=None)
        i8 = out / f"{s}" / "model.int8.onnx"
        rep = out / f"{s}" / "quant_report.json"
        if not i8.exists() or not rep.exists():
            quantize(fp32, ds, i8, target="cpu", calib_images=args.calib_images,
                     threads=args.threads, latency_runs=3, max_drop=100.0, log=None)  # fmt: skip
        r = json.loads(rep.read_text())
        paths[(s, "fp32")], paths[(s, "int8")] = fp32, i8
        miou[(s, "fp32")], miou[(s, "int8")] = r["fp32"]["miou"], r["quantized"]["miou"]
    args.dataset = ds
    return paths, miou


def _ov_miou(paths: dict, ds, threads: int) -> dict:
    """Val mIoU of every model run by OpenVINO (the accuracy gate is on what runs)."""
    from edgeseg.export.onnx_eval import evaluate_onnx

    return {k: evaluate_onnx(p, ds, "val", threads=threads, backend="openvino")["miou"]
            for k, p in paths.items()}  # fmt: skip


def _engines(paths: dict, threads: int, ep) -> dict:
    from edgeseg.runtime.backends import create_backend
    from edgeseg.runtime.model_info import load_model_info

    out = {}
    for key, p in paths.items():
        info = load_model_info(p)
        h, w = info.input_size
        x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
        for name in ("onnxruntime", "openvino"):
            b = create_backend(info, name, None, threads)
            b.infer(x)  # warm-up (and compile)
            out[(key, name)] = lambda b=b, x=x: b.infer(x)
        if ep is not None:
            out[(key, "ort-openvino-ep")] = p
    return out


def _time(fn, runs: int) -> list:
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return t


def _loop_fps(paths: dict, threads: int, frames: int, rounds: int, tmp: Path) -> list:
    """Per (model, engine): predict alone vs CameraLoop fps (medians of ``rounds``)."""
    spec = importlib.util.spec_from_file_location(
        "bench_loop", Path(__file__).with_name("bench_loop.py")
    )
    bl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bl)
    from edgeseg.runtime import Segmenter

    scene = "synthetic://?size=256x256&seed=0"
    segs = {}
    for key in [k for k in paths if k[0] == 256]:
        for name in ("onnxruntime", "openvino"):
            segs[(key, name)] = Segmenter(
                paths[key], backend=name, device=None, threads=threads, overlay_alpha=0.5
            )
    res: dict = {k: [] for k in segs}
    for _ in range(rounds):
        for k, seg in segs.items():
            r = bl._round(seg, scene, frames, tmp)
            res[k].append((r["inference"], r["loop"]))
    rows = []
    for k, v in res.items():
        alone = float(np.median([a for a, _ in v]))
        loop = float(np.median([b for _, b in v]))
        ratio = float(np.median([b / a for a, b in v]))
        rows.append({"model": f"{k[0][0]}² {k[0][1]}", "engine": k[1], "predict_fps": alone,
                     "loop_fps": loop, "loop_vs_predict": ratio})  # fmt: skip
    return rows


class _FixedEngine:
    """A backend whose inference takes a fixed ``ms`` without using the CPU (sleeping, as an
    accelerator's wait), one frame at a time, returning the real model's logits: the loop's
    pipelining measured apart from the CPU share a loaded machine gives each thread."""

    name = "fixed-cost"
    max_batch = None

    def __init__(self, backend, ms: float, requests: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.inner, self.s, self.requests = backend, ms / 1000.0, requests
        self.engine = ThreadPoolExecutor(1)  # one engine: frames queue, as on a device
        self.cache: dict = {}

    def infer(self, blob):
        time.sleep(self.s)
        key = blob.shape
        if key not in self.cache:
            self.cache[key] = np.array(self.inner.infer(blob))
        return self.cache[key]

    def submit(self, blob):
        fut = self.engine.submit(self.infer, blob)

        class _P:
            def wait(self):
                return fut.result()

            def release(self):
                pass

        return _P()

    def describe(self) -> dict:
        return {"backend": self.name}

    def close(self) -> None:
        self.engine.shutdown()


def _pipelining(path: Path, ms: float, frames: int, rounds: int, tmp: Path) -> dict:
    """CameraLoop fps with a fixed-cost engine, one frame in flight vs two."""
    spec = importlib.util.spec_from_file_location(
        "bench_loop", Path(__file__).with_name("bench_loop.py")
    )
    bl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bl)
    from edgeseg.camera import CameraLoop
    from edgeseg.runtime import Segmenter

    out: dict = {1: [], 2: []}
    for _ in range(rounds):
        for depth in (1, 2):
            seg = Segmenter(path, backend="onnxruntime", device=None, threads=2,
                            overlay_alpha=0.5)  # fmt: skip
            seg.backend = _FixedEngine(seg.backend, ms, depth)
            loop = CameraLoop(
                f"synthetic://?size=256x256&seed=0&frames={frames}", seg,
                sinks=bl._sinks(tmp, f"fixed{depth}"), drop="none",
            )  # fmt: skip
            st = loop.run()
            out[depth].append(st["frames"] / st["elapsed_s"])
            seg.close()
    return {d: float(np.median(v)) for d, v in out.items()}


def _engine_table(args, paths: dict, miou: dict, load0) -> list:
    """The engine table (printed); its rows."""
    ov_miou = _ov_miou(paths, args.dataset, args.threads)
    ep = ep_note = None
    if args.ep_python:
        try:
            ep = _EpWorker(args.ep_python, args.threads)
        except Exception as e:
            ep_note = f"ORT OpenVINO EP not measured: {e}"
    pairs = _engines(paths, args.threads, ep)
    if ep is not None:  # warm-up (and compile) in the worker
        for k in paths:
            ep.times(paths[k], 1)

    times: dict = {(k, cond): [] for k in pairs for cond in ("quiet", "hog")}
    for r in range(args.rounds):
        cond = "quiet" if r % 2 == 0 else "hog"
        hog = _hog() if cond == "hog" else None
        try:
            if hog is not None:
                time.sleep(0.5)
            for k, fn in pairs.items():
                t = ep.times(fn, args.runs) if k[1] == "ort-openvino-ep" else _time(fn, args.runs)
                times[(k, cond)] += t
        finally:
            if hog is not None:
                _stop(hog)
    if ep is not None:
        ep.close()
    med = {k: float(np.median(v)) * 1000 for k, v in times.items() if v}

    import onnxruntime

    from edgeseg.runtime.openvino_backend import openvino_version

    load1 = os.getloadavg()
    engines = ["onnxruntime", "openvino"] + (["ort-openvino-ep"] if ep is not None else [])
    model = f"run {args.run}" if args.run else f"default UNet trained {args.minutes:g} min"
    print(
        f"{platform.machine()} {cpu_name()}, {os.cpu_count()} cpus; {args.threads} threads, "
        f"batch 1; ONNX Runtime {onnxruntime.__version__}, OpenVINO {openvino_version()}"
        + (f", ORT-OpenVINO EP {ep.version}" if ep is not None else "")
        + f"; {args.rounds} interleaved rounds x {args.runs} runs (medians); load average "
        f"{' '.join(f'{v:.2f}' for v in load0)} before, {' '.join(f'{v:.2f}' for v in load1)} "
        f"after; model: {model}"
    )
    if ep_note:
        print(ep_note)
    hdr = f"{'model':<12} {'cpu':<6}" + "".join(f" {e + ' ms':>21}" for e in engines)
    hdr += f" {'OV/ORT':>7} {'OV int8/fp32':>13} {'mIoU ORT':>9} {'mIoU OV':>8}"
    print(hdr)
    rows = []
    for (s, prec), _ in paths.items():
        for cond in ("quiet", "hog"):
            ms = {e: med.get((((s, prec), e), cond)) for e in engines}
            ratio = ms["onnxruntime"] / ms["openvino"]
            fp = med.get((((s, "fp32"), "openvino"), cond))
            i8 = med.get((((s, "int8"), "openvino"), cond))
            q = f"{fp / i8:.2f}x" if prec == "int8" else ""
            row = {"model": f"{s}² {prec}", "cpu": cond, "ms": ms, "ov_vs_ort": ratio,
                   "ov_int8_vs_fp32": fp / i8 if prec == "int8" else None,
                   "miou_ort": miou[(s, prec)], "miou_ov": ov_miou[(s, prec)]}  # fmt: skip
            rows.append(row)
            print(
                f"{row['model']:<12} {cond:<6}"
                + "".join(f" {ms[e]:>21.2f}" for e in engines)
                + f" {ratio:>6.2f}x {q:>13} {miou[(s, prec)] * 100:>9.2f} "
                f"{ov_miou[(s, prec)] * 100:>8.2f}"
            )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", help="a trained run directory (default: train the default model)")
    ap.add_argument("--data", help="dataset (default: the run's, or synthetic defects 256²)")
    ap.add_argument("--out", default="/tmp/edgeseg_bench_engines")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--minutes", type=float, default=2.0, help="training budget without --run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6, help="rounds (alternately quiet and hog)")
    ap.add_argument("--runs", type=int, default=15, help="timed runs per pair and round")
    ap.add_argument("--calib-images", type=int, default=64)
    ap.add_argument("--ep-python", help="python of a venv with onnxruntime-openvino")
    ap.add_argument("--loop-frames", type=int, default=120, help="frames per loop measurement")
    ap.add_argument("--loop-rounds", type=int, default=3)
    ap.add_argument("--no-loop", action="store_true", help="skip the camera-loop part")
    ap.add_argument("--fixed-ms", type=float, default=20.0, help="fixed-cost engine (ms)")
    ap.add_argument("--only-loop", action="store_true", help="skip the engine table")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    paths, miou = _models(args, out)
    rows = [] if args.only_loop else _engine_table(args, paths, miou, load0)
    loop_rows = []
    if not args.no_loop:
        tmp = Path(tempfile.mkdtemp(prefix="bench_engines_loop_"))
        loop_rows = _loop_fps(paths, args.threads, args.loop_frames, args.loop_rounds, tmp)
        base = {r["model"]: r["loop_fps"] for r in loop_rows if r["engine"] == "onnxruntime"}
        print(
            f"camera loop, 256² synthetic frames, overlay + jsonl + images sinks, "
            f"{args.loop_frames} frames x {args.loop_rounds} rounds (medians); load average "
            f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
        )
        print(f"{'model':<12} {'engine':<12} {'predict fps':>12} {'loop fps':>9} "
              f"{'loop/predict':>13} {'loop vs ORT loop':>17}")  # fmt: skip
        for r in loop_rows:
            r["loop_vs_ort_loop"] = r["loop_fps"] / base[r["model"]]
            print(
                f"{r['model']:<12} {r['engine']:<12} {r['predict_fps']:>12.1f} "
                f"{r['loop_fps']:>9.1f} {r['loop_vs_predict']:>12.3f}x "
                f"{r['loop_vs_ort_loop']:>16.2f}x"
            )
        fixed = _pipelining(paths[(256, "fp32")], args.fixed_ms, args.loop_frames,
                            args.loop_rounds, tmp)  # fmt: skip
        print(
            f"camera loop, inference at a fixed {args.fixed_ms:g} ms (no CPU, one engine; "
            f"real pre/postprocess and sinks): 1 frame in flight {fixed[1]:.1f} fps, 2 in "
            f"flight {fixed[2]:.1f} fps = {fixed[2] * args.fixed_ms / 1000:.3f} x the engine's "
            f"{1000 / args.fixed_ms:.1f} fps ({fixed[1] * args.fixed_ms / 1000:.3f} x with 1); "
            f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
        )
        loop_rows.append(
            {"fixed_ms": args.fixed_ms, "fps_depth1": fixed[1], "fps_depth2": fixed[2]}
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"engines": rows, "loop": loop_rows, "load": load0}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
