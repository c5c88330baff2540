"""Replay the line part of a finished ``edgeseg demo`` on this machine: quantize its FP32
model again (calibration and accuracy gate run here) and run the camera loop with its rules
on its inspection video, scoring every verdict against the ground truth's.

The demo's verdicts depend on the CPU kernels that run the model: ONNX Runtime picks its
INT8 kernels by instruction set (VNNI or not), and the SDK's pre/postprocessing its SIMD
tier. Run under QEMU's user-mode emulator with an AVX2-only CPU model, this gives the
verdicts of an AVX2-only machine bit for bit, on any x86 machine (slowly: about 30x)::

    .venv/bin/python -m edgeseg demo --out demo_out
    qemu-x86_64 -cpu EPYC-Rome .venv/bin/python tools/demo_verdicts.py demo_out --quantize
    .venv/bin/python tools/demo_verdicts.py demo_out --model demo_out/models/model.onnx
    .venv/bin/python tools/demo_verdicts.py --model starter:defects --seeds 2024,1,2,3,4,5

``--seeds`` scores a model on new inspection videos of the demo's generator instead (one per
seed, 150 frames, the demo's rules): one video is one draw of panels, several say how far a
model's agreement holds.

Prints one JSON object: the kernels that ran, the model, the INT8 gate (with
``--quantize``), frames, NG count, video mIoU and the verdict agreement.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "demo_out", type=Path, nargs="?", help="the folder a finished `edgeseg demo` wrote"
    )
    ap.add_argument(
        "--seeds", help="comma list: score --model on a new video per seed instead of a demo's"
    )
    ap.add_argument(
        "--quantize",
        action="store_true",
        help="quantize models/model.onnx to INT8 here (calibration and gate on this CPU) "
        "and run the model the demo would pick",
    )
    ap.add_argument(
        "--model", type=Path, help="model to run (default: the INT8 model if the demo kept one)"
    )
    ap.add_argument("--out", type=Path, help="where to write (default DEMO_OUT/replay)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import onnxruntime

    from edgeseg import _core
    from edgeseg.demo import DemoConfig, _quantize, inspect_video
    from edgeseg.errors import EdgesegError

    if args.seeds:
        if not args.model:
            ap.error("--seeds needs --model")
        return _seeds(args, [int(x) for x in args.seeds.split(",")])
    if args.demo_out is None:
        ap.error("give a demo folder, or --seeds with --model")
    demo = args.demo_out
    needed = [demo / "models" / "model.onnx", demo / "inspection.mp4", demo / "rules.yaml"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        print(
            f"{demo}: not a finished demo folder (missing {', '.join(missing)}); run "
            f"`edgeseg demo --out {demo}` first",
            file=sys.stderr,
        )
        return 2
    out = args.out or demo / "replay"
    out.mkdir(parents=True, exist_ok=True)
    fp32 = demo / "models" / "model.onnx"
    gate = None
    if args.quantize:
        cfg = DemoConfig(threads=args.threads)
        int8 = out / "model.int8.onnx"
        try:
            gate = _quantize(fp32, demo / "dataset", int8, cfg)
        except EdgesegError as e:
            gate = {"passed": False, "reason": str(e)}
        model = int8 if gate.get("passed") else fp32
    else:
        model = args.model or next(
            p for p in (demo / "models" / "model.int8.onnx", fp32) if p.exists()
        )
    gt = np.load(demo / "inspection.mp4.gt.npz")["masks"]
    res = inspect_video(model, demo / "inspection.mp4", gt, demo / "rules.yaml", out, args.threads)
    summary = {
        "simd": _core.build_info()["simd"],
        "onnxruntime": onnxruntime.__version__,
        "model": str(model),
        "int8_gate": None
        if gate is None
        else {k: gate.get(k) for k in ("passed", "reason", "miou_drop_points")},
        "frames": res["stats"]["frames"],
        "ng": res["ng"],
        "video_miou": round(res["scores"]["miou"], 4),
        "verdict_agreement": round(res["agreement"], 4),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def _seeds(args, seeds: list) -> int:
    import yaml

    from edgeseg.demo import DEMO_RULES, DemoConfig, draw_video, inspect_video

    cfg = DemoConfig()  # the demo's own video: frames, size, speed and frame rate
    out = args.out or Path("demo_videos")
    out.mkdir(parents=True, exist_ok=True)
    rules = out / "rules.yaml"
    rules.write_text(yaml.safe_dump(DEMO_RULES, sort_keys=False))
    rows = []
    for seed in seeds:
        video = out / f"inspection_{seed}.mp4"
        if not video.exists():
            draw_video(video, cfg, seed)
        gt = np.load(f"{video}.gt.npz")["masks"]
        res = inspect_video(str(args.model), video, gt, rules, out / f"run_{seed}", args.threads)
        rows.append({"seed": seed, "ng": res["ng"], "verdict_agreement": res["agreement"]})
    agree = [r["verdict_agreement"] for r in rows]
    summary = {
        "model": str(args.model),
        "videos": rows,
        "mean_agreement": round(float(np.mean(agree)), 4),
        "min_agreement": round(min(agree), 4),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
