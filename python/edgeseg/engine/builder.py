"""Build a TensorRT engine from an exported ``.onnx`` and write its manifest, torch-free.

The TensorRT Python module is ``tensorrt`` or TensorRT for RTX (see
:mod:`edgeseg.engine.manifest`). The code keeps to the API both share; flags only one of them
has are guarded and the manifest records which were applied (``applied_flags``) and why others
were not (``notes``).

The manifest ``<engine>.json`` says what the engine was built with and for (TensorRT version,
GPU, compute capability, precision, DLA core, I/O, sha256 of the ONNX, classes,
preprocessing); :func:`edgeseg.engine.manifest.check_manifest` compares it with the machine it
is about to run on.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shlex
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

from edgeseg.engine.manifest import (
    MANIFEST_FORMAT,
    current_platform,
    load_tensorrt,
    manifest_path,
    tensorrt_flavour,
)
from edgeseg.errors import DeviceUnavailableError, InvalidArgumentError, ModelError

__all__ = ["PRECISIONS", "build_engine"]

PRECISIONS = ("fp32", "fp16", "int8", "best")
_PREPROCESSING_KEYS = (
    "input_size",
    "mean",
    "std",
    "scale",
    "channel_order",
    "layout",
    "resize",
    "interpolation",
    "input_name",
    "output_name",
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _has_qdq(path: Path, meta: dict) -> bool:
    try:
        import onnx
    except ImportError:
        return meta.get("precision") == "int8"
    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _onnx_precision(path: Path, meta: dict, qdq: bool) -> str:
    """The precision an ONNX file itself computes in: ``int8`` (Q/DQ nodes), ``fp16`` (float16
    weights, from ``edgeseg quantize --precision fp16``) or ``fp32``. A strongly typed builder
    (TensorRT for RTX) runs exactly these types, whatever precision was asked for."""
    if qdq:
        return "int8"
    try:
        import onnx
    except ImportError:
        return "fp16" if meta.get("precision") == "fp16" else "fp32"
    model = onnx.load(str(path), load_external_data=False)
    fp16 = onnx.TensorProto.FLOAT16
    return "fp16" if any(t.data_type == fp16 for t in model.graph.initializer) else "fp32"


def _build_command(onnx_path, out, precision, dla, workspace_mb, timing_cache) -> str:
    cmd = ["edgeseg", "build", str(onnx_path), "--precision", precision]
    if dla is not None:
        cmd += ["--dla", str(dla)]
    if workspace_mb is not None:
        cmd += ["--workspace", str(workspace_mb)]
    if timing_cache is not None:
        cmd += ["--timing-cache", str(timing_cache)]
    cmd += ["-o", str(out)]
    return shlex.join(cmd)


_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT32": "int32"}


def _dtype(t) -> str:
    name = str(t.dtype).rsplit(".", 1)[-1]
    return _DTYPES.get(name, name.lower())


def _io(network) -> tuple[list, list]:
    ins = [network.get_input(i) for i in range(network.num_inputs)]
    outs = [network.get_output(i) for i in range(network.num_outputs)]

    def desc(t):
        return {"name": t.name, "shape": [int(d) for d in t.shape], "dtype": _dtype(t)}

    return [desc(t) for t in ins], [desc(t) for t in outs]


def _make_logger(trt: ModuleType):
    """A TensorRT logger that keeps the errors, so that a failed build can say why."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))

    return Logger()


def _set_flag(trt, config, name: str, applied: list, notes: list, why: str) -> bool:
    flag = getattr(trt.BuilderFlag, name, None)
    if flag is None:
        notes.append(f"BuilderFlag.{name} does not exist in {trt.__name__}: {why}")
        return False
    config.set_flag(flag)
    applied.append(name)
    return True


def _check_args(onnx_path: Path, precision: str, dla, workspace_mb) -> None:
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if dla is not None and (not isinstance(dla, int) or isinstance(dla, bool) or dla < 0):
        raise InvalidArgumentError(f"dla {dla!r}: a DLA core number (0 or 1 on Jetson Orin)")
    if dla is not None and precision == "fp32":
        raise InvalidArgumentError(
            "DLA runs FP16 and INT8 only: use --precision fp16, int8 or best with --dla"
        )
    if workspace_mb is not None and (not isinstance(workspace_mb, int) or workspace_mb <= 0):
        raise InvalidArgumentError(f"workspace {workspace_mb!r}: a positive number of MiB")
    if not onnx_path.is_file():
        raise ModelError(
            f"{onnx_path}: no such ONNX file; export one with `edgeseg export RUN_DIR -o "
            f"{onnx_path.name}`"
        )


def build_engine(
    onnx_path: Union[str, Path],
    out: Union[str, Path],
    precision: str = "fp16",
    dla: Optional[int] = None,
    workspace_mb: Optional[int] = None,
    timing_cache: Union[str, Path, None] = None,
    max_batch: int = 1,
    log=print,
) -> dict:
    """Build ``out`` (a serialized TensorRT engine) from an edgeseg ``.onnx``; write the
    manifest next to it (``out`` + ``.json``) and return it.

    ``precision``: ``fp32``; ``fp16``; ``int8`` (explicit quantization: the ONNX must carry
    Q/DQ nodes, from ``edgeseg quantize --precision int8 --target tensorrt``; FP16 is allowed
    for the layers left in float); ``best`` (FP16 and INT8 where the ONNX is quantized).
    TensorRT for RTX has no precision flags: its engines take the ONNX's own types, so an
    FP16/INT8 engine there comes from an FP16/QDQ ONNX (the manifest notes this).
    ``dla``: DLA core with GPU fallback; the layers that fall back are listed in the manifest.
    ``workspace_mb``: workspace memory pool limit. ``timing_cache``: file read if present
    (a stale or foreign one is replaced) and written after the build. ``max_batch``: upper
    bound of the optimization profile of a dynamic-batch ONNX.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    _check_args(onnx_path, precision, dla, workspace_mb)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise InvalidArgumentError(f"max_batch {max_batch!r}: a positive integer")
    meta = _read_metadata(onnx_path)
    qdq = _has_qdq(onnx_path, meta)
    if precision == "int8" and not qdq:
        raise ModelError(
            f"{onnx_path}: --precision int8 needs a quantized (Q/DQ) model; edgeseg builds INT8 "
            "by explicit quantization only. Make one with `edgeseg quantize "
            f"{onnx_path.name} --data DATASET --precision int8 --target tensorrt -o "
            f"{onnx_path.stem}.int8.onnx` and build that"
        )
    trt = load_tensorrt()
    flavour = tensorrt_flavour(trt)
    say = log or (lambda *a, **k: None)
    t0 = time.perf_counter()

    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None:  # TensorRT 8.x; 10.x and RTX are always explicit batch
        flags |= 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external data next to the model; parse() would not.
    ok = parser.parse_from_file(str(onnx_path))
    if not ok:
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        lines = "\n".join(f"  - {e}" for e in errs) or "  (no parser error recorded)"
        raise ModelError(
            f"{onnx_path}: TensorRT {trt.__version__} ({flavour}) cannot parse it "
            f"({len(errs)} error(s)):\n{lines}\nIs it an ONNX model from `edgeseg export` "
            "(opset 17)?"
        )

    config = builder.create_builder_config()
    applied: list[str] = []
    notes: list[str] = []
    # A strongly typed builder (TensorRT for RTX) has no precision flags: the engine computes
    # in the ONNX's own types, and the manifest records those, not the request.
    strongly_typed = flavour == "tensorrt_rtx"
    engine_precision = _onnx_precision(onnx_path, meta, qdq) if strongly_typed else precision
    if strongly_typed and precision != engine_precision:
        notes.append(
            f"TensorRT for RTX is strongly typed: the engine runs in the ONNX's own precision "
            f"({engine_precision}), not the requested {precision}; quantize the ONNX "
            "(edgeseg quantize) for FP16/INT8 kernels"
        )
    if precision in ("fp16", "int8", "best"):
        _set_flag(trt, config, "FP16", applied, notes, "FP16 comes from an FP16 ONNX")
    if precision in ("int8", "best") and qdq:
        _set_flag(trt, config, "INT8", applied, notes, "INT8 comes from the Q/DQ nodes")
    if precision == "best" and not qdq:
        notes.append("best: the ONNX has no Q/DQ nodes, so no INT8 (implicit INT8 is not used)")

    if workspace_mb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)

    fallback: list[str] = []
    if dla is not None:
        fallback = _use_dla(trt, builder, config, network, dla, applied, notes)

    profile = _profile(builder, config, network, max_batch)

    cache_info = None
    if timing_cache is not None:
        cache_info = _load_timing_cache(config, Path(timing_cache), notes)

    targets = _target_capabilities(config)
    say(
        f"building {out.name} from {onnx_path.name}: {precision}, TensorRT {trt.__version__} "
        f"({flavour}){f', DLA core {dla}' if dla is not None else ''}"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        blob = builder.build_serialized_network(network, config)
        if cache_info is not None:
            data = bytes(memoryview(config.get_timing_cache().serialize()))
    for w in caught:  # e.g. TensorRT-RTX: "Timing cache operations are no-ops"
        if str(w.message) not in notes:
            notes.append(str(w.message))
    if blob is None or blob.nbytes == 0:
        why = "; ".join(logger.errors[-5:]) or "no error reported"
        raise ModelError(f"{onnx_path}: TensorRT could not build the engine ({why})")

    if cache_info is not None:
        Path(timing_cache).parent.mkdir(parents=True, exist_ok=True)
        Path(timing_cache).write_bytes(data)
        cache_info["bytes_after"] = len(data)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(memoryview(blob))
    os.replace(tmp, out)

    inputs, outputs = _io(network)
    plat = current_platform(trt)
    manifest = {
        "format": MANIFEST_FORMAT,
        "edgeseg_version": _edgeseg_version(),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - t0, 3),
        "build_command": _build_command(onnx_path, out, precision, dla, workspace_mb, timing_cache),
        "engine": out.name,
        "engine_bytes": out.stat().st_size,
        "engine_sha256": _sha256(out),
        "onnx": str(onnx_path),
        "onnx_sha256": _sha256(onnx_path),
        "onnx_quantized": qdq,
        "tensorrt": plat["tensorrt"],
        "gpu": plat["gpu"],
        "compute_capability": plat["compute_capability"],
        "target_compute_capabilities": targets,
        "precision": engine_precision,
        "requested_precision": precision,
        "strongly_typed": strongly_typed,
        "applied_flags": applied,
        "notes": notes,
        "dla_core": dla,
        "dla_fallback_layers": fallback,
        "workspace_mb": workspace_mb,
        "timing_cache": cache_info,
        "optimization_profile": profile,
        "inputs": inputs,
        "outputs": outputs,
        "classes": meta.get("classes"),
        "num_classes": meta.get("num_classes"),
        "preprocessing": {k: meta[k] for k in _PREPROCESSING_KEYS if k in meta},
        "model": meta.get("model"),
    }
    manifest_path(out).write_text(json.dumps(manifest, indent=2) + "\n")
    for n in notes:
        say(f"note: {n}")
    say(f"wrote {out} ({manifest['engine_bytes']} bytes) and {manifest_path(out).name}")
    return manifest


def _edgeseg_version() -> str:
    from edgeseg import __version__

    return __version__


def _read_metadata(onnx_path: Path) -> dict:
    from edgeseg.onnx_metadata import read_onnx_metadata

    return read_onnx_metadata(onnx_path)


def _use_dla(trt, builder, config, network, core: int, applied, notes) -> list[str]:
    n = int(getattr(builder, "num_DLA_cores", 0) or 0)
    if n == 0:
        raise DeviceUnavailableError(
            f"--dla {core}: this machine has no DLA (DLA cores: 0; they exist on Jetson AGX/NX "
            "Orin and Xavier); build without --dla, or build on the Jetson"
        )
    if core >= n:
        raise InvalidArgumentError(f"--dla {core}: this device has DLA cores 0..{n - 1}")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    _set_flag(trt, config, "GPU_FALLBACK", applied, notes, "layers DLA cannot run would fail")
    applied.append(f"DLA_core={core}")
    return [
        network.get_layer(i).name
        for i in range(network.num_layers)
        if not config.can_run_on_DLA(network.get_layer(i))
    ]


def _profile(builder, config, network, max_batch: int) -> Optional[dict]:
    dynamic = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        shape = [int(d) for d in t.shape]
        if any(d < 0 for d in shape):
            if any(d < 0 for d in shape[1:]):
                raise ModelError(
                    f"input {t.name!r} has dynamic dimensions other than the batch ({shape}); "
                    "re-export with a fixed --size"
                )
            dynamic[t.name] = shape
    if not dynamic:
        return None
    profile = builder.create_optimization_profile()
    desc = {}
    for name, shape in dynamic.items():
        lo, hi = [1, *shape[1:]], [max_batch, *shape[1:]]
        profile.set_shape(name, lo, lo, hi)
        desc[name] = {"min": lo, "opt": lo, "max": hi}
    config.add_optimization_profile(profile)
    return desc


def _target_capabilities(config) -> Optional[list]:
    """TensorRT-RTX builds for a list of compute capabilities (default: the current GPU's);
    the full TensorRT builds for the GPU it runs on (None here). An empty list: RTX's default,
    the GPU of the build machine, or portable code when none is visible."""
    n = getattr(config, "num_compute_capabilities", None)
    if n is None or not hasattr(config, "get_compute_capability"):
        return None
    return [str(config.get_compute_capability(i)).rsplit(".", 1)[-1] for i in range(int(n))]


def _load_timing_cache(config, path: Path, notes: list) -> dict:
    data = path.read_bytes() if path.is_file() else b""
    reused = bool(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        cache = config.create_timing_cache(data)
        if cache is None or not config.set_timing_cache(cache, False):
            notes.append(f"timing cache {path} does not match this TensorRT/GPU; started anew")
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, True)
            reused = False
    for w in caught:
        if str(w.message) not in notes:
            notes.append(str(w.message))
    return {"path": str(path), "reused": reused, "bytes_before": len(data)}
