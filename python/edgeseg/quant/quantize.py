"""Quantize an exported edgeseg ONNX model (FP16 or INT8 QDQ) behind an accuracy gate.

* **fp16**: every float tensor and weight in half precision, the graph's input and output kept
  float32 (``onnxconverter_common.float16``), so callers feed and read the same tensors.
* **int8**: static post-training quantization with ONNX Runtime, calibrated on the user's own
  images (the dataset's ``train`` split; never random data), preprocessed exactly as at
  runtime (stretch to the embedded input size, mean/std from the file's metadata through
  :func:`edgeseg.kernels.preprocess`). Explicit QDQ, per-channel weights.

  - ``target="cpu"``: U8S8 (uint8 activations, int8 weights with zero point 0), the format of
    ONNX Runtime's fast int8 convolution on x86 and ARM. Only the convolutions that ONNX
    Runtime runs faster in int8 are quantized, and only the data-movement nodes between two of
    them; the rest stays float32 (:mod:`edgeseg.quant.cpu_plan`; ``all_int8=True`` quantizes
    everything it can). Nodes kept float for speed are listed in the report.
  - ``target="tensorrt"``: symmetric int8 activations and weights, bias left float
    (int32 bias DequantizeLinear nodes are rejected by TensorRT's ONNX parser).

The gate: mIoU and per-class IoU of the float model and of the quantized one on the dataset's
validation split with :func:`edgeseg.export.onnx_eval.evaluate_onnx` (the numbers of
``edgeseg eval``). When the mIoU drops by more than ``max_drop`` points (0..100 scale), every
node still in reduced precision is tried in float on its own (cheap: the calibration ranges
are cached) and ranked by how much closer that brings the output to the float model's on a
few calibration images (pixels whose class changes first, logits NMSE second; never the
validation images). The best nodes are then kept in float one at a time, each step gated on
val again, until the gate passes or ``max_float_nodes`` are float.
A model that fails is not written to ``out``; ``quant_report.json`` next to it says why.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from edgeseg._ort import ort_session
from edgeseg.data import SegDataset, open_dataset
from edgeseg.errors import DatasetError, InvalidArgumentError, ModelError
from edgeseg.onnx_metadata import read_onnx_metadata
from edgeseg.quant.convert import (
    blobs,
    calib_reader,
    convert_fp16,
    latency_pair_ms,
    preprocess_model,
    quantize_int8,
    set_props,
    speed_plan,
)
from edgeseg.quant.cpu_plan import CPU_ISAS, detect_cpu_isa

__all__ = [
    "CALIB_METHODS",
    "MIN_CALIB_IMAGES",
    "PRECISIONS",
    "REPORT_NAME",
    "TARGETS",
    "quantize",
]

PRECISIONS = ("fp16", "int8")
TARGETS = ("cpu", "tensorrt")
CALIB_METHODS = ("minmax", "entropy", "percentile")
#: Fewer images than this do not estimate activation ranges; quantize refuses them.
MIN_CALIB_IMAGES = 8
REPORT_NAME = "quant_report.json"
#: Calibration images on which per-node errors are measured for the greedy fallback.
_PROBE_IMAGES = 8


def _check_args(precision, target, calib_images, calib_method, max_drop) -> None:
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if target not in TARGETS:
        raise InvalidArgumentError(f"target {target!r}: use one of {', '.join(TARGETS)}")
    if calib_method not in CALIB_METHODS:
        raise InvalidArgumentError(
            f"calib_method {calib_method!r}: use one of {', '.join(CALIB_METHODS)}"
        )
    if not isinstance(calib_images, int) or calib_images < MIN_CALIB_IMAGES:
        raise InvalidArgumentError(
            f"calib_images {calib_images!r}: too few calibration images; use at least "
            f"{MIN_CALIB_IMAGES} (200 is a good default)"
        )
    try:
        max_drop = float(max_drop)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"max_drop {max_drop!r}: expected mIoU points, e.g. 1.0"
        ) from None
    if not np.isfinite(max_drop):
        raise InvalidArgumentError(f"max_drop {max_drop!r}: expected a finite number of points")


def _check_classes(ds: SegDataset, meta: dict, model: Path) -> None:
    ours = [c["name"] for c in meta["classes"]]
    theirs = [c.name for c in ds.classes]
    if set(ours) != set(theirs):
        only_data = [n for n in theirs if n not in ours]
        only_model = [n for n in ours if n not in theirs]
        raise DatasetError(
            f"{ds.display_root}: its classes differ from {model.name}'s (only in the data: "
            f"{only_data or 'none'}; only in the model: {only_model or 'none'}; the model knows "
            f"{ours}); quantize with images of the dataset the model was trained on"
        )


def _calib_dataset(ds: SegDataset, n: int) -> SegDataset:
    split = ds.split("train") if ds.split_sizes().get("train") else ds
    avail = len(split)
    if avail < MIN_CALIB_IMAGES:
        raise DatasetError(
            f"{ds.display_root}: too few calibration images ({avail} in the "
            f"{'train split' if split is not ds else 'dataset'}; at least {MIN_CALIB_IMAGES} "
            "needed, 200 recommended); add training images of the deployment scene"
        )
    idx = np.random.default_rng(0).permutation(avail)[: min(n, avail)]
    return split.subset(sorted(int(i) for i in idx))


def _input_spec(path: Path) -> tuple[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ModelError(
            f"{path}: expected one input and one output; re-export with edgeseg export"
        )
    inp, out = inputs[0], model.graph.output[0]
    for v in (inp, out):
        if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ModelError(
                f"{path}: {v.name} is not float32 (is the model already quantized?); quantize "
                "the float32 file from `edgeseg export`"
            )
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv"}:
        raise ModelError(
            f"{path}: already quantized; quantize the float32 file from `edgeseg export`"
        )
    d0 = inp.type.tensor_type.shape.dim[0]
    return inp.name, int(d0.dim_value) if d0.HasField("dim_value") else 1


def _lowered(path: Path, precision: str) -> list[str]:
    """Names of the nodes that compute in reduced precision: those reading a
    DequantizeLinear output (int8) or writing a half tensor (fp16)."""
    import onnx

    model = onnx.load(str(path))
    skip = ("QuantizeLinear", "DequantizeLinear", "Cast")
    if precision == "int8":
        dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        return [
            n.name
            for n in model.graph.node
            if n.op_type not in skip and any(i in dq for i in n.input)
        ]
    inferred = onnx.shape_inference.infer_shapes(model)
    half = {
        v.name
        for v in inferred.graph.value_info
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    }
    return [
        n.name
        for n in model.graph.node
        if n.op_type not in skip and n.op_type != "Constant" and any(o in half for o in n.output)
    ]


def _logits(path: Path, blobs: list[np.ndarray]) -> list[np.ndarray]:
    sess = ort_session(path, threads=2, needs="the accuracy check of quantization")
    inp = sess.get_inputs()[0].name
    return [sess.run(None, {inp: x})[0] for x in blobs]


def _error(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    """(share of pixels whose class differs from the float model's, logits NMSE)."""
    diff = sum(int((r.argmax(1) != g.argmax(1)).sum()) for r, g in zip(ref, got))
    pixels = sum(r[:, 0].size for r in ref)
    num = sum(float(((r - g).astype(np.float64) ** 2).sum()) for r, g in zip(ref, got))
    den = sum(float((r.astype(np.float64) ** 2).sum()) for r in ref)
    return diff / max(pixels, 1), num / max(den, 1e-12)


def _rank_nodes(
    build, exclude: list[str], cand: Path, precision, probe, ref, tmp: Path, skip=()
) -> list:
    """``[(error removed, node)]``, best first: for every node still in reduced precision,
    how much closer to the float model's output (class maps first, logits second) the
    probe images come when that node alone is also kept float. ``skip``: nodes already float
    (kept float for speed) that only read a DequantizeLinear output."""
    base = _error(ref, _logits(cand, probe))
    trial = tmp / "trial.onnx"
    out = []
    for name in _lowered(cand, precision):
        if name in skip:
            continue
        build(exclude + [name], trial)
        err = _error(ref, _logits(trial, probe))
        out.append(((base[0] - err[0], base[1] - err[1]), name))
    return sorted(out, reverse=True)


def _gate(fp32: dict, q: dict) -> dict:
    drop = (fp32["miou"] - q["miou"]) * 100.0
    per = {}
    for name, a in fp32["per_class_iou"].items():
        b = q["per_class_iou"].get(name)
        per[name] = None if a is None or b is None else round((b - a) * 100.0, 4)
    return {"miou_drop_points": drop, "per_class_iou_delta_points": per}


def quantize(
    model: Union[str, Path],
    data: Union[str, Path, SegDataset],
    out: Union[str, Path],
    precision: str = "int8",
    target: str = "cpu",
    calib_images: int = 200,
    calib_method: str = "minmax",
    max_drop: float = 1.0,
    max_float_nodes: int = 8,
    threads: int = 2,
    latency_runs: int = 20,
    all_int8: bool = False,
    cpu_isa: str = "auto",
    log: Optional[Callable[[str], None]] = print,
) -> dict:
    """Quantize the exported float32 ``model`` to ``out`` behind the mIoU gate.

    ``data``: the dataset (calibration on its ``train`` split, the gate on its ``val``
    split). Returns the report (also written as ``quant_report.json`` next to ``out``):
    ``passed``, ``fp32`` and ``quantized`` (``miou``, ``per_class_iou``, ``latency_ms``),
    ``miou_drop_points``, ``per_class_iou_delta_points``, ``nodes_kept_float``, ``written``
    and the settings. ``out`` is written only when ``passed``.

    ``target="cpu"`` keeps in float the nodes ONNX Runtime runs slower in int8 on a CPU
    (``nodes_float_for_speed`` in the report, with the reason for each); ``all_int8=True``
    quantizes every node it can instead (the accuracy fallback may still keep some float).
    ``cpu_isa``: the CPU that will run the model, ``vnni`` (x86 with AVX512-VNNI/AVX-VNNI:
    every dense convolution gains in int8), ``no-vnni``, or ``auto`` (this machine's).

    Args:
        model: The float32 ``.onnx`` from ``edgeseg export``.
        data: The dataset (path or :class:`~edgeseg.data.SegDataset`).
        out: The quantized ``.onnx`` to write.
        precision: ``"int8"`` or ``"fp16"``.
        target: ``"cpu"`` (ONNX Runtime, U8S8) or ``"tensorrt"`` (symmetric int8).
        calib_images: Calibration images from the ``train`` split.
        calib_method: ``"minmax"``, ``"entropy"`` or ``"percentile"``.
        max_drop: Largest mIoU drop allowed, in points.
        max_float_nodes: Most nodes the gate may keep in float before giving up.
        threads: ONNX Runtime threads for evaluation and latency.
        latency_runs: Timed runs per model for the latency figures.
        all_int8: Quantize every node, even where int8 is slower on a CPU.
        cpu_isa: ``"auto"``, ``"vnni"`` or ``"no-vnni"``.
        log: Where progress lines go (None: silent).

    Returns:
        The report described above.

    Raises:
        InvalidArgumentError: A bad precision, target, method or limit.
        ModelError: The model is not an edgeseg float32 export.
        DatasetError: The dataset cannot be opened or a split is empty.
    """
    _check_args(precision, target, calib_images, calib_method, max_drop)
    if cpu_isa not in ("auto", *CPU_ISAS):
        raise InvalidArgumentError(
            f"cpu_isa {cpu_isa!r}: use auto (this machine), {' or '.join(CPU_ISAS)}"
        )
    if cpu_isa == "auto":
        cpu_isa = detect_cpu_isa()
    src, dst = Path(model), Path(out)
    if dst.resolve() == src.resolve():
        raise InvalidArgumentError(f"{dst}: the output would overwrite the float32 input")
    meta = read_onnx_metadata(src)
    input_name, batch = _input_spec(src)
    ds = data if isinstance(data, SegDataset) else open_dataset(data)
    _check_classes(ds, meta, src)
    val = ds.split("val")
    if len(val) == 0:
        raise DatasetError(
            f"{ds.display_root}: no validation split (splits/val.txt) to gate the quantized "
            "model on; add one (edgeseg data check shows the splits)"
        )
    calib = _calib_dataset(ds, calib_images) if precision == "int8" else None

    from edgeseg.export.onnx_eval import evaluate_onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    report_path = dst.parent / REPORT_NAME
    h, w = meta["input_size"]
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".quant-") as tmp_s:
        tmp = Path(tmp_s)
        work = preprocess_model(src, tmp / "pre.onnx", log) if precision == "int8" else src
        if log:
            log(f"evaluating the float32 model on {len(val)} validation images")
        ref = evaluate_onnx(src, val, split=None, threads=threads)
        # the greedy fallback measures on training images (calibration set), never on val
        pool = (
            calib if calib is not None else (ds.split("train") if len(ds.split("train")) else val)
        )
        probe = list(blobs(pool.subset(range(min(_PROBE_IMAGES, len(pool)))), meta, batch))
        ref_logits = _logits(src, probe)
        exclude: list[str] = []
        attempts = []
        ranking: Optional[list] = None
        cand = tmp / "candidate.onnx"
        plans: dict[Path, dict[str, str]] = {}  # per output file: nodes float for speed

        def build(excl: list[str], path: Path) -> None:
            if precision == "int8":
                reader = calib_reader(calib, meta, input_name, batch)
                plan = {} if all_int8 else speed_plan(work, target, excl, cpu_isa)
                plans[path] = {n: why for n, why in plan.items() if n not in excl}
                quantize_int8(
                    work, path, reader, target, calib_method, excl, tmp / "calib.json", plan
                )
            else:
                convert_fp16(work, path, excl)

        while True:
            if log:
                log(
                    f"{precision}"
                    + (
                        f" ({target}) static quantization, {calib_method} calibration on "
                        f"{len(calib)} images"
                        if precision == "int8"
                        else " conversion"
                    )
                    + (f", {len(exclude)} node(s) float" if exclude else "")
                )
            build(exclude, cand)
            set_props(
                cand,
                meta,
                {
                    "precision": precision,
                    "quant_target": target if precision == "int8" else None,
                    "calib_method": calib_method if precision == "int8" else None,
                },
            )
            got = evaluate_onnx(cand, val, split=None, threads=threads)
            gate = _gate(ref, got)
            attempts.append({"nodes_kept_float": list(exclude), "miou": got["miou"], **gate})
            if log:
                log(
                    f"mIoU float32 {ref['miou'] * 100:.2f}, {precision} {got['miou'] * 100:.2f} "
                    f"(drop {gate['miou_drop_points']:.2f} points, max {float(max_drop):g})"
                )
            passed = gate["miou_drop_points"] <= float(max_drop)
            if passed or len(exclude) >= max_float_nodes:
                break
            if ranking is None:  # measured once, on the first failure
                if log:
                    log("measuring each node's effect on the output to pick what stays float")
                ranking = _rank_nodes(
                    build, exclude, cand, precision, probe, ref_logits, tmp, plans.get(cand, {})
                )
            nxt = next((r for r in ranking if r[1] not in exclude), None)
            if nxt is None:
                break
            exclude.append(nxt[1])
            if log:
                log(
                    f"keeping {nxt[1]} in float ({nxt[0][0] * 100:.2f}% fewer probe pixels "
                    "change class)"
                )

        shape = (batch, 3, h, w)
        lat_fp32, lat_q = latency_pair_ms([src, cand], input_name, shape, threads, latency_runs)
        if passed:
            os.replace(cand, dst)  # same folder: atomic
    report = {
        "passed": bool(passed),
        "written": bool(passed),
        "model": str(src),
        "output": str(dst),
        "precision": precision,
        "target": target if precision == "int8" else None,
        "calib_method": calib_method if precision == "int8" else None,
        "calib_images": len(calib) if calib is not None else 0,
        "calib_source": (
            None
            if calib is None
            else "train split"
            if ds.split_sizes().get("train")
            else "whole dataset (no train split)"
        ),
        "val_images": len(val),
        "max_drop_points": float(max_drop),
        "miou_drop_points": gate["miou_drop_points"],
        "fp32": {
            "miou": ref["miou"],
            "per_class_iou": ref["per_class_iou"],
            "latency_ms": lat_fp32,
        },
        "quantized": {
            "miou": got["miou"],
            "per_class_iou": got["per_class_iou"],
            "latency_ms": lat_q,
        },
        "speedup": lat_fp32 / lat_q if lat_q > 0 else None,
        "per_class_iou_delta_points": gate["per_class_iou_delta_points"],
        "nodes_kept_float": list(exclude),
        "nodes_float_for_speed": plans.get(cand, {}),
        "all_int8": bool(all_int8) if precision == "int8" else None,
        "cpu_isa": cpu_isa if precision == "int8" and target == "cpu" else None,
        "attempts": attempts,
        "latency": {
            "runtime": "onnxruntime CPUExecutionProvider",
            "threads": threads,
            "input_shape": list(shape),
            "runs": latency_runs,
            "statistic": "median",
        },
    }
    if not passed:
        report["reason"] = (
            f"mIoU dropped {gate['miou_drop_points']:.2f} points (> {float(max_drop):g}) with "
            f"{len(exclude)} node(s) kept in float; {dst} was not written"
            + (" (the file there is an older one, left untouched)" if dst.exists() else "")
        )
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    report["report"] = str(report_path)
    if log:
        log(
            f"{'wrote ' + str(dst) if passed else 'GATE FAILED: ' + report['reason']}; latency "
            f"float32 {lat_fp32:.2f} ms, {precision} {lat_q:.2f} ms ({threads} threads); report "
            f"{report_path}"
        )
    return report
