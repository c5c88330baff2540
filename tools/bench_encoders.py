"""timm encoders behind ``--arch timm_unet``: which export cleanly, which TensorRT parses and
builds, and how fast each runs on this CPU next to the default model.

    python tools/bench_encoders.py [--encoders resnet18,mobilenetv3_large_100,...]
                                   [--size 256] [--threads 2] [--rounds 5] [--runs 10]
                                   [--no-tensorrt] [--out DIR] [--json results.json]

Every model takes the path a user takes: ``edgeseg train`` (two steps on a small synthetic set:
export and speed do not depend on how well it is trained), ``edgeseg export --size S S`` with
its torch ↔ ONNX Runtime parity check, then (when a TensorRT Python package is installed: the
``tensorrt-rtx`` wheels build without a GPU) ``edgeseg build --precision fp32``. The first row
is the default model of ``edgeseg train``. Latency: ONNX Runtime on the CPU, ``--threads``
threads, the same input for every model, in interleaved rounds in one process (each round
times every model ``--runs`` times), median over all runs, ratio to the default model.
Needs timm (``pip install 'edgeseg[zoo]'``, with a torchvision built for the installed torch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from edgeseg._platform import cpu_name

DEFAULT_ENCODERS = (
    "resnet18",
    "resnet34",
    "mobilenetv3_large_100",
    "mobilenetv4_conv_small",
    "efficientnet_b0",
    "regnety_004",
    "convnext_atto",
    "mobilevitv2_050",
)
#: what a plain CNN leaves in the graph once BatchNorm is folded (the rest is listed per model)
PLAIN_OPS = {"Conv", "Relu", "MaxPool", "Add", "Resize", "Concat", "Shape", "Slice", "Constant"}
PLAIN_OPS |= {"Identity"}


def _train(name: str, encoder: str | None, ds: Path, work: Path) -> Path:
    import yaml

    from edgeseg.cli import main as cli

    run = work / f"run_{name}"
    settings = dict(size=64, crop=64, epochs=1, max_steps=2, batch=2, workers=0, loss="ce")
    argv = ["train", "--data", str(ds), "--out", str(run), "--no-progress"]
    if encoder:
        settings["model_kwargs"] = {"encoder": encoder}
        argv += ["--model", "timm_unet"]
    conf = work / f"{name}.yaml"
    conf.write_text(yaml.safe_dump(settings))
    if cli([*argv, "--config", str(conf)]) != 0:
        raise RuntimeError("edgeseg train failed (see above)")
    return run


def _export(run: Path, out: Path, size: int) -> dict:
    from edgeseg.export import export_onnx

    return export_onnx(run, out, size=(size, size), log=None)


def _ops(path: Path) -> list[str]:
    import onnx

    return sorted({n.op_type for n in onnx.load(str(path)).graph.node} - PLAIN_OPS)


def _tensorrt(onnx_path: Path) -> dict:
    from edgeseg.engine.builder import build_engine

    t0 = time.perf_counter()
    try:
        m = build_engine(onnx_path, onnx_path.with_suffix(".engine"), precision="fp32", log=None)
    except Exception as e:  # noqa: BLE001 - reported in the table, the next model goes on
        return {"ok": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    return {
        "ok": True,
        "build_s": round(time.perf_counter() - t0, 1),
        "tensorrt": str(m.get("tensorrt")),
    }


def _time(paths: dict[str, Path], size: int, threads: int, rounds: int, runs: int) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    sessions = {
        k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():  # warm-up
        s.run(None, {s.get_inputs()[0].name: x})
    for r in range(rounds):
        order = list(sessions) if r % 2 == 0 else list(reversed(sessions))
        for k in order:
            s = sessions[k]
            feed = {s.get_inputs()[0].name: x}
            for _ in range(runs):
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append((time.perf_counter() - t0) * 1e3)
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoders", default=",".join(DEFAULT_ENCODERS))
    ap.add_argument("--size", type=int, default=256, help="input size of the exported graphs")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per model and round")
    ap.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT build")
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    try:
        import timm
    except Exception as e:  # noqa: BLE001 - a CUDA torchvision next to a CPU torch raises
        print(f"bench_encoders: timm cannot be imported ({type(e).__name__}: {e}); "
              "pip install 'edgeseg[zoo]' with a torchvision built for your torch",
              file=sys.stderr)  # fmt: skip
        return 2
    import torch

    from edgeseg import data
    from edgeseg.engine.manifest import load_tensorrt
    from edgeseg.errors import DeviceUnavailableError

    trt = None
    if not args.no_tensorrt:
        try:
            trt = load_tensorrt()
        except DeviceUnavailableError as e:
            print(f"no TensorRT build: {e}", file=sys.stderr)
    work = Path(args.out or tempfile.mkdtemp(prefix="edgeseg_encoders_"))
    work.mkdir(parents=True, exist_ok=True)
    ds = data.synth(work / "ds", "objects", n=8, size=64)
    rows: dict[str, dict] = {}
    onnx_paths: dict[str, Path] = {}
    names = ["default"] + [e for e in args.encoders.split(",") if e]
    for name in names:
        encoder = None if name == "default" else name
        print(f"{name}: train, export{', TensorRT' if trt else ''}", file=sys.stderr, flush=True)
        row: dict = {"encoder": name}
        try:
            run = _train(name, encoder, ds, work)
            model = torch.load(run / "best.pt", weights_only=True)
            row["params_m"] = round(sum(v.numel() for v in model["state_dict"].values()) / 1e6, 2)
            onnx_path = work / f"{name}.onnx"
            rep = _export(run, onnx_path, args.size)
            row.update(
                export="ok",
                onnx_mb=round(onnx_path.stat().st_size / 2**20, 1),
                parity_max_abs=float(rep["parity"]["max_abs_diff"]),
                class_maps_identical=bool(rep["parity"]["class_maps_identical"]),
                extra_ops=_ops(onnx_path),
            )
            onnx_paths[name] = onnx_path
            if trt:
                row["tensorrt"] = _tensorrt(onnx_path)
        except Exception as e:  # noqa: BLE001 - reported, the next model goes on
            row.setdefault("export", f"failed: {type(e).__name__}: {str(e).splitlines()[0]}")
            traceback.print_exc()
        rows[name] = row
    print(f"timing {len(onnx_paths)} models", file=sys.stderr, flush=True)
    ms = _time(onnx_paths, args.size, args.threads, args.rounds, args.runs)
    base = ms.get("default")
    for k, v in ms.items():
        rows[k]["ort_ms"] = round(v, 2)
        rows[k]["vs_default"] = round(v / base, 2) if base else None

    machine = f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}"
    machine += f", timm {timm.__version__}"
    import onnxruntime as ort

    print(f"# {machine}; ONNX Runtime {ort.__version__}, {args.threads} threads, "
          f"{args.size}x{args.size}, FP32, median of {args.rounds}x{args.runs} runs")  # fmt: skip
    head = ["encoder", "params (M)", "ONNX (MB)", "export, parity", "ops beyond a plain CNN",
            "TensorRT fp32 build", "ORT ms", "× default"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows.values():
        t = r.get("tensorrt")
        trt_cell = "not run" if t is None else (
            f"ok ({t['build_s']} s)" if t["ok"] else f"failed: {t['error']}"
        )  # fmt: skip
        ok = r.get("export") == "ok"
        parity = r["export"]
        if ok:
            parity = f"ok, max diff {r['parity_max_abs']:.1e}"
            parity += "" if r["class_maps_identical"] else ", class maps differ"
        cells = [r["encoder"] + (" (edgeseg default)" if r["encoder"] == "default" else ""),
                 r.get("params_m", ""), r.get("onnx_mb", ""), parity,
                 ", ".join(r.get("extra_ops", [])) or "none", trt_cell,
                 r.get("ort_ms", ""), r.get("vs_default", "")]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.json:
        out = {"machine": machine, "rows": list(rows.values())}
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
