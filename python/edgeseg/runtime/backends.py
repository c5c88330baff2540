"""The inference backends behind one small interface (:class:`~edgeseg.runtime.backend.Backend`)
and the one function that picks one.

:class:`OrtBackend` (ONNX Runtime) lives here; OpenVINO and TensorRT in their own modules,
loaded only when chosen. :func:`create_backend` picks the backend; for ``backend="auto"`` it
also says why (``backend.choice``, shown by ``describe()``, ``edgeseg info`` and the
``edgeseg run`` header).
"""

from __future__ import annotations

import platform
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from edgeseg._ort import import_ort, ort_session
from edgeseg.errors import DeviceUnavailableError, InvalidArgumentError, ModelError
from edgeseg.runtime.backend import Backend, Pending, cache_root
from edgeseg.runtime.model_info import ModelInfo

__all__ = [
    "BACKENDS",
    "Backend",
    "OrtBackend",
    "Pending",
    "auto_choice",
    "cache_root",
    "create_backend",
    "ort_cache_dir",
    "ort_providers",
    "tensorrt_available",
]

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")


def ort_cache_dir() -> Path:
    """Where ONNX Runtime's TensorRT execution provider keeps the engines it builds
    (:func:`cache_root`, then ``ort_trt/``): building one takes minutes, so the first session
    builds and later ones load."""
    return cache_root() / "ort_trt"


def ort_providers(available: list, device: Optional[int]) -> list:
    """The execution providers for a session, best first, from ONNX Runtime's ``available``
    list: on a GPU (``device`` not None) TensorRT (engines cached in :func:`ort_cache_dir`,
    the model's own precision) then CUDA, when this onnxruntime build has them; the CPU
    always last, so ONNX Runtime falls back to it for what the others cannot run."""
    out: list = []
    if device is not None:
        if "TensorrtExecutionProvider" in available:
            out.append(
                (
                    "TensorrtExecutionProvider",
                    {
                        "device_id": int(device),
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(ort_cache_dir()),
                    },
                )
            )
        if "CUDAExecutionProvider" in available:
            out.append(("CUDAExecutionProvider", {"device_id": int(device)}))
    out.append("CPUExecutionProvider")
    return out


def _batch_dim(shape) -> Optional[int]:
    d = shape[0] if shape else None
    return d if isinstance(d, int) and d > 0 else None


class OrtBackend(Backend):
    """ONNX Runtime: the CPU execution provider (``threads`` intra-op threads), or CUDA /
    TensorRT execution providers when the installed onnxruntime has them and ``device`` is a
    GPU index. Inputs and outputs go through I/O binding into a reused output buffer.

    ``providers``: ONNX Runtime's own provider list (names or ``(name, options)`` pairs),
    used as given instead of the choice above (e.g. ``["OpenVINOExecutionProvider",
    "CPUExecutionProvider"]`` with onnxruntime-openvino). ``session_options``: an
    ``onnxruntime.SessionOptions`` used as given (``threads`` is then ignored)."""

    name = "onnxruntime"

    def __init__(
        self,
        info: ModelInfo,
        threads: Optional[int] = None,
        device: Optional[int] = 0,
        providers: Optional[list] = None,
        session_options=None,
    ) -> None:
        ort = import_ort(
            info.path,
            "the ONNX Runtime backend",
            "pip install onnxruntime, or onnxruntime-gpu on a CUDA machine",
        )
        self._ort = ort
        if providers is not None:
            if isinstance(providers, (str, tuple)) or not all(
                isinstance(p, str) or (isinstance(p, tuple) and len(p) == 2) for p in providers
            ):
                raise InvalidArgumentError(
                    "providers: expected a list of provider names or (name, options) pairs, "
                    f"got {providers!r}"
                )
            have = ort.get_available_providers()
            missing = [n for n in (p if isinstance(p, str) else p[0] for p in providers)]
            missing = [n for n in missing if n not in have]
            if missing:
                raise InvalidArgumentError(
                    f"providers: {missing} not in this onnxruntime build; available: {have}"
                )
        else:
            providers = ort_providers(ort.get_available_providers(), device)
            if any(isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider" for p in providers):
                cache = ort_cache_dir()
                try:
                    cache.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise ModelError(
                        f"cannot create the TensorRT engine cache {cache} ({e}); set "
                        "EDGESEG_CACHE to a writable folder"
                    ) from None
        # ORT's intra-op threads spin while a run is in flight (fast), and by default go
        # on spinning after it returns, on the cores our preprocess and postprocess are
        # about to use: on 2 cores that made the 720p postprocess 1.8x slower. Stop them
        # when run() returns (inference time unchanged; docs/benchmarks: "Runtime overhead").
        self.session = ort_session(
            info.path,
            threads=threads,
            providers=providers,
            options=session_options,
            spin_stop=True,
            needs="the ONNX Runtime backend",
        )
        self.providers = self.session.get_providers()
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(
                f"{info.path}: expected one input (images) and a logits output, got inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.max_batch = _batch_dim(inputs[0].shape)
        out_shape = outputs[0].shape
        if len(out_shape) != 4:
            raise ModelError(f"{info.path}: logits must be N×C×h×w, the model gives {out_shape}")
        c = out_shape[1]
        if isinstance(c, int) and c != info.num_classes:
            raise ModelError(
                f"{info.path}: the network outputs {c} classes but its metadata lists "
                f"{info.num_classes} ({info.class_names}); the metadata does not belong to "
                "this graph — re-export the model with `edgeseg export`"
            )
        self._on_cpu = self.providers[0] == "CPUExecutionProvider"
        self._out_shape = out_shape
        self._buffers: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def _output_buffer(self, blob: np.ndarray) -> Optional[np.ndarray]:
        n = blob.shape[0]
        dims = list(self._out_shape)
        dims[0] = n
        if not all(isinstance(d, int) and d > 0 for d in dims):
            return None  # symbolic output size: let ONNX Runtime allocate
        key = tuple(dims)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = np.empty(key, np.float32)
        return buf

    def infer(self, blob: np.ndarray) -> np.ndarray:
        blob = np.ascontiguousarray(blob, dtype=np.float32)
        with self._lock:
            if not self._on_cpu:
                return self.session.run([self.output_name], {self.input_name: blob})[0]
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, blob)
            out = self._output_buffer(blob)
            if out is None:
                binding.bind_output(self.output_name, "cpu")
                self.session.run_with_iobinding(binding)
                return binding.copy_outputs_to_cpu()[0]
            binding.bind_output(
                self.output_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data
            )
            self.session.run_with_iobinding(binding)
            return out

    def describe(self) -> dict:
        out = {"backend": self.name, "providers": list(self.providers)}
        if self.choice:
            out["choice"] = self.choice
        return out

    def close(self) -> None:
        self.session = None
        self._buffers.clear()


def tensorrt_available() -> tuple[bool, str]:
    """Whether the C++ TensorRT backend was compiled into this core, and why not."""
    from edgeseg import _core

    info = _core.build_info()
    if not info.get("tensorrt"):
        return False, (
            "the native core was built without TensorRT (TensorRT headers/libraries not found "
            "at build time; on Jetson install JetPack's TensorRT and rebuild with "
            "EDGESEG_ENABLE_TENSORRT=ON)"
        )
    ok, reason = _core.cuda_available()
    if not ok:
        return False, f"CUDA is unusable here: {reason}"
    return True, ""


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386", "x86")


def _ort_gpu(device: Optional[int]) -> bool:
    """Whether ONNX Runtime would run on a GPU here (a CUDA/TensorRT build and a device)."""
    if device is None:
        return False
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    gpu = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    return any(p in gpu for p in ort.get_available_providers())


def auto_choice(kind: str = "onnx", device: Optional[int] = 0) -> tuple[str, str]:
    """``(backend, reason)`` that ``backend="auto"`` takes for a model of ``kind`` (``onnx``
    or ``engine``) before trying it: TensorRT for an engine; for an ONNX model ONNX Runtime
    on a GPU it can use, OpenVINO on an x86 CPU where it is installed, ONNX Runtime else."""
    if kind == "engine":
        return "tensorrt", "a TensorRT engine runs on TensorRT"
    if _ort_gpu(device):
        return "onnxruntime", f"onnxruntime has CUDA/TensorRT providers and device={device}"
    if not _is_x86():
        return "onnxruntime", f"not an x86 CPU ({platform.machine()}): OpenVINO is not used"
    from edgeseg.runtime.openvino_backend import INSTALL_HINT, openvino_version

    ver = openvino_version()
    if ver is None:
        return "onnxruntime", f"x86 CPU, but OpenVINO is not installed ({INSTALL_HINT})"
    return "openvino", f"x86 CPU and OpenVINO {ver} installed (faster than ONNX Runtime there)"


def create_backend(
    info: ModelInfo,
    backend: str = "auto",
    device: Optional[int] = 0,
    threads=None,
    *,
    providers: Optional[list] = None,
    session_options=None,
    hint: str = "latency",
    cache_dir=None,
    openvino_config: Optional[dict] = None,
) -> Backend:
    """The backend for ``info``. ``auto``: TensorRT for an ``.engine``; for an ``.onnx``
    OpenVINO on an x86 CPU where it is installed (falling back to ONNX Runtime, with the
    reason, when it cannot compile the model), else ONNX Runtime (see :func:`auto_choice`).
    An explicit choice that cannot run here raises with the reason. ``providers`` and
    ``session_options`` go to ONNX Runtime (and make ``auto`` choose it); ``hint``,
    ``cache_dir`` and ``openvino_config`` to OpenVINO."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    ort_kw = {"providers": providers, "session_options": session_options}
    if backend == "auto":
        if info.kind == "onnx" and (providers is not None or session_options is not None):
            chosen, reason = "onnxruntime", "providers/session_options given for ONNX Runtime"
        else:
            chosen, reason = auto_choice(info.kind, device)
        if chosen == "openvino":
            from edgeseg.runtime.openvino_backend import OpenVINOBackend

            try:
                b: Backend = OpenVINOBackend(
                    info, threads=threads, hint=hint, cache_dir=cache_dir, config=openvino_config
                )
            except ModelError as e:
                reason = f"OpenVINO cannot run this model, so ONNX Runtime: {e}"
                b = OrtBackend(info, threads=threads, device=device)
        else:
            b = create_backend(info, chosen, device, threads, **ort_kw)
        b.choice = {"requested": "auto", "reason": reason}
        return b
    if backend in ("onnxruntime", "openvino") and info.kind != "onnx":
        raise InvalidArgumentError(
            f"{info.path}: backend={backend!r} needs the .onnx model, not a TensorRT "
            "engine; pass the ONNX file (or backend='tensorrt')"
        )
    if backend == "onnxruntime":
        return OrtBackend(info, threads=threads, device=device, **ort_kw)
    if backend == "openvino":
        from edgeseg.runtime.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(
            info, threads=threads, hint=hint, cache_dir=cache_dir, config=openvino_config
        )
    if info.kind != "engine":
        raise InvalidArgumentError(
            f"{info.path}: backend='tensorrt' runs a TensorRT engine; build one with `edgeseg "
            f"build {Path(info.path).name} -o {Path(info.path).stem}.engine`"
        )
    ok, reason = tensorrt_available()
    if not ok:
        raise DeviceUnavailableError(f"{info.path}: cannot run a TensorRT engine here: {reason}")
    from edgeseg.runtime.trt_backend import TensorRTBackend

    return TensorRTBackend(info, device=0 if device is None else int(device))
