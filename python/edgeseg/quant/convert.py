"""The conversions behind :func:`edgeseg.quant.quantize`: calibration data, ONNX Runtime's
static INT8 quantization (QDQ), FP16 conversion, metadata and the FP32-vs-quantized latency.

``--target cpu`` leaves in float what ONNX Runtime's CPU kernels run slower in int8
(:mod:`edgeseg.quant.cpu_plan`); ``--target tensorrt`` quantizes every supported node
(TensorRT picks its own kernels and fuses the QDQ pairs itself).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg import kernels
from edgeseg.data import SegDataset
from edgeseg.onnx_metadata import to_props

__all__ = [
    "blobs",
    "calib_reader",
    "convert_fp16",
    "latency_pair_ms",
    "preprocess_model",
    "quantize_int8",
    "set_props",
    "speed_plan",
]


def blobs(ds: SegDataset, meta: dict, batch: int):
    """Preprocessed ``batch``-sized float32 blobs of ``ds`` (the runtime's preprocessing)."""
    size, mean, std = meta["input_size"], meta["mean"], meta["std"]
    for i in range(0, len(ds), batch):
        images = [ds[j][0] for j in range(i, min(i + batch, len(ds)))]
        if len(images) < batch:  # a static batch dimension takes full batches only
            break
        blob = np.asarray(kernels.preprocess(images, size, mean, std, input_order="rgb"))
        yield np.ascontiguousarray(blob, dtype=np.float32)


def calib_reader(ds: SegDataset, meta: dict, input_name: str, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = None
            self.rewind()

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

        def rewind(self):
            self._it = blobs(ds, meta, batch)

    return _Reader()


def preprocess_model(src: Path, dst: Path, log) -> Path:
    """ONNX Runtime's pre-quantization pass (shape inference, basic graph optimization)."""
    try:
        from onnxruntime.quantization import quant_pre_process

        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return dst
    except Exception as e:  # the plain model quantizes too, only less tidily
        if log:
            log(f"quant_pre_process skipped ({type(e).__name__}: {e})")
        return src


def set_props(path: Path, meta: dict, extra: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    props = {k: v for k, v in meta.items()}
    props.update(extra)
    onnx.helper.set_model_props(model, to_props(props))
    onnx.save_model(model, str(path), save_as_external_data=False)


def speed_plan(
    src: Path, target: str, keep_float: list[str], cpu_isa: Optional[str] = None
) -> dict[str, str]:
    """``{node: reason}`` left float for speed: ``--target cpu`` only (see :mod:`cpu_plan`)."""
    if target != "cpu":
        return {}
    import onnx

    from edgeseg.quant.cpu_plan import float_for_speed

    return float_for_speed(onnx.load(str(src)), keep_float=keep_float, cpu_isa=cpu_isa)


def quantize_int8(src, dst, reader, target, calib_method, exclude, cache, plan=None) -> None:
    """Static INT8 QDQ of ``src`` into ``dst``: ``exclude`` (accuracy) and ``plan`` (speed,
    :func:`speed_plan`) stay float. ``target="cpu"``: uint8 activations, int8 per-channel
    weights (zero point 0, which ONNX Runtime's fast symmetric convolution requires);
    ``"tensorrt"``: symmetric int8 activations and weights, bias in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[calib_method]
    if target == "tensorrt":
        act, extra = (
            QuantType.QInt8,
            {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
    else:
        act, extra = QuantType.QUInt8, {"WeightSymmetric": True}
    quantize_static(
        str(src),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=act,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude) + [n for n in (plan or {}) if n not in exclude],
        calibrate_method=method,
        extra_options=extra,
        calibration_cache_path=str(cache),
    )


def convert_fp16(src, dst, exclude) -> None:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    half = float16.convert_float_to_float16(
        model, keep_io_types=True, node_block_list=list(exclude) or None
    )
    onnx.save_model(half, str(dst), save_as_external_data=False)


def latency_pair_ms(
    paths: list[Path], input_name: str, shape, threads: int, runs: int, block: int = 5
) -> list[float]:
    """Median latency (ms) of each model in ``paths`` on the same random input, ONNX Runtime
    CPU with ``threads`` intra-op threads. The models take turns in blocks of ``block`` timed
    runs, so that load from other processes falls on all of them alike; each block starts with
    one untimed run, so that no model is timed on caches the other one just filled."""
    from edgeseg._ort import ort_session

    sessions = [ort_session(p, threads) for p in paths]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for sess in sessions:
        for _ in range(2):
            sess.run(None, {input_name: x})
    times: list[list[float]] = [[] for _ in sessions]
    while len(times[0]) < runs:
        n = min(block, runs - len(times[0]))
        for sess, t_list in zip(sessions, times):
            sess.run(None, {input_name: x})  # untimed: back from the other model
            for _ in range(n):
                t = time.perf_counter()
                sess.run(None, {input_name: x})
                t_list.append((time.perf_counter() - t) * 1e3)
    return [float(np.median(t)) for t in times]
