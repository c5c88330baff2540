"""FP32 vs INT8 (``--target cpu``) with ONNX Runtime on the CPU, 2 threads, at 256² and 512².

    python tools/bench_quant.py [--run RUN_DIR] [--data DATASET] [--out /tmp/edgeseg_bench_quant]

Exports the run (default: trains the default model on the synthetic ``defects`` set, 256²,
for ``--minutes``) at each size, quantizes it with :func:`edgeseg.quant.quantize` (calibrated
on the train split, gated on val) and prints median latencies, the speedup and both mIoUs
(a useful int8 model is >= 1.5x faster for <= 1.0 mIoU point lost). FP32 and INT8 run in turns
(alternating blocks of 5 runs) in one process (medians), so load from other processes falls
on both alike; the load average is printed with the table. ``--all-int8`` quantizes every
convolution (the pre-plan behaviour) for comparison; by default the convolutions ONNX Runtime
runs slower in int8 stay float32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edgeseg import data
from edgeseg._platform import cpu_name


def _int8_convs(path) -> str:
    """'int8/all' convolutions of a QDQ model (a Conv whose weight comes from a
    DequantizeLinear runs as QLinearConv)."""
    if path is None:
        return "-"
    import onnx

    m = onnx.load(str(path))
    dq = {o for n in m.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    return f"{sum(n.input[1] in dq for n in convs)}/{len(convs)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a trained run directory (default: train one)")
    ap.add_argument("--data", help="dataset (default: the run's, or synthetic defects 256²)")
    ap.add_argument("--out", default="/tmp/edgeseg_bench_quant")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget without --run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50, help="timed runs per model (median)")
    ap.add_argument("--calib-images", type=int, default=200)
    ap.add_argument("--calib-method", default="minmax")
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--all-int8", action="store_true", help="quantize every convolution")
    ap.add_argument(
        "--cpu-isa", default="auto", help="plan for vnni / no-vnni (auto: this machine)"
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = args.data
    run = args.run
    if run and not ds:
        import yaml

        ds = (yaml.safe_load((Path(run) / "config.yaml").read_text()) or {}).get("data")
    if not ds:
        ds = out / "defects256"
        if not (ds / "images").exists():
            data.synth(ds, task="defects", n=200, size=256, seed=0)
    if not run:
        from edgeseg.train import cli as train_cli

        run = out / "run"
        rc = train_cli.main(
            ["--data", str(ds), "--out", str(run), "--time-limit", str(args.minutes)]
            + ["--no-progress"]
        )
        if rc:
            return rc
    from edgeseg.export import export_onnx
    from edgeseg.quant import quantize

    rows = []
    for s in args.sizes:
        fp32 = out / f"{s}" / "model.onnx"
        export_onnx(run, fp32, size=(s, s), log=None)
        r = quantize(
            fp32,
            ds,
            out / f"{s}" / "model.int8.onnx",
            precision="int8",
            target="cpu",
            calib_images=args.calib_images,
            calib_method=args.calib_method,
            max_drop=args.max_drop,
            threads=args.threads,
            latency_runs=args.runs,
            all_int8=args.all_int8,
            cpu_isa=args.cpu_isa,
            log=None,
        )
        rows.append((s, r))
    import onnxruntime

    print(
        f"ONNX Runtime {onnxruntime.__version__} CPU, {args.threads} threads, batch 1, FP32 and "
        f"INT8 in alternating blocks, median of {args.runs} runs each; {cpu_name()}; load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; data {ds}; run {run}"
        + ("; --all-int8" if args.all_int8 else f"; plan for {rows[0][1].get('cpu_isa')}")
    )
    print(
        f"{'size':>6} {'fp32 ms':>9} {'int8 ms':>9} {'speedup':>8} {'fp32 mIoU':>10} "
        f"{'int8 mIoU':>10} {'drop':>6} {'int8 convs':>10} {'float (acc)':>11} gate"
    )
    for s, r in rows:
        convs = _int8_convs(Path(r["output"]) if r["written"] else None)
        print(
            f"{s:>5}² {r['fp32']['latency_ms']:>9.2f} {r['quantized']['latency_ms']:>9.2f} "
            f"{r['speedup']:>7.2f}x {r['fp32']['miou'] * 100:>10.2f} "
            f"{r['quantized']['miou'] * 100:>10.2f} {r['miou_drop_points']:>6.2f} "
            f"{convs:>10} {len(r['nodes_kept_float']):>11} {'pass' if r['passed'] else 'FAIL'}"
        )
    (out / "bench_quant.json").write_text(json.dumps({str(s): r for s, r in rows}, indent=2) + "\n")
    return 0 if all(r["passed"] for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
